"""This node in the cluster's directory: registering at start, the heartbeat that reaps
silent nodes (and re-registers this one if it was reaped while alive), and a clean stop."""
import logging

import gevent

from chat import directory, protocol
from chat.protocol import ProtocolError

log = logging.getLogger("chat.services")  # one logger for the whole service layer


class NodeMembership:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def register_node(self, reap_others):
        """Called once at start; a single node also clears what earlier processes left."""
        try:
            self._announce_all(self.store.write(directory.register_node, self.node_id))
            if reap_others:
                self._announce_all(self.store.write(directory.reap, 0, self.node_id))
        except ProtocolError as exc:  # keep_alive registers the node once the database answers
            log.warning("node %s not registered yet: %s", self.node_id, exc.message)

    def keep_alive(self, interval_secs, timeout_secs):
        """Heartbeat this node and reap nodes that stopped heartbeating, forever. No error
        stops it: a node that stops heartbeating is reaped by the others while still alive."""
        while True:
            gevent.sleep(interval_secs)
            try:
                self._beat(timeout_secs)
            except ProtocolError as exc:
                log.warning("node heartbeat failed: %s", exc.message)
            except Exception:
                log.exception("node heartbeat failed")

    def _beat(self, timeout_secs):
        if not self.store.write(directory.heartbeat, self.node_id):
            self._reregistering = True
        if self._reregistering:
            self._reregister()
            self._reregistering = False  # only once every connection is back: else the next beat retries
        for sid, name in list(self._unreleased.items()):
            del self._unreleased[sid]
            self._release(sid, name)
        self._announce_all(self.store.write(directory.reap, timeout_secs, self.node_id))

    def _reregister(self):
        """We were reaped while alive (a stalled database?): put our connections back. Safe to
        repeat: a claim or membership this node already holds again is kept."""
        log.warning("node %s was reaped while alive; registering its connections again", self.node_id)
        self.store.write(directory.register_node, self.node_id)
        for sid, who in [(sid, conn.who) for sid, conn in self._connections.items()]:
            try:
                self.store.write(directory.claim, self.node_id, sid, who.name, False, who.user_id, who.key)
            except ProtocolError as exc:
                if exc.code != protocol.NAME_TAKEN:
                    raise
                self._kick(sid, "name_taken", "your name was taken while this server was unreachable")
                continue
            for room in self.presence.rooms_of(sid):
                count = self.store.write(directory.enter, self.node_id, sid, who.name, room)
                self._announce(room, who.name, "join", count)

    def unregister_node(self):
        """A clean stop: take this node and what is left of its connections out of the directory."""
        try:
            self._announce_all(self.store.write(directory.unregister_node, self.node_id))
        except ProtocolError as exc:  # the others reap it after CHAT_NODE_TIMEOUT_SECS
            log.warning("node %s not unregistered: %s", self.node_id, exc.message)
