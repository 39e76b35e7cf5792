"""Who a connection is: signed reconnect tokens and the Django user behind a session cookie.

Everyone has a stable key (`Identity.key`), never a display name: `u:<user id>` for an
account, `g:<guest id>` for a guest, where the guest id is issued by the server when the
guest takes a name and travels in its tokens. Messages (authorship, nonces), reactions and
bans are keyed by it; memberships, read markers and mentions by the user id. Rows written
before keys existed carry `n:<lower-cased name>` (`legacy_key`).

Tokens are Django-signed (timestamped, salted), so they can neither be forged nor edited, and
each expires CHAT_TOKEN_MAX_AGE_SECS after it was signed. What a token binds depends on who
it was issued to:

- A guest token binds the name and the time the guest took it by connecting with `{name}`.
  Reconnecting with it gets a new token with that same start, so tokens hold a guest name
  for at most CHAT_TOKEN_MAX_AGE_SECS in all; then the guest connects with `{name}` again,
  which checks once more that the name is free and belongs to no account. A guest token is
  refused (`name_reserved`) as soon as an account of that name exists, so it can never take
  the name over from the account's owner.
- An account token binds the user id, the username and a digest of Django's session auth
  hash (which, as for Django's sessions, changes with the password). Changing the password
  or the username, or deactivating the account, invalidates it. It is renewed on every
  connection, like a session that is in use.
"""
import secrets
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.core import signing
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac

from chat.protocol import INVALID_TOKEN, NAME_RESERVED, TOKEN_EXPIRED, ProtocolError

TOKEN_SALT = "chat.reconnect-token"
AUTH_DIGEST_SALT = "chat.reconnect-token.auth"


@dataclass(frozen=True)
class Identity:
    name: str
    user_id: int | None = None  # set for Django users; None for guests
    since: int | None = None  # guests: when they took the name (epoch seconds)
    auth: str | None = None  # accounts: auth_digest() of the user when identified
    guest_id: str | None = None  # guests: issued by the server with the name, kept by its tokens

    @property
    def key(self):
        return key_of(self.name, self.user_id, self.guest_id)


def key_of(name, user_id, guest_id=None):
    """The stable key of whoever this is (see the module docstring)."""
    if user_id is not None:
        return f"u:{user_id}"
    return f"g:{guest_id}" if guest_id else legacy_key(name)


def legacy_key(name):
    """The key of a name with no account or guest id behind it (rows from before keys)."""
    return f"n:{name.lower()}"


def guest(name, since=None, guest_id=None):
    """A guest who takes `name` now (or, from a token, took it at `since` as `guest_id`)."""
    return Identity(name, since=int(time.time()) if since is None else since,
                    guest_id=guest_id or secrets.token_urlsafe(12))


def account(user):
    """The identity of a Django user, bound to its current password through the auth digest."""
    return Identity(user.get_username(), user.pk, auth=auth_digest(user))


def auth_digest(user):
    """Changes whenever Django's session auth hash does (password change); reveals nothing of it."""
    return salted_hmac(AUTH_DIGEST_SALT, user.get_session_auth_hash(), algorithm="sha256").hexdigest()[:32]


def make_token(identity):
    if identity.user_id is None:
        payload = {"n": identity.name, "i": identity.since, "g": identity.guest_id}
    else:
        payload = {"n": identity.name, "u": identity.user_id, "h": identity.auth}
    return signing.dumps(payload, salt=TOKEN_SALT, compress=True)


def read_token(token, max_age_secs):
    """The Identity a token was issued for. An account token still needs `verify_account`."""
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=max_age_secs)
    except signing.SignatureExpired:
        raise _expired() from None
    except signing.BadSignature:
        raise ProtocolError(INVALID_TOKEN, "reconnect token is not valid") from None
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        raise ProtocolError(INVALID_TOKEN, "reconnect token is not valid")
    if data.get("u") is not None:
        if not isinstance(data.get("h"), str):  # issued before tokens were bound to the password
            raise _expired()
        return Identity(data["n"], data["u"], auth=data["h"])
    since, guest_id = data.get("i"), data.get("g")
    if not isinstance(since, int) or time.time() - since > max_age_secs:  # "i" missing: an old token
        raise _expired()
    if not isinstance(guest_id, str) or not guest_id:  # issued before guest ids
        raise _expired()
    return guest(data["n"], since, guest_id)


def _expired():
    return ProtocolError(TOKEN_EXPIRED, "reconnect token has expired; connect with a name")


def verify_account(identity):
    """Refuse an account token whose account is gone, inactive, renamed or has a new password.
    Touches the database."""
    user = get_user_model()._default_manager.filter(pk=identity.user_id, is_active=True).first()
    if user is None:
        raise ProtocolError(INVALID_TOKEN, "the account of this token is no longer active")
    if user.get_username() != identity.name:
        raise ProtocolError(INVALID_TOKEN, "the account of this token was renamed; log in again")
    if not constant_time_compare(auth_digest(user), identity.auth):
        raise ProtocolError(INVALID_TOKEN, "the password of this account changed; log in again")
    return identity


def refuse_reserved(name):
    """Raise `name_reserved` when a registered account owns `name`. Touches the database."""
    if is_reserved_name(name):
        raise ProtocolError(NAME_RESERVED, f"{name} belongs to a registered user; log in to use it")


def session_key_from_environ(environ):
    try:
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return None
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel else None


def user_for_session(session_key):
    """The active Django user logged in with this session key, or None. Touches the database."""
    if not session_key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(request)  # verifies the session's auth hash like any Django view
    return user if user.is_authenticated and user.is_active else None


def is_reserved_name(name):
    """True when a registered account owns this name (guests may not take it). Touches the database."""
    return get_user_model()._default_manager.filter(username__iexact=name).exists()
