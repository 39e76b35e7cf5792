"""The Socket.IO edge of the server: bounded outgoing queues, cheap writes, and hostile
packets refused before they reach python-socketio's dispatch.

Hostile: a client may name an event `connect`, `disconnect` or `*` (python-socketio would
call those handlers with the client's arguments), send packets python-socketio cannot
decode (it logs a traceback per packet, and a bad binary attachment jams the connection),
or a websocket frame python-engineio cannot decode (its handler ends without closing the
session). Each is refused here with one log line; undecodable input disconnects.

Bounded: what waits for a slow reader is bounded. On a websocket, frames wait in the
session's chat.wire `Wire` only while the kernel's send buffer is full; on long-polling, in
Engine.IO's per-socket queue until the next poll. Before each broadcast packet (room
messages, presence, typing) `BoundedServer` checks what waits: past CHAT_MAX_OUTBOX packets
or CHAT_MAX_OUTBOX_BYTES bytes the connection is cut (closed at the Engine.IO level, so
socket.io-client reconnects by itself) with a logged reason; it recovers what it missed
with `join {since}`. Replies to the client's own requests (acks and their binary
attachments, pongs, NOOPs) are bounded by chat.wire's `DirectSocket` with the same limits
(`outbox_limits`), but refused only once the outbox is already over a bound: refusing a
catch-up page of up to CHAT_SINCE_MAX messages because it is large would leave a client
that can never catch up. The close runs in its own greenlet: the packet being sent may be
one of a room broadcast that is still iterating over the room.

Cheap: a room broadcast hands the same Engine.IO packet object to every recipient, so
`BoundedServer` wraps it once in a `FramedPacket` whose websocket frame (UTF-8 bytes plus
header) is built once for all of them; room messages take a shorter path still
(`emit_to_local_room`). Each Engine.IO socket becomes a chat.wire `DirectSocket` (a
subclass, chosen at connect), which writes those frames straight to the socket: one system
call per connection per message, or per batch of committed messages.
"""
import logging
import time
from urllib.parse import parse_qs

import engineio.packet
import engineio.socket
import gevent
import socketio

from chat.protocol import UNKNOWN_EVENT, failure
from chat.wire import DirectSocket, oversize_reason, websocket_text_frame
from chat.wirebuffer import FlushScheduler

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
        self.eio.flush_scheduler = FlushScheduler()  # what chat.wire sessions flush through
        self.eio.outbox_limits = (max_packets, max_bytes)  # ...and what bounds their replies

    def handle_request(self, environ, start_response):
        """A long-polling POST over CHAT_MAX_PAYLOAD_BYTES is answered 413 with the reason
        (python-engineio answers a bare 400) and its session is closed."""
        limit = self.eio.max_http_buffer_size
        if environ.get("REQUEST_METHOD") == "POST" and _content_length(environ) > limit:
            sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
            if sid in self.eio.sockets:
                self._cut(sid, "packet too large")
            start_response("413 Content Too Large", [("Content-Type", "text/plain; charset=utf-8")]
                           + self.eio._cors_headers(environ))
            return [oversize_reason(limit).encode()]
        return super().handle_request(environ, start_response)

    def _handle_eio_connect(self, eio_sid, environ):
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and type(socket) is engineio.socket.Socket:
            socket.__class__ = DirectSocket
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

    def emit_to_local_room(self, event, data, room, namespace="/"):
        """Send one event to this process's members of `room` (the room messages of
        chat.bus): packet encoded and framed once, then handed to each member's connection."""
        members = self.manager.rooms.get(namespace, {}).get(room)
        if not members:
            return
        encoded = self.packet_class(socketio.packet.EVENT, namespace=namespace, data=[event, data]).encode()
        if not isinstance(encoded, str):  # binary attachments: python-socketio's general path
            socketio.Manager.emit(self.manager, event, data, namespace=namespace, room=room)
            return
        framed = FramedPacket(engineio.packet.Packet(engineio.packet.MESSAGE, encoded))
        frame, sockets, cutting = framed.frame, self.eio.sockets, self._cutting
        for eio_sid in list(members.values()):  # the hot loop of a broadcast: one wire.offer each
            socket = sockets.get(eio_sid)
            wire = getattr(socket, "wire", None)
            if wire is None or socket.closed or eio_sid in cutting:
                self._send_framed(eio_sid, socket, framed)  # long-polling, closing: the general path
            elif not wire.offer(frame, self.max_packets, self.max_bytes):
                self._cut_full(eio_sid, wire)

    def _send_eio_packet(self, eio_sid, eio_pkt):
        self._send_framed(eio_sid, self.eio.sockets.get(eio_sid), self._framed(eio_pkt))

    def _send_framed(self, eio_sid, socket, framed):
        if socket is None or socket.closed or eio_sid in self._cutting:  # nothing to send to
            return
        wire, frame = getattr(socket, "wire", None), framed.frame
        if wire is not None and frame is not None:
            if not wire.offer(frame, self.max_packets, self.max_bytes):
                self._cut_full(eio_sid, wire)
            return
        if ping_timed_out(socket, self.eio.ping_timeout):
            # socket.send would close it right here, running the disconnect handler (and its
            # database work) inside whoever is sending: a room broadcast, the delivery greenlet
            self._cut(eio_sid, "ping timeout", quiet=True)
            return
        reason = self._overflow(socket, framed)
        if reason:
            self._cut(eio_sid, reason)
            return
        socket.send(framed)  # the socket is in hand: no second lookup per recipient

    def _cut_full(self, eio_sid, wire):
        self._cut(eio_sid, f"outbox full: {wire.queued_frames} packets, {wire.queued_bytes} bytes queued")

    def _framed(self, eio_pkt):
        if eio_pkt is not self._last_packet:
            self._last_packet, self._last_framed = eio_pkt, FramedPacket(eio_pkt)
        return self._last_framed

    def _overflow(self, socket, eio_pkt):
        queued, size = socket.outbox_size()
        if queued >= self.max_packets:
            return f"outbox full: {queued} packets queued"
        if size is None and queued >= BYTES_CHECK_FROM_PACKETS and queued % 16 == 0:
            size = sum(packet_size(p) for p in list(socket.queue.queue))
        if size is not None and size + packet_size(eio_pkt) > self.max_bytes:
            return f"outbox full: {size} bytes queued"
        return None

    def _cut(self, eio_sid, reason, quiet=False):
        """Close a connection from a greenlet of its own, never inside the caller."""
        self._cutting.add(eio_sid)
        if quiet:
            log.info("closing eio_sid=%s: %s", eio_sid, reason)
        else:
            log.warning("cutting eio_sid=%s: %s (the client recovers with join since)", eio_sid, reason)
        gevent.spawn(self._close, eio_sid, reason)

    def _close(self, eio_sid, reason):
        try:
            self.eio._get_socket(eio_sid).close(wait=False, abort=True, reason=reason)
        except KeyError:
            pass
        finally:
            self._cutting.discard(eio_sid)


def ping_timed_out(socket, ping_timeout):
    """True for a long-polling socket that python-engineio would close on its next send."""
    last_ping = socket.last_ping
    return bool(last_ping) and time.time() - last_ping > ping_timeout


def _content_length(environ):
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


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
    """The same packet for every recipient of a broadcast: encoded once, and for websocket
    recipients framed once (`frame`; None for binary packets)."""

    def __init__(self, original):
        super().__init__(original.packet_type, original.data)
        self._text = None if self.binary else FrameText(super().encode())
        self.frame = None if self.binary else self._text.frame

    def encode(self, b64=False):
        if self._text is None or b64:
            return super().encode(b64=b64)
        return self._text
