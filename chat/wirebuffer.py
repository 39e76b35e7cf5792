"""The outgoing bytes of websocket sessions: one `Wire` per session, one `FlushScheduler`
per process (owned by chat.outbox's server).

A frame for an idle wire is written at once with one non-blocking `send()`. While the
server delivers a batch of committed messages the scheduler is corked: each wire gathers
its frames and is written once when the batch ends. When the kernel's send buffer is full
the rest waits in the wire and a drain greenlet, alive only until the socket catches up,
writes it. What waits is counted (`queued_frames`, `queued_bytes`) for chat.outbox's
bounds, and leaves the count as soon as the kernel has taken it.
"""
import logging
import socket as stdlib_socket
from contextlib import contextmanager

import gevent

log = logging.getLogger(__name__)

DRAIN_CHUNK_FRAMES = 64  # a drain greenlet's write: frames counted as queued until it is done
DRAIN_CHUNK_BYTES = 65536


class FlushScheduler:
    """Decides when wires write. Uncorked (the usual case), a frame for an idle wire is
    written at once. Inside `corking()` (delivering a batch of messages) frames are gathered
    per wire and each wire is written once when the batch ends. Frames that arrive while a
    wire already has bytes pending are flushed when the current turn of the event loop ends.

    Owned by the Socket.IO server (one per process); the wires it holds are written and
    released within the batch or turn that added them."""

    def __init__(self):
        self._due = []
        self._scheduled = False
        self.corked = 0

    @contextmanager
    def corking(self):
        self.corked += 1
        try:
            yield
        finally:
            self.corked -= 1
            if not self.corked:
                self._flush_due()

    def add(self, wire):
        self._due.append(wire)
        if not self._scheduled and not self.corked:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self._flush_due_at_turn_end)

    def _flush_due_at_turn_end(self):
        self._scheduled = False
        if not self.corked:
            self._flush_due()

    def _flush_due(self):
        due, self._due = self._due, []
        for wire in due:
            try:
                wire.flush()
            except Exception:  # may run in the hub: never let one wire stop the others
                log.exception("flushing a websocket failed")


class Wire:
    """The outgoing bytes of one websocket session. `queued_frames`/`queued_bytes` count
    what was handed to `write` and is not yet in the kernel's send buffer: every frame
    leaves the count once the kernel has taken it, so a client that keeps up, however
    late, never looks full (chat.outbox cuts at those counts).

    `_pending` holds whole frames, except that its first entry may be the unsent rest of
    a batch (`_head_frames` of the count are for it, estimated from its share of the
    batch's bytes). The drain greenlet writes at most DRAIN_CHUNK_FRAMES frames or
    DRAIN_CHUNK_BYTES at a time, so what is being written is never a large part of the
    count."""

    __slots__ = ("_gsock", "_send_now", "_scheduler", "_pending", "_head_frames", "queued_frames",
                 "queued_bytes", "_scheduled", "_drainer", "dead")

    def __init__(self, gsock, scheduler):
        self._gsock = gsock  # this session's gevent socket
        self._send_now = gsock._sock.send  # the non-blocking OS socket under it: send() never waits
        self._scheduler = scheduler
        self._pending = []
        self._head_frames = 1
        self.queued_frames = 0
        self.queued_bytes = 0
        self._scheduled = False
        self._drainer = None  # the greenlet writing a backlog, while there is one
        self.dead = False

    def write(self, frame):
        self.offer(frame, float("inf"), float("inf"))

    def offer(self, frame, max_frames, max_bytes):
        """Write or queue `frame` unless that would pass the limits: then False (the caller cuts)."""
        if self.queued_frames >= max_frames or self.queued_bytes + len(frame) > max_bytes:
            return False
        if self.dead:
            return True
        pending = self._pending
        if not pending and self._drainer is None and not self._scheduler.corked:
            self._write_or_keep(frame, 1)  # an idle wire: straight to the socket
            return True
        if not pending:
            self._head_frames = 1
        pending.append(frame)
        self.queued_frames += 1
        self.queued_bytes += len(frame)
        if not self._scheduled and self._drainer is None:
            self._scheduled = True
            self._scheduler.add(self)
        return True

    def flush(self):
        """Write what is pending without blocking."""
        self._scheduled = False
        pending = self._pending
        if self._drainer is not None or self.dead or not pending:
            return
        frames = self.queued_frames
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self.queued_frames = self.queued_bytes = 0
        self._write_or_keep(data, frames)

    def _write_or_keep(self, data, frames):
        """One non-blocking send (nothing is pending); what does not fit waits for a drain greenlet."""
        try:
            sent = self._send_now(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.kill()
            return
        if sent < len(data):  # the kernel's buffer is full: keep the rest for a drain greenlet
            rest = len(data) - sent
            self._head_frames = max(1, -(-frames * rest // len(data)))  # the frames not yet wholly sent
            self._pending.append(data[sent:] if sent else data)
            self.queued_frames += self._head_frames
            self.queued_bytes += rest
            self._drainer = gevent.spawn(self._drain)

    def _take_chunk(self):
        """The first frames pending (at most DRAIN_CHUNK_FRAMES or DRAIN_CHUNK_BYTES, at
        least one entry) as (bytes, frames they count for)."""
        pending = self._pending
        taken, size = 1, len(pending[0])
        while taken < len(pending) and taken < DRAIN_CHUNK_FRAMES and size < DRAIN_CHUNK_BYTES:
            size += len(pending[taken])
            taken += 1
        data = pending[0] if taken == 1 else b"".join(pending[:taken])
        del pending[:taken]
        frames, self._head_frames = self._head_frames + taken - 1, 1
        return data, frames

    def _drain(self):
        """Wait for the socket to take the backlog (gevent's sendall, with the socket's timeout)."""
        try:
            while self._pending and not self.dead:
                data, frames = self._take_chunk()
                self._gsock.sendall(data)
                if self.dead:
                    break
                self.queued_frames -= frames
                self.queued_bytes -= len(data)
        except OSError:  # includes timeouts: a client that stopped reading for that long is gone
            self.kill()
        finally:
            self._drainer = None

    def write_now(self, frame):
        """Write `frame` after everything pending, blocking this greenlet (not the hub)."""
        self.write(frame)
        if self._drainer is not None:
            self._drainer.join()
        if self._pending and not self.dead:
            self._drainer = gevent.getcurrent()
            self._drain()

    def kill(self):
        """Drop what is pending and end the connection: its reader sees end-of-file."""
        self.dead = True
        self._pending.clear()
        self.queued_frames = self.queued_bytes = 0
        try:
            self._gsock._sock.shutdown(stdlib_socket.SHUT_RDWR)
        except OSError:
            pass
