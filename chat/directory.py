"""The cluster-wide directory of who is online where, kept in the database.

Every node writes its connections (Online) and room memberships (Membership) here, so
names are unique across the cluster (a unique key, not a race between nodes) and member
lists and counts cover every node. Nodes heartbeat their Node row; a node that stops
(SIGKILL, lost host) is reaped by any other: its rows are deleted in one transaction and
the reaper announces the `leave`s. Functions run in chat.store's workers.
"""
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from chat.models import Membership, Node, Online
from chat import persistence
from chat.protocol import NAME_TAKEN, ProtocolError


def register_node(node_id):
    """Start fresh: drop what an earlier process with this id left behind, then heartbeat."""
    left = _remove_nodes([node_id])
    Node.objects.update_or_create(id=node_id, defaults={"last_seen": timezone.now(), "started_at": timezone.now()})
    return left


def heartbeat(node_id):
    """Returns False when the row was gone (this node was reaped while alive)."""
    return Node.objects.filter(id=node_id).update(last_seen=timezone.now()) == 1


def reap(timeout_secs, keep):
    """Remove nodes (but `keep`) silent for `timeout_secs`; returns [(room, name, count_after)]."""
    cutoff = timezone.now() - timedelta(seconds=timeout_secs)
    table = connection.ops.quote_name(Node._meta.db_table)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE last_seen < %s AND id <> %s RETURNING id", [cutoff, keep])
            dead = [row[0] for row in cursor.fetchall()]
        return _remove_nodes(dead) if dead else []


def _remove_nodes(node_ids):
    with transaction.atomic():
        rows = list(Membership.objects.filter(node_id__in=node_ids).values_list("room", "name"))
        Membership.objects.filter(node_id__in=node_ids).delete()
        Online.objects.filter(node_id__in=node_ids).delete()
        Node.objects.filter(id__in=node_ids).delete()
        return _with_counts(rows)


def _with_counts(room_names):
    """[(room, name, count_after)] for the (room, name) pairs that left, leaving out names
    still in the room from another connection (an account's other tab)."""
    rooms = {room for room, _ in room_names}
    present = set(Membership.objects.filter(room__in=rooms).values_list("room", "name"))
    counts = _counts(rooms)
    return [(room, name, counts.get(room, 0)) for room, name in set(room_names) if (room, name) not in present]


def _counts(rooms):
    """{room: people online in it}: an account's tabs count once."""
    return dict(Membership.objects.filter(room__in=list(rooms)).values_list("room")
                .annotate(n=Count("name", distinct=True)).order_by())


@dataclass(frozen=True)
class Holder:
    """The connection that held a name before a takeover."""

    node_id: str
    sid: str


def claim(node_id, sid, name, takeover, user_id=None, identity=""):
    """Make `name` this connection's. Returns the Holder it took the name from, or None.

    An account (`user_id`) may be online from any number of connections; a guest's name is
    one connection's, taken over only with `takeover` (its token) and never from an
    account. An account takes its name back from a guest who had it before the account
    existed. Claiming a name this sid already holds succeeds (a retried re-registration).
    `identity`: the connection's chat.identity key (what a ban of this name bars)."""
    key = name.lower()
    with transaction.atomic():
        held = list(Online.objects.select_for_update().filter(key=key))
        if any(row.sid == sid for row in held):
            return None
        guest = next((row for row in held if row.user_id is None), None)
        if user_id is not None:
            if guest is not None:
                Online.objects.filter(pk=guest.pk).delete()
            Online.objects.create(key=key, name=name, user_id=user_id, identity=identity, node_id=node_id, sid=sid)
            return None if guest is None else Holder(guest.node_id, guest.sid)
        if held:
            if not takeover or guest is None:
                raise ProtocolError(NAME_TAKEN, f"{name} is already online")
            Online.objects.filter(pk=guest.pk).update(node_id=node_id, sid=sid, name=name, identity=identity,
                                                      since=timezone.now())
            return Holder(guest.node_id, guest.sid)
        try:
            with transaction.atomic():
                Online.objects.create(key=key, name=name, identity=identity, node_id=node_id, sid=sid)
        except IntegrityError:
            raise ProtocolError(NAME_TAKEN, f"{name} is already online") from None
    return None


def hand_back(sid, previous):
    """Undo a takeover by `sid` whose connection ended meanwhile: the name is `previous`'s again."""
    Online.objects.filter(sid=sid).update(node_id=previous.node_id, sid=previous.sid)


def unregister_node(node_id):
    """A node stopping cleanly: remove it and whatever of its connections is left in one go;
    returns [(room, name, count_after)] for the leaves to announce."""
    return _remove_nodes([node_id])


def release(sid):
    """Forget a connection; returns [(room, name, count_after)] for the rooms it left."""
    with transaction.atomic():
        rows = list(Membership.objects.filter(sid=sid).values_list("room", "name"))
        Membership.objects.filter(sid=sid).delete()
        Online.objects.filter(sid=sid).delete()
        return _with_counts(rows)


def enter(node_id, sid, name, room):
    """Add the member; returns the room's member count."""
    with transaction.atomic():
        Membership.objects.bulk_create([Membership(room=room, name=name, node_id=node_id, sid=sid)],
                                       ignore_conflicts=True)
        return _count(room)


def leave(sid, room):
    with transaction.atomic():
        Membership.objects.filter(sid=sid, room=room).delete()
        return _count(room)


def _count(room):
    return Membership.objects.filter(room=room).values("name").distinct().count()


def roster(room, limit):
    """(member count, first `limit` names) of a room across the cluster."""
    return _count(room), members(room, limit)


def members(room, limit):
    return list(Membership.objects.filter(room=room).order_by("name").values_list("name", flat=True)
                .distinct()[:limit])


def rooms_with_counts(limit, prefix=""):
    """Public rooms for `rooms` and /api/rooms/: the `limit` most recently active (or those
    whose name starts with `prefix`), those with the most people online first. Bounded
    whatever the number of rooms and members: an index range for the rooms, then the
    membership index for those rooms only."""
    names = persistence.most_active_rooms(limit, prefix)
    counts = _counts(names)
    ranked = sorted(names, key=lambda name: -counts.get(name, 0))  # stable: by activity among equals
    return [{"name": name, "members": counts.get(name, 0)} for name in ranked]
