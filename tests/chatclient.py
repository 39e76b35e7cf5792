"""A python-socketio test client that records every server event for assertions."""
import threading
import time
import uuid

import engineio
import socketio

from tests.serverproc import wait_until


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


STREAM_EVENTS = ("message", "message_edited", "message_deleted", "reaction", "topic", "member",
                 "room_archived")  # numbered, in order


class InOrderEngineClient(engineio.Client):
    """python-engineio's client runs the handler of each received message in a thread of its
    own (`run_async=True`), so under load message N+1 can be recorded before message N
    (python-socketio issue #382). Handled in the read loop instead, events are recorded in
    the order they arrived on the wire, which is what the ordering tests assert on."""

    def _trigger_event(self, event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):
    def _engineio_client_class(self):
        return InOrderEngineClient


class ChatClient:
    def __init__(self, url, transport="websocket", reconnection=False):
        self.url = url
        self.transports = [transport] if transport != "polling-upgrade" else ["polling", "websocket"]
        self.sio = InOrderClient(reconnection=reconnection, request_timeout=10)
        self.events = []  # (event, data) in arrival order
        self.lock = threading.Lock()
        self.connect_error = None
        self.welcome = None
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._on_connect_error)

    def _record(self, event, *args):
        data = args[0] if args else None
        with self.lock:
            self.events.append((event, data))
            if event == "welcome":
                self.welcome = data

    def _on_connect_error(self, data):
        self.connect_error = data

    def connect(self, name=None, token=None, headers=None, wait_welcome=True):
        auth = {k: v for k, v in (("name", name), ("token", token)) if v is not None}
        self.sio.connect(self.url, auth=auth, transports=self.transports, headers=headers or {},
                         wait_timeout=10)
        if wait_welcome:
            wait_until(lambda: self.welcome is not None, message="welcome")
        return self

    @property
    def name(self):
        return self.welcome["name"] if self.welcome else None

    def call(self, event, data=None, timeout=15):
        return self.sio.call(event, data, timeout=timeout)

    def join(self, room, **extra):
        reply = self.call("join", {"room": room, **extra})
        assert reply["ok"], reply
        return reply

    def send(self, room, text, **extra):
        reply = self.call("send", {"room": room, "text": text, **extra})
        assert reply["ok"], reply
        return reply["message"]

    def received(self, event, room=None):
        with self.lock:
            return [d for e, d in self.events if e == event and (room is None or d.get("room") == room)]

    def messages(self, room):
        return self.received("message", room)

    def stream(self, room):
        """Numbers of the room's stream received (message ids and room event seqs), in arrival order."""
        with self.lock:
            return [d["seq"] if "kind" in d else d["id"] for e, d in self.events
                    if e in STREAM_EVENTS and d.get("room") == room]

    def wait_for(self, event, predicate=lambda data: True, timeout=10):
        def found():
            with self.lock:
                return next((d for e, d in self.events if e == event and predicate(d)), None)

        return wait_until(found, timeout=timeout, message=f"{event} event")

    def wait_messages(self, room, count, timeout=15):
        return wait_until(lambda: len(self.messages(room)) >= count and self.messages(room), timeout=timeout,
                          message=f"{count} messages in {room}")

    def close(self):
        """Disconnect. On long-polling, python-engineio's client can lose its own close packet:
        `disconnect()` queues it, then marks the client disconnecting while the write loop
        may still be busy with an earlier POST, and the loop stops with the packet still
        queued (the server notices only at its ping timeout). So what is queued goes out
        first, and the write loop is back waiting for more when the close is queued."""
        try:
            if self.sio.connected and self.sio.transport() == "polling":
                self._drain_outgoing()
            self.sio.disconnect()
        except Exception:
            pass

    def _drain_outgoing(self, timeout=5):
        queue, deadline = self.sio.eio.queue, time.monotonic() + timeout
        while queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # from its last task_done back to queue.get()


def start_senders(members, room, per_sender):
    """Every member sends `per_sender` messages in its own thread; returns the started threads."""

    def blast(member):
        for i in range(per_sender):
            member.send(room, f"{member.name} {i}")

    threads = [threading.Thread(target=blast, args=(member,)) for member in members]
    for thread in threads:
        thread.start()
    return threads


def all_join(room, *members):
    for member in members:
        member.join(room)
    return members
