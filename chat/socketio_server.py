"""The Socket.IO server of the chat: python-socketio's, corrected where it departs from the
Socket.IO v5 specification and from the reference server (Node's socket.io 4), and hardened
against hostile packets. chat.outbox builds the chat's bounded server on top of it.

Each correction names the upstream behaviour it replaces (python-socketio 5.18):
- The CONNECT reply comes first. Packets sent to a connection while its connect handler
  runs (the chat's `welcome`) are held and follow the CONNECT packet; if the handler
  refuses, they are dropped and only CONNECT_ERROR goes out. Upstream sent them before
  the CONNECT reply.
- An unknown namespace is refused with `{"message": "Invalid namespace"}` (upstream sent the
  string "Unable to connect"; v5 requires an object).
- A packet the spec calls invalid closes the connection: an EVENT whose payload is not a
  non-empty array starting with the event name (`42{}`, `42[]`), an ACK whose payload is
  not an array, a CONNECT whose payload is not an object, an undecodable packet. So does
  a packet for a namespace the client has not connected to (an EVENT before CONNECT, a
  second CONNECT), as Node does. Upstream ignored them or logged a traceback.
- A connection that has not connected to a namespace within `connect_timeout` seconds is
  closed (upstream never closed it).
- Hostile but valid: an event named `connect`, `disconnect`, `connect_error` or `*` would
  make python-socketio call those handlers with the client's arguments; such an event, or
  one whose name is not a string, is answered with an `unknown_event` error ack instead.
"""
import logging

import gevent
import socketio
from socketio import packet

from chat.protocol import UNKNOWN_EVENT, failure

log = logging.getLogger(__name__)

RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error", "*"})
INVALID_NAMESPACE = {"message": "Invalid namespace"}


class InvalidPacket(ValueError):
    """A packet the specification says the server must close the connection for."""


class ProtocolServer(socketio.Server):
    def __init__(self, *args, connect_timeout=45, **kwargs):
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout
        self._held = {}  # eio sid -> [(send, packet)] while its connect handler runs
        self._connect_timers = {}  # eio sid -> libev timer, until its first CONNECT reply
        self._cutting = set()  # eio sids being closed; emptied as each close finishes

    # -- connecting ----------------------------------------------------------------------
    def _handle_eio_connect(self, eio_sid, environ):
        super()._handle_eio_connect(eio_sid, environ)
        timer = self._connect_timers[eio_sid] = gevent.get_hub().loop.timer(self.connect_timeout, ref=False)
        timer.start(self._connect_timed_out, eio_sid)

    def _connect_timed_out(self, eio_sid):
        self._stop_connect_timer(eio_sid)
        self._cut(eio_sid, "no namespace connected within the connect timeout", quiet=True)

    def _stop_connect_timer(self, eio_sid):
        timer = self._connect_timers.pop(eio_sid, None)
        if timer is not None:
            timer.close()

    def _handle_eio_disconnect(self, eio_sid, reason):
        self._stop_connect_timer(eio_sid)
        self._held.pop(eio_sid, None)
        return super()._handle_eio_disconnect(eio_sid, reason)

    def _serves(self, namespace):
        return (namespace in self.handlers or namespace in self.namespace_handlers
                or self.namespaces == "*" or namespace in self.namespaces)

    def _handle_connect(self, eio_sid, namespace, data):
        namespace = namespace or "/"
        if data is not None and not isinstance(data, dict):
            raise InvalidPacket("a CONNECT payload must be an object")
        if not self._serves(namespace):
            self._send_packet(eio_sid, self.packet_class(packet.CONNECT_ERROR, data=INVALID_NAMESPACE,
                                                         namespace=namespace))
            return
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            raise InvalidPacket(f"already connected to {namespace}")
        self._held[eio_sid] = []
        try:
            super()._handle_connect(eio_sid, namespace, data)
        finally:
            self._held.pop(eio_sid, None)  # the handler raised: what it sent is dropped

    # -- sending: held while the connect handler runs ------------------------------------------
    def _send_packet(self, eio_sid, pkt):
        held = self._held.get(eio_sid)
        if held is None:
            return super()._send_packet(eio_sid, pkt)
        if pkt.packet_type not in (packet.CONNECT, packet.CONNECT_ERROR):
            held.append((self._send_packet, pkt))
            return
        del self._held[eio_sid]
        super()._send_packet(eio_sid, pkt)
        if pkt.packet_type == packet.CONNECT:
            self._stop_connect_timer(eio_sid)
            for send, later in held:
                send(eio_sid, later)

    def _send_eio_packet(self, eio_sid, eio_pkt):
        held = self._held.get(eio_sid)
        if held is None:
            self._deliver_eio_packet(eio_sid, eio_pkt)
        else:
            held.append((self._send_eio_packet, eio_pkt))

    def _deliver_eio_packet(self, eio_sid, eio_pkt):
        super()._send_eio_packet(eio_sid, eio_pkt)

    # -- receiving -------------------------------------------------------------------------------
    def _handle_eio_message(self, eio_sid, data):
        if eio_sid in self._cutting:
            return  # closing after an invalid packet: nothing after it is taken
        try:
            return super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # undecodable or invalid: one log line, then the connection goes
            self._binary_packet.pop(eio_sid, None)
            log.info("invalid packet from eio_sid=%s (%s: %s): disconnecting", eio_sid, type(exc).__name__, exc)
            self._cut(eio_sid, "invalid packet", quiet=True)

    def _handle_event(self, eio_sid, namespace, id, data):
        if not (isinstance(data, list) and data and isinstance(data[0], (str, int, float))
                and not isinstance(data[0], bool)):
            raise InvalidPacket("an EVENT payload must be a non-empty array starting with the event name")
        self._require_connected(eio_sid, namespace)
        event = data[0]
        if not isinstance(event, str) or event in RESERVED_EVENTS:
            if id is not None:
                reply = failure(UNKNOWN_EVENT, "not an event a client may send")
                self._send_packet(eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=[reply]))
            return
        return super()._handle_event(eio_sid, namespace, id, data)

    def _handle_ack(self, eio_sid, namespace, id, data):
        if not isinstance(data, list):
            raise InvalidPacket("an ACK payload must be an array")
        self._require_connected(eio_sid, namespace)
        return super()._handle_ack(eio_sid, namespace, id, data)

    def _require_connected(self, eio_sid, namespace):
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            raise InvalidPacket(f"not connected to {namespace}")

    # -- closing ---------------------------------------------------------------------------------
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
