"""Accounts that belong to rooms: durable membership (role, read marker, unread mentions,
muted), private rooms, direct conversations and the room list of one account.

Membership is separate from being online (chat.directory): it is what makes a private room
readable (chat.permissions.room_access) and what the sidebar lists. Every change of it is a
room event (`member`, applied here and numbered by chat.roomlog.commit), so `since` replays
it and a removed member's tabs on every node drop the room at once.

Unread counts come from counters, never from counting rows: a room counts the messages ever
posted (`Room.message_count`, each message keeps its `ordinal`), a member keeps the count at
its read marker (`read_count`), and unread = message_count - read_count. Mentions are a
counter on the membership, raised at commit (chat.mentions) and recounted from the mention
rows after the marker only when the marker moves. Functions here run in chat.store's workers.
"""
import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from chat import permissions, protocol
from chat.models import DIRECT, MEMBER, OWNER, PRIVATE, PUBLIC, Mention, Message, Room, RoomMember
from chat.protocol import ProtocolError


@dataclass(frozen=True)
class Created:
    """A room opened or created: its sidebar entry, and the room events the creation made."""

    room: dict
    events: list = field(default_factory=list)


# -- the apply rules of the membership kinds (chat.roomlog.KINDS) ------------------------------
def apply_join(room, actor, change):
    """The actor joins a public room as a member (its sidebar keeps it); creation code also
    adds people to new private and direct rooms with a set `role`."""
    if change.role is None and room.kind != PUBLIC:
        raise ProtocolError(protocol.FORBIDDEN, f"{room.name} is open to invited members only")
    if actor.user_id is None:
        return None  # guests keep no membership
    user = _account(change.user or actor.name)
    return _add(room, user, change.role or MEMBER, actor, "joined" if user.pk == actor.user_id else "added")


def apply_invite(room, actor, change):
    permissions.check_manage_members(actor, room, _role_of(room, actor))
    return _add(room, _account(change.user), MEMBER, actor, "added")


def apply_remove(room, actor, change):
    user = _account(change.user)
    if user.pk != actor.user_id:
        permissions.check_manage_members(actor, room, _role_of(room, actor))
    if not RoomMember.objects.filter(room=room, user=user).delete()[0]:
        return None
    return {"user": user.get_username(), "user_id": user.pk, "action": "left" if user.pk == actor.user_id else "removed",
            "by": actor.name}


def apply_role(room, actor, change):
    """Owners (and staff) make members moderators or owners, and back."""
    if room.kind == DIRECT:
        raise ProtocolError(protocol.FORBIDDEN, "the people of a direct conversation have no roles")
    if _role_of(room, actor) != OWNER and not permissions.is_staff(actor.user_id):
        raise ProtocolError(protocol.FORBIDDEN, "only the room's owners may change roles")
    user = _account(change.user)
    member = RoomMember.objects.filter(room=room, user=user).first()
    if member is None:
        raise ProtocolError(protocol.NOT_MEMBER, f"{user.get_username()} is not a member of {room.name}")
    if member.role == change.role:
        return None
    member.role = change.role
    member.save(update_fields=["role"])
    return {"user": user.get_username(), "user_id": user.pk, "action": "role", "role": change.role, "by": actor.name}


def apply_archive(room, actor, change):
    if not permissions.is_staff(actor.user_id):
        permissions.check_manage_members(actor, room, _role_of(room, actor))
    archived = bool(change.flag)
    if archived == (room.archived_at is not None):
        return None
    room.archived_at = timezone.now() if archived else None
    room.save(update_fields=["archived_at"])
    return {"archived": archived, "user": actor.name}


def _account(username):
    user = get_user_model()._default_manager.filter(username__iexact=username, is_active=True).first()
    if user is None:
        raise ProtocolError(protocol.USER_NOT_FOUND, f"no account named {username}")
    return user


def _role_of(room, actor):
    if actor.user_id is None:
        return None
    return RoomMember.objects.filter(room=room, user_id=actor.user_id).values_list("role", flat=True).first()


def _add(room, user, role, actor, action):
    if RoomMember.objects.filter(room=room, user=user).exists():
        return None
    if room.kind == PRIVATE and RoomMember.objects.filter(room=room).count() >= settings.CHAT_ROOM_MEMBERS_MAX:
        raise ProtocolError(protocol.ROOM_FULL, f"{room.name} has {settings.CHAT_ROOM_MEMBERS_MAX} members already")
    # Nothing before joining is unread: the marker starts at this event (the room's next number).
    RoomMember.objects.create(room=room, user=user, role=role, last_read=room.last_seq + 1,
                              read_count=room.message_count)
    return {"user": user.get_username(), "user_id": user.pk, "action": action, "role": role, "by": actor.name}


# -- creating rooms -------------------------------------------------------------------------
def create_private(name, actor, commit):
    """A private room owned by the actor; `commit` is chat.roomlog.commit (the events)."""
    if actor.user_id is None:
        raise ProtocolError(protocol.ACCOUNT_REQUIRED, "log in to create a private room")
    try:
        with transaction.atomic():
            Room.objects.create(name=name, kind=PRIVATE)
    except IntegrityError:
        raise ProtocolError(protocol.ROOM_EXISTS, f"a room named {name} exists already") from None
    event = commit(_join_change(name, actor.name, OWNER), actor)
    return Created(entry(name, actor.user_id), [event])


def open_direct(actor, names, commit):
    """The one direct room of the actor and `names` (the same set of people always gets the
    same room), created with everyone as members on first use."""
    if actor.user_id is None:
        raise ProtocolError(protocol.ACCOUNT_REQUIRED, "log in to send direct messages")
    users = _accounts(names)
    people = {actor.user_id: actor.name, **{u.pk: u.get_username() for u in users}}
    if len(people) < 2:
        raise ProtocolError(protocol.INVALID_PAYLOAD, "name at least one other person")
    if len(people) > settings.CHAT_DM_MAX:
        raise ProtocolError(protocol.TOO_MANY_PEOPLE, f"at most {settings.CHAT_DM_MAX} people in a direct conversation")
    key = ",".join(str(pk) for pk in sorted(people))
    name = "dm-" + hashlib.sha256(key.encode()).hexdigest()[:24]
    try:
        with transaction.atomic():
            Room.objects.create(name=name, kind=DIRECT, dm_key=key, title=", ".join(sorted(people.values(), key=str.lower)))
    except IntegrityError:  # opened before (or at this moment, elsewhere)
        pass
    # Everyone is a member: on creation, and again for whoever left it before.
    present = set(RoomMember.objects.filter(room__name=name).values_list("user_id", flat=True))
    events = [commit(_join_change(name, people[pk], MEMBER), actor) for pk in sorted(people) if pk not in present]
    return Created(entry(name, actor.user_id), [event for event in events if event is not None])


def _join_change(room_name, username, role):
    from chat.roomlog import Change  # roomlog imports this module for its kinds
    return Change("join", room_name, user=username, role=role)


def _accounts(names):
    wanted = {name.lower() for name in names}
    users = list(get_user_model()._default_manager.annotate(key=Lower("username"))
                 .filter(key__in=wanted, is_active=True))
    missing = wanted - {u.key for u in users}
    if missing:
        raise ProtocolError(protocol.USER_NOT_FOUND, f"no account named {', '.join(sorted(missing))}")
    return users


# -- the room list and read markers ----------------------------------------------------------
def _entry_of(member):
    room = member.room
    return {"name": room.name, "kind": room.kind, "title": room.title, "topic": room.topic, "role": member.role,
            "last_seq": room.last_seq, "last_read": member.last_read,
            "unread": max(room.message_count - member.read_count, 0), "mentions": member.mentions,
            "muted": member.muted}


def my_rooms(user_id, limit):
    """The account's rooms and direct conversations, most recently active first, with unread
    and mention counts: ONE query (the membership rows joined with their rooms)."""
    members = (RoomMember.objects.filter(user_id=user_id, room__archived_at__isnull=True).select_related("room")
               .order_by("-room__last_active_at", "room__name")[:limit])
    return [_entry_of(member) for member in members]


def entry(room_name, user_id):
    """One room of the list (None: not a member)."""
    member = RoomMember.objects.filter(room__name=room_name, user_id=user_id).select_related("room").first()
    return None if member is None else _entry_of(member)


def mark_read(room_name, user_id, seq):
    """Move the account's read marker forward to `seq` (never back, never past the room's
    last number). Returns the room's list entry after it, and whether the marker moved."""
    with transaction.atomic():
        member = (RoomMember.objects.select_for_update().filter(room__name=room_name, user_id=user_id)
                  .select_related("room").first())
        if member is None:
            raise ProtocolError(protocol.NOT_MEMBER, f"read markers are kept for members of {room_name} only")
        seq = min(seq, member.room.last_seq)
        if seq <= member.last_read:
            return _entry_of(member), False
        member.last_read = seq
        member.read_count = (Message.objects.filter(room=member.room, seq__lte=seq).order_by("-seq")
                             .values_list("ordinal", flat=True).first() or 0)
        member.mentions = (Mention.objects.filter(room=member.room, seq__gt=seq)
                           .filter(Q(user_id=user_id) | Q(user__isnull=True)).values("seq").distinct().count())
        member.save(update_fields=["last_read", "read_count", "mentions"])
        return _entry_of(member), True


def set_muted(room_name, user_id, muted):
    if not RoomMember.objects.filter(room__name=room_name, user_id=user_id).update(muted=muted):
        raise ProtocolError(protocol.NOT_MEMBER, f"only members of {room_name} can mute it")
    return entry(room_name, user_id)


def member_ids(room_name):
    return list(RoomMember.objects.filter(room__name=room_name).values_list("user_id", flat=True))
