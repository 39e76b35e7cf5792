"""Conversations that know who you are: private rooms, direct messages, an account's room
list, read markers, muting, and what an account's every tab is told.

Each account's connections share a Socket.IO room, its channel (`u:<user id>`, entered at
connect), which the bus carries to every node: `room_added` and `room_removed` when its
memberships change, `read_state` when a read marker or mute changes, `mention` when a
message notifies it. A member removed from a room is ejected from it on every node by a
bus control message, so none of its tabs receives another event of that room.
"""
import logging

import gevent
from django.conf import settings

from chat import members, permissions, protocol, roomlog
from chat.protocol import ProtocolError, ok
from chat.services.base import account_channel

log = logging.getLogger("chat.services")  # one logger for the whole service layer

MENTION_EXCERPT_CHARS = 200


class Conversations:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def create_room(self, sid, request):
        who = self._who(sid)
        self._limit(sid, who.name, "create")
        if request.kind == "public":
            raise ProtocolError(protocol.INVALID_PAYLOAD, "public rooms are created by joining them")
        created = self.store.commit_event(members.create_private, request.room, self._actor(who), roomlog.commit)
        self._tell_added(created.events)
        return ok(room=created.room)

    def open_dm(self, sid, users):
        who = self._who(sid)
        self._limit(sid, who.name, "create")
        opened = self.store.commit_event(members.open_direct, self._actor(who), users, roomlog.commit)
        self._tell_added(opened.events)
        return ok(room=opened.room)

    def my_rooms(self, sid):
        who = self._who(sid)
        self._limit(sid, who.name, "rooms")
        if who.user_id is None:
            return ok(rooms=[])  # guests belong to no room: they keep unread counts in the page
        return ok(rooms=self.store.read(members.my_rooms, who.user_id, settings.CHAT_MY_ROOMS_LISTED))

    def mark_read(self, sid, room, seq):
        who = self._account(sid, "read markers are kept for accounts only")
        self._limit(sid, who.name, "read")
        entry, moved = self.store.write(members.mark_read, room, who.user_id, seq)
        if moved:
            self.sio.emit("read_state", entry, room=account_channel(who.user_id))
        return ok(room=entry)

    def mute(self, sid, room, muted):
        who = self._account(sid, "only accounts can mute rooms")
        self._limit(sid, who.name, "read")
        entry = self.store.write(members.set_muted, room, who.user_id, muted)
        self.sio.emit("read_state", entry, room=account_channel(who.user_id))
        return ok(room=entry)

    # -- after commits ------------------------------------------------------------------------
    def membership_changed(self, event):
        """A committed `member` event: the account's tabs learn of it; a removal ejects it
        from the room on every node."""
        if event.get("action") in ("removed", "left"):
            gevent.spawn(self.bus.publish_control, {"kind": "eject", "room": event["room"], "user_id": event["user_id"]})
            self.sio.emit("room_removed", {"room": event["room"], "action": event["action"], "by": event["by"]},
                          room=account_channel(event["user_id"]))
        else:
            self._tell_added([event])

    def _tell_added(self, events):
        for event in events:
            entry = self.store.read(members.entry, event["room"], event["user_id"])
            if entry is not None:
                self.sio.emit("room_added", entry, room=account_channel(event["user_id"]))

    def tell_mentioned(self, message, notify):
        """`mention` to every tab of each account a message (or an edit) newly notifies."""
        note = {"room": message["room"], "id": message["id"], "user": message.get("user"),
                "text": message.get("text", "")[:MENTION_EXCERPT_CHARS]}
        for user_id in sorted(notify):
            self.sio.emit("mention", note, room=account_channel(user_id))

    def _on_eject(self, message):
        """Control message from the node that committed a removal: drop the account's
        connections here from the room (each leaves the room's Socket.IO room at once)."""
        room = message["room"]
        for sid in self.presence.sids_in(room):
            conn = self._connections.get(sid)
            if conn is not None and conn.who.user_id == message["user_id"]:
                self._leave_here(sid, room)
                gevent.spawn(self._record_ban_leave, sid, room, conn.who.name)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _actor(who):
        return roomlog.Actor.of(who)

    def _account(self, sid, why):
        who = self._who(sid)
        if who.user_id is None:
            raise ProtocolError(protocol.ACCOUNT_REQUIRED, why)
        return who

    def _check_readable(self, who, room):
        """chat.permissions.room_access for a connection (history, members)."""
        return self.store.read(permissions.room_access, room, who.name, who.user_id, who.key)
