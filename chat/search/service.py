"""One reader's search: which rooms it may read now, the filters, the order, the page and
the wire shape of a result. The same function answers the socket (`search`, in a store
worker) and HTTP (`GET /api/search/`).

Privacy is decided twice, on purpose, both times by chat.permissions. In SQL, the candidate
rooms (`readable_room_ids`) are the public rooms and the rooms the account is a member of
now, minus rooms it is banned from: a removed member
stops finding a room's messages with the commit that removed it. Then every room of the
page passes chat.permissions.room_access's rule, THE read check of every door (in its
batched form, `rooms_access`: three queries per page); a room it refuses is dropped from
the page (and logged: the SQL should have left it out).

Newest first pages by message id (`cursor` `n:<id>`: continue below it). By relevance, the
CHAT_SEARCH_RANK_WINDOW newest matches are ranked (bm25 on SQLite, ts_rank on PostgreSQL)
and paged by offset (`r:<offset>`): ranking every match of a common word in a large
database would cost far more than a reader waits for, and the newest matches are the ones
a chat's readers look for.
"""
import logging

from django.conf import settings
from django.db.models import Q

from chat import permissions
from chat.models import Message, wire_time
from chat.protocol import ProtocolError
from chat.search.backends import backend, split_marks
from chat.search.query import NEWEST, cursor_text

log = logging.getLogger(__name__)

PLAIN_SNIPPET_CHARS = 200  # filters without words: the text's start, nothing marked


def _scope(query, reader_name, user_id, key, prefix):
    """The filters every search has, as one Q on a message reached through `prefix`."""
    where = Q(room_id__in=permissions.readable_room_ids(reader_name, user_id, key), **{f"{prefix}deleted_at__isnull": True})
    if query.author is not None:
        where &= Q(**{f"{prefix}author__iexact": query.author})
    if query.before is not None:
        where &= Q(**{f"{prefix}created_at__lt": query.before})
    if query.after is not None:
        where &= Q(**{f"{prefix}created_at__gte": query.after})
    return where


def search(query, reader_name, user_id, key=None):
    """A page of results for `query` (chat.search.query.Query): {results, cursor}.
    An `in:` room goes through THE read check first (its refusal answers the search)."""
    index = backend() if query.has_terms else None
    base, prefix, id_field = index.base(query) if index else (Message.objects.all(), "", "id")
    base = base.filter(_scope(query, reader_name, user_id, key, prefix))
    if query.room is not None:
        access = permissions.room_access(query.room, reader_name, user_id, key)
        if access.room is None:
            return {"results": [], "cursor": None}
        base = base.filter(room_id=access.room.pk)
    newest = base.order_by(f"-{id_field}").values_list(id_field, flat=True)
    if query.sort == NEWEST or index is None:
        if query.cursor is not None:
            newest = newest.filter(**{f"{id_field}__lt": query.cursor})
        ids = list(newest[:query.limit + 1])
        more = len(ids) > query.limit
        ids = ids[:query.limit]
        next_cursor = cursor_text(query.sort, ids[-1]) if more else None
    else:
        offset = query.cursor or 0
        ranked = index.rank(list(newest[:settings.CHAT_SEARCH_RANK_WINDOW]), query)
        ids = ranked[offset:offset + query.limit]
        next_cursor = cursor_text(query.sort, offset + query.limit) if len(ranked) > offset + query.limit else None
    return {"results": _results(ids, query, index, reader_name, user_id, key), "cursor": next_cursor}


def _results(ids, query, index, reader_name, user_id, key):
    if not ids:
        return []
    rows = {m.pk: m for m in Message.objects.filter(id__in=ids).select_related("room")}
    marked = index.snippets(ids, query) if index else {}
    access = permissions.rooms_access({m.room.name for m in rows.values()}, reader_name, user_id, key)
    results = []
    for pk in ids:
        message = rows.get(pk)
        if message is None or message.deleted_at is not None:
            continue  # deleted between the two reads
        if _may_read(message.room.name, access[message.room.name]):
            results.append(_wire(message, message.room, marked.get(pk)))
    return results


def _may_read(room_name, outcome):
    if isinstance(outcome, ProtocolError):
        log.warning("search: room_access refused %s (%s) after the SQL scope allowed it", room_name, outcome.code)
        return False
    return True


def _wire(message, room, marked):
    if marked is None:
        text = message.text
        marked = text if len(text) <= PLAIN_SNIPPET_CHARS else text[:PLAIN_SNIPPET_CHARS] + "…"
    wire = {"room": room.name, "kind": room.kind, "id": message.seq, "user": message.author,
            "account": message.user_id is not None, "ts": wire_time(message.created_at),
            "snippet": split_marks(marked)}
    if room.title:
        wire["title"] = room.title
    if message.edited_at is not None:
        wire["edited_at"] = wire_time(message.edited_at)
    return wire
