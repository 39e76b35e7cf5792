"""The search index's own tables.

`RoomCursor`: per room, the number of the room's stream (chat.models: messages and room
events share one sequence per room) up to which the index is in step. Numbers of a room
commit in increasing order on every node (the room row's lock), so a per-room cursor can
never skip a message committed late by another node, as a global id cursor could.

`SearchEntry` (PostgreSQL only; unmanaged, its table and GIN index made by migration 0001):
the stored `tsvector` of each live message. `message_id` is a plain column without a
foreign-key constraint, so the retention job's bulk deletes of messages are never slowed or
refused by it; entries of purged messages are never returned (every search joins the live
message) and `indexer.prune()` removes them. On SQLite the index is the FTS5 table
`chat_search_fts` (rowid = message id), also made by migration 0001.
"""
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from chat.models import Message


class RoomCursor(models.Model):
    room_id = models.BigIntegerField(primary_key=True)
    seq = models.BigIntegerField(default=0, help_text="The index reflects the room's stream up to this number.")

    def __str__(self):
        return f"room {self.room_id} indexed to {self.seq}"


class SearchEntry(models.Model):
    message = models.OneToOneField(Message, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                   related_name="+")
    room_id = models.BigIntegerField()
    document = SearchVectorField()

    class Meta:
        managed = False
        db_table = "chat_search_entry"
