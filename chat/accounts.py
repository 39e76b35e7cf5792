"""The account pages: sign up, log in (with a limit on failures), change password.

Everything here is Django's own auth machinery (UserCreationForm, LoginView,
PasswordChangeView, the AUTH_PASSWORD_VALIDATORS) with two chat rules added on top, which is
why this module exists rather than plain `auth_views` in urls.py:

- a new username must be a name the chat can show (`protocol.account_name`), and no account
  may already have it in another case (two accounts `Amy` and `amy` could never both be
  online, names being unique case-insensitively);
- sign-ups and failed logins are counted per client address (behind CHAT_TRUSTED_PROXIES,
  the address from X-Forwarded-For) in fixed windows of Django's cache: per process by
  default, shared by every node when CHAT_CACHE_URL names a Redis. Over CHAT_SIGNUP_LIMIT
  the sign-up page answers 429 and creates nothing; once an address has CHAT_LOGIN_LIMIT
  failed logins in a window, every login from it answers 429 without the password being
  checked, so guessing costs the attacker the window, not the server a password hash.

A password change keeps the current session (Django's `update_session_auth_hash`); other
sessions of the account and its chat reconnect tokens, both bound to the session auth hash
(see chat.identity), stop working.
"""
import hashlib
import ipaddress
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.generic.edit import FormView

from chat import protocol
from chat.protocol import ProtocolError
from chat.services.base import client_address

TOO_MANY_REQUESTS = 429


# -- fixed-window counters per client address --------------------------------------------------

@dataclass(frozen=True)
class WindowLimit:
    count: int
    window_secs: int


@lru_cache(maxsize=8)
def parse_limit(text, setting="limit"):
    """`count/seconds` (e.g. "10/300") as a WindowLimit; cached, so parsed once per value."""
    try:
        count, seconds = (int(part) for part in text.split("/"))
    except (AttributeError, ValueError):
        raise ValueError(f"{setting} must be count/seconds, e.g. 10/300; got {text!r}") from None
    if count < 1 or seconds < 1:
        raise ValueError(f"{setting} must be count/seconds with both at least 1; got {text!r}")
    return WindowLimit(count, seconds)


def _address_key(address):
    """A cache-safe form of the address: the IP itself, or a digest of whatever a proxy sent."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return "x" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]


class AddressCounter:
    """Counts one kind of attempt per client address in fixed windows of the cache. The
    window is numbered from the epoch, so every node sharing a cache agrees on it."""

    def __init__(self, kind, setting):
        self.kind, self.setting = kind, setting

    @property
    def limit(self):
        return parse_limit(getattr(settings, self.setting), self.setting)

    def _window(self):
        now = time.time()
        number = int(now // self.limit.window_secs)
        return number, (number + 1) * self.limit.window_secs - now

    def _key(self, request, number):
        return f"chat:{self.kind}:{_address_key(client_address(request.META))}:{number}"

    def reached(self, request):
        number, _ = self._window()
        return (cache.get(self._key(request, number)) or 0) >= self.limit.count

    def add_one(self, request):
        """Count an attempt; the count in this window, this one included."""
        number, left_secs = self._window()
        key = self._key(request, number)
        cache.add(key, 0, timeout=int(left_secs) + 1)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr: the window is over anyway
            cache.add(key, 1, timeout=int(left_secs) + 1)
            return 1

    def retry_after_secs(self):
        return int(self._window()[1]) + 1


SIGNUPS = AddressCounter("signups", "CHAT_SIGNUP_LIMIT")
FAILED_LOGINS = AddressCounter("failed-logins", "CHAT_LOGIN_LIMIT")


def too_many(view, counter, message, **context):
    """The view's page, answered 429 with `message` as its error and an unbound form."""
    context.setdefault("form", view.get_form_class()(**_unbound_form_kwargs(view)))
    response = view.render_to_response(view.get_context_data(limit_error=message, **context),
                                       status=TOO_MANY_REQUESTS)
    response["Retry-After"] = str(counter.retry_after_secs())
    return response


def _unbound_form_kwargs(view):
    kwargs = view.get_form_kwargs()
    kwargs.pop("data", None)
    kwargs.pop("files", None)
    return kwargs


def safe_next(request, default="/"):
    """The `next` of the request when it points at this site; otherwise `default`."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


# -- sign up -------------------------------------------------------------------------------------

class SignupForm(UserCreationForm):
    """Django's form (password rules from AUTH_PASSWORD_VALIDATORS, usernames unique whatever
    their case) plus the chat's own rule for names."""

    def clean_username(self):
        try:
            protocol.account_name(self.cleaned_data.get("username"))
        except ProtocolError as exc:
            raise ValidationError(exc.message, code=exc.code) from None
        return super().clean_username()


class SignupView(FormView):
    form_class = SignupForm
    template_name = "registration/signup.html"
    limit_message = "Too many accounts were created from your address. Please try again later."

    def dispatch(self, request, *args, **kwargs):
        if SIGNUPS.reached(request):
            return too_many(self, SIGNUPS, self.limit_message)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        if SIGNUPS.add_one(self.request) > SIGNUPS.limit.count:  # a race at the limit: refused
            return too_many(self, SIGNUPS, self.limit_message)
        user = form.save()
        auth_login(self.request, user)
        return redirect(safe_next(self.request))

    def get_context_data(self, **kwargs):
        return super().get_context_data(next=safe_next(self.request, ""), **kwargs)


# -- log in --------------------------------------------------------------------------------------

class LoginView(auth_views.LoginView):
    """Django's login with failed attempts limited per address (CHAT_LOGIN_LIMIT). A success
    does not reset the count: else one's own account would buy more guesses at others'."""

    limit_message = "Too many failed logins from your address. Please wait a few minutes and try again."

    def post(self, request, *args, **kwargs):
        if FAILED_LOGINS.reached(request):  # refused before the password is even looked at
            return too_many(self, FAILED_LOGINS, self.limit_message)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        FAILED_LOGINS.add_one(self.request)
        return super().form_invalid(form)

    def get_context_data(self, **kwargs):
        return super().get_context_data(guests_allowed=settings.CHAT_GUESTS, **kwargs)
