"""Room events: every kind of numbered change to a room other than a new message, its
payload validator, its apply rule and its wire shape. The one place that knows the kinds.

A room has one sequence (`Room.last_seq`). A new message takes the next number as its id
(chat.persistence's commit path). Every later change takes the next number too and is
stored as a `RoomEvent` whose `data` is its wire payload, so `join {since}` and the gap
fills of chat.delivery replay it exactly as it went out live. Each kind's apply rule changes
the current state (the message row, its reactions, the room's topic) in the same
transaction, under the room row's lock, so `history` always serves the state the events add
up to. Events carry the resulting state of what they change (a reaction's count, a parent's
reply count), never a delta, so applying them in number order converges whatever state a
client started from.

How to add a kind:
  1. a validator `parse_<kind>(data, limits) -> Change` and an apply rule
     `_apply_<kind>(room, message, actor, change) -> Outcome | None` (None: nothing changed,
     no number is taken), both registered in `KINDS` with the socket event that requests it,
     the event that announces it and its rate-limit rule (chat.limits);
  2. the service method is the shared `ChatService.change` (chat/services/messages.py); a kind
     needing more than the generic checks gets a method of its own there;
  3. the client's apply rule (static/js/messagestate.js) and its section in docs/PROTOCOL.md.
Functions here run in chat.store's workers.
"""
from dataclasses import dataclass, field

import emoji as emoji_data
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat import digests, identity, members, mentions, permissions, protocol
from chat import models
from chat.models import Message, Reaction, Room, RoomEvent, wire_time
from chat.protocol import ProtocolError

MESSAGE_EVENT = "message"  # the socket event that delivers a new message
TOPIC_MAX_CHARS = 250
EMOJI_MAX_CHARS = 32  # the longest emoji ZWJ sequences are 10 or so code points


@dataclass(frozen=True)
class Actor:
    name: str
    user_id: int | None
    key: str | None = None  # chat.identity's stable key; derived from the account when not given

    def __post_init__(self):
        if self.key is None:
            object.__setattr__(self, "key", identity.key_of(self.name, self.user_id))

    @classmethod
    def of(cls, who):
        """The actor a connection's chat.identity.Identity is."""
        return cls(who.name, who.user_id, who.key)


@dataclass(frozen=True)
class Change:
    kind: str
    room: str
    message_id: int | None = None
    text: str | None = None  # an edit's new text, a topic
    emoji: str | None = None
    user: str | None = None  # membership kinds: whom it concerns (None: the actor)
    role: str | None = None  # `set_role`'s new role; on a `join`, set by room creation only (no check)
    flag: bool | None = None  # archive: archived or not


@dataclass(frozen=True)
class Outcome:
    data: dict  # the wire payload beyond {room, seq, kind}
    previous_text: str | None = None  # kept for the admin's history, never sent
    notify: frozenset = frozenset()  # accounts an edit newly mentions


class Committed(dict):
    """A committed event's wire form; `notify` (never sent): the accounts it newly mentions."""

    notify = frozenset()


@dataclass(frozen=True)
class Kind:
    request: str  # the client's socket event
    announce: str  # the socket event every member receives
    rule: str  # the rate-limit rule (chat.limits) it is charged to
    parse: object = field(repr=False)
    apply: object = field(repr=False)
    targets_message: bool = True
    # Its results go to the account channels too (chat.services.conversations).
    membership: bool = False
    # Asked by members of the room's socket room only; managing members and archiving are
    # decided by the role (chat.permissions), wherever the asker is.
    needs_join: bool = True


# -- validators -----------------------------------------------------------------------------
def _target(data):
    data = protocol.object_payload(data)
    return data, protocol.room_name(data.get("room")), protocol.message_id(data, "id", required=True)


def parse_edit(data, limits):
    data, room, message_id = _target(data)
    return Change("edit", room, message_id, text=protocol.message_text(data.get("text"), limits.max_message))


def parse_delete(data, limits):
    _, room, message_id = _target(data)
    return Change("delete", room, message_id)


def parse_emoji(value):
    """Exactly one emoji: ZWJ sequences, skin tones, flags and keycaps count, text does not."""
    if not isinstance(value, str) or not 0 < len(value) <= EMOJI_MAX_CHARS or not emoji_data.is_emoji(value):
        raise ProtocolError(protocol.INVALID_EMOJI, "emoji must be exactly one emoji")
    return value


def _reaction(kind):
    def parse(data, limits):
        data, room, message_id = _target(data)
        return Change(kind, room, message_id, emoji=parse_emoji(data.get("emoji")))
    return parse


def parse_topic(data, limits):
    data = protocol.object_payload(data)
    topic = data.get("topic")
    if not isinstance(topic, str) or len(topic) > TOPIC_MAX_CHARS:
        raise ProtocolError(protocol.INVALID_TEXT, f"topic must be a string of at most {TOPIC_MAX_CHARS} characters")
    return Change("topic", protocol.room_name(data.get("room")), text=protocol.storable(topic, "topic").strip())


def _member_change(kind):
    def parse(data, limits):
        data = protocol.object_payload(data)
        return Change(kind, protocol.room_name(data.get("room")), user=protocol.account_name(data.get("user")))
    return parse


def parse_role(data, limits):
    data = protocol.object_payload(data)
    role = data.get("role")
    if role not in models.ROLES:
        raise ProtocolError(protocol.INVALID_PAYLOAD, "role must be owner, moderator or member")
    return Change("role", protocol.room_name(data.get("room")), user=protocol.account_name(data.get("user")),
                  role=role)


def parse_archive(data, limits):
    data = protocol.object_payload(data)
    archived = data.get("archived", True)
    if not isinstance(archived, bool):
        raise ProtocolError(protocol.INVALID_PAYLOAD, "archived must be true or false")
    return Change("archive", protocol.room_name(data.get("room")), flag=archived)


def _no_request(data, limits):
    raise ProtocolError(protocol.UNKNOWN_EVENT, "not a request")


def _outcome(apply):
    """Adapt an apply rule of chat.members (it returns the payload dict, or None)."""
    def wrapped(room, message, actor, change):
        data = apply(room, actor, change)
        return None if data is None else Outcome(data)
    return wrapped


# -- apply rules ----------------------------------------------------------------------------
def _apply_edit(room, message, actor, change):
    permissions.check_message_change(actor, message, timezone.now())
    if change.text == message.text:
        return None
    previous = message.text
    resolved = mentions.resolve(room.pk, room.name, message.user_id, change.text)
    notify = mentions.record(room.pk, message.seq, message.user_id, resolved)  # only mentions this edit adds
    message.text, message.edited_at, message.mentions = change.text, timezone.now(), resolved.names or None
    message.save(update_fields=["text", "edited_at", "mentions"])
    return Outcome({"id": message.seq, "text": message.text, "edited_at": wire_time(message.edited_at),
                    "user": actor.name, "mentions": resolved.names}, previous_text=previous, notify=notify)


def _apply_delete(room, message, actor, change):
    """A tombstone: the row keeps its id (replies point at it) but loses its text and
    reactions and is never served again. The text stays in the event, for staff only."""
    permissions.check_message_change(actor, message, timezone.now())
    previous = message.text
    message.text, message.deleted_at, message.reactions = "", timezone.now(), None
    message.save(update_fields=["text", "deleted_at", "reactions"])
    Reaction.objects.filter(message=message).delete()
    Message.objects.filter(room=room, reply_to=message.seq).update(reply_excerpt=None)
    data = {"id": message.seq}
    if message.reply_to is not None:
        parent = Message.objects.filter(room=room, seq=message.reply_to, deleted_at__isnull=True)
        if parent.update(replies=F("replies") - 1):
            data["reply_to"] = {"id": message.reply_to, "replies": parent.values_list("replies", flat=True).get()}
    return Outcome(data, previous_text=previous)


def _reaction_entry(message, emoji):
    return next((entry for entry in message.reactions or [] if entry["emoji"] == emoji), None)


def _apply_react(room, message, actor, change):
    rows = Reaction.objects.filter(message=message)
    if rows.filter(user_key=actor.key, emoji=change.emoji).exists():
        return None
    per_user = settings.CHAT_REACTIONS_PER_USER
    if rows.filter(user_key=actor.key).count() >= per_user:
        raise ProtocolError(protocol.TOO_MANY_REACTIONS, f"at most {per_user} reactions of yours on one message")
    reactions = list(message.reactions or [])
    entry = _reaction_entry(message, change.emoji)
    if entry is None:
        if len(reactions) >= settings.CHAT_REACTIONS_PER_MESSAGE:
            raise ProtocolError(protocol.TOO_MANY_REACTIONS,
                                f"at most {settings.CHAT_REACTIONS_PER_MESSAGE} different emoji on one message")
        entry = {"emoji": change.emoji, "count": 0, "users": []}
        reactions.append(entry)
    Reaction.objects.create(message=message, user=actor.name, user_key=actor.key, emoji=change.emoji)
    entry["count"] += 1
    if len(entry["users"]) < settings.CHAT_REACTION_USERS_LISTED:
        entry["users"].append(actor.name)
    return _save_reactions(message, reactions, entry, actor)


def _apply_unreact(room, message, actor, change):
    if not Reaction.objects.filter(message=message, user_key=actor.key, emoji=change.emoji).delete()[0]:
        return None
    entry = _reaction_entry(message, change.emoji)
    entry["count"] -= 1
    if actor.name in entry["users"]:  # refill the first N from the reactions that remain
        entry["users"] = list(Reaction.objects.filter(message=message, emoji=change.emoji).order_by("id")
                              .values_list("user", flat=True)[:settings.CHAT_REACTION_USERS_LISTED])
    reactions = [r for r in message.reactions if r["count"] > 0]
    return _save_reactions(message, reactions, entry, actor)


def _save_reactions(message, reactions, entry, actor):
    message.reactions = reactions or None
    message.save(update_fields=["reactions"])
    return Outcome({"id": message.seq, "emoji": entry["emoji"], "user": actor.name,
                    "count": entry["count"], "users": entry["users"]})


def _apply_topic(room, message, actor, change):
    if change.text == room.topic:
        return None
    room.topic = change.text
    room.save(update_fields=["topic"])
    return Outcome({"topic": room.topic, "user": actor.name})


KINDS = {
    "edit": Kind("edit", "message_edited", "edit", parse_edit, _apply_edit),
    "delete": Kind("delete", "message_deleted", "edit", parse_delete, _apply_delete),
    "react": Kind("react", "reaction", "react", _reaction("react"), _apply_react),
    "unreact": Kind("unreact", "reaction", "react", _reaction("unreact"), _apply_unreact),
    "topic": Kind("set_topic", "topic", "topic", parse_topic, _apply_topic, targets_message=False),
    # Membership (chat.members): `join` is made by `join` itself and by room creation.
    "join": Kind(None, "member", "join", _no_request, _outcome(members.apply_join), False, True),
    "invite": Kind("add_member", "member", "members", _member_change("invite"), _outcome(members.apply_invite),
                   False, True, False),
    "remove": Kind("remove_member", "member", "members", _member_change("remove"), _outcome(members.apply_remove),
                   False, True, False),
    "role": Kind("set_role", "member", "members", parse_role, _outcome(members.apply_role), False, True, False),
    "archive": Kind("archive_room", "room_archived", "members", parse_archive, _outcome(members.apply_archive),
                    False, False, False),
}


def announced_as(item):
    """The socket event that delivers a stream item: a Message (no `kind`) or an event."""
    kind = item.get("kind")
    return MESSAGE_EVENT if kind is None else KINDS[kind].announce


def number(item):
    """An item's place in the room's sequence: an event's `seq`, a message's `id`."""
    return item.get("seq") or item["id"]


# -- the commit -----------------------------------------------------------------------------
def commit(change, actor):
    """Apply `change` and record it as the room's next event, in one transaction.

    Returns the event's wire form, or None when it changed nothing (no number is taken).
    A refusal (ProtocolError) rolls everything back."""
    kind = KINDS[change.kind]
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(name=change.room).first()
        if room is None:
            raise ProtocolError(protocol.INVALID_ROOM, f"room {change.room} does not exist")
        if room.archived_at is not None and change.kind not in ("archive", "remove"):
            raise ProtocolError(protocol.ROOM_ARCHIVED, f"{room.name} is archived: it is read-only")
        message = live_message(room, change.message_id) if kind.targets_message else None
        outcome = kind.apply(room, message, actor, change)
        if outcome is None:
            return None
        seq = room.last_seq + 1
        Room.objects.filter(pk=room.pk).update(last_seq=seq)
        RoomEvent.objects.create(room=room, seq=seq, kind=change.kind, actor=actor.name, user_id=actor.user_id,
                                 message_seq=change.message_id, data=outcome.data,
                                 previous_text=outcome.previous_text)
        digests.schedule(outcome.notify)  # an edit's new mentions may be emailed (chat.digests)
    event = Committed({"room": room.name, "seq": seq, "kind": change.kind, **outcome.data})
    event.notify = outcome.notify
    return event


def live_message(room, message_id):
    """The message `message_id` of `room`, unless deleted; refused with message_not_found."""
    message = Message.objects.filter(room=room, seq=message_id, deleted_at__isnull=True).first()
    if message is None:
        raise ProtocolError(protocol.MESSAGE_NOT_FOUND, f"no message {message_id} in {room.name}")
    return message


def delete_as_staff(message, user):
    """The admin's delete: the same event as a `delete` from a client."""
    actor = Actor(user.get_username(), user.pk)
    return commit(Change("delete", message.room.name, message.seq), actor)
