"""Connections: who a socket is (token, session account or guest name), the per-address
cap, name claims and takeovers in the directory, kicks, and the release on disconnect."""
import logging

import gevent
from django.conf import settings

from chat import directory, identity, protocol
from chat.protocol import ProtocolError
from chat.services.base import Connection, account_channel, client_address

log = logging.getLogger("chat.services")  # one logger for the whole service layer


class Connections:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

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
        previous = self.store.write(directory.claim, self.node_id, sid, who.name, takeover, who.user_id,
                                    who.key)
        if self._transport_gone(sid):  # it left while we waited: leave no ghost behind
            self._abandon_claim(sid, who.name, previous)
            raise ProtocolError(protocol.INTERNAL, "connection closed while connecting")
        self.presence.claim(sid, who.name)
        self._connections[sid] = Connection(who, address)
        if who.user_id is not None:  # the account's channel: its read markers, new rooms, mentions
            self.sio.enter_room(sid, account_channel(who.user_id))
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
            if not settings.CHAT_GUESTS:
                raise ProtocolError(protocol.GUESTS_DISABLED, "log in to chat here: guests are not admitted")
            self.store.read(identity.refuse_reserved, who.name)
            self._refuse_replacing_an_account(who.name)
            return who, True
        session_key = identity.session_key_from_environ(environ)
        user = self.store.read(identity.user_for_session, session_key) if session_key else None
        if user is not None:
            protocol.account_name(user.get_username())
            return identity.account(user), True
        if not settings.CHAT_GUESTS:
            raise ProtocolError(protocol.GUESTS_DISABLED, "log in to chat here: guests are not admitted")
        if name is None:
            raise ProtocolError(protocol.INVALID_NAME, "connect with auth {name} or {token}")
        self.store.read(identity.refuse_reserved, name)
        return identity.guest(name), False

    def _refuse_replacing_an_account(self, name):
        """An account renamed while online keeps its old name until it reconnects; a guest
        token for that name must not take it over. (Checked on this node, where the holder's
        account is known; elsewhere the reservation check is what protects accounts.)"""
        holders = [self._connections.get(sid) for sid in self.presence.sids_of(name)]
        if any(holder is not None and holder.who.user_id is not None for holder in holders):
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
