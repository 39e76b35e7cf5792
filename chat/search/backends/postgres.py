"""PostgreSQL search: a stored `tsvector` per live message (chat_search_entry, GIN index),
through django.contrib.postgres.search.

The text search configuration is CHAT_SEARCH_CONFIG (default `simple`: every language is
matched word by word, nothing is stemmed or dropped as a stop word). Terms arrive as runs of
letters and digits (chat.search.query) and each becomes its own `plainto_tsquery` or
`phraseto_tsquery` with the run as a bound parameter, combined with `&&` and `!!`, so no
user text is ever read as tsquery syntax.

Newest first, a common word is served by walking the entries backwards by message id and
testing each one's tsvector (a few dozen rows read); a rare word by reading its few matches
from the GIN index first (`base`). The plans are in bench/results/*-issue18-search/.
"""
from django.conf import settings
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Replace

from chat.models import Message
from chat.search.backends import MARK_END, MARK_START, SNIPPET_WORDS
from chat.search.models import SearchEntry

FEW_MATCHES = 2000  # up to this many matches are fetched whole and sorted (see `base`)

REFRESH_SQL = """
INSERT INTO chat_search_entry (message_id, room_id, document)
SELECT id, room_id, to_tsvector(%s::regconfig, replace(replace(text, chr(2), ' '), chr(3), ' '))
FROM chat_message WHERE id = ANY(%s) AND deleted_at IS NULL
ON CONFLICT (message_id) DO UPDATE SET room_id = EXCLUDED.room_id, document = EXCLUDED.document
"""
FORGET_SQL = """
DELETE FROM chat_search_entry e WHERE e.message_id = ANY(%s)
AND NOT EXISTS (SELECT 1 FROM chat_message m WHERE m.id = e.message_id AND m.deleted_at IS NULL)
"""


def tsquery(query):
    config = settings.CHAT_SEARCH_CONFIG
    terms = [SearchQuery(word, search_type="plain", config=config) for word in query.words]
    terms += [SearchQuery(" ".join(phrase), search_type="phrase", config=config) for phrase in query.phrases]
    terms += [~SearchQuery(" ".join(runs), search_type="phrase", config=config) for runs in query.excluded]
    combined = terms[0]
    for term in terms[1:]:
        combined = combined & term
    return combined


class PostgresBackend:
    vendor = "postgresql"

    def base(self, query):
        """Few matches (a rare word): their ids, read from the GIN index, are the base, so
        PostgreSQL sorts a handful of rows. Its estimate for a word missing from the column's
        statistics is far above the truth, and it would otherwise walk every entry backwards
        looking for a word that is nowhere (200 ms at a million messages, bench/search.py)."""
        matching = SearchEntry.objects.filter(document=tsquery(query))
        few = list(matching.values_list("message_id", flat=True)[:FEW_MATCHES + 1])
        if len(few) <= FEW_MATCHES:
            return SearchEntry.objects.filter(message_id__in=few), "message__", "message_id"
        return matching, "message__", "message_id"

    def rank(self, ids, query):
        rows = (SearchEntry.objects.filter(message_id__in=ids)
                .annotate(rank=SearchRank(F("document"), tsquery(query)))
                .order_by("-rank", "-message_id").values_list("message_id", flat=True))
        return list(rows)

    def snippets(self, ids, query):
        text = Replace(Replace(F("text"), Value(MARK_START), Value(" ")), Value(MARK_END), Value(" "))
        headline = SearchHeadline(text, tsquery(query), config=settings.CHAT_SEARCH_CONFIG,
                                  start_sel=MARK_START, stop_sel=MARK_END, max_words=SNIPPET_WORDS,
                                  min_words=SNIPPET_WORDS // 2, short_word=0, max_fragments=2,
                                  fragment_delimiter=" … ")
        return dict(Message.objects.filter(id__in=ids).annotate(snippet=headline).values_list("id", "snippet"))

    def refresh(self, ids):
        ids = list(ids)
        if not ids:
            return
        with connection.cursor() as cursor:
            cursor.execute(REFRESH_SQL, [settings.CHAT_SEARCH_CONFIG, ids])
            cursor.execute(FORGET_SQL, [ids])

    def claim_room(self, cursor, room_id):
        """Lock the room's cursor row for this transaction, or None if another node holds it
        (two nodes indexing one room could otherwise write an older text after a newer one)."""
        cursor.execute("INSERT INTO chat_search_roomcursor (room_id, seq) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                       [room_id])
        cursor.execute("SELECT seq FROM chat_search_roomcursor WHERE room_id = %s FOR UPDATE SKIP LOCKED", [room_id])
        row = cursor.fetchone()
        return None if row is None else row[0]

    def reset_sql(self):
        return "TRUNCATE chat_search_entry"

    def prune_sql(self):
        return ("DELETE FROM chat_search_entry WHERE message_id IN (SELECT e.message_id FROM chat_search_entry e "
                "LEFT JOIN chat_message m ON m.id = e.message_id WHERE m.id IS NULL LIMIT %s)")
