"""The Socket.IO edge of the server: bounded outgoing queues, cheap writes, and hostile
packets refused before they reach python-socketio's dispatch.

Hostile: a client may name an event `connect`, `disconnect` or `*` (python-socketio would
call those handlers with the client's arguments), send packets python-socketio cannot
decode (it logs a traceback per packet, and a bad binary attachment jams the connection),
or a websocket frame python-engineio cannot decode (its handler ends without closing the
session). Each is refused here with one log line; undecodable input disconnects.

Bounded: python-socketio hands every packet for a connection to Engine.IO's per-socket
queue, which has no bound. `BoundedServer` checks that queue before each packet: past
CHAT_MAX_OUTBOX packets or CHAT_MAX_OUTBOX_BYTES queued bytes the connection is cut (closed
at the Engine.IO level, so socket.io-client reconnects by itself) with a logged reason; it
recovers what it missed with `join {since}`. The close runs in its own greenlet: the packet
being sent may be one of a room broadcast that is still iterating over the room.

Cheap: a room broadcast hands the same Engine.IO packet object to every recipient, so
`BoundedServer` wraps it once in a `FramedPacket` whose websocket frame (UTF-8 bytes plus
header) is built once for all of them. Each Engine.IO socket becomes a `CoalescingSocket`
(a subclass, chosen at connect): its writer's frames are gathered and written with one
`sendall` per batch of queued packets instead of one system call per packet.
"""
import logging
import struct
import weakref

import engineio.packet
import engineio.socket
import gevent
import socketio

from chat.protocol import UNKNOWN_EVENT, failure

log = logging.getLogger(__name__)

BYTES_CHECK_FROM_PACKETS = 64  # below this many queued packets the byte bound cannot be near


RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})


class BoundedServer(socketio.Server):
    def __init__(self, *args, max_packets, max_bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._cutting = set()  # eio sids being closed; emptied as each close finishes
        self._last_packet = self._last_framed = None  # the broadcast being sent

    def _handle_eio_connect(self, eio_sid, environ):
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and type(socket) is engineio.socket.Socket:
            socket.__class__ = CoalescingSocket
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_event(self, eio_sid, namespace, id, data):
        event = data[0] if data else None
        if not isinstance(event, str) or event in RESERVED_EVENTS:
            if id is not None:
                reply = failure(UNKNOWN_EVENT, "not an event a client may send")
                self._send_packet(eio_sid, self.packet_class(socketio.packet.ACK, namespace=namespace,
                                                             id=id, data=[reply]))
            return
        return super()._handle_event(eio_sid, namespace, id, data)

    def _handle_eio_message(self, eio_sid, data):
        try:
            return super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # undecodable: one log line, then the connection goes
            self._binary_packet.pop(eio_sid, None)
            log.info("undecodable packet from eio_sid=%s (%s): disconnecting", eio_sid, type(exc).__name__)
            self._cut(eio_sid, "undecodable packet")

    def _send_eio_packet(self, eio_sid, eio_pkt):
        if eio_sid in self._cutting:
            return
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closed:  # as engineio's _get_socket: nothing to send to
            return
        reason = self._overflow(socket.queue, eio_pkt)
        if reason:
            self._cut(eio_sid, reason)
            return
        socket.send(self._framed(eio_pkt))  # the socket is in hand: no second lookup per recipient

    def _framed(self, eio_pkt):
        if eio_pkt is not self._last_packet:
            self._last_packet, self._last_framed = eio_pkt, FramedPacket(eio_pkt)
        return self._last_framed

    def _overflow(self, queue, eio_pkt):
        queued = queue.qsize()
        if queued >= self.max_packets:
            return f"outbox full: {queued} packets queued"
        if queued >= BYTES_CHECK_FROM_PACKETS and queued % 16 == 0:
            size = sum(packet_size(p) for p in list(queue.queue)) + packet_size(eio_pkt)
            if size > self.max_bytes:
                return f"outbox full: {size} bytes queued"
        return None

    def _cut(self, eio_sid, reason):
        self._cutting.add(eio_sid)
        log.warning("cutting eio_sid=%s: %s (the client recovers with join since)", eio_sid, reason)
        gevent.spawn(self._close, eio_sid, reason)

    def _close(self, eio_sid, reason):
        try:
            self.eio._get_socket(eio_sid).close(wait=False, abort=True, reason=reason)
        except KeyError:
            pass
        finally:
            self._cutting.discard(eio_sid)


def packet_size(pkt):
    data = pkt.data
    return len(data) if isinstance(data, (str, bytes)) else 64


class FrameText(str):
    """An encoded Engine.IO packet that also carries its websocket frame, built once."""

    __slots__ = ("_frame",)

    @property
    def frame(self):
        frame = getattr(self, "_frame", None)
        if frame is None:
            frame = self._frame = websocket_text_frame(self.encode("utf-8"))
        return frame


class FramedPacket(engineio.packet.Packet):
    """The same packet for every recipient of a broadcast: encoded once."""

    def __init__(self, original):
        super().__init__(original.packet_type, original.data)
        self._text = None

    def encode(self, b64=False):
        if self.binary or b64:
            return super().encode(b64=b64)
        if self._text is None:
            self._text = FrameText(super().encode())
        return self._text


def websocket_text_frame(payload):
    """A final, unmasked text frame (RFC 6455 section 5.2) around UTF-8 `payload`."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class CoalescingWebSocket:
    """Wraps Engine.IO's gevent-websocket adapter: the writer's text frames are gathered.

    Only the writer greenlet gathers (its `poll()` flushes); anything else, such as the
    upgrade handshake's probe answer sent before the writer starts, goes out at once."""

    def __init__(self, ws):
        self._ws = ws
        self._pending = []
        self._handler = weakref.ref(gevent.getcurrent())  # weak: no cycle keeping greenlets alive

    def send(self, message):
        if gevent.getcurrent() is self._handler():
            self.flush()
            return self._ws.send(message)
        frame = getattr(message, "frame", None)
        if frame is None:
            if not isinstance(message, str):  # binary: keep order, send as before
                self.flush()
                return self._ws.send(message)
            frame = websocket_text_frame(message.encode("utf-8"))
        self._pending.append(frame)

    def flush(self):
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            write = self._ws._sock.raw_write  # None once gevent-websocket has closed the socket
            if write is None:
                raise ConnectionError("websocket already closed")
            write(data)

    def wait(self):
        return self._ws.wait()

    def close(self):
        try:
            self.flush()
        except Exception:  # the peer is gone; closing is all that is left
            pass
        return self._ws.close()


class CoalescingSocket(engineio.socket.Socket):
    """An Engine.IO socket whose websocket writer flushes once per batch of packets."""

    def _websocket_handler(self, ws):
        self._coalescing = CoalescingWebSocket(ws)
        try:
            return super()._websocket_handler(self._coalescing)
        except Exception as exc:  # an undecodable frame escapes python-engineio's handler
            log.info("undecodable websocket frame on eio_sid=%s (%s): closing", self.sid, type(exc).__name__)
            self.close(wait=False, abort=True, reason="undecodable frame")
            return []

    def _send_ping(self):
        # python-engineio sleeps a ping interval in a task it does not keep; remembering it
        # lets close() end it at once instead of holding the socket for up to 25 s
        self._ping_task = gevent.getcurrent()
        try:
            return super()._send_ping()
        finally:
            self._ping_task = None

    def close(self, *args, **kwargs):
        try:
            return super().close(*args, **kwargs)
        finally:
            task = getattr(self, "_ping_task", None)
            if task is not None and task is not gevent.getcurrent():
                task.kill(block=False)

    def poll(self):
        coalescing = getattr(self, "_coalescing", None)
        if coalescing is not None:
            try:
                coalescing.flush()  # what the writer gathered from the last batch goes out now
            except OSError:
                return []  # the peer is gone: an empty batch ends the writer, as on close
        return super().poll()
