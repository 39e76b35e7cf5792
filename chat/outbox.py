"""The Socket.IO edge of the server: bounded outgoing queues and cheap writes, on the
spec-exact, hostile-proof server of chat.socketio_server.

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
(`emit_to_local_room`). Each Engine.IO session is a chat.wire `DirectSocket` (created by
chat.engine), which writes those frames straight to the socket: one system
call per connection per message, or per batch of committed messages.
"""
import logging
import time

import engineio.packet
import socketio

from chat.engine import EngineServer
from chat.socketio_server import ProtocolServer
from chat.wire import websocket_text_frame

log = logging.getLogger(__name__)

BYTES_CHECK_FROM_PACKETS = 64  # below this many queued packets the byte bound cannot be near


class BoundedServer(ProtocolServer):
    def __init__(self, *args, max_packets, max_bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._last_packet = self._last_framed = None  # the broadcast being sent
        self.eio.outbox_limits = (max_packets, max_bytes)  # what bounds chat.wire sessions' replies

    def _engineio_server_class(self):
        return EngineServer

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
        frame, sockets, cutting, held = framed.frame, self.eio.sockets, self._cutting, self._held
        for eio_sid in list(members.values()):  # the hot loop of a broadcast: one wire.offer each
            socket = sockets.get(eio_sid)
            wire = getattr(socket, "wire", None)
            if wire is None or socket.closed or eio_sid in cutting or eio_sid in held:
                self._send_eio_packet(eio_sid, framed)  # long-polling, closing, connecting: the general path
            elif not wire.offer(frame, self.max_packets, self.max_bytes):
                self._cut_full(eio_sid, wire)

    def _deliver_eio_packet(self, eio_sid, eio_pkt):
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

def ping_timed_out(socket, ping_timeout):
    """True for a long-polling socket that python-engineio would close on its next send."""
    last_ping = socket.last_ping
    return bool(last_ping) and time.time() - last_ping > ping_timeout


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
