"""Pages, the JSON API and the health check (Django views; no socket work here).

JSON answers use the protocol's shapes: `{ok: true, ...}` or `{ok: false, error: {code, message}}`.
`/healthz` is for probes, anyone may ask; its `detail` and `/metrics` describe the node's
insides and are served only to CHAT_METRICS_ALLOWED addresses (behind a proxy listed in
CHAT_TRUSTED_PROXIES, the client's address from X-Forwarded-For).
"""
import functools
import gc
import ipaddress
from functools import lru_cache

import greenlet
import prometheus_client
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from chat import directory, identity, permissions, persistence, protocol, server, services
from chat.protocol import ProtocolError
from chat.search import service as search_service
from chat.search.query import parse_search

# HTTP status of each refusal of the JSON API (anything else: 400)
ERROR_STATUS = {protocol.FORBIDDEN: 403, protocol.BANNED: 403, protocol.UNAVAILABLE: 503, protocol.BUSY: 503}


def _json_error(code, message, status):
    return JsonResponse(protocol.failure(code, message), status=status)


def api_get(view):
    """The JSON API is read-only: any method but GET answers 405 with an Allow header and
    the protocol's error shape. CSRF-exempt, since no other method reaches the view (else
    Django's CSRF check would answer a POST with its HTML 403 page first)."""

    @functools.wraps(view)
    def get_only(request, *args, **kwargs):
        if request.method != "GET":
            response = _json_error(protocol.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here; use GET", 405)
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(get_only)


@require_GET
def index(request):
    """Guests get the name and room chooser; an account gets the app with no room shown."""
    if request.user.is_authenticated:
        return _app(request, "")
    return render(request, "chat/index.html", {"guests_allowed": settings.CHAT_GUESTS})


@require_GET
def room_page(request, room):
    """The app with `room` shown (static/js/app.js switches rooms without coming back here)."""
    if not settings.CHAT_GUESTS and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return _app(request, room)


def _app(request, room):
    return render(request, "chat/room.html", {"room": room, "max_rooms": settings.CHAT_MAX_ROOMS_PER_CONNECTION})


@api_get
def api_rooms(request):
    """Public rooms, most recently active first; `?q=` searches names by prefix."""
    try:
        query = protocol.parse_room_search({"query": request.GET.get("q", "")})
    except ProtocolError as exc:
        return _json_error(exc.code, exc.message, 400)
    return JsonResponse(protocol.ok(rooms=directory.rooms_with_counts(settings.CHAT_ROOMS_LISTED, query)))


@api_get
def api_messages(request, room):
    query = {"room": room, "before": _int_param(request, "before"), "limit": _int_param(request, "limit"),
             "around": _int_param(request, "around")}
    try:
        page = protocol.parse_history(query, settings.CHAT_HISTORY, settings.CHAT_PAGE_MAX)
    except ProtocolError as exc:
        return _json_error(exc.code, exc.message, 400)
    user = request.user if request.user.is_authenticated else None
    try:  # the same check as every other door (a session's account; anyone else is a guest)
        access = permissions.room_access(room, user.get_username() if user else "", user.pk if user else None)
    except ProtocolError as exc:
        return _json_error(exc.code, exc.message, 403)
    if access.room is None:
        return _json_error(protocol.INVALID_ROOM, f"no room named {room}", 404)
    if page.around is not None:
        return JsonResponse(protocol.ok(room=room, around=page.around,
                                        messages=persistence.messages_around(room, page.around, page.limit)))
    return JsonResponse(protocol.ok(room=room, messages=persistence.messages_before(room, page.before, page.limit)))


SEARCH_PARAMS = ("q", "room", "from", "before", "after", "cursor", "sort")


@api_get
def api_search(request):
    """The socket's `search` over HTTP, as the session's account (anyone else: a guest, who
    finds public rooms only): the same parser, service and errors."""
    user = request.user if request.user.is_authenticated else None
    name = user.get_username() if user else ""
    data = {key: request.GET[key] for key in SEARCH_PARAMS if key in request.GET}
    if "limit" in request.GET:
        data["limit"] = _int_param(request, "limit")
    try:
        query = parse_search(data, settings.CHAT_SEARCH_MAX_QUERY, settings.CHAT_SEARCH_PAGE, name)
        user_id = user.pk if user else None
        page = search_service.search(query, name, user_id, identity.key_of(name, user_id) if user else None)
    except ProtocolError as exc:
        return _json_error(exc.code, exc.message, ERROR_STATUS.get(exc.code, 400))
    return JsonResponse(protocol.ok(**page))


def _int_param(request, name):
    """The query parameter as an int when it is one; otherwise as given, for parse_history to refuse."""
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


@lru_cache(maxsize=8)
def _networks(allowed):
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allowed if entry != "*")


def is_trusted(request):
    """Whether the client may see the node's insides (CHAT_METRICS_ALLOWED)."""
    allowed = tuple(settings.CHAT_METRICS_ALLOWED)
    if "*" in allowed:
        return True
    try:
        address = ipaddress.ip_address(services.client_address(request.META))
    except ValueError:
        return False
    return any(address in network for network in _networks(allowed))


def _untrusted():
    return _json_error(protocol.FORBIDDEN, "not served to this address (CHAT_METRICS_ALLOWED)", 403)


@require_GET
def healthz(request):
    detail = request.GET.get("detail")
    if detail and not is_trusted(request):
        return _untrusted()
    runtime = server.current()
    status = {"ok": True, "node": settings.CHAT_NODE_ID}
    try:
        persistence.room_exists("healthz")
        status["database"] = "ok"
    except DatabaseError:
        status.update(ok=False, database="unavailable")
    if runtime:
        status["connections"] = runtime.presence.connection_count()
        status["db_pending"] = runtime.store.pending()
        if detail:  # counts the node keeps anyway: O(1)
            status["engineio_sockets"] = len(runtime.sio.eio.sockets)
            status["tracked_rooms"] = len(runtime.feed.tracked_rooms())
        if detail == "gc":  # walks every object, blocking the node meanwhile: tests and debugging only
            status["greenlets"] = sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet))
    return JsonResponse(status, status=200 if status["ok"] else 503)


@require_GET
def metrics(request):
    if not is_trusted(request):
        return _untrusted()
    runtime = server.current()
    if runtime:
        runtime.metrics.refresh(runtime.presence.connection_count(), len(runtime.feed.tracked_rooms()))
    return HttpResponse(prometheus_client.generate_latest(), content_type=prometheus_client.CONTENT_TYPE_LATEST)
