"""The wire protocol's edge: event names, payload validation and error codes.

Every client payload passes through one `parse_*` function here before any service sees it;
a bad payload becomes a `ProtocolError`, answered as `{ok: false, error: {code, message}}`.
docs/PROTOCOL.md documents each code.
"""
import re
from dataclasses import dataclass

from django.contrib.auth.validators import UnicodeUsernameValidator

ROOM_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # guests
# Accounts keep their Django username: Django's own rule (letters, digits and @ . + - _) and
# the length of auth.User.username. Every guest name also passes it.
ACCOUNT_NAME_RE = re.compile(UnicodeUsernameValidator.regex)
ACCOUNT_NAME_MAX_CHARS = 150
NONCE_MAX_CHARS = 64
ID_MAX = 2**63 - 1

# Error codes (documented in docs/PROTOCOL.md).
INVALID_PAYLOAD = "invalid_payload"
INVALID_ROOM = "invalid_room"
INVALID_TEXT = "invalid_text"
TEXT_TOO_LONG = "text_too_long"
NOT_MEMBER = "not_member"
TOO_MANY_ROOMS = "too_many_rooms"
INVALID_NAME = "invalid_name"
NAME_TAKEN = "name_taken"
NAME_RESERVED = "name_reserved"
INVALID_TOKEN = "invalid_token"
TOKEN_EXPIRED = "token_expired"
UNAVAILABLE = "unavailable"
BUSY = "busy"
UNKNOWN_EVENT = "unknown_event"
RATE_LIMITED = "rate_limited"
TOO_MANY_CONNECTIONS = "too_many_connections"
BANNED = "banned"
FORBIDDEN = "forbidden"
INTERNAL = "internal"
METHOD_NOT_ALLOWED = "method_not_allowed"
INVALID_HOST = "invalid_host"
MESSAGE_NOT_FOUND = "message_not_found"
EDIT_WINDOW_CLOSED = "edit_window_closed"
INVALID_EMOJI = "invalid_emoji"
TOO_MANY_REACTIONS = "too_many_reactions"
GUESTS_DISABLED = "guests_disabled"
ACCOUNT_REQUIRED = "account_required"
ROOM_EXISTS = "room_exists"
ROOM_ARCHIVED = "room_archived"
ROOM_FULL = "room_full"
USER_NOT_FOUND = "user_not_found"
TOO_MANY_PEOPLE = "too_many_people"
INVALID_QUERY = "invalid_query"


class ProtocolError(Exception):
    """A request the server refuses; carried to the client as an error value."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra  # more fields of the error object, e.g. retry_after

    def as_dict(self):
        return {"code": self.code, "message": self.message, **self.extra}


def ok(**fields):
    return {"ok": True, **fields}


def failure(code, message, **extra):
    return {"ok": False, "error": {"code": code, "message": message, **extra}}


@dataclass(frozen=True)
class JoinRequest:
    room: str
    since: int | None


@dataclass(frozen=True)
class SendRequest:
    room: str
    text: str
    nonce: str | None
    reply_to: int | None = None


@dataclass(frozen=True)
class HistoryRequest:
    room: str
    before: int | None
    limit: int
    around: int | None = None  # the message to show with context on both sides (a search result)


def object_payload(data):
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_PAYLOAD, "payload must be a JSON object")
    return data


def room_name(value):
    if not isinstance(value, str) or not ROOM_RE.fullmatch(value):
        raise ProtocolError(INVALID_ROOM, "room must be 1-64 characters of a-z, 0-9, _ and -")
    return value


def user_name(value):
    """A guest name: what a client may pick for itself."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ProtocolError(INVALID_NAME, "name must be 1-32 letters, digits, _, - or .")
    return value


def account_name(value):
    """A Django username, and so any name someone can be online under (guest names included)."""
    if not isinstance(value, str) or len(value) > ACCOUNT_NAME_MAX_CHARS or not ACCOUNT_NAME_RE.match(value):
        raise ProtocolError(INVALID_NAME, f"a username is 1-{ACCOUNT_NAME_MAX_CHARS} letters, digits, @, ., +, - or _")
    return value


def storable(value, field):
    """Refuse what no database stores as text: lone surrogates and NUL characters."""
    if "\x00" in value:
        raise ProtocolError(INVALID_PAYLOAD, f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(INVALID_PAYLOAD, f"{field} is not valid Unicode (lone surrogate)") from None
    return value


def message_id(data, field, required=False):
    value = data.get(field)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ID_MAX:
        raise ProtocolError(INVALID_PAYLOAD, f"{field} must be a non-negative integer message id")
    return value


def parse_join(data):
    data = object_payload(data)
    return JoinRequest(room=room_name(data.get("room")), since=message_id(data, "since"))


def parse_leave(data):
    return room_name(object_payload(data).get("room"))


def parse_send(data, max_chars):
    data = object_payload(data)
    room = room_name(data.get("room"))
    text = message_text(data.get("text"), max_chars)
    nonce = data.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or not 1 <= len(nonce) <= NONCE_MAX_CHARS):
        raise ProtocolError(INVALID_PAYLOAD, f"nonce must be a string of 1-{NONCE_MAX_CHARS} characters")
    return SendRequest(room=room, text=text, nonce=nonce if nonce is None else storable(nonce, "nonce"),
                       reply_to=message_id(data, "reply_to"))


def message_text(text, max_chars):
    """A message's text (send, edit): stripped, not empty, at most `max_chars`."""
    if not isinstance(text, str):
        raise ProtocolError(INVALID_TEXT, "text must be a string")
    text = storable(text, "text").strip()
    if not text:
        raise ProtocolError(INVALID_TEXT, "text is empty")
    if len(text) > max_chars:
        raise ProtocolError(TEXT_TOO_LONG, f"text is longer than {max_chars} characters")
    return text


def parse_limit(value, default, maximum):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ProtocolError(INVALID_PAYLOAD, f"limit must be an integer from 1 to {maximum}")
    return value


def parse_history(data, default_limit, max_limit):
    data = object_payload(data)
    request = HistoryRequest(
        room=room_name(data.get("room")),
        before=message_id(data, "before"),
        limit=parse_limit(data.get("limit"), default_limit, max_limit),
        around=message_id(data, "around"),
    )
    if request.before is not None and request.around is not None:
        raise ProtocolError(INVALID_PAYLOAD, "give before or around, not both")
    return request


def parse_typing(data):
    data = object_payload(data)
    active = data.get("active")
    if not isinstance(active, bool):
        raise ProtocolError(INVALID_PAYLOAD, "active must be true or false")
    return room_name(data.get("room")), active


def parse_ban(data):
    data = object_payload(data)
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise ProtocolError(INVALID_PAYLOAD, "reason must be a string of at most 200 characters")
    return room_name(data.get("room")), account_name(data.get("user")), storable(reason, "reason")


def parse_auth(auth):
    """Return (name, token) from the Socket.IO `auth` object; either may be None."""
    if auth is None:
        return None, None
    auth = object_payload(auth)
    token = auth.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 4096):
        raise ProtocolError(INVALID_TOKEN, "token must be a string")
    name = auth.get("name")
    if name is not None:
        name = user_name(name)
    return name, token


@dataclass(frozen=True)
class CreateRoomRequest:
    room: str
    kind: str


def parse_create_room(data):
    data = object_payload(data)
    kind = data.get("kind", "private")
    if kind not in ("private", "public"):
        raise ProtocolError(INVALID_PAYLOAD, "kind must be private or public")
    return CreateRoomRequest(room_name(data.get("room")), kind)


def parse_open_dm(data, most):
    """The other people of a direct conversation: 1 to `most` - 1 usernames."""
    users = object_payload(data).get("users")
    if not isinstance(users, list) or not users or not all(isinstance(u, str) for u in users):
        raise ProtocolError(INVALID_PAYLOAD, "users must be a non-empty list of usernames")
    if len(users) >= most:
        raise ProtocolError(TOO_MANY_PEOPLE, f"at most {most} people in a direct conversation, you included")
    return [account_name(user) for user in users]


def parse_mark_read(data):
    data = object_payload(data)
    return room_name(data.get("room")), message_id(data, "id", required=True)


def parse_mute(data):
    data = object_payload(data)
    muted = data.get("muted")
    if not isinstance(muted, bool):
        raise ProtocolError(INVALID_PAYLOAD, "muted must be true or false")
    return room_name(data.get("room")), muted


def parse_room_search(data):
    """`rooms {query}`: an optional room-name prefix."""
    if data is None:
        return ""
    query = object_payload(data).get("query", "")
    if not isinstance(query, str) or len(query) > 64:
        raise ProtocolError(INVALID_PAYLOAD, "query must be a string of at most 64 characters")
    return query.strip().lower()
