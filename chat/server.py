"""The process-wide chat runtime and the gevent server that serves it.

This module owns, on purpose, the one `Runtime` of a server process (`current()`): the
Socket.IO server, presence, store, feed and service. Django code that must reach connected
clients (admin deletions, page views showing online counts) asks for it here; when no
server runs in the process (management commands, unit tests) `current()` is None.
"""
import json
import logging
import signal
import socket
import time
from dataclasses import dataclass

import gevent
import socketio
from gevent.event import Event
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http.request import split_domain_port, validate_host
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

from chat import bus, events, protocol, roomlog
from chat.delivery import RoomFeed
from chat.limits import RateLimiter, parse_quotas, parse_rules
from chat.metrics import NodeMetrics
from chat.outbox import BoundedServer
from chat.presence import Presence
from chat.search.indexer import Indexer
from chat.services import ChatService, Limits
from chat.store import Store

log = logging.getLogger(__name__)

RFILE_BUFFER_BYTES = 2048

_runtime = None


@dataclass
class Runtime:
    sio: socketio.Server
    service: ChatService
    store: Store
    presence: Presence
    feed: RoomFeed
    metrics: NodeMetrics
    app: object
    indexer: Indexer | None = None

    def drain(self, timeout_secs):
        """Graceful stop: drop every transport (clients reconnect, behind a balancer to
        another node), take this node out of the directory while the store still takes work,
        then let queued database work finish so every ack given holds."""
        deadline = time.monotonic() + timeout_secs
        if self.indexer is not None:
            self.indexer.stop()  # the index catches up from its cursors on the next start
        drops = [gevent.spawn(self._drop, eio_sid) for eio_sid in list(self.sio.eio.sockets)]
        gevent.joinall(drops, timeout=timeout_secs / 4)
        gevent.sleep(0)  # the disconnect handlers' releases are queued by now
        self.service.unregister_node()
        if not self.store.drain(max(0.0, deadline - time.monotonic())):
            log.warning("stopping with database work still pending")

    def _drop(self, eio_sid):
        try:
            self.sio.eio._get_socket(eio_sid).close(wait=False, abort=True, reason="server shutting down")
        except KeyError:
            pass

    def start(self):
        self.store.start()
        self.service.register_node(reap_others=not settings.CHAT_BROKER_URL)
        gevent.spawn(self.feed.run_checks, settings.CHAT_DELIVERY_CHECK_SECS)
        gevent.spawn(self.service.keep_alive, settings.CHAT_NODE_HEARTBEAT_SECS, settings.CHAT_NODE_TIMEOUT_SECS)
        if self.indexer is not None:
            self.indexer.start()


def current():
    return _runtime


def limits_from_settings():
    return Limits(
        history=settings.CHAT_HISTORY, since_max=settings.CHAT_SINCE_MAX, page_max=settings.CHAT_PAGE_MAX,
        max_message=settings.CHAT_MAX_MESSAGE, rooms_per_connection=settings.CHAT_MAX_ROOMS_PER_CONNECTION,
        members_listed=settings.CHAT_MAX_MEMBERS_LISTED, rooms_listed=settings.CHAT_ROOMS_LISTED,
        token_max_age_secs=settings.CHAT_TOKEN_MAX_AGE_SECS,
        presence_detail_max=settings.CHAT_PRESENCE_DETAIL_MAX,
        presence_interval_secs=settings.CHAT_PRESENCE_INTERVAL_MSECS / 1000,
        max_connections_per_ip=settings.CHAT_MAX_CONNECTIONS_PER_IP,
    )


def engine_options():
    """The Engine.IO options of every server of this process, from settings."""
    return dict(
        async_mode="gevent", max_http_buffer_size=settings.CHAT_MAX_PAYLOAD_BYTES,
        ping_interval=settings.CHAT_PING_INTERVAL_MS / 1000, ping_timeout=settings.CHAT_PING_TIMEOUT_MS / 1000,
        cors_allowed_origins=_cors_origins(settings.CHAT_ALLOWED_ORIGINS),
    )


def _cors_origins(origins):
    """CHAT_ALLOWED_ORIGINS: empty, the site's own host only; `*`, any origin."""
    return "*" if origins == ["*"] else (origins or None)


def socketio_server(client_manager=None):
    """The chat's Socket.IO server (bounded, spec-exact), configured from settings."""
    return BoundedServer(
        max_packets=settings.CHAT_MAX_OUTBOX, max_bytes=settings.CHAT_MAX_OUTBOX_BYTES,
        client_manager=client_manager, connect_timeout=settings.CHAT_CONNECT_TIMEOUT_MS / 1000,
        logger=False, engineio_logger=False,
        # A connection's events run one at a time, in order, in its session greenlet: no
        # greenlet per event, and a `send` right after a `join` never overtakes it.
        async_handlers=False,
        **engine_options(),
    )


def build_runtime():
    metrics = NodeMetrics()
    manager = bus.build_manager(settings.CHAT_BROKER_URL, metrics=metrics)
    sio = socketio_server(client_manager=manager)
    presence = Presence()
    service = None
    store = Store(settings.CHAT_DB_READERS, settings.CHAT_DB_QUEUE, settings.CHAT_WRITE_BATCH,
                  on_committed=lambda messages: service.messages_committed(messages), metrics=metrics,
                  concurrent_writes=settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
                  delivery_limit=settings.CHAT_DELIVERY_QUEUE)

    def deliver_here(room, item):
        manager.emit_local(roomlog.announced_as(item), item, room)
        metrics.delivered(presence.count(room))

    feed = RoomFeed(store, deliver_here, settings.CHAT_FEED_BUFFER, settings.CHAT_SINCE_MAX, metrics=metrics)
    manager.attach_feed(feed)
    manager.on_relink(feed.check)
    limiter = RateLimiter(parse_rules(settings.CHAT_RATE_LIMITS), settings.CHAT_FLOOD_STRIKES,
                          room_creates=parse_quotas(settings.CHAT_ROOM_CREATES))
    indexer = Indexer(store, settings.CHAT_SEARCH_INDEX_SECS) if settings.CHAT_SEARCH_INDEXER else None
    service = ChatService(sio, manager, presence, store, feed, limits_from_settings(), settings.CHAT_NODE_ID, limiter,
                          indexer)
    events.register(sio, service)
    app = socketio.WSGIApp(sio, get_wsgi_application())
    if settings.CHAT_BROKER_URL:
        app = with_node_cookie(app, settings.CHAT_NODE_ID)
    return Runtime(sio, service, store, presence, feed, metrics, app, indexer)


def with_node_cookie(app, node_id):
    """Mark Socket.IO responses with this node's id so a balancer can keep long-polling
    sessions on their node (deploy/nginx.conf maps the cookie to an upstream)."""
    cookie = ("Set-Cookie", f"chat_node={node_id}; Path=/socket.io/; HttpOnly; SameSite=Lax")

    def app_with_cookie(environ, start_response):
        if not environ.get("PATH_INFO", "").startswith("/socket.io"):
            return app(environ, start_response)

        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, cookie], exc_info)

        return app(environ, start)

    return app_with_cookie


class ChatHandler(WebSocketHandler):
    """gevent-websocket's handler, tuned for many long-lived connections:
    - TCP_NODELAY: Nagle's algorithm would hold a small frame for the peer's delayed ACK;
    - a read buffer of RFILE_BUFFER_BYTES instead of 8 KiB (allocated per connection for its
      whole life; request heads and chat frames are far smaller, larger reads bypass it);
    - a websocket session does not keep the parsed request headers (the environ has them)."""

    def __init__(self, sock, address, server, rfile=None):
        if rfile is None:
            rfile = sock.makefile("rb", RFILE_BUFFER_BYTES)
        super().__init__(sock, address, server, rfile)

    def run_websocket(self):
        self.headers = None
        return super().run_websocket()

    def run_application(self):
        """Socket.IO is answered before Django, so its requests get Django's ALLOWED_HOSTS
        check here, before a websocket handshake or a polling session (DNS rebinding)."""
        if self.environ.get("PATH_INFO", "").startswith("/socket.io") and not host_allowed(self.environ):
            body = json.dumps(protocol.failure(protocol.INVALID_HOST, "this host name is not served here"))
            self.start_response("400 Bad Request", [("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(body)))])
            self.result = [body.encode()]
            self.process_result()
            return
        return super().run_application()

    def handle(self):
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a unix socket)
            pass
        super().handle()


def host_allowed(environ):
    """Django's own Host validation (ALLOWED_HOSTS, with its DEBUG defaults)."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def serve(host, port, on_stop=None):
    """Run the chat server until SIGINT/SIGTERM; `on_stop()` is called as stopping begins."""
    global _runtime
    _runtime = build_runtime()
    _runtime.start()
    server = WSGIServer((host, port), _runtime.app, handler_class=ChatHandler, log=None,
                        error_log=logging.getLogger("gevent.pywsgi"), backlog=settings.CHAT_LISTEN_BACKLOG)
    server.start()
    log.info("listening on http://%s:%d node=%s", host, server.server_port, settings.CHAT_NODE_ID)
    stopped = Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopped.set)
    stopped.wait()
    if on_stop is not None:
        on_stop()
    log.info("stopping node=%s: no new connections, dropping %d, finishing database work",
             settings.CHAT_NODE_ID, len(_runtime.sio.eio.sockets))
    server.close()
    _runtime.drain(settings.CHAT_SHUTDOWN_SECS)
    server.stop(timeout=1)
    _runtime.store.stop()
    log.info("stopped node=%s", settings.CHAT_NODE_ID)
