"""Search backends: one per database, chosen by the database's vendor (`backend()`).

Each answers the same questions for a parsed chat.search.query.Query with words or
phrases, so everything above them (rooms one may read, filters, order, paging, wire shape:
chat.search.service) is one code for both:

- `base(query)`: (queryset of the matching index rows, the lookup prefix from that row to
  its chat.models.Message, the name of its message-id column). The service adds the
  filters and the order to it.
- `rank(ids, query)`: those message ids, most relevant first.
- `snippets(ids, query)`: {message id: text around the matches, each match between
  MARK_START and MARK_END}.
- `refresh(ids)`: bring these messages' index rows in step with the messages (insert,
  re-index an edit, remove a deleted or purged one); idempotent. chat.search.indexer calls it.
"""
import re

from django.db import connection

MARK_START, MARK_END = "\x02", "\x03"  # never in indexed text: both backends replace them with spaces
SNIPPET_WORDS = 24
WORD_RE = re.compile(r"\w")


def backend(conn=None):
    vendor = (conn or connection).vendor
    if vendor == "postgresql":
        from chat.search.backends.postgres import PostgresBackend
        return PostgresBackend()
    if vendor == "sqlite":
        from chat.search.backends.sqlite import SqliteBackend
        return SqliteBackend()
    raise RuntimeError(f"message search supports PostgreSQL and SQLite, not {vendor}")


def clean(text):
    """Indexed and headlined text: without the marks' characters, so a mark is always ours."""
    return text.replace(MARK_START, " ").replace(MARK_END, " ")


def split_marks(marked):
    """'a \x02b\x03 c' -> ['a ', 'b', ' c']: odd-indexed parts are matches (the wire's
    `snippet`). Matches apart only by spaces or punctuation (a phrase, which ts_headline
    marks word by word) become one."""
    parts, rest = [], marked
    while True:
        start = rest.find(MARK_START)
        end = rest.find(MARK_END, start + 1) if start >= 0 else -1
        if start < 0 or end < 0:
            parts.append(rest.replace(MARK_START, "").replace(MARK_END, ""))
            break
        plain, hit = rest[:start], rest[start + 1:end]
        if len(parts) >= 2 and len(plain) <= 3 and not WORD_RE.search(plain):
            parts[-1] += plain + hit  # joins the previous match
        else:
            parts.extend([plain, hit])
        rest = rest[end + 1:]
    return parts
