"""What the chat does: connect, join, leave, post, history, typing, rooms, deletions.

The only module that decides what clients are told. Room messages are broadcast only after
their commit: the store's writer calls `messages_committed` once a batch is durable, and the
bus carries them to every node's room feed. Presence, typing and deletion notices go out
through the Socket.IO server (and so through the bus in a cluster).

Who is online is kept twice, on purpose: `presence` (this process's connections, for fast
membership checks) and `directory` (the cluster-wide truth in the database: unique names,
member lists and counts, reaping of dead nodes).
"""
import logging
from dataclasses import dataclass

import gevent
from django.conf import settings

from chat import directory, identity, moderation, persistence, protocol
from chat.protocol import ProtocolError, ok

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    history: int
    since_max: int
    page_max: int
    max_message: int
    rooms_per_connection: int
    members_listed: int
    rooms_listed: int
    token_max_age_secs: int
    presence_detail_max: int
    presence_interval_secs: float
    max_connections_per_ip: int  # 0: unlimited


@dataclass(frozen=True)
class Connection:
    """What this node knows of one of its connections."""

    who: identity.Identity
    address: str


class ChatService:
    def __init__(self, sio, bus, presence, store, feed, limits, node_id, limiter):
        self.sio, self.bus, self.presence = sio, bus, presence
        self.store, self.feed, self.limits, self.node_id = store, feed, limits, node_id
        self.limiter = limiter
        self._connections = {}  # sid -> Connection, owned here, cleared on disconnect
        self._per_address = {}  # client address -> open connections (CHAT_MAX_CONNECTIONS_PER_IP)
        self._unreleased = {}  # sid -> name whose disconnect the directory has not recorded yet
        self._counts_due = {}  # room -> member count waiting for its throttled announcement
        self._reregistering = False  # reaped while alive; cleared once every connection is back
        self._large_rooms = {}  # room -> cluster-wide count, while over presence_detail_max
        bus.on_control(self._on_control)

    # -- this node in the cluster -------------------------------------------------------------
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
                self.store.write(directory.claim, self.node_id, sid, who.name, False)
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

    # -- connections ------------------------------------------------------------------------
    def connect(self, sid, environ, auth):
        """Decide who `sid` is; raises ProtocolError to refuse. Emits `welcome`."""
        address = client_address(environ)
        self._take_address_slot(address)  # before any wait: simultaneous connects cannot all pass
        try:
            self._sign_in(sid, environ, auth, address)
        except BaseException:
            self._free_address_slot(address)
            raise

    def _take_address_slot(self, address):
        limit = self.limits.max_connections_per_ip
        if limit and self._per_address.get(address, 0) >= limit:
            raise ProtocolError(protocol.TOO_MANY_CONNECTIONS, f"at most {limit} connections per address")
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def _free_address_slot(self, address):
        left = self._per_address.pop(address, 0) - 1
        if left > 0:
            self._per_address[address] = left

    def _sign_in(self, sid, environ, auth, address):
        name, token = protocol.parse_auth(auth)
        who, takeover = self._identify(environ, name, token)
        previous = self.store.write(directory.claim, self.node_id, sid, who.name, takeover)
        if self._transport_gone(sid):  # it left while we waited: leave no ghost behind
            self._abandon_claim(sid, who.name, previous)
            raise ProtocolError(protocol.INTERNAL, "connection closed while connecting")
        self.presence.claim(sid, who.name, takeover=True)
        self._connections[sid] = Connection(who, address)
        if previous is not None and previous.sid != sid:
            self._kick(previous.sid, "replaced", "you connected from somewhere else")
        log.info("connect node=%s sid=%s addr=%s name=%s", self.node_id, sid, address, who.name)
        self.sio.emit("welcome", {"name": who.name, "token": identity.make_token(who)}, to=sid)

    def _transport_gone(self, sid):
        """True when the Engine.IO session under a connecting `sid` has closed. python-socketio
        runs no disconnect handler for a connection that has not finished connecting, so
        the connect itself must notice, or the name stays claimed by nobody."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
        return socket is None or socket.closed or socket.closing

    def _abandon_claim(self, sid, name, previous):
        """A connect that ended while claiming: a takeover hands the name back to the live
        connection it would have replaced; otherwise the name is released. A replaced
        connection of this node that has itself gone meanwhile gets nothing back: its own
        release ran while the row was ours and found nothing to remove."""
        if previous is None or previous.sid == sid or self._gone_from_here(previous):
            self._release(sid, name)
            return
        try:
            self.store.write(directory.hand_back, sid, previous)
        except ProtocolError as exc:
            log.warning("could not hand %s back to %s: %s", name, previous.sid, exc.message)

    def _gone_from_here(self, holder):
        return holder.node_id == self.node_id and holder.sid not in self._connections

    def _identify(self, environ, name, token):
        """Token first, then a logged-in Django user, then a guest name. A guest, with or
        without a token, never gets a name an account has (see chat.identity)."""
        if token:
            who = identity.read_token(token, self.limits.token_max_age_secs)
            if who.user_id is not None:
                return self.store.read(identity.verify_account, who), True
            self.store.read(identity.refuse_reserved, who.name)
            self._refuse_replacing_an_account(who.name)
            return who, True
        session_key = identity.session_key_from_environ(environ)
        user = self.store.read(identity.user_for_session, session_key) if session_key else None
        if user is not None:
            protocol.account_name(user.get_username())
            return identity.account(user), True
        if name is None:
            raise ProtocolError(protocol.INVALID_NAME, "connect with auth {name} or {token}")
        self.store.read(identity.refuse_reserved, name)
        return identity.guest(name), False

    def _refuse_replacing_an_account(self, name):
        """An account renamed while online keeps its old name until it reconnects; a guest
        token for that name must not take it over. (Checked on this node, where the holder's
        account is known; elsewhere the reservation check is what protects accounts.)"""
        holder = self._connections.get(self.presence.sid_of(name))
        if holder is not None and holder.who.user_id is not None:
            raise ProtocolError(protocol.NAME_TAKEN, f"{name} is online with an account")

    def _kick(self, sid, code, message):
        """Tell a connection (on any node) why, then drop it."""
        self.sio.emit("kicked", {"code": code, "message": message}, to=sid)
        self.sio.disconnect(sid)

    def disconnect(self, sid, reason=None):
        name, rooms = self.presence.release(sid)
        conn = self._connections.pop(sid, None)
        self.limiter.forget(sid)
        if conn is not None:
            self._free_address_slot(conn.address)
        if name is None:
            return
        for room in rooms:
            self.feed.release(room, self.presence.count(room) > 0)
        log.info("disconnect node=%s sid=%s addr=%s name=%s reason=%s", self.node_id, sid,
                 conn.address if conn else "?", name, reason)
        # python-engineio may run this handler inside whoever wrote to the socket (a room
        # broadcast, the store's delivery greenlet): the database work waits in its own greenlet
        gevent.spawn(self._release, sid, name)

    def _release(self, sid, name):
        try:
            self._announce_all(self.store.write(directory.release, sid))
        except ProtocolError as exc:  # keep_alive retries, so the name cannot stay taken
            log.warning("could not record disconnect of %s yet: %s", name, exc.message)
            self._unreleased[sid] = name

    # -- rooms ------------------------------------------------------------------------------
    def join(self, sid, request):
        room, name = request.room, self._name(sid)
        if request.since is None or not self.limiter.continues(sid, ("join", room, request.since)):
            self._limit(sid, name, "join")  # the next page of a truncated catch-up is free
        already = self.presence.is_member(sid, room)
        if not already and len(self.presence.rooms_of(sid)) >= self.limits.rooms_per_connection:
            raise ProtocolError(protocol.TOO_MANY_ROOMS,
                                f"at most {self.limits.rooms_per_connection} rooms per connection")
        if not already and self.store.read(moderation.is_banned, room, name):
            raise ProtocolError(protocol.BANNED, f"you are banned from {room}")
        if not already and not self.store.read(persistence.room_exists, room):
            self._create_room(sid, name, room)
        if not already:  # the directory first: after entering, nothing may wait before the ack
            self.store.write(directory.enter, self.node_id, sid, name, room)
        try:
            count, members = self.store.read(directory.roster, room, self.limits.members_listed)
            snap = self.feed.admit(room, request.since, self.limits.history, self.limits.since_max,
                                   enter=lambda: self._enter_here(sid, room))
        except ProtocolError:
            if not already:
                self._forget_membership(sid, room)
            raise
        finally:
            self.feed.release(room, self.presence.count(room) > 0)
        if snap.truncated:
            self.limiter.allow_continuation(sid, ("join", room, snap.messages[-1]["id"]))
        if snap.truncated and not already:
            self._forget_membership(sid, room)  # not a member until the catch-up completes
            count, members = count - 1, [m for m in members if m != name]
        elif not already:
            self._announce(room, name, "join", count)
        # From the enter() inside admit to this return nothing yields, so the ack is queued
        # before any live message of the room: history first, then live, on the wire too.
        reply = ok(room=room, history=snap.messages, members=members, count=count)
        if snap.truncated:
            reply["truncated"] = True
        return reply

    def _create_room(self, sid, name, room):
        """Joining creates a room, within the name's and the address's quotas (CHAT_ROOM_CREATES)."""
        conn = self._connections.get(sid)
        address = conn.address if conn else "?"
        self.limiter.check_room_create(name, address)
        if self.store.write(persistence.create_room, room):  # not when another join made it first
            self.limiter.charge_room_create(name, address)

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

    # -- messages ---------------------------------------------------------------------------
    def send(self, sid, request):
        who = self._connections[sid].who if sid in self._connections else None
        self._require_member(sid, request.room)
        self._limit(sid, who.name, "send")
        draft = persistence.Draft(request.room, who.name, who.user_id, request.text, request.nonce)
        return ok(message=self.store.post(draft).message)

    def messages_committed(self, messages):
        """Called by the store's writer after each commit, in id order."""
        self.bus.publish_room_messages(messages)

    def history(self, sid, request):
        self._limit(sid, self._name(sid), "history")
        rows = self.store.read(persistence.messages_before, request.room, request.before, request.limit)
        return ok(messages=rows)

    def typing(self, sid, room, active):
        name = self._name(sid)
        self._require_member(sid, room)
        self._limit(sid, name, "typing")
        if self._room_size(room) > self.limits.presence_detail_max:
            return  # each typing event would cost a frame per member: large rooms show none
        self.sio.emit("typing", {"room": room, "user": name, "active": active}, room=room, skip_sid=sid)

    def _room_size(self, room):
        """Members of `room`: this node's, or the cluster's count when this node last saw it large."""
        return max(self.presence.count(room), self._large_rooms.get(room, 0))

    def rooms(self, sid):
        self._limit(sid, self._name(sid), "rooms")
        return ok(rooms=self.store.read(directory.rooms_with_counts, self.limits.rooms_listed))

    def message_deleted(self, room, message_id):
        """Called after a deletion commits, possibly inside a store worker: emit from a greenlet of its own."""
        gevent.spawn(self.sio.emit, "message_deleted", {"room": room, "id": message_id}, room=room)

    # -- moderation -------------------------------------------------------------------------
    def ban(self, sid, room, name, reason=""):
        """Staff only: bar `name` from `room` and remove them now, on whichever node they are."""
        moderator = self._staff(sid)
        self.store.write(moderation.ban, room, name, moderator.user_id, reason)  # chat.signals enforces it
        log.info("ban node=%s room=%s name=%s by=%s", self.node_id, room, name, moderator.name)
        return ok()

    def unban(self, sid, room, name):
        self._staff(sid)
        return ok(removed=self.store.write(moderation.unban, room, name))

    def enforce_ban(self, room, name):
        """Called after a ban is committed (here or from the admin), possibly inside a store
        worker: every node acts on it, from a greenlet of its own."""
        gevent.spawn(self.bus.publish_control, {"kind": "ban", "room": room, "name": name})

    def _on_control(self, message):
        if message.get("kind") != "ban":
            return
        room, sid = message["room"], self.presence.sid_of(message["name"])
        if sid is None or not self.presence.is_member(sid, room):
            return
        name = self.presence.name_of(sid)
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
        if conn is None or not self.store.read(moderation.is_staff, conn.who.user_id):
            raise ProtocolError(protocol.FORBIDDEN, "only staff may do this")
        return conn.who

    # -- helpers ----------------------------------------------------------------------------
    def _name(self, sid):
        name = self.presence.name_of(sid)
        if name is None:
            raise ProtocolError(protocol.NOT_MEMBER, "connection is not signed in")
        return name

    def _limit(self, sid, name, event):
        """Rate-limit one request; a connection that keeps flooding is disconnected."""
        if self.limiter.check(sid, name, event):
            log.warning("flooding node=%s sid=%s name=%s event=%s: disconnected", self.node_id, sid, name, event)
            self._kick(sid, "flooding", f"too many {event} requests")
            raise ProtocolError(protocol.RATE_LIMITED, "flooding; disconnected")

    def _require_member(self, sid, room):
        if not self.presence.is_member(sid, room):
            raise ProtocolError(protocol.NOT_MEMBER, f"join {room} first")


def client_address(environ, trusted_proxies=None):
    """The client's address; behind trusted proxies, the last untrusted hop of X-Forwarded-For."""
    trusted = settings.CHAT_TRUSTED_PROXIES if trusted_proxies is None else trusted_proxies
    address = environ.get("REMOTE_ADDR", "?")
    if address not in trusted:
        return address
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else address
