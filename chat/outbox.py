"""Bounded outgoing queues: a client that stops reading cannot make the server buffer
without limit or slow anyone else down.

python-socketio hands every packet for a connection to Engine.IO's per-socket queue, which
has no bound. `BoundedServer` checks that queue before each packet: past
CHAT_MAX_OUTBOX packets or CHAT_MAX_OUTBOX_BYTES queued bytes the connection is cut (closed
at the Engine.IO level, so socket.io-client reconnects by itself) with a logged reason; it
recovers what it missed with `join {since}`. The close runs in its own greenlet: the packet
being sent may be one of a room broadcast that is still iterating over the room.
"""
import logging

import gevent
import socketio

log = logging.getLogger(__name__)

BYTES_CHECK_FROM_PACKETS = 64  # below this many queued packets the byte bound cannot be near


class BoundedServer(socketio.Server):
    def __init__(self, *args, max_packets, max_bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._cutting = set()  # eio sids being closed; emptied as each close finishes

    def _send_eio_packet(self, eio_sid, eio_pkt):
        if eio_sid in self._cutting:
            return
        try:
            queue = self.eio._get_socket(eio_sid).queue
        except KeyError:
            return
        reason = self._overflow(queue, eio_pkt)
        if reason:
            self._cut(eio_sid, reason)
            return
        super()._send_eio_packet(eio_sid, eio_pkt)

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
