"""The search index: the indexer's cursors on every database; on PostgreSQL the
`chat_search_entry` table (stored tsvector, GIN index), on SQLite the FTS5 table
`chat_search_fts`. Independent of chat's own migrations after 0008."""
import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

POSTGRES = [
    """CREATE TABLE chat_search_entry (
           message_id bigint PRIMARY KEY,
           room_id bigint NOT NULL,
           document tsvector NOT NULL)""",
    "CREATE INDEX chat_search_entry_document ON chat_search_entry USING gin (document)",
]
POSTGRES_DROP = ["DROP TABLE IF EXISTS chat_search_entry"]
# remove_diacritics 0: `cafe` does not find `café`, as with PostgreSQL's `simple`; both backends
# match the same words.
SQLITE = ["CREATE VIRTUAL TABLE chat_search_fts USING fts5(text, tokenize = 'unicode61 remove_diacritics 0')"]
SQLITE_DROP = ["DROP TABLE IF EXISTS chat_search_fts"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)
    return run


class Migration(migrations.Migration):
    initial = True

    dependencies = [("chat", "0008_identity_keys")]

    operations = [
        migrations.CreateModel(
            name="RoomCursor",
            fields=[
                ("room_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(default=0, help_text="The index reflects the room's stream up to this number.")),
            ],
        ),
        migrations.CreateModel(
            name="SearchEntry",
            fields=[
                ("message", models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING,
                                                 primary_key=True, related_name="+", serialize=False,
                                                 to="chat.message")),
                ("room_id", models.BigIntegerField()),
                ("document", django.contrib.postgres.search.SearchVectorField()),
            ],
            options={"db_table": "chat_search_entry", "managed": False},
        ),
        migrations.RunPython(_run({"postgresql": POSTGRES, "sqlite": SQLITE}),
                             _run({"postgresql": POSTGRES_DROP, "sqlite": SQLITE_DROP})),
    ]
