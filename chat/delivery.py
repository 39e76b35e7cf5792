"""Ordered, exactly-once delivery of a room's stream (messages and room events) to this
process's members.

Every committed item reaches `RoomFeed.accept` (from this node's writer or, in a cluster,
from the bus) carrying its number in the room's sequence (a message's id, an event's seq;
chat.roomlog.number). "id" below means that number. For each room with local members
the feed remembers the highest id delivered here and:
  - delivers the next id at once;
  - drops ids already delivered (the bus or a recovery may repeat one);
  - holds ids that arrive early (at most CHAT_FEED_BUFFER per room; past that only the
    highest id seen is kept) and fetches the gap from the database, then delivers in order.
`admit` makes a joiner a member at a point that splits the room's stream exactly: history
covers every id up to the delivered mark, live delivery everything after it.

State exists only for rooms with members on this node, so it is bounded by connections
times CHAT_MAX_ROOMS_PER_CONNECTION.
"""
import dataclasses
import logging

import gevent

from chat import persistence
from chat.protocol import ProtocolError
from chat.roomlog import number

log = logging.getLogger(__name__)

FILL_RETRY_SECS = 1.0


class _Track:
    __slots__ = ("delivered", "early", "highest_seen", "filling", "joining")

    def __init__(self):
        self.delivered = None  # None until the first joiner has read the room's last id
        self.early = {}  # id -> message, held until the gap before it is filled
        self.highest_seen = 0
        self.filling = False
        self.joining = 0


class RoomFeed:
    def __init__(self, store, deliver_local, buffer_limit, page_limit, metrics=None):
        self._store = store
        self._deliver_local = deliver_local  # (room, message) -> emit to local members only
        self._buffer_limit = buffer_limit
        self._page_limit = page_limit
        self._metrics = metrics
        self._tracks = {}

    def tracked_rooms(self):
        return list(self._tracks)

    def delivered(self, room):
        track = self._tracks.get(room)
        return None if track is None else track.delivered

    # -- the stream -------------------------------------------------------------------------
    def accept(self, room, message):
        track = self._tracks.get(room)
        if track is None:
            return  # nobody here is in that room
        seq = number(message)
        if track.delivered is not None and seq <= track.delivered:
            return
        track.highest_seen = max(track.highest_seen, seq)
        if track.delivered is not None and not track.filling and seq == track.delivered + 1:
            self._send(room, track, message)
            self._drain(room, track)
            return
        if len(track.early) < self._buffer_limit:
            track.early[seq] = message
        self._start_fill(room, track)

    def notice(self, room, last_id):
        """A hint that `room` has reached `last_id` (a periodic check, a relinked bus)."""
        track = self._tracks.get(room)
        if track is None or track.delivered is None or last_id <= track.delivered:
            return
        track.highest_seen = max(track.highest_seen, last_id)
        self._start_fill(room, track)

    def check(self, chunk=500):
        """Compare every tracked room with the database and fetch what this node missed.

        Run periodically and whenever the bus link is re-made: it catches messages lost on
        a dead link or a full queue even in a room that has gone quiet since.
        """
        rooms = [room for room, track in self._tracks.items() if track.delivered is not None]
        for start in range(0, len(rooms), chunk):
            for room, last_id in self._store.read(persistence.last_ids, rooms[start:start + chunk]).items():
                self.notice(room, last_id)

    def run_checks(self, interval_secs):
        while True:
            gevent.sleep(interval_secs)
            try:
                self.check()
            except ProtocolError as exc:
                log.warning("delivery check skipped: %s", exc.message)
            except Exception:  # nothing may stop the checks for good
                log.exception("delivery check failed")

    def _send(self, room, track, message):
        track.delivered = number(message)
        self._deliver_local(room, message)

    def _drain(self, room, track):
        """Deliver held messages that are next in line; start a fill if a gap remains."""
        while track.early:
            nxt = track.early.pop(track.delivered + 1, None)
            if nxt is None:
                for seq in [s for s in track.early if s <= track.delivered]:
                    del track.early[seq]
                break
            self._send(room, track, nxt)
        if track.highest_seen > track.delivered:
            self._start_fill(room, track)

    def _start_fill(self, room, track):
        if track.delivered is None or track.filling:
            return
        track.filling = True
        gevent.spawn(self._fill, room, track)

    def _fill(self, room, track):
        """Read the missing ids from the database and deliver them in order.

        The database is the truth. Rows come from it, not from the copies held in `early`,
        and the mark never passes the room's last committed id: an id from the bus that the
        database does not have (a forged or corrupt frame) is dropped, so it cannot make this
        node skip the real messages after it. The track is checked again after every read:
        if the room was released here meanwhile (and perhaps joined afresh, with a history
        that already holds these rows), this fill is stale and stops without sending."""
        try:
            while self._tracks.get(room) is track and track.highest_seen > track.delivered:
                target = track.highest_seen
                try:
                    rows, covered, last_id = self._store.read(persistence.gap_fill, room, track.delivered, target,
                                                              self._page_limit)
                except ProtocolError as exc:
                    log.warning("gap fill for %s waits: %s", room, exc.message)
                    gevent.sleep(FILL_RETRY_SECS)
                    continue
                if self._tracks.get(room) is not track:
                    return
                self._deliver_rows(room, track, rows)
                if covered >= min(target, last_id):
                    # ids up to target missing from the database were deleted: skip them
                    self._skip_to(room, track, target, last_id)
                else:  # a page: what it covers is delivered, its missing ids are deleted ones
                    track.delivered = max(track.delivered, covered)
                self._pop_delivered(track)
                self._drain_in_fill(room, track)
        finally:
            track.filling = False

    def _deliver_rows(self, room, track, rows):
        if self._metrics:
            self._metrics.recovered(len(rows))
        for message in rows:
            seq = number(message)
            if seq > track.delivered:
                track.early.pop(seq, None)
                self._send(room, track, message)

    @staticmethod
    def _skip_to(room, track, target, last_id):
        """Move the mark past ids the database lacks, but never past its last id. Ids held
        or seen above that, up to `target`, were never committed: forget them."""
        track.delivered = max(track.delivered, min(target, last_id))
        if target <= last_id:
            return
        log.warning("ignored ids %d..%d of %s from the bus: not in the database", last_id + 1, target, room)
        for seq in [s for s in track.early if s <= target]:
            del track.early[seq]
        if track.highest_seen <= target:  # (higher ones arrived during the read: the loop reads again)
            track.highest_seen = track.delivered

    def _drain_in_fill(self, room, track):
        while track.delivered + 1 in track.early:
            self._send(room, track, track.early.pop(track.delivered + 1))

    @staticmethod
    def _pop_delivered(track):
        for seq in [s for s in track.early if s <= track.delivered]:
            del track.early[seq]

    # -- membership -------------------------------------------------------------------------
    def admit(self, room, since, recent, limit, enter, viewer=None):
        """Read the joiner's history and call `enter()` exactly at its end.

        Returns persistence.Snapshot. When truncated (a long `since` gap), `enter` is not
        called: the client asks again with `since` = the snapshot's `next`.
        """
        track = self._tracks.setdefault(room, _Track())
        track.joining += 1
        try:
            return self._admit(room, track, (since, recent, limit, viewer), enter)
        finally:
            track.joining -= 1

    def _admit(self, room, track, query, enter):
        since, recent, limit, viewer = query
        snap = self._store.read(persistence.snapshot, room, since, track.delivered, recent, limit, viewer)
        if track.delivered is None:
            track.delivered = snap.upto
            self._pop_delivered(track)
            self._drain(room, track)
        while not snap.truncated and snap.upto < track.delivered:
            # more was delivered here while we read: read again up to the new mark
            snap = self._store.read(persistence.snapshot, room, since, track.delivered, recent, limit, viewer)
        if snap.truncated:
            return snap
        mark = track.delivered
        messages = [m for m in snap.messages if m["id"] <= mark]
        events = [e for e in snap.events if e["seq"] <= mark]
        enter()  # no yield between the check above and this: the split is exact
        return dataclasses.replace(snap, messages=messages, upto=mark, truncated=False, events=events, next=None)

    def release(self, room, still_members):
        """Forget a room once this node has no members (and no joiner) left in it."""
        track = self._tracks.get(room)
        if track is not None and not still_members and track.joining == 0:
            del self._tracks[room]
