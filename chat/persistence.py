"""Every query the socket side runs, as plain functions over Django's ORM.

Called only from chat.store's worker greenlets (which own the connections). Writes assign
room sequence numbers inside the committing transaction: `UPDATE room SET last_seq =
last_seq + n ... RETURNING` locks the room row until commit, so within a room ids are
committed, and so become visible, in increasing order on every node. Rooms of one batch are
locked in name order so two nodes' batches cannot deadlock.

The commit path (`commit_posts`, every `send`) writes SQL through Django's connection
instead of building model instances and querysets: at thousands of messages a second the
ORM's per-row and per-query overhead was the largest cost of a send after the network.
"""
from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import Message, Room, wire_time
from chat.protocol import INVALID_ROOM, ProtocolError


@dataclass(frozen=True)
class Draft:
    room: str
    author: str
    user_id: int | None
    text: str
    nonce: str | None


@dataclass(frozen=True)
class Posted:
    message: dict  # wire Message
    created: bool  # False when a repeated nonce returned the stored message


@dataclass(frozen=True)
class Snapshot:
    messages: list  # wire Messages, oldest first
    upto: int  # the room's last id when read: messages are those <= upto
    truncated: bool


def room_exists(name):
    return Room.objects.filter(name=name).exists()


def create_room(name):
    """True when this call created the room (False: it was there, perhaps made a moment ago)."""
    return Room.objects.get_or_create(name=name)[1]


def _stored_by_nonce(cursor, drafts):
    """Messages already stored under the drafts' (room, author, nonce), keyed so.

    One statement; each term names the room's id, author and nonce, so the database looks
    each one up in the unique (room, author, nonce) index. A retry is rare: usually nothing
    matches and no row is read."""
    keyed = [d for d in drafts if d.nonce]
    if not keyed:
        return {}
    term = f"({SQL.room} = (SELECT id FROM {SQL.rooms} WHERE name = %s) AND {SQL.author} = %s AND {SQL.nonce} = %s)"
    params = [value for d in keyed for value in (d.room, d.author, d.nonce)]
    cursor.execute(f"SELECT id FROM {SQL.table} WHERE " + " OR ".join([term] * len(keyed)), params)
    ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return {}
    found = Message.objects.filter(id__in=ids).select_related("room")
    return {(m.room.name, m.author, m.nonce): m.to_wire(m.room.name) for m in found}


class SQL:
    """Quoted table and column names of the commit path's SQL."""

    quote = staticmethod(connection.ops.quote_name)
    table = quote(Message._meta.db_table)
    rooms = quote(Room._meta.db_table)
    room = quote(Message._meta.get_field("room").column)
    author = quote("author")
    nonce = quote("nonce")
    insert = (f"INSERT INTO {table} ({room}, {quote('seq')}, {author}, {quote(Message._meta.get_field('user').column)}, "
              f"{quote('text')}, {quote('created_at')}, {nonce}) VALUES (%s, %s, %s, %s, %s, %s, %s)")
    reserve = f"UPDATE {rooms} SET last_seq = last_seq + %s WHERE name = %s RETURNING id, last_seq"


def _reserve_seqs(cursor, room_name, count):
    """Lock the room row and reserve `count` ids; returns (room_id, first_id) or None."""
    cursor.execute(SQL.reserve, [count, room_name])
    row = cursor.fetchone()
    return None if row is None else (row[0], row[1] - count + 1)


def _split_repeats(drafts, stored):
    """Per draft: a Posted for a nonce already stored, the index of an earlier draft with the
    same nonce, or None (to store); and the drafts to store, by room."""
    results = [None] * len(drafts)
    fresh = defaultdict(list)  # room -> [(index, draft)]
    first_index = {}
    for index, draft in enumerate(drafts):
        key = (draft.room, draft.author, draft.nonce)
        if draft.nonce and key in stored:
            results[index] = Posted(stored[key], created=False)
        elif draft.nonce and key in first_index:
            results[index] = first_index[key]  # same nonce twice in one batch
        else:
            fresh[draft.room].append((index, draft))
            if draft.nonce:
                first_index[key] = index
    return results, fresh


def commit_posts(drafts):
    """Store a batch in one transaction. Returns, per draft, a Posted or a ProtocolError.

    Two nodes can commit the same (room, author, nonce) at once (a client retrying on
    another node): both find it unstored, the room lock orders them, and the second insert
    breaks the unique index. Its batch is then tried once more, and finds the first's row."""
    try:
        return _commit_posts(drafts)
    except IntegrityError:
        if not any(draft.nonce for draft in drafts):
            raise
        return _commit_posts(drafts)


def _commit_posts(drafts):
    with transaction.atomic(), connection.cursor() as cursor:
        results, fresh = _split_repeats(drafts, _stored_by_nonce(cursor, drafts))
        now = timezone.now()
        stamp, ts = connection.ops.adapt_datetimefield_value(now), wire_time(now)
        rows = []
        for room_name in sorted(fresh):
            reserved = _reserve_seqs(cursor, room_name, len(fresh[room_name]))
            for offset, (index, draft) in enumerate(fresh[room_name]):
                if reserved is None:
                    results[index] = ProtocolError(INVALID_ROOM, f"room {room_name} does not exist")
                    continue
                room_id, seq = reserved[0], reserved[1] + offset
                rows.append((room_id, seq, draft.author, draft.user_id, draft.text, stamp, draft.nonce))
                wire = {"id": seq, "room": room_name, "user": draft.author, "account": draft.user_id is not None,
                        "text": draft.text, "ts": ts}
                results[index] = Posted(wire, created=True)
        if rows:
            cursor.executemany(SQL.insert, rows)
    return [Posted(results[r].message, created=False) if isinstance(r, int) else r for r in results]


def _wire(rows, room_name):
    return [m.to_wire(room_name) for m in rows]


def snapshot(room_name, since, upto, recent, limit):
    """Messages a joiner gets: the last `recent` up to `upto` (None: the room's last id), or
    with `since` every message after it, at most `limit` (then `truncated`)."""
    with transaction.atomic():  # one consistent read on SQLite and PostgreSQL alike
        if upto is None:
            upto = Room.objects.filter(name=room_name).values_list("last_seq", flat=True).first() or 0
        in_room = Message.objects.filter(room__name=room_name, seq__lte=upto)
        if since is None:
            rows = list(in_room.order_by("-seq")[:recent])[::-1]
            return Snapshot(_wire(rows, room_name), upto, truncated=False)
        rows = list(in_room.filter(seq__gt=since).order_by("seq")[: limit + 1])
    return Snapshot(_wire(rows[:limit], room_name), upto, truncated=len(rows) > limit)


def last_ids(room_names):
    """{room: last id} for the given rooms (the periodic check against missed deliveries)."""
    return dict(Room.objects.filter(name__in=list(room_names)).values_list("name", "last_seq"))


def messages_between(room_name, after, upto, limit):
    """Messages with after < id <= upto, oldest first, at most `limit`."""
    rows = Message.objects.filter(room__name=room_name, seq__gt=after, seq__lte=upto).order_by("seq")[:limit]
    return _wire(rows, room_name)


def gap_fill(room_name, after, upto, limit):
    """(messages_between(...), the room's last id): one consistent read for a gap fill, which
    must not believe an id the database has not committed."""
    with transaction.atomic():
        last_id = Room.objects.filter(name=room_name).values_list("last_seq", flat=True).first() or 0
        return messages_between(room_name, after, min(upto, last_id), limit), last_id


def messages_before(room_name, before, limit):
    """Up to `limit` messages with id < before (None: the newest), oldest first; paged by id."""
    rows = Message.objects.filter(room__name=room_name)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return _wire(list(rows.order_by("-seq")[:limit])[::-1], room_name)


def most_active_rooms(limit):
    """Names of the `limit` rooms with the highest message ids, then by name: a range of the
    room_last_seq index (0004_room_indexes), never a sort of every room."""
    return list(Room.objects.order_by("-last_seq", "name").values_list("name", flat=True)[:limit])
