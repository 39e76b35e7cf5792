"""What the chat does: connect, join, leave, post, room events (edits, deletions,
reactions, topic, membership), history, typing, rooms, bans, private rooms and direct
messages, read markers and mentions.

The only package that decides what clients are told. Room messages and room events are
broadcast only after their commit: the store calls `messages_committed` once they are
durable, and the bus carries them to every node's room feed. Presence and typing go out
through the Socket.IO server (and so through the bus in a cluster).

Who is online is kept twice, on purpose: `presence` (this process's connections, for fast
membership checks) and `directory` (the cluster-wide truth in the database: unique names,
member lists and counts, reaping of dead nodes).

The service is one object, `ChatService`, assembled from one part per concern:
`nodes` (this node in the directory), `connections`, `rooms`, `messages`, `bans` and
`conversations` (accounts' rooms, DMs, read markers) and `search` (message search);
`base` holds the value types. The parts share the state set up in `ChatService.__init__`.
"""
import logging

from chat import protocol
from chat.protocol import ProtocolError
from chat.services.bans import Bans
from chat.services.base import Connection, Limits, client_address
from chat.services.connections import Connections
from chat.services.conversations import Conversations
from chat.services.messages import Messages
from chat.services.nodes import NodeMembership
from chat.services.rooms import Rooms
from chat.services.search import Searching

__all__ = ["ChatService", "Connection", "Limits", "client_address"]

log = logging.getLogger("chat.services")  # one logger for the whole service layer


class ChatService(NodeMembership, Connections, Rooms, Messages, Bans, Conversations, Searching):
    """One per process: chat.events calls it, chat.server builds it."""

    def __init__(self, sio, bus, presence, store, feed, limits, node_id, limiter, indexer=None):
        self.sio, self.bus, self.presence = sio, bus, presence
        self.indexer = indexer  # chat.search.indexer.Indexer when this node indexes (CHAT_SEARCH_INDEXER)
        self.store, self.feed, self.limits, self.node_id = store, feed, limits, node_id
        self.limiter = limiter
        self._connections = {}  # sid -> Connection, owned here, cleared on disconnect
        self._per_address = {}  # client address -> open connections (CHAT_MAX_CONNECTIONS_PER_IP)
        self._unreleased = {}  # sid -> name whose disconnect the directory has not recorded yet
        self._counts_due = {}  # room -> member count waiting for its throttled announcement
        self._reregistering = False  # reaped while alive; cleared once every connection is back
        self._large_rooms = {}  # room -> cluster-wide count, while over presence_detail_max
        bus.on_control(self._on_control)

    def _on_control(self, message):
        """A bus control message, run on every node with members in its room."""
        handler = {"ban": self._on_ban, "eject": self._on_eject}.get(message.get("kind"))
        if handler is not None:
            handler(message)

    def _name(self, sid):
        name = self.presence.name_of(sid)
        if name is None:
            raise ProtocolError(protocol.NOT_MEMBER, "connection is not signed in")
        return name

    def _who(self, sid):
        """The identity of a signed-in connection (refused like `_name` once it is gone)."""
        conn = self._connections.get(sid)
        if conn is None:
            raise ProtocolError(protocol.NOT_MEMBER, "connection is not signed in")
        return conn.who

    def _limit(self, sid, name, event):
        """Rate-limit one request; a connection that keeps flooding is disconnected."""
        if self.limiter.check(sid, name, event):
            log.warning("flooding node=%s sid=%s name=%s event=%s: disconnected", self.node_id, sid, name, event)
            self._kick(sid, "flooding", f"too many {event} requests")
            raise ProtocolError(protocol.RATE_LIMITED, "flooding; disconnected")

    def _require_member(self, sid, room):
        if not self.presence.is_member(sid, room):
            raise ProtocolError(protocol.NOT_MEMBER, f"join {room} first")
