"""Fan-out between server processes: python-socketio client managers chosen by settings.

A single node uses `InProcessManager`: publishing a committed message is a function call
into the room feed. Everything above the bus (services, delivery) is the same code for one
node and for a cluster; only the manager passed to `socketio.Server(client_manager=...)`
changes.
"""
import socketio

NAMESPACE = "/"


class InProcessManager(socketio.Manager):
    """One process: rooms, emits and committed messages never leave it."""

    def __init__(self):
        super().__init__()
        self._feed = None

    def attach_feed(self, feed):
        self._feed = feed

    def publish_room_messages(self, messages):
        """Hand committed messages (id order) to every node's feed; here, just ours."""
        for message in messages:
            self._feed.accept(message["room"], message)

    def emit_local(self, event, data, room):
        """Emit to this process's members of `room` only."""
        socketio.Manager.emit(self, event, data, namespace=NAMESPACE, room=room)


def build_manager(broker_url=None):
    if broker_url:
        raise NotImplementedError("cluster bus arrives with the ZeroMQ manager")
    return InProcessManager()
