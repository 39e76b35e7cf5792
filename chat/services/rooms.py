"""Rooms: join (with its catch-up from `since`), leave, room creation within quotas, and the
presence announcements that follow membership changes."""
import logging

import gevent

from chat import directory, members, permissions, persistence, protocol, roomlog
from chat.models import OWNER
from chat.protocol import ProtocolError, ok

log = logging.getLogger("chat.services")  # one logger for the whole service layer


class Rooms:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def join(self, sid, request):
        who = self._who(sid)
        room, name = request.room, who.name
        if request.since is None or not self.limiter.continues(sid, ("join", room, request.since)):
            self._limit(sid, name, "join")  # the next page of a truncated catch-up is free
        already = self.presence.is_member(sid, room)
        if not already and len(self.presence.rooms_of(sid)) >= self.limits.rooms_per_connection:
            raise ProtocolError(protocol.TOO_MANY_ROOMS,
                                f"at most {self.limits.rooms_per_connection} rooms per connection")
        if not already:
            self._open(sid, who, room)
        if not already:  # the directory first: after entering, nothing may wait before the ack
            self.store.write(directory.enter, self.node_id, sid, name, room)
        try:
            count, listed = self.store.read(directory.roster, room, self.limits.members_listed)
            snap = self.feed.admit(room, request.since, self.limits.history, self.limits.since_max,
                                   enter=lambda: self._enter_here(sid, room), viewer=who)
        except ProtocolError:
            if not already:
                self._forget_membership(sid, room)
            raise
        finally:
            self.feed.release(room, self.presence.count(room) > 0)
        if snap.truncated:
            self.limiter.allow_continuation(sid, ("join", room, snap.next))
            if snap.messages and snap.messages[-1]["id"] != snap.next:  # clients that resume from the last message
                self.limiter.allow_continuation(sid, ("join", room, snap.messages[-1]["id"]))
        if snap.truncated and not already:
            self._forget_membership(sid, room)  # not a member until the catch-up completes
            count, listed = count - 1, [m for m in listed if m != name]
        elif not already:
            self._announce(room, name, "join", count)
        # From the enter() inside admit to this return nothing yields, so the ack is queued
        # before any live message of the room: history first, then live, on the wire too.
        reply = ok(room=room, history=snap.messages, events=list(snap.events), members=listed, count=count,
                   topic=snap.topic, kind=snap.kind, archived=snap.archived)
        if snap.truncated:
            reply["truncated"], reply["next"] = True, snap.next
        if who.user_id is not None:  # the account's membership: kind, role, read marker, unread
            reply["member"] = self.store.read(members.entry, room, who.user_id)
        return reply

    def _open(self, sid, who, room):
        """Before joining: chat.permissions.room_access (private rooms, bans); a free name
        becomes a public room; an account joining a public room becomes a member of it."""
        access = self.store.read(permissions.room_access, room, who.name, who.user_id, who.key)
        created = access.room is None and self._create_room(sid, who.name, room)
        if who.user_id is not None and access.member is None:
            change = roomlog.Change("join", room, role=OWNER if created else None)
            event = self.store.commit_event(roomlog.commit, change, roomlog.Actor.of(who))
            if event is not None:
                self.membership_changed(event)

    def _create_room(self, sid, name, room):
        """Joining creates a room, within the name's and the address's quotas (CHAT_ROOM_CREATES)."""
        conn = self._connections.get(sid)
        address = conn.address if conn else "?"
        self.limiter.check_room_create(name, address)
        if self.store.write(persistence.create_room, room):  # not when another join made it first
            self.limiter.charge_room_create(name, address)
            return True
        return False

    def _forget_membership(self, sid, room):
        """Undo a join that did not complete (before any announcement was made)."""
        self._leave_here(sid, room)
        self._quietly(directory.leave, sid, room)

    def _quietly(self, fn, *args):
        try:
            self.store.write(fn, *args)
        except ProtocolError as exc:
            log.warning("%s%s not recorded: %s", fn.__name__, args, exc.message)

    def _enter_here(self, sid, room):
        if sid in self._connections and self.presence.join(sid, room):
            self.sio.enter_room(sid, room)
        elif sid not in self._connections:  # disconnected while joining: no ghost member
            gevent.spawn(self._quietly, directory.leave, sid, room)

    def leave(self, sid, room):
        name = self._name(sid)
        if self._leave_here(sid, room):
            self._announce(room, name, "leave", self.store.write(directory.leave, sid, room))
        return ok()

    def _leave_here(self, sid, room):
        if not self.presence.leave(sid, room):
            return False
        self.sio.leave_room(sid, room)
        self.feed.release(room, self.presence.count(room) > 0)
        return True

    def _announce(self, room, name, action, count):
        """Tell the room. Past `presence_detail_max` members, per-user events would cost
        O(members) frames per join (O(n^2) for a crowd arriving), so large rooms get one
        `{action: "count"}` event per `presence_interval_secs` instead."""
        if count <= self.limits.presence_detail_max:
            self._large_rooms.pop(room, None)
            self.sio.emit("presence", {"room": room, "user": name, "action": action, "count": count}, room=room)
            return
        self._large_rooms[room] = count  # typing is not relayed there (see `typing`)
        pending = room in self._counts_due
        self._counts_due[room] = count
        if not pending:
            gevent.spawn_later(self.limits.presence_interval_secs, self._announce_count, room)

    def _announce_count(self, room):
        count = self._counts_due.pop(room, None)
        if count is not None:
            self.sio.emit("presence", {"room": room, "user": None, "action": "count", "count": count}, room=room)

    def _announce_all(self, left):
        for room, name, count in left:
            self._announce(room, name, "leave", count)
