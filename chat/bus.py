"""Fan-out between server processes: python-socketio client managers chosen by settings.

A single node uses `InProcessManager`: publishing a committed message is a function call
into the room feed. A cluster node uses `ZmqManager`, a `socketio.PubSubManager` on
`zmq.green` talking to the forwarder of chat.broker. Everything above the bus (services,
delivery) is the same code for one node and for a cluster; only the manager passed to
`socketio.Server(client_manager=...)` changes.

Topics (one ZeroMQ frame: topic, 0x01, JSON) let the broker send a node only what it needs:
`r:<room>` for a room or a connection (python-socketio puts every sid in a room of its own
name), `h:<host>` for acks returning to one node, `*` for everyone. A node subscribes to
`*`, its own `h:` and the rooms it has local members in, and unsubscribes when the last one
leaves. Both links to the broker are CURVE clients with the node's keys (chat.busauth).
"""
import json
import logging
import time

import gevent
import socketio
from django.conf import settings

from chat import broker, busauth

log = logging.getLogger(__name__)

NAMESPACE = "/"
SEPARATOR = b"\x01"
BROADCAST = "*"


class LocalDelivery:
    """What every manager does on its own node: feed committed messages to the room feed,
    run control messages, emit to local members only."""

    _feed = None
    _control = None

    def attach_feed(self, feed):
        self._feed = feed

    def on_control(self, handler):
        """`handler(message)` runs on every node with members in the message's room."""
        self._control = handler

    def deliver_here(self, messages):
        """A batch goes out with one write per member connection (chat.wire corking)."""
        with self.server.eio.flush_scheduler.corking():
            for message in messages:
                self._feed.accept(message["room"], message)

    def emit_local(self, event, data, room):
        """Emit to this process's members of `room` only (chat.outbox's broadcast path)."""
        self.server.emit_to_local_room(event, data, room, namespace=NAMESPACE)


class InProcessManager(LocalDelivery, socketio.Manager):
    """One process: rooms, emits and committed messages never leave it."""

    def publish_control(self, message):
        self._control(message)

    def publish_room_messages(self, messages):
        """Hand committed messages (id order) to every node's feed; here, just ours."""
        self.deliver_here(messages)

    def on_relink(self, callback):
        """Single node: there is no link to lose."""


def frame(topic, data):
    return topic.encode() + SEPARATOR + json.dumps(data, separators=(",", ":")).encode()


def unframe(raw):
    topic, _, payload = raw.partition(SEPARATOR)
    return topic.decode(), json.loads(payload)


class ZmqManager(LocalDelivery, socketio.PubSubManager):
    """Cluster fan-out through the ZeroMQ forwarder; room topics follow local membership."""

    name = "zmq"

    def __init__(self, broker_url, metrics=None):
        super().__init__(channel="chat")
        try:
            import zmq.green as zmq
        except ImportError as exc:  # pragma: no cover - pyzmq is in pip_requirements.txt
            raise RuntimeError("the cluster bus needs pyzmq: pip install pyzmq") from exc
        self._zmq = zmq
        self._publish_url, self._subscribe_url = broker.split_endpoint(broker_url)
        auth = busauth.node_auth(broker_url, settings)  # CURVE keys, or refuse an open bus
        context = zmq.Context.instance()
        self._pub = context.socket(zmq.PUB)
        self._sub = context.socket(zmq.SUB)
        for sock in (self._pub, self._sub):
            broker.tune(sock)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            if auth:
                busauth.secure_client(sock, auth)
        self._monitor = self._sub.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        self._pub.connect(self._publish_url)
        self._sub.connect(self._subscribe_url)
        self._subscribe(BROADCAST)
        self._subscribe("h:" + self.host_id)
        self._relink_callbacks = []
        self._metrics = metrics

    # -- wiring ---------------------------------------------------------------------------
    def publish_control(self, message):
        self._control(message)
        self._publish({"method": "control", "room": message["room"], "message": message, "host_id": self.host_id})

    def on_relink(self, callback):
        """Call `callback()` whenever the subscription link to the broker is (re)made."""
        self._relink_callbacks.append(callback)

    def initialize(self):
        super().initialize()
        self.server.start_background_task(self._watch_links)

    def _subscribe(self, topic):
        self._sub.setsockopt(self._zmq.SUBSCRIBE, topic.encode() + SEPARATOR)

    def _unsubscribe(self, topic):
        self._sub.setsockopt(self._zmq.UNSUBSCRIBE, topic.encode() + SEPARATOR)

    # -- room membership drives subscriptions ---------------------------------------------
    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        fresh = room is not None and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if fresh:
            self._subscribe("r:" + room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        if room is not None and room not in self.rooms.get(namespace, {}):
            self._unsubscribe("r:" + room)

    # -- publishing -----------------------------------------------------------------------
    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        target = to or room
        if isinstance(target, str) and self.is_connected(target, namespace or NAMESPACE):
            kwargs["ignore_queue"] = True  # a local connection: nothing to tell other nodes
        return super().emit(event, data, namespace=namespace, room=target, skip_sid=skip_sid,
                            callback=callback, **kwargs)

    def publish_room_messages(self, messages):
        """Deliver committed messages here, then to every other node with members in the room."""
        self.deliver_here(messages)
        by_room = {}
        for message in messages:
            by_room.setdefault(message["room"], []).append(message)
        for room, batch in by_room.items():
            self._publish({"method": "room_messages", "room": room, "messages": batch, "host_id": self.host_id,
                           "at": time.time()})

    def _publish(self, data):
        raw = frame(self._topic(data), data)
        try:
            self._pub.send(raw, flags=self._zmq.NOBLOCK)
        except self._zmq.Again:
            log.warning("bus queue full; dropped %s (receivers recover from the database)", data.get("method"))
            return
        if self._metrics:
            self._metrics.bus_out()

    def _topic(self, data):
        method = data["method"]
        if method == "callback":
            return "h:" + data["host_id"]
        if method in ("disconnect", "enter_room", "leave_room"):
            return "r:" + data["sid"]
        room = data.get("room")
        return "r:" + room if isinstance(room, str) else BROADCAST

    # -- receiving ------------------------------------------------------------------------
    def _listen(self):
        while True:
            raw = self._sub.recv()
            if self._metrics:
                self._metrics.bus_in()
            try:
                _topic, data = unframe(raw)
            except ValueError:
                log.warning("dropped a malformed bus frame")
                continue
            if data.get("method") == "control":
                if data.get("host_id") != self.host_id:
                    self._control(data["message"])
                continue
            if data.get("method") == "room_messages":
                if data.get("host_id") != self.host_id:
                    if self._metrics and "at" in data:
                        self._metrics.bus_lag(data["at"])
                    self.deliver_here(data["messages"])
                continue
            yield data

    def _watch_links(self):
        """Each (re)made link to the broker may have missed messages: ask for a check.
        A refused handshake (wrong CURVE keys) is logged once until the next success."""
        from zmq.utils.monitor import recv_monitor_message

        refused = False
        while True:
            event = recv_monitor_message(self._monitor)
            if event["event"] != self._zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if not refused:
                    log.error("bus handshake with %s failed: the broker refused this node's keys, or "
                              "one side has none; fix the CHAT_BUS_* settings and restart this node "
                              "(libzmq does not retry a refused handshake)", self._subscribe_url)
                refused = True
                continue
            refused = False
            log.info("bus linked to %s", self._subscribe_url)
            for callback in self._relink_callbacks:
                gevent.spawn(callback)


def build_manager(broker_url=None, metrics=None):
    return ZmqManager(broker_url, metrics=metrics) if broker_url else InProcessManager()
