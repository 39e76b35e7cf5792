"""Who is online in this process: one name per connection, and the members of each room.

Pure bookkeeping with no I/O. One `Presence` object per server process owns these tables
(see chat.server); every structure is bounded by the number of connections times
CHAT_MAX_ROOMS_PER_CONNECTION.
"""
from collections import defaultdict


class Presence:
    def __init__(self):
        self._name_by_sid = {}
        self._sids_by_name = defaultdict(set)  # an account may be here from several connections
        self._rooms_by_sid = defaultdict(set)
        self._members_by_room = defaultdict(set)

    # -- names ----------------------------------------------------------------------------
    def claim(self, sid, name):
        """Bind `name` to `sid` (the directory decided that it may have it)."""
        self._sids_by_name[name.lower()].add(sid)
        self._name_by_sid[sid] = name

    def name_of(self, sid):
        return self._name_by_sid.get(sid)

    def sids_of(self, name):
        return set(self._sids_by_name.get(name.lower(), ()))

    def is_online(self, name):
        return name.lower() in self._sids_by_name

    def release(self, sid):
        """Forget `sid`; returns (name, rooms it was in)."""
        name = self._name_by_sid.pop(sid, None)
        rooms = self._rooms_by_sid.pop(sid, set())
        for room in rooms:
            self._discard_member(room, sid)
        if name is not None:
            sids = self._sids_by_name.get(name.lower(), set())
            sids.discard(sid)
            if not sids:
                self._sids_by_name.pop(name.lower(), None)
        return name, sorted(rooms)

    # -- rooms ----------------------------------------------------------------------------
    def join(self, sid, room):
        """Add `sid` to `room`; True if it was not a member yet."""
        if room in self._rooms_by_sid[sid]:
            return False
        self._rooms_by_sid[sid].add(room)
        self._members_by_room[room].add(sid)
        return True

    def leave(self, sid, room):
        """Remove `sid` from `room`; True if it was a member."""
        rooms = self._rooms_by_sid.get(sid)
        if not rooms or room not in rooms:
            return False
        rooms.discard(room)
        self._discard_member(room, sid)
        return True

    def _discard_member(self, room, sid):
        members = self._members_by_room.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._members_by_room[room]

    def is_member(self, sid, room):
        return room in self._rooms_by_sid.get(sid, ())

    def rooms_of(self, sid):
        return set(self._rooms_by_sid.get(sid, ()))

    def count(self, room):
        return len(self._members_by_room.get(room, ()))

    def members(self, room, limit):
        names = sorted({self._name_by_sid[sid] for sid in self._members_by_room.get(room, ())})
        return names[:limit]

    def sids_in(self, room):
        return set(self._members_by_room.get(room, ()))

    def room_counts(self):
        return {room: len(sids) for room, sids in self._members_by_room.items()}

    def connection_count(self):
        return len(self._name_by_sid)
