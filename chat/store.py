"""Database work off the socket greenlets: a bounded set of connections and batched commits.

Under gevent every greenlet is a Django "thread" with its own connection, so socket
handlers never touch the ORM. They hand work to this module's workers instead:
CHAT_DB_READERS pool greenlets and ONE message writer greenlet, each holding one long-lived
connection. The socket side of a process therefore holds at most CHAT_DB_READERS + 1
connections whatever the number of clients. The message writer commits `send`s in batches
(up to CHAT_WRITE_BATCH per transaction) so ids are assigned and delivered in one order.
Committed batches are handed, in id order, to ONE delivery greenlet that runs
`on_committed`: delivery can run client I/O callbacks (a long-polling socket whose ping
timed out closes when written to, and its disconnect handler queues database work), so it
must never run inside the writer, which would then wait on its own queue. At most
CHAT_DELIVERY_QUEUE batches wait for delivery; past that the writer waits (and its queue
fills, answering `busy`), so a slow delivery slows commits instead of growing memory.
Other writes (presence directory, room creation) run in the pool when the database takes
concurrent writers (PostgreSQL); on SQLite they queue behind the single writer, which keeps
SQLite free of lock waits that would block the gevent hub.

Limits: each queue holds at most CHAT_DB_QUEUE jobs; past that a request is refused with
`busy` at once (nothing is written). A database error answers `unavailable`, and the
worker's connection is dropped so the next job reconnects.
"""
import logging
import time

import gevent
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from gevent.event import AsyncResult
from gevent.queue import Full, Queue

from chat import persistence
from chat.protocol import BUSY, INTERNAL, UNAVAILABLE, ProtocolError

log = logging.getLogger(__name__)


class _Call:
    __slots__ = ("fn", "args", "result", "delivers")

    def __init__(self, fn, args, delivers=False):
        self.fn, self.args, self.result = fn, args, AsyncResult()
        self.delivers = delivers  # its result, a committed room event (or None), goes out like messages


class _Post:
    __slots__ = ("draft", "result")

    def __init__(self, draft):
        self.draft, self.result = draft, AsyncResult()


class Store:
    def __init__(self, readers, queue_limit, batch_limit, on_committed, metrics=None, concurrent_writes=False,
                 delivery_limit=1000):
        self._reader_count = readers
        self._reads = Queue(maxsize=queue_limit)
        self._writes = Queue(maxsize=queue_limit)
        self._deliveries = Queue(maxsize=delivery_limit)  # committed batches, id order
        self._batch_limit = batch_limit
        self._on_committed = on_committed  # called in the delivery greenlet, in id order, after each commit
        self._metrics = metrics
        self._concurrent_writes = concurrent_writes
        self._workers = []
        self._running = 0  # jobs being worked on right now
        self._closed = False

    def start(self):
        self._workers = [gevent.spawn(self._read_loop) for _ in range(self._reader_count)]
        self._workers.append(gevent.spawn(self._write_loop))
        self._workers.append(gevent.spawn(self._delivery_loop))

    def stop(self):
        gevent.killall(self._workers)

    @property
    def connection_bound(self):
        return self._reader_count + 1

    def pending(self):
        return self._reads.qsize() + self._writes.qsize() + self._deliveries.qsize()

    def drain(self, timeout_secs):
        """Refuse new work and wait for queued and running jobs; True when all finished."""
        self._closed = True
        deadline = time.monotonic() + timeout_secs
        while (self.pending() or self._running) and time.monotonic() < deadline:
            gevent.sleep(0.02)
        return not (self.pending() or self._running)

    # -- the API socket handlers use (blocks only the calling greenlet) -----------------------
    def read(self, fn, *args):
        return self._submit(self._reads, _Call(fn, args))

    def write(self, fn, *args):
        return self._submit(self._reads if self._concurrent_writes else self._writes, _Call(fn, args))

    def commit_event(self, fn, *args):
        """Commit room events (chat.roomlog; `fn` returns one event, None, or an object with
        `.events`) as a write; once committed they join the delivery queue, after the
        messages committed before them by this writer."""
        return self._submit(self._reads if self._concurrent_writes else self._writes, _Call(fn, args, delivers=True))

    def post(self, draft):
        """Commit one message (batched with others); returns persistence.Posted."""
        return self._submit(self._writes, _Post(draft))

    def _submit(self, queue, job):
        if self._closed:
            raise ProtocolError(UNAVAILABLE, "this server is shutting down; reconnect")
        try:
            queue.put_nowait(job)
        except Full:
            raise ProtocolError(BUSY, "server is busy; try again shortly") from None
        outcome = job.result.get()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    # -- workers ------------------------------------------------------------------------
    def _read_loop(self):
        self._serve(self._reads, self._run_call)

    def _serve(self, queue, run):
        """Run each job of `queue` in turn, counting it as running meanwhile."""
        while True:
            job = queue.get()
            self._running += 1
            try:
                run(job)
            finally:
                self._running -= 1

    def _run_call(self, job):
        try:
            outcome = job.fn(*job.args)
            events = self._events_of(outcome) if job.delivers else None
            if events:
                self._deliveries.put(events)  # waits only while CHAT_DELIVERY_QUEUE batches wait
            job.result.set(outcome)
        except ProtocolError as exc:
            job.result.set(exc)
        except DatabaseError as exc:
            job.result.set(self._failed(exc))
        except Exception as exc:  # a bug: answer the caller, keep the worker alive
            log.exception("database job %s failed", getattr(job.fn, "__name__", job.fn))
            job.result.set(exc)

    @staticmethod
    def _events_of(outcome):
        """A delivering job returns None, one committed event, or something with `.events`."""
        if outcome is None:
            return None
        return list(getattr(outcome, "events", None) or []) if not isinstance(outcome, dict) else [outcome]

    def _write_loop(self):
        while True:
            job = self._writes.get()
            self._running += 1
            try:
                if isinstance(job, _Call):
                    self._run_call(job)
                    continue
                batch, held = self._gather_posts(job)
                self._commit(batch)
                if held is not None:
                    self._run_call(held)
            finally:
                self._running -= 1

    def _gather_posts(self, first):
        """Take queued posts after `first`, up to the batch limit; stop at a non-post job."""
        batch = [first]
        while len(batch) < self._batch_limit and not self._writes.empty():
            job = self._writes.get_nowait()
            if isinstance(job, _Call):
                return batch, job
            batch.append(job)
        return batch, None

    def _commit(self, batch):
        started = time.perf_counter()
        try:
            outcomes = persistence.commit_posts([job.draft for job in batch])
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, (OperationalError, InterfaceError)):
                for job in batch:  # one bad row must not fail the others: retry them one by one
                    self._commit([job])
                return
            outcomes = [self._failed(exc)] * len(batch)
        else:
            if self._metrics:
                self._metrics.observe_commit(time.perf_counter() - started, len(batch))
            created = [o.message for o in outcomes if isinstance(o, persistence.Posted) and o.created]
            if created:
                self._deliveries.put(created)  # waits only while CHAT_DELIVERY_QUEUE batches wait
        for job, outcome in zip(batch, outcomes):
            job.result.set(outcome)

    def _delivery_loop(self):
        self._serve(self._deliveries, self._deliver)

    def _deliver(self, messages):
        try:
            self._on_committed(messages)
        except Exception:  # delivery trouble must never un-acknowledge a committed message
            log.exception("delivering %d committed messages failed", len(messages))

    def _failed(self, exc):
        """The answer for a job whose database work raised `exc`."""
        if isinstance(exc, (OperationalError, InterfaceError)):
            return self._unavailable(exc)
        log.error("database job failed: %r", exc)
        return ProtocolError(INTERNAL, "the request could not be completed")

    @staticmethod
    def _unavailable(exc):
        log.warning("database unavailable: %s", exc)
        try:
            connection.close()
        except DatabaseError:
            pass
        return ProtocolError(UNAVAILABLE, "the database is unavailable; nothing was changed, try again")
