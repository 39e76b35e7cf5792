"""The Engine.IO server of the chat: python-engineio's, corrected where it departs from the
Engine.IO v4 specification and from the reference server (Node's engine.io 6), so that any
client written against the spec talks to the chat exactly as it talks to Node.

Each correction names the upstream behaviour it replaces (python-engineio 4.15):
- A request is refused with Node's error body, HTTP 400 `{"code": N, "message": ...}`:
  0 an unknown or missing `transport` (upstream defaulted a missing one to polling),
  1 an unknown session, 2 a handshake that is not a GET (upstream answered a PUT 405),
  3 any other bad request, 5 a protocol version other than 4.
- A polling POST is read whole. Upstream read `CONTENT_LENGTH` bytes only, so a body sent
  with `Transfer-Encoding: chunked` (Node's http client, without a length) was answered
  `OK` and its packets dropped. Over the payload limit it is 413 (chat.outbox).
- A taken POST is answered `ok` (upstream `OK`).
- The handshake announces `pingInterval` in milliseconds as configured (upstream computed
  `int(seconds) * 1000`, so 300 ms was announced as 0).
- Sessions are chat.wire `DirectSocket`s from the start, which also correct the session
  level (an undecodable packet closes the session; a second concurrent poll closes it;
  a poll pending at close is answered `6`; no stray `6` after an upgrade).
"""
import io
import json
from urllib.parse import parse_qs

import engineio
import engineio.packet

from chat.wire import DirectSocket, oversize_reason
from chat.wirebuffer import FlushScheduler

UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, UNSUPPORTED_PROTOCOL_VERSION = 0, 1, 2, 3, 5
ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class EngineServer(engineio.Server):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flush_scheduler = FlushScheduler()  # what chat.wire sessions flush through

    def handle_request(self, environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if method != "OPTIONS" and not self._origin_refused(environ):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            code = self._refusal(method, query)
            if code is not None:
                return self._refuse(environ, start_response, code)
            if method == "POST" and not self._take_body(environ):
                return self._too_large(environ, start_response, query)
        return super().handle_request(environ, start_response)

    # -- refusals in Node's shape ------------------------------------------------------------
    def _origin_refused(self, environ):
        """python-engineio refuses a disallowed Origin itself, before anything else."""
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins == [] or not origin:
            return False
        allowed = self._cors_allowed_origins(environ)
        return allowed is not None and origin not in allowed

    def _refusal(self, method, query):
        transport = _first(query, "transport")
        if transport not in self.transports:
            return UNKNOWN_TRANSPORT
        sid = _first(query, "sid")
        if sid is None:
            if method != "GET":
                return BAD_HANDSHAKE_METHOD
            return None if _first(query, "EIO") == "4" else UNSUPPORTED_PROTOCOL_VERSION
        socket = self.sockets.get(sid)
        if socket is None or socket.closed:
            return UNKNOWN_SID
        return None if method in ("GET", "POST") else BAD_REQUEST

    def _refuse(self, environ, start_response, code):
        body = json.dumps({"code": code, "message": ERROR_MESSAGES[code]}, separators=(",", ":")).encode()
        start_response("400 Bad Request", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(body)))] + self._cors_headers(environ))
        return [body]

    # -- the body of a polling POST -------------------------------------------------------------
    def _take_body(self, environ):
        """Read the whole body, chunked or not, up to the payload limit; False when over it.
        python-engineio then reads exactly the `CONTENT_LENGTH` set here."""
        limit = self.max_http_buffer_size
        declared = environ.get("CONTENT_LENGTH")
        if declared and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            try:
                return int(declared) <= limit
            except ValueError:
                return False
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            return False
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        return True

    def _too_large(self, environ, start_response, query):
        """A polling POST over the payload limit: 413 with the reason (upstream: a bare 400),
        and its session is closed."""
        socket = self.sockets.get(_first(query, "sid"))
        if socket is not None:
            socket.close(wait=False, abort=True, reason="packet too large")
        start_response("413 Content Too Large", [("Content-Type", "text/plain; charset=utf-8")]
                       + self._cors_headers(environ))
        return [oversize_reason(self.max_http_buffer_size).encode()]

    def _ok(self, packets=None, headers=None, jsonp_index=None):
        if packets is not None:
            return super()._ok(packets, headers=headers, jsonp_index=jsonp_index)
        return {"status": "200 OK", "headers": [("Content-Type", "text/html")], "response": b"ok"}

    # -- the handshake ---------------------------------------------------------------------------
    def _handle_connect(self, environ, start_response, transport, jsonp_index=None):
        """python-engineio's handshake, with a `DirectSocket` and the intervals in milliseconds."""
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = self.sockets[sid] = DirectSocket(self, sid)
        socket.send(engineio.packet.Packet(engineio.packet.OPEN, {
            "sid": sid,
            "upgrades": self._upgrades(sid, transport),
            "pingInterval": round(self.ping_interval * 1000),
            "pingTimeout": round(self.ping_timeout * 1000),
            "maxPayload": self.max_http_buffer_size,
        }))
        refused = self._trigger_event("connect", sid, environ, run_async=False)
        if refused is not None and refused is not True:
            del self.sockets[sid]
            return self._unauthorized(refused or None)
        socket.schedule_ping()
        if transport == "websocket":
            answer = socket.handle_get_request(environ, start_response)
            if socket.closed:
                self.sockets.pop(sid, None)
            return answer
        socket.connected = True
        try:
            return self._ok(socket.poll(), jsonp_index=jsonp_index)
        except engineio.exceptions.QueueEmpty:
            return self._bad_request()


def _first(query, name):
    values = query.get(name)
    return values[0] if values else None
