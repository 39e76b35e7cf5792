"""Every query the socket side runs for messages and the room stream, as plain functions over
Django's ORM (room events' writes are chat.roomlog's).

Called only from chat.store's worker greenlets (which own the connections). Writes assign
room sequence numbers inside the committing transaction: `UPDATE room SET last_seq =
last_seq + n ... RETURNING` locks the room row until commit, so within a room numbers are
committed, and so become visible, in increasing order on every node. Rooms of one batch are
locked in name order so two nodes' batches cannot deadlock.

The commit path (`commit_posts`, every `send`) writes SQL through Django's connection
instead of building model instances and querysets: at thousands of messages a second the
ORM's per-row and per-query overhead was the largest cost of a send after the network. Its
INSERT is generated from the Message model (`MessageInsert`), so a new column is never left out.

A room's stream is its live messages and its room events, merged by number (`stream_page`):
deleted messages are gaps, and events that change a deleted message are left out, so a
deleted text is never served again.
"""
from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from chat import digests, identity, mentions
from chat.models import DIRECT, PUBLIC, Message, Reaction, Room, RoomEvent, RoomMember, reply_wire, wire_time
from chat.protocol import INVALID_ROOM, MESSAGE_NOT_FOUND, ROOM_ARCHIVED, ProtocolError
from chat.roomlog import number

REPLY_EXCERPT_CHARS = 100


@dataclass(frozen=True)
class Draft:
    room: str
    author: str
    user_id: int | None
    text: str
    nonce: str | None
    reply_to: int | None = None
    author_key: str | None = None  # chat.identity's key; derived from the account when not given

    def __post_init__(self):
        if self.author_key is None:
            object.__setattr__(self, "author_key", identity.key_of(self.author, self.user_id))


@dataclass(frozen=True)
class Posted:
    message: dict  # wire Message
    created: bool  # False when a repeated nonce returned the stored message
    notify: frozenset = frozenset()  # account ids it mentions (chat.mentions), to tell


@dataclass(frozen=True)
class Snapshot:
    messages: list  # wire Messages, oldest first
    upto: int  # the room's last number when read: items are those <= upto
    truncated: bool
    events: list = ()  # room events after `since`, oldest first
    next: int | None = None  # truncated: the `since` that continues
    topic: str = ""
    kind: str = PUBLIC
    archived: bool = False


def room_exists(name):
    return Room.objects.filter(name=name).exists()


def create_room(name):
    """True when this call created the room (False: it was there, perhaps made a moment ago)."""
    return Room.objects.get_or_create(name=name)[1]


def _stored_by_nonce(cursor, drafts):
    """Messages already stored under the drafts' (room, author key, nonce), keyed so.

    One statement; each term names the room's id, author key and nonce, so the database looks
    each one up in the unique (room, author_key, nonce) index. A retry is rare: usually nothing
    matches and no row is read."""
    keyed = [d for d in drafts if d.nonce]
    if not keyed:
        return {}
    term = f"({SQL.room} = (SELECT id FROM {SQL.rooms} WHERE name = %s) AND {SQL.author} = %s AND {SQL.nonce} = %s)"
    params = [value for d in keyed for value in (d.room, d.author_key, d.nonce)]
    cursor.execute(f"SELECT id FROM {SQL.table} WHERE " + " OR ".join([term] * len(keyed)), params)
    ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return {}
    found = Message.objects.filter(id__in=ids).select_related("room")
    return {(m.room.name, m.author_key, m.nonce): m.to_wire(m.room.name) for m in found}


class SQL:
    """Quoted table and column names of the commit path's SQL."""

    quote = staticmethod(connection.ops.quote_name)
    table = quote(Message._meta.db_table)
    rooms = quote(Room._meta.db_table)
    room = quote(Message._meta.get_field("room").column)
    author = quote("author_key")
    nonce = quote("nonce")
    reserve = (f"UPDATE {rooms} SET last_seq = last_seq + %s, message_count = message_count + %s, "
               f"last_active_at = %s WHERE name = %s AND archived_at IS NULL RETURNING id, last_seq, message_count, kind")
    members = quote(RoomMember._meta.db_table)
    read_own = (f"UPDATE {members} SET last_read = %s, read_count = %s, mentions = 0 "
                f"WHERE room_id = %s AND user_id = %s AND last_read < %s")
    parents = (f"SELECT seq, author, text FROM {table} WHERE {room} = %s AND seq = %s AND deleted_at IS NULL")
    count_reply = f"UPDATE {table} SET replies = replies + 1 WHERE {room} = %s AND seq = %s RETURNING replies"


class MessageInsert:
    """The commit path's INSERT, generated from the Message model: every concrete column,
    filled from the values given and, for the rest, the field's default (prepared once)."""

    def __init__(self):
        fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
        self.columns = [f.attname for f in fields]
        names = ", ".join(SQL.quote(f.column) for f in fields)
        self.sql = f"INSERT INTO {SQL.table} ({names}) VALUES ({', '.join(['%s'] * len(fields))})"
        self.defaults = {f.attname: None if callable(f.default) else f.get_db_prep_save(f.get_default(), connection)
                         for f in fields}

    def row(self, **values):
        unknown = values.keys() - self.defaults.keys()
        if unknown:
            raise TypeError(f"Message has no column {sorted(unknown)}")
        return tuple(values[name] if name in values else self.defaults[name] for name in self.columns)


INSERT = MessageInsert()


def _reserve_seqs(cursor, room_name, count, stamp=None):
    """Lock the room row and reserve `count` ids for messages; returns (room_id, first_id,
    first ordinal, kind) or None (no such room, or archived)."""
    cursor.execute(SQL.reserve, [count, count, stamp or connection.ops.adapt_datetimefield_value(timezone.now()),
                                 room_name])
    row = cursor.fetchone()
    return None if row is None else (row[0], row[1] - count + 1, row[2] - count + 1, row[3])


def _refusal(room_name):
    if Room.objects.filter(name=room_name).exists():
        return ProtocolError(ROOM_ARCHIVED, f"{room_name} is archived: it is read-only")
    return ProtocolError(INVALID_ROOM, f"room {room_name} does not exist")


def _split_repeats(drafts, stored):
    """Per draft: a Posted for a nonce already stored, the index of an earlier draft with the
    same nonce, or None (to store); and the drafts to store, by room."""
    results = [None] * len(drafts)
    fresh = defaultdict(list)  # room -> [(index, draft)]
    first_index = {}
    for index, draft in enumerate(drafts):
        key = (draft.room, draft.author_key, draft.nonce)
        if draft.nonce and key in stored:
            results[index] = Posted(stored[key], created=False)
        elif draft.nonce and key in first_index:
            results[index] = first_index[key]  # same nonce twice in one batch
        else:
            fresh[draft.room].append((index, draft))
            if draft.nonce:
                first_index[key] = index
    return results, fresh


def commit_posts(drafts):
    """Store a batch in one transaction. Returns, per draft, a Posted or a ProtocolError.

    Two nodes can commit the same (room, author key, nonce) at once (a client retrying on
    another node): both find it unstored, the room lock orders them, and the second insert
    breaks the unique index. Its batch is then tried once more, and finds the first's row."""
    try:
        return _commit_posts(drafts)
    except IntegrityError:
        if not any(draft.nonce for draft in drafts):
            raise
        return _commit_posts(drafts)


def _commit_posts(drafts):
    with transaction.atomic(), connection.cursor() as cursor:
        results, fresh = _split_repeats(drafts, _stored_by_nonce(cursor, drafts))
        now = timezone.now()
        stamp, ts = connection.ops.adapt_datetimefield_value(now), wire_time(now)
        rows, emailed = [], set()  # accounts a DM or mention may email (chat.digests)
        for room_name in sorted(fresh):
            drafts_here, parents = _without_bad_replies(cursor, room_name, fresh[room_name], results)
            reserved = _reserve_seqs(cursor, room_name, len(drafts_here), stamp) if drafts_here else None
            members = digests.direct_members(reserved[0]) if reserved and reserved[3] == DIRECT else frozenset()
            for offset, (index, draft) in enumerate(drafts_here):
                if reserved is None:
                    results[index] = _refusal(room_name)
                    continue
                room_id, seq, ordinal = reserved[0], reserved[1] + offset, reserved[2] + offset
                wire = {"id": seq, "room": room_name, "user": draft.author, "account": draft.user_id is not None,
                        "text": draft.text, "ts": ts}
                reply = _reply(cursor, room_id, draft, parents[draft.reply_to], wire) if draft.reply_to is not None else {}
                if draft.user_id is not None:  # your own message is read
                    cursor.execute(SQL.read_own, [seq, ordinal, room_id, draft.user_id, seq])
                notify, named = _mentions(room_id, room_name, seq, draft, wire)
                rows.append(INSERT.row(room_id=room_id, seq=seq, author=draft.author, author_key=draft.author_key,
                                       user_id=draft.user_id,
                                       text=draft.text, created_at=stamp, nonce=draft.nonce, ordinal=ordinal,
                                       mentions=named, **reply))
                results[index] = Posted(wire, created=True, notify=notify)
                emailed |= notify | (members - {draft.user_id})  # a DM notifies the others
        if rows:
            cursor.executemany(INSERT.sql, rows)
        digests.schedule(emailed)  # the digest jobs commit with the messages that cause them
    return [Posted(results[r].message, created=False) if isinstance(r, int) else r for r in results]


MENTIONS_JSON = Message._meta.get_field("mentions")


def _mentions(room_id, room_name, seq, draft, wire):
    """Resolve and record the draft's mentions (chat.mentions); (ids to notify, JSON column)."""
    resolved = mentions.resolve(room_id, room_name, draft.user_id, draft.text)
    if not resolved.names:
        return frozenset(), None
    wire["mentions"] = resolved.names
    return mentions.record(room_id, seq, draft.user_id, resolved), MENTIONS_JSON.get_db_prep_save(resolved.names,
                                                                                                   connection)


def _without_bad_replies(cursor, room_name, drafts, results):
    """The drafts of one room minus replies to messages it lacks (those get message_not_found),
    and the parents replied to: {id: (author, text)}. Takes the room's lock first when there
    are replies, so no deletion of a parent can commit between this read and the reply."""
    if all(draft.reply_to is None for _, draft in drafts):
        return drafts, {}
    locked = _reserve_seqs(cursor, room_name, 0)
    if locked is None:
        return drafts, {}  # no such room: refused below
    kept, parents = [], {}
    for index, draft in drafts:
        if draft.reply_to is not None and draft.reply_to not in parents:
            cursor.execute(SQL.parents, [locked[0], draft.reply_to])
            row = cursor.fetchone()
            if row is None:
                results[index] = ProtocolError(MESSAGE_NOT_FOUND, f"no message {draft.reply_to} in {room_name} to reply to")
                continue
            parents[draft.reply_to] = row[1:]
        kept.append((index, draft))
    return kept, parents


def _reply(cursor, room_id, draft, parent, wire):
    """Count the reply on its parent; the reply's columns, and its `reply_to` on the wire."""
    parent_author, parent_text = parent
    cursor.execute(SQL.count_reply, [room_id, draft.reply_to])
    replies = cursor.fetchone()[0]
    excerpt = parent_text[:REPLY_EXCERPT_CHARS]
    wire["reply_to"] = reply_wire(draft.reply_to, parent_author, excerpt, replies)
    return {"reply_to": draft.reply_to, "reply_user": parent_author, "reply_excerpt": excerpt,
            "reply_replies": replies}


def _wire(rows, room_name, viewer=None):
    """Messages in their current state; the reactions of `viewer` (a chat.identity.Identity)
    marked `me`, and `mention` on the messages that mention the viewer."""
    mine = defaultdict(set)
    with_reactions = [m.pk for m in rows if m.reactions]
    if viewer is not None and with_reactions:
        for message_pk, emoji in Reaction.objects.filter(message_id__in=with_reactions, user_key=viewer.key) \
                .values_list("message_id", "emoji"):
            mine[message_pk].add(emoji)
    wires = [m.to_wire(room_name, mine.get(m.pk, ())) for m in rows]
    if viewer is not None:
        for wire in wires:
            if mentions.mentions_reader(wire, viewer.name):
                wire["mention"] = True
    return wires


def _live(room_name):
    return Message.objects.filter(room__name=room_name, deleted_at__isnull=True)


def _first(query, limit):
    """Up to `limit` rows and, when more exist, the number of the last one taken."""
    rows = list(query[:limit + 1])
    return (rows[:limit], rows[limit - 1].seq) if len(rows) > limit else (rows, None)


def stream_page(room_name, after, upto, limit, viewer=None):
    """The room's stream with after < number <= upto, oldest first: (messages, events, covered).

    At most `limit` messages and `limit` events are read; `covered` is the number up to which
    the page is complete (`upto` unless a limit cut it short). Events that change a message
    deleted since are left out: its deletion, also in the stream, is what a reader needs."""
    messages, cut_messages = _first(_live(room_name).filter(seq__gt=after, seq__lte=upto).order_by("seq"), limit)
    events, cut_events = _first(RoomEvent.objects.filter(room__name=room_name, seq__gt=after, seq__lte=upto)
                                .order_by("seq"), limit)
    covered = min([cut for cut in (cut_messages, cut_events) if cut is not None], default=upto)
    targets = {e.message_seq for e in events if e.message_seq is not None and e.kind != "delete"}
    gone = set(Message.objects.filter(room__name=room_name, seq__in=targets, deleted_at__isnull=False)
               .values_list("seq", flat=True)) if targets else set()
    events = [e.to_wire(room_name) for e in events
              if e.seq <= covered and (e.kind == "delete" or e.message_seq not in gone)]
    return _wire([m for m in messages if m.seq <= covered], room_name, viewer), events, covered


def merged(messages, events):
    """Messages and events as one list in number order."""
    return sorted([*messages, *events], key=number)


def snapshot(room_name, since, upto, recent, limit, viewer=None):
    """What a joiner gets: the last `recent` messages up to `upto` (None: the room's last
    number), or with `since` the stream after it, at most `limit` of each kind (then
    `truncated`, and `next` is the `since` that continues)."""
    with transaction.atomic():  # one consistent read on SQLite and PostgreSQL alike
        last_seq, topic, kind, archived_at = (Room.objects.filter(name=room_name)
                                              .values_list("last_seq", "topic", "kind", "archived_at").first()
                                              or (0, "", PUBLIC, None))
        about = {"topic": topic, "kind": kind, "archived": archived_at is not None}
        upto = last_seq if upto is None else upto
        if since is None:
            rows = list(_live(room_name).filter(seq__lte=upto).order_by("-seq")[:recent])[::-1]
            return Snapshot(_wire(rows, room_name, viewer), upto, truncated=False, events=[], **about)
        messages, events, covered = stream_page(room_name, since, upto, limit, viewer)
    truncated = covered < upto
    return Snapshot(messages, upto, truncated, events, next=covered if truncated else None, **about)


def last_ids(room_names):
    """{room: last number} for the given rooms (the periodic check against missed deliveries)."""
    return dict(Room.objects.filter(name__in=list(room_names)).values_list("name", "last_seq"))


def gap_fill(room_name, after, upto, limit):
    """(stream items with after < number <= upto in order, the number they cover up to, the
    room's last number): one consistent read for a gap fill, which must not believe a number
    the database has not committed."""
    with transaction.atomic():
        last_id = Room.objects.filter(name=room_name).values_list("last_seq", flat=True).first() or 0
        messages, events, covered = stream_page(room_name, after, min(upto, last_id), limit)
        return merged(messages, events), max(covered, after), last_id


def messages_before(room_name, before, limit, viewer=None):
    """Up to `limit` live messages with id < before (None: the newest), oldest first; paged by id."""
    rows = _live(room_name)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return _wire(list(rows.order_by("-seq")[:limit])[::-1], room_name, viewer)


def messages_around(room_name, around, limit, viewer=None):
    """Message `around` with context: up to (limit - 1) // 2 live messages before it and
    the rest from it on, oldest first (fewer older ones leave more room after). A deleted
    or missing `around` still gets its surroundings."""
    older = list(_live(room_name).filter(seq__lt=around).order_by("-seq")[:(limit - 1) // 2])
    newer = list(_live(room_name).filter(seq__gte=around).order_by("seq")[:limit - len(older)])
    if len(newer) < limit - len(older) and len(older) == (limit - 1) // 2:  # near the end: more before
        older = list(_live(room_name).filter(seq__lt=around).order_by("-seq")[:limit - len(newer)])
    return _wire(older[::-1] + newer, room_name, viewer)


def most_active_rooms(limit, prefix=""):
    """Names of the `limit` public, unarchived rooms most recently posted in (a room that
    was only joined once sinks below every room in use), optionally those whose name starts
    with `prefix`: a range of the partial index room_public_active_idx, never a sort of
    every room."""
    rooms = Room.objects.filter(kind=PUBLIC, archived_at__isnull=True)
    if prefix:
        rooms = rooms.filter(name__startswith=prefix)
    return list(rooms.order_by("-last_active_at", "name").values_list("name", flat=True)[:limit])
