"""Who may read a room and who may change what: `room_access`, the one function every
door calls before a room is read, and `check_message_change` before a message is changed.

Socket events (`edit`, `delete`) reach it through chat.roomlog's apply rules, and the
Django admin's delete goes through the same rule with a staff actor, so a permission is
decided in one place whatever the door. Runs in chat.store's workers (it may read the
user table)."""
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q

from chat import moderation, protocol
from chat.identity import key_of
from chat.models import DIRECT, MODERATOR, OWNER, PUBLIC, Room, RoomMember
from chat.protocol import ProtocolError


def is_staff(user_id):
    return user_id is not None and get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).exists()


def is_author(actor, message):
    """The same stable key (chat.identity): an account by its id, a guest by its guest id,
    so neither a guest `amy` nor the next guest to take the name `amy` owns another's messages."""
    return message.author_key == actor.key


def check_message_change(actor, message, now):
    """Edit or delete: authors within CHAT_EDIT_WINDOW_SECS of sending, staff at any time."""
    if is_author(actor, message):
        age_secs = (now - message.created_at).total_seconds()
        if age_secs <= settings.CHAT_EDIT_WINDOW_SECS or is_staff(actor.user_id):
            return
        raise ProtocolError(protocol.EDIT_WINDOW_CLOSED,
                            f"messages can be changed for {settings.CHAT_EDIT_WINDOW_SECS} seconds after sending")
    if not is_staff(actor.user_id):
        raise ProtocolError(protocol.FORBIDDEN, "only its author or staff may change this message")


@dataclass(frozen=True)
class Access:
    """What `room_access` found: the room (None: no such room yet; joining a free name
    creates a public room) and the reader's membership (None: not a member)."""

    room: Room | None
    member: RoomMember | None = None

    @property
    def role(self):
        return None if self.member is None else self.member.role


def room_access(room_name, reader_name, user_id, reader_key=None):
    """THE read check, made at every door: socket `join` (and so `since` and every live
    event, which only joined connections receive on any node), `history`, the HTTP API,
    `rooms`/`my_rooms` listings, member lists and search. A private or direct room opens
    only to its member accounts; any room refuses a banned name. Raises ProtocolError."""
    outcome = rooms_access([room_name], reader_name, user_id, reader_key)[room_name]
    if isinstance(outcome, ProtocolError):
        raise outcome
    return outcome


def rooms_access(room_names, reader_name, user_id, reader_key=None):
    """The same rule for several rooms in three queries whatever their number (a page of
    search results): {room name: Access, or the ProtocolError `room_access` would raise}."""
    rooms = {room.name: room for room in Room.objects.filter(name__in=set(room_names))}
    members = ({member.room_id: member for member in RoomMember.objects.filter(room__in=list(rooms.values()),
                                                                                user_id=user_id)}
               if user_id is not None and rooms else {})
    banned = (moderation.banned_rooms(list(rooms), reader_name, reader_key or key_of(reader_name, user_id))
              if reader_name and rooms else set())
    return {name: _access(name, rooms.get(name), members, banned) for name in room_names}


def readable_room_ids(reader_name, user_id, reader_key=None):
    """The same rule as a set, for queries over many rooms (search): ids of the public rooms
    and the account's rooms, without those that bar the reader, as a subquery. What such a
    query returns still passes `rooms_access` before it is shown."""
    rooms = Q(kind=PUBLIC)
    if user_id is not None:
        rooms |= Q(id__in=RoomMember.objects.filter(user_id=user_id).values("room_id"))
    readable = Room.objects.filter(rooms)
    if reader_name:
        bans = moderation.bans_of(reader_name, reader_key or key_of(reader_name, user_id))
        readable = readable.exclude(name__in=bans.values("room"))
    return readable.values("id")


def _access(room_name, room, members, banned):
    if room is None:
        return Access(None)
    member = members.get(room.pk)
    if room.kind != PUBLIC and member is None:
        return ProtocolError(protocol.FORBIDDEN, f"{room_name} is open to its members only")
    if room_name in banned:
        return ProtocolError(protocol.BANNED, f"you are banned from {room_name}")
    return Access(room, member)


def check_manage_members(actor, room, role):
    """Adding and removing others, archiving: owners and moderators of the room, and staff.
    Direct rooms have a fixed set of people."""
    if room.kind == DIRECT:
        raise ProtocolError(protocol.FORBIDDEN, "the people of a direct conversation cannot change")
    if role not in (OWNER, MODERATOR) and not is_staff(actor.user_id):
        raise ProtocolError(protocol.FORBIDDEN, "only the room's owners and moderators may do this")
