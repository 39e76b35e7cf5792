"""Keeping the search index in step with the messages, off the send path.

The index follows the database, never the send: a `send` is acknowledged when its message
is committed, and the index catches up afterwards. `catch_up(limit)` is the whole job: for
rooms whose stream (chat.models: messages and room events share one number sequence per
room) has moved past the room's cursor (chat.search.models.RoomCursor), it reads the new
messages and the edits and deletions among the new events, re-indexes those messages from
their current state (a deleted one is taken out), and moves the cursor, all in one
transaction. Numbers of a room become visible in increasing order on every node, so a
cursor per room never skips a message another node committed late. Idempotent: running it
twice, or on two nodes at once (PostgreSQL: each room's cursor row is locked, others are
skipped), gives the same index.

Who runs it:
- the job workers, by default: the recurring job `chat.tasks.index_search`, every
  CHAT_SEARCH_INDEX_SECS (chat.jobs.RECURRING), calls `catch_up` until caught up; the
  hourly `maintenance` job calls `prune`;
- the server process too with CHAT_SEARCH_INDEXER=on (for a deployment without workers):
  `Indexer` below, a greenlet that runs `catch_up` through the store (on SQLite through its
  one writer, between batches of sends; on PostgreSQL in the reader pool), nudged after
  each commit and every CHAT_SEARCH_INDEX_SECS anyway;
- `manage.py search_index` (once, `--follow`, `--prune`, `--rebuild`).
Searches never trust the index alone: deleted messages are filtered at query time too.
"""
import logging

import gevent
from django.db import connection, transaction
from gevent.event import Event

from chat.models import Message, Room, RoomEvent
from chat.protocol import ProtocolError
from chat.search.backends import backend

log = logging.getLogger(__name__)

BATCH = 200  # stream items per catch_up transaction: short on SQLite, where it holds the one writer
ROOMS_PER_PASS = 100
NUDGE_COALESCE_SECS = 0.1  # commits within this time of a nudge are indexed together
CHANGES = ("edit", "delete")

PENDING_SQL = """
SELECT r.id, r.last_seq FROM chat_room r LEFT JOIN chat_search_roomcursor c ON c.room_id = r.id
WHERE r.last_seq > COALESCE(c.seq, 0) {names} ORDER BY r.id LIMIT %s
"""


def _pending(cursor, room_names):
    names, params = "", []
    if room_names:
        names = "AND r.name IN (" + ", ".join(["%s"] * len(room_names)) + ")"
        params = list(room_names)
    cursor.execute(PENDING_SQL.format(names=names), [*params, ROOMS_PER_PASS])
    return cursor.fetchall()


def _cut(rows, limit):
    """The first `limit` (seq, ...) rows and, when more were read, the seq of the last one kept."""
    return (rows[:limit], rows[limit - 1][0]) if len(rows) > limit else (rows, None)


def _room_pass(index, cursor, room_id, last_seq, budget):
    """Index one room from its cursor towards `last_seq`, at most `budget` items; returns
    how many stream items were handled (0 when another node holds the room)."""
    indexed = index.claim_room(cursor, room_id)
    if indexed is None or indexed >= last_seq:
        return 0
    messages, cut_m = _cut(list(Message.objects.filter(room_id=room_id, seq__gt=indexed, seq__lte=last_seq)
                                .order_by("seq").values_list("seq", "id")[:budget + 1]), budget)
    events, cut_e = _cut(list(RoomEvent.objects.filter(room_id=room_id, seq__gt=indexed, seq__lte=last_seq,
                                                       kind__in=CHANGES)
                              .order_by("seq").values_list("seq", "message_seq")[:budget + 1]), budget)
    covered = min([cut for cut in (cut_m, cut_e) if cut is not None], default=last_seq)
    ids = {pk for seq, pk in messages if seq <= covered}
    targets = {message_seq for seq, message_seq in events if seq <= covered and message_seq is not None}
    if targets:
        ids |= set(Message.objects.filter(room_id=room_id, seq__in=targets).values_list("id", flat=True))
    index.refresh(ids)
    cursor.execute("UPDATE chat_search_roomcursor SET seq = %s WHERE room_id = %s AND seq < %s",
                   [covered, room_id, covered])
    return max(1, len(ids))


def catch_up(limit=BATCH, rooms=None):
    """Bring the index in step for up to `limit` stream items; returns how many were handled
    (less than `limit`: caught up, as far as this call could see). `rooms`: only these room
    names (a nudge after their commits); None: every room behind."""
    index = backend()
    done = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for room_id, last_seq in _pending(cursor, rooms):
            if done >= limit:
                break
            done += _room_pass(index, cursor, room_id, last_seq, limit - done)
    return done


def prune(limit=10_000):
    """Remove index rows of messages that no longer exist (the retention job deletes rows
    without telling anyone); returns how many went. Searches never show them meanwhile."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(backend().prune_sql(), [limit])
        return cursor.rowcount


def reset():
    """Forget the whole index (cursors too): the next catch-ups rebuild it from the
    messages (`manage.py search_index --rebuild`, e.g. after changing CHAT_SEARCH_CONFIG)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(backend().reset_sql())
        cursor.execute("DELETE FROM chat_search_roomcursor")


def catch_up_all(limit=BATCH):
    """catch_up until caught up; returns the items handled (management command, tests)."""
    total = 0
    while True:
        done = catch_up(limit)
        total += done
        if done < limit:
            return total


class Indexer:
    """The server's indexing greenlet: nudged after commits (with the rooms concerned),
    and a full pass every `period_secs` whatever happens. Owned by chat.server's Runtime."""

    def __init__(self, store, period_secs, limit=BATCH):
        self._store, self._period_secs, self._limit = store, period_secs, limit
        self._due = Event()
        self._rooms = set()  # rooms committed in since the last pass
        self._greenlet = None

    def start(self):
        self._greenlet = gevent.spawn(self._run)

    def stop(self):
        if self._greenlet is not None:
            self._greenlet.kill()

    def nudge(self, rooms):
        self._rooms.update(rooms)
        self._due.set()

    def _run(self):
        while True:
            nudged = self._due.wait(timeout=self._period_secs)
            if nudged:
                gevent.sleep(NUDGE_COALESCE_SECS)
            self._due.clear()
            rooms, self._rooms = (sorted(self._rooms) if nudged else None), set()
            try:
                while self._store.write(catch_up, self._limit, rooms) >= self._limit:
                    gevent.sleep(0)
            except ProtocolError as exc:  # busy or unavailable: the next pass catches up
                log.warning("search indexing skipped: %s", exc.message)
                self._rooms.update(rooms or ())
            except Exception:
                log.exception("search indexing failed")
