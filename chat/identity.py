"""Who a connection is: signed reconnect tokens and the Django user behind a session cookie.

Tokens are Django-signed (timestamped, salted) and bind one name, so they can neither be
forged nor reused for another name; they expire after CHAT_TOKEN_MAX_AGE_SECS.
"""
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.core import signing
from django.http import HttpRequest

from chat.protocol import INVALID_TOKEN, TOKEN_EXPIRED, ProtocolError

TOKEN_SALT = "chat.reconnect-token"


@dataclass(frozen=True)
class Identity:
    name: str
    user_id: int | None = None  # set for Django users; None for guests


def make_token(identity):
    return signing.dumps({"n": identity.name, "u": identity.user_id}, salt=TOKEN_SALT, compress=True)


def read_token(token, max_age_secs):
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=max_age_secs)
    except signing.SignatureExpired:
        raise ProtocolError(TOKEN_EXPIRED, "reconnect token has expired; connect with a name") from None
    except signing.BadSignature:
        raise ProtocolError(INVALID_TOKEN, "reconnect token is not valid") from None
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        raise ProtocolError(INVALID_TOKEN, "reconnect token is not valid")
    return Identity(name=data["n"], user_id=data.get("u"))


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


def account_is_active(user_id):
    """A token minted for a Django user only works while that account is active."""
    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


def is_reserved_name(name):
    """True when a registered account owns this name (guests may not take it). Touches the database."""
    return get_user_model().objects.filter(username__iexact=name).exists()
