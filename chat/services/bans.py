"""Moderation on the socket: staff ban and unban names from rooms; a committed ban is
enforced on every node through a bus control message."""
import logging

import gevent

from chat import directory, identity, moderation, permissions, protocol
from chat.protocol import ProtocolError, ok

log = logging.getLogger("chat.services")  # one logger for the whole service layer


class Bans:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def ban(self, sid, room, name, reason=""):
        """Staff only: bar `name` from `room` and remove them now, on whichever node they are."""
        moderator = self._staff(sid)
        self.store.write(moderation.ban, room, name, moderator.user_id, reason)  # chat.signals enforces it
        log.info("ban node=%s room=%s name=%s by=%s", self.node_id, room, name, moderator.name)
        return ok()

    def unban(self, sid, room, name):
        self._staff(sid)
        return ok(removed=self.store.write(moderation.unban, room, name))

    def enforce_ban(self, room, key):
        """Called after a ban of `key` (chat.identity) is committed (here or from the admin),
        possibly inside a store worker: every node acts on it, from a greenlet of its own."""
        gevent.spawn(self.bus.publish_control, {"kind": "ban", "room": room, "key": key})

    def _on_ban(self, message):
        room, key = message["room"], message.get("key")
        for sid in self.presence.sids_in(room):
            conn = self._connections.get(sid)
            if conn is None or key not in (conn.who.key, identity.legacy_key(conn.who.name)):
                continue
            name = conn.who.name
            self._leave_here(sid, room)
            self.sio.emit("banned", {"room": room, "message": f"you were banned from {room}"}, to=sid)
            gevent.spawn(self._record_ban_leave, sid, room, name)

    def _record_ban_leave(self, sid, room, name):
        try:
            self._announce(room, name, "leave", self.store.write(directory.leave, sid, room))
        except ProtocolError as exc:
            log.warning("ban of %s in %s: directory not updated yet: %s", name, room, exc.message)

    def _staff(self, sid):
        conn = self._connections.get(sid)
        if conn is None or not self.store.read(permissions.is_staff, conn.who.user_id):
            raise ProtocolError(protocol.FORBIDDEN, "only staff may do this")
        return conn.who
