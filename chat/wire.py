"""The websocket transport of an Engine.IO session: one greenlet, direct writes, timed pings.

python-engineio gives every websocket session three greenlets: the reader (the pywsgi
handler, whose deep stack and read buffer stay for the connection's life), a writer
draining a queue, and a ping task sleeping 25 s between pings. Each greenlet keeps its own
Python data stack, and every delivery costs a queue hand-off and a switch to the writer.
`DirectSocket` (an `engineio.socket.Socket` subclass chosen at connect) instead:

- Reads: once the websocket handshake is done, `detach` takes the TCP connection from the
  pywsgi handler (which then ends) and the session gets one shallow greenlet of its own.
  It reads with wsproto (RFC 6455 framing, masking, UTF-8, ping/pong/close) and runs the
  connection's events there, one at a time, in order.
- Writes: `send` hands the packet's websocket frame to the session's `Wire`
  (chat.wirebuffer). A frame for an idle wire goes out at once in one non-blocking `send()`. While the server delivers a batch
  of committed messages, the `FlushScheduler` is corked: each wire gathers its frames and is
  written once when the batch ends. When the kernel's send buffer is full, the rest waits
  in the wire and a drain greenlet, alive only until the socket catches up, writes it; how
  much may wait is bounded by chat.outbox (CHAT_MAX_OUTBOX / CHAT_MAX_OUTBOX_BYTES).
- Pings: a libev timer per session (a few hundred bytes) instead of a sleeping greenlet.

Long-polling sessions keep python-engineio's queue and behave exactly as before; a session
that upgrades moves whatever is still queued onto its wire first. The wire protocol is
unchanged: the same frames, in the same order.
"""
import logging
import struct
import time

import engineio.exceptions
import engineio.packet
import engineio.socket
import gevent
import wsproto.connection
import wsproto.events
import wsproto.utilities
from gevent.queue import Empty
from wsproto.connection import ConnectionType

from chat.wirebuffer import Wire

log = logging.getLogger(__name__)

RECV_BYTES = 16384
UNBOUNDED = (float("inf"), float("inf"))
MESSAGE_TOO_BIG = 1009  # RFC 6455 close code
TEXT_OPCODE = 0x1
BINARY_OPCODE = 0x2


def websocket_frame(payload, opcode=TEXT_OPCODE):
    """A final, unmasked frame (RFC 6455 section 5.2) around `payload` bytes."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


def oversize_reason(limit):
    """The close reason (websocket) and 413 body (long-polling) of a packet over the limit."""
    return f"packet too large: over {limit} bytes"


def websocket_text_frame(payload):
    return websocket_frame(payload, TEXT_OPCODE)


def frame_of(pkt):
    """The websocket frame carrying Engine.IO packet `pkt` (built once for shared packets)."""
    encoded = pkt.encode()
    frame = getattr(encoded, "frame", None)
    if frame is not None:
        return frame
    if isinstance(encoded, str):
        return websocket_frame(encoded.encode("utf-8"), TEXT_OPCODE)
    return websocket_frame(bytes(encoded), BINARY_OPCODE)


def _is_upgrade(environ):
    connection = {token.strip() for token in environ.get("HTTP_CONNECTION", "").lower().split(",")}
    return "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() == "websocket"


def detach(handler):
    """Take a websocket's TCP connection from gevent-websocket's pywsgi handler.

    Returns a socket of our own (a duplicate descriptor: the handler closes its own when it
    returns) and the bytes the handler had already read past the handshake. The handler is
    left without a socket, so it neither reads nor writes the connection again, and its
    websocket is marked closed, so gevent-websocket sends no close frame on its way out."""
    original, rfile = handler.socket, handler.rfile
    sock = original.dup()
    original.settimeout(0)  # drain the read buffer without waiting for more
    leftover = b""
    while True:
        chunk = rfile.read1(RECV_BYTES)
        if not chunk:
            break
        leftover += chunk
    handler.websocket.closed = True
    # ...and without a handler: gevent-websocket's close() on an already closed websocket
    # (its __del__ calls it) would otherwise build a throwaway class per connection, garbage
    # that only the cyclic collector frees, fragmenting the heap under connection churn
    handler.websocket.handler = None
    handler.socket = None
    environ = handler.environ
    environ.pop("wsgi.input", None)  # python-socketio keeps the environ; the input holds the read buffer
    return sock, leftover


class DirectSocket(engineio.socket.Socket):
    """An Engine.IO session that writes its websocket frames directly (see the module doc)."""

    wire = None  # set once the session runs on a websocket
    _ping_timer = None
    _cut_due = False  # a long-polling session over the outbox limits, closing
    _polling = False  # a long-polling GET is waiting for packets

    # -- long-polling requests (python-engineio's, corrected) ------------------------------
    def handle_get_request(self, environ, start_response):
        """A second GET while one waits is a broken or hostile client: as Node does, the
        session is closed (the waiting GET gets `1`) and the second one refused (upstream
        made it wait for the first, then served it)."""
        if _is_upgrade(environ):
            return super().handle_get_request(environ, start_response)
        if self._polling:
            self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise engineio.exceptions.EngineIOError("overlapping polling requests")
        self._polling = True
        try:
            return super().handle_get_request(environ, start_response)
        finally:
            self._polling = False

    def handle_post_request(self, environ):
        """An undecodable payload closes the session (upstream logged it, answered OK and
        kept the session): the request is answered 400, and so is every later one."""
        try:
            super().handle_post_request(environ)
        except (ValueError, engineio.exceptions.UnknownPacketError) as exc:
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            raise engineio.exceptions.EngineIOError("undecodable payload") from exc

    # -- sending --------------------------------------------------------------------------
    def send(self, pkt):
        wire = self.wire
        if wire is None:  # long-polling, or not upgraded yet: python-engineio's queue
            max_frames, _ = getattr(self.server, "outbox_limits", UNBOUNDED)
            if self.queue.qsize() >= max_frames and not self.upgrading:
                if not self._cut_due:
                    self._cut_due = True
                    log.warning("cutting eio_sid=%s: outbox full: %d packets queued", self.sid, max_frames)
                    gevent.spawn(self.close, wait=False, abort=True, reason="outbox full")
                return
            return super().send(pkt)
        if self.last_ping and time.time() - self.last_ping > self.server.ping_timeout:
            if not self.check_ping_timeout():
                return
        self._send_reply(wire, frame_of(pkt))

    def _send_reply(self, wire, frame):
        """Everything but broadcasts comes here (acks, their binary attachments, pings,
        pongs, NOOPs): one per request or timer, but a client that sends requests and
        never reads would pile them up, so once its outbox is over the limits
        (`outbox_limits`, set by chat.outbox) the connection is cut. A reply is refused
        only when the outbox is already full: a large catch-up page still goes out."""
        max_frames, max_bytes = getattr(self.server, "outbox_limits", UNBOUNDED)
        if not wire.offer(frame, max_frames, max_bytes + len(frame)):
            log.warning("cutting eio_sid=%s: outbox full: %d packets, %d bytes queued (replies)",
                        self.sid, wire.queued_frames, wire.queued_bytes)
            wire.kill()  # the session greenlet sees the end of the connection and closes it

    def outbox_size(self):
        """(packets, bytes or None) waiting to be written to this client."""
        wire = self.wire
        if wire is None:
            return self.queue.qsize(), None
        return wire.queued_frames, wire.queued_bytes

    # -- pings on a timer -----------------------------------------------------------------
    def schedule_ping(self):
        if self.last_ping:
            self.last_ping = None
            self._start_ping_timer(self.server.ping_interval, self._ping)

    def _start_ping_timer(self, seconds, callback):
        self._stop_ping_timer()
        timer = self._ping_timer = gevent.get_hub().loop.timer(seconds, ref=False)
        timer.start(callback)

    def _ping(self):
        self._stop_ping_timer()
        try:
            if not self.closing and not self.closed:
                self.last_ping = time.time()
                self.send(engineio.packet.Packet(engineio.packet.PING))
                self._start_ping_timer(self.server.ping_timeout, self._pong_overdue)
        except Exception:  # runs in the hub
            log.exception("ping of eio_sid=%s failed", self.sid)

    def _pong_overdue(self):
        """No PONG within ping_timeout of the PING: the session closes then, as Node's does
        (upstream noticed only at the next send or sweep of its service task, so a poll
        arriving just after the deadline was still served)."""
        self._stop_ping_timer()
        if self.last_ping and not self.closing and not self.closed:
            gevent.spawn(self.close, wait=False, reason=self.server.reason.PING_TIMEOUT)

    def _stop_ping_timer(self):
        timer, self._ping_timer = self._ping_timer, None
        if timer is not None:
            timer.close()

    # -- the websocket session --------------------------------------------------------------
    def _websocket_handler(self, ws):
        """Called deep inside the pywsgi handler greenlet once the websocket handshake is done:
        finish Engine.IO's upgrade if this session was polling, then hand the connection to a
        session greenlet of its own and let the handler greenlet (and its deep stack) end."""
        if self.connected and not self._upgrade(ws):
            return []  # the session goes on polling
        self.connected = self.upgraded = True
        sock, leftover = detach(ws._sock.handler)
        self._start_wire(sock)
        gevent.spawn(self._serve_websocket, sock, leftover)
        return []

    def _upgrade(self, ws):
        """The polling-to-websocket handshake (probe, then UPGRADE), as python-engineio does it."""
        self.upgrading = True  # packets sent meanwhile wait in the queue
        try:
            probe = engineio.packet.Packet(encoded_packet=self._receive_handshake(ws))
            if probe.packet_type != engineio.packet.PING or probe.data != "probe":
                log.info("eio_sid=%s: failed websocket upgrade, no PING probe", self.sid)
                return False
            ws.send(engineio.packet.Packet(engineio.packet.PONG, data="probe").encode())
            self.queue.put(engineio.packet.Packet(engineio.packet.NOOP))  # ends the pending poll
            upgrade = engineio.packet.Packet(encoded_packet=self._receive_handshake(ws))
            if upgrade.packet_type != engineio.packet.UPGRADE:
                log.info("eio_sid=%s: failed websocket upgrade, no UPGRADE packet", self.sid)
                return False
            return True
        finally:
            self.upgrading = False

    def _receive_handshake(self, ws):
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    def _start_wire(self, sock):
        """Move what the queue still holds onto the wire; from here on sends go to the wire."""
        wire = Wire(sock, self.server.flush_scheduler)
        while True:
            try:
                pkt = self.queue.get_nowait()
            except Empty:
                break
            self.queue.task_done()
            if pkt is not None and pkt.packet_type != engineio.packet.NOOP:  # NOOPs end polls only
                wire.write(frame_of(pkt))
        self.wire = wire
        self.queue = None  # python-engineio's queue (about 2.5 KiB) is not used from here on

    def _serve_websocket(self, sock, leftover):
        """The session's long-running greenlet: read frames until the connection ends."""
        try:
            self._read_frames(sock, wsproto.connection.Connection(ConnectionType.SERVER, trailing_data=leftover))
        except Exception as exc:  # an undecodable packet, a packet over the size limit, a dead socket
            log.info("websocket of eio_sid=%s ended (%s): closing", self.sid, type(exc).__name__)
        finally:
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
            sock.close()

    def _read_frames(self, sock, conn):
        """Feed what arrives to wsproto (RFC 6455 framing, masking, UTF-8, control frames) and
        each complete message to Engine.IO; at most max_http_buffer_size per message."""
        parts, size, limit = [], 0, self.server.max_http_buffer_size
        while not self.closed:
            for event in conn.events():
                if isinstance(event, wsproto.events.Message):
                    size += len(event.data)
                    if size > limit:
                        self._refuse_oversize(conn, limit)
                        return
                    parts.append(event.data)
                    if event.message_finished:
                        data = parts[0] if len(parts) == 1 else parts[0][:0].join(parts)
                        parts, size = [], 0
                        self._receive_packet(data)
                elif isinstance(event, wsproto.events.Ping):
                    self._send_reply(self.wire, conn.send(event.response()))
                elif isinstance(event, wsproto.events.CloseConnection):
                    self._answer_close(conn, event)
                    return
            data = sock.recv(RECV_BYTES)
            if not data:
                return  # the client went away
            conn.receive_data(data)

    def _receive_packet(self, data):
        """An undecodable or unknown packet raises, which ends the session (upstream ignored
        packets of an unknown type)."""
        self.receive(engineio.packet.Packet(encoded_packet=data))

    def _refuse_oversize(self, conn, limit):
        """A message over CHAT_MAX_PAYLOAD_BYTES: close with 1009 (Message Too Big) and a
        reason the client can read (docs/PROTOCOL.md, Limits), then end."""
        log.info("eio_sid=%s sent a packet over %d bytes: closing with 1009", self.sid, limit)
        close = wsproto.events.CloseConnection(code=MESSAGE_TOO_BIG, reason=oversize_reason(limit))
        try:
            with gevent.Timeout(self.server.ping_timeout, False):
                self.wire.write_now(conn.send(close))
        except (wsproto.utilities.LocalProtocolError, OSError):
            pass

    def _answer_close(self, conn, event):
        """The client closed (or broke the protocol): answer with a close frame, then end."""
        try:
            self.wire.write_now(conn.send(event.response()))
        except (wsproto.utilities.LocalProtocolError, OSError):
            pass

    # -- closing --------------------------------------------------------------------------
    def close(self, wait=True, abort=False, reason=None):
        self._stop_ping_timer()
        wire = self.wire
        if wire is None:
            if abort and not self.closed:  # ends the waiting GET, as Node does (or one already on its way)
                self.queue.put(engineio.packet.Packet(engineio.packet.NOOP))
            return super().close(wait=wait, abort=abort, reason=reason)
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event("disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT,
                                   run_async=False)
        self.closed = True
        if abort:
            wire.kill()
        elif wait and gevent.getcurrent() is not gevent.get_hub():
            self._finish(wire)
        else:
            gevent.spawn(self._finish, wire)

    def _finish(self, wire):
        """Deliver what is pending and the CLOSE packet, then end the connection. A client that
        does not take it within ping_timeout is not waited for any longer."""
        try:
            with gevent.Timeout(self.server.ping_timeout, False):
                wire.write_now(frame_of(engineio.packet.Packet(engineio.packet.CLOSE)))
        finally:
            wire.kill()
