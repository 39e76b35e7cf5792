"""SQLite search: the FTS5 table `chat_search_fts` (rowid = message id, its own copy of the
text so a deletion can take a row out) kept in step by chat.search.indexer.

MATCH expressions are built here from runs of letters and digits (chat.search.query), each
one double-quoted (a quote inside doubled), so user input is never FTS5 syntax: `"a" AND
"b c"` for a word and a phrase, `NOT "d"` for an exclusion. Snippets come from FTS5's own
`snippet()`, relevance from its bm25 `rank`.
"""
from django.db import connection
from django.db.models.expressions import RawSQL

from chat.models import Message
from chat.search.backends import MARK_END, MARK_START, SNIPPET_WORDS, clean

FTS = "chat_search_fts"


def fts5_available():
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')")
        compiled = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = %s", [FTS])
        return bool(compiled) and cursor.fetchone()[0] == 1


def _quoted(runs):
    return '"' + " ".join(runs).replace('"', '""') + '"'


def match_expression(query):
    positive = " AND ".join([_quoted((word,)) for word in query.words] + [_quoted(p) for p in query.phrases])
    expression = f"({positive})"
    for runs in query.excluded:
        expression += f" NOT {_quoted(runs)}"
    return expression


def _in(ids):
    return ", ".join(["%s"] * len(ids))


class SqliteBackend:
    vendor = "sqlite"

    def base(self, query):
        matching = RawSQL(f"SELECT rowid FROM {FTS} WHERE {FTS} MATCH %s", [match_expression(query)])
        return Message.objects.filter(id__in=matching), "", "id"

    def rank(self, ids, query):
        if not ids:
            return []
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT rowid FROM {FTS} WHERE {FTS} MATCH %s AND rowid IN ({_in(ids)}) "
                           f"ORDER BY rank, rowid DESC", [match_expression(query), *ids])
            return [row[0] for row in cursor.fetchall()]

    def snippets(self, ids, query):
        if not ids:
            return {}
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT rowid, snippet({FTS}, 0, %s, %s, '…', %s) FROM {FTS} "
                           f"WHERE {FTS} MATCH %s AND rowid IN ({_in(ids)})",
                           [MARK_START, MARK_END, SNIPPET_WORDS, match_expression(query), *ids])
            return dict(cursor.fetchall())

    def refresh(self, ids):
        ids = list(ids)
        if not ids:
            return
        live = list(Message.objects.filter(id__in=ids, deleted_at__isnull=True).values_list("id", "text"))
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS} WHERE rowid IN ({_in(ids)})", ids)
            cursor.executemany(f"INSERT INTO {FTS} (rowid, text) VALUES (%s, %s)",
                               [(pk, clean(text)) for pk, text in live])

    def claim_room(self, cursor, room_id):
        """SQLite has one writer at a time (and one node): the cursor row is simply read."""
        cursor.execute("SELECT seq FROM chat_search_roomcursor WHERE room_id = %s", [room_id])
        row = cursor.fetchone()
        if row is None:
            cursor.execute("INSERT INTO chat_search_roomcursor (room_id, seq) VALUES (%s, 0)", [room_id])
            return 0
        return row[0]

    def reset_sql(self):
        return f"DELETE FROM {FTS}"

    def prune_sql(self):
        return (f"DELETE FROM {FTS} WHERE rowid IN (SELECT f.rowid FROM {FTS} f "
                f"LEFT JOIN chat_message m ON m.id = f.rowid WHERE m.id IS NULL LIMIT %s)")
