"""Messages and what surrounds them: send (committed by the store, broadcast after the
commit), the changes to a room that are room events (edits, deletions, reactions, topic:
chat.roomlog), history pages, typing and the room list."""
from chat import directory, persistence, roomlog
from chat.protocol import ok


class Messages:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def send(self, sid, request):
        who = self._who(sid)
        self._require_member(sid, request.room)
        self._limit(sid, who.name, "send")
        draft = persistence.Draft(request.room, who.name, who.user_id, request.text, request.nonce, request.reply_to,
                                  who.key)
        posted = self.store.post(draft)
        if posted.notify:
            self.tell_mentioned(posted.message, posted.notify)
        return ok(message=posted.message)

    def change(self, sid, change):
        """Every room event kind (chat.roomlog.KINDS): the member checks here, the kind's
        permission and apply rule in its commit; the event goes out like messages do."""
        who = self._who(sid)
        kind = roomlog.KINDS[change.kind]
        if kind.needs_join:
            self._require_member(sid, change.room)
        self._limit(sid, who.name, kind.rule)
        event = self.store.commit_event(roomlog.commit, change, roomlog.Actor.of(who))
        if event is not None and kind.membership:
            self.membership_changed(event)
        if event is not None and event.notify:
            self.tell_mentioned(event, event.notify)
        return ok(event=event)

    def messages_committed(self, messages):
        """Called by the store's delivery greenlet after each commit, in commit order:
        messages and room events alike."""
        self.bus.publish_room_messages(messages)
        self.index_committed(messages)

    def history(self, sid, request):
        who = self._who(sid)
        self._limit(sid, who.name, "history")
        if self._check_readable(who, request.room).room is None:
            return ok(messages=[])
        if request.around is not None:
            rows = self.store.read(persistence.messages_around, request.room, request.around, request.limit, who)
            return ok(messages=rows, around=request.around)
        rows = self.store.read(persistence.messages_before, request.room, request.before, request.limit, who)
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

    def rooms(self, sid, query=""):
        """The public room list: most recently active first, capped, searchable by name."""
        self._limit(sid, self._name(sid), "rooms")
        return ok(rooms=self.store.read(directory.rooms_with_counts, self.limits.rooms_listed, query))
