"""Full-text search of messages: a Django app of its own (label `chat_search`) inside chat.

Why a separate app: its tables (the index, the indexer's cursors) and migrations are apart
from chat's, and it only reads chat's tables. The parts:

- `query.py`: the query language users know from Slack and Zulip (words, "exact phrase",
  -word, from:, in:, before:, after:) and the `search` payload, parsed into a `Query`.
- `backends/`: one class per database. PostgreSQL: a stored `tsvector` with a GIN index
  (django.contrib.postgres.search: SearchQuery, SearchRank, SearchHeadline). SQLite: an
  FTS5 table. Both answer the same three questions (which messages match, in which order
  by relevance, with which snippet).
- `indexer.py`: the index follows the database. `catch_up(limit)` reads each room's stream
  (messages, edits, deletions) above the room's durable cursor and brings the index in
  step; idempotent, run by the server off the send path, by `manage.py search_index`, or by
  a job queue.
- `service.py`: a search for one reader: the rooms it may read now (SQL, then
  chat.permissions.room_access for every room returned), filters, order, cursor paging,
  and the wire shape of a result.
"""
