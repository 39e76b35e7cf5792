"""`python manage.py purge_messages --older-than 30d`: the message retention job.

This command owns deleting old chat messages, and nothing else. It removes `Message` rows
(with their reactions) and room events (`RoomEvent`: edits, deletions, reactions, topics)
whose `created_at` is older than now minus the given duration, in small batches by primary
key: each batch selects up to `--batch-size` ids (ordered by id, `LIMIT`), then deletes
`WHERE id IN (...)` in its own short transaction, so neither SQLite's single writer nor a
PostgreSQL table is held for long and the chat keeps committing between batches
(`--sleep-ms` adds a pause). It never touches `Room` rows: a room keeps its `last_seq`, so
new ids continue after the purged ones and are never reused. Purged messages are not
announced to connected clients (it runs outside the server process; see `message_deleted`
in docs/PROTOCOL.md); clients that reconnect with `since` only fetch newer ids.

Meant for cron, e.g. `17 3 * * * cd /srv/chat && .venv/bin/python manage.py purge_messages
--older-than 30d`. Prints one summary line; `--dry-run` only counts.
"""
import datetime
import re
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Message, Reaction, RoomEvent

DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECS = 100 * 365 * 86400  # beyond this the cutoff would predate any database


def parse_duration(value):
    """'30d', '12h', '90m', '45s' -> timedelta; anything else -> CommandError."""
    match = DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise CommandError(
            f"--older-than must be a positive whole number followed by s, m, h or d "
            f"(e.g. 30d, 12h, 90m, 45s), not {value!r}")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise CommandError(f"--older-than must be more than zero, not {value!r}")
    if seconds > MAX_DURATION_SECS:
        raise CommandError(f"--older-than {value!r} is too long (at most 100 years)")
    return datetime.timedelta(seconds=seconds)


def whole_number(option, value, minimum):
    """An integer option given on the command line (a string) or to call_command."""
    try:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise CommandError(f"{option} must be at least {minimum}, not {number}")
    return number


def utc_text(moment):
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Command(BaseCommand):
    help = ("Delete chat messages older than a duration (30d, 12h, 90m, 45s), in small batches "
            "by id, each in its own short transaction. Rooms and their ids are kept.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="DURATION",
                            help="delete messages created before now minus this: 30d, 12h, 90m or 45s")
        parser.add_argument("--batch-size", default=1000, metavar="N",
                            help="messages deleted per transaction (default 1000)")
        parser.add_argument("--sleep-ms", default=0, metavar="MS",
                            help="pause between batches, in milliseconds (default 0)")
        parser.add_argument("--dry-run", action="store_true",
                            help="only print how many messages would be deleted")

    def handle(self, *args, older_than, batch_size, sleep_ms, dry_run, **options):
        age = parse_duration(older_than)
        batch_size = whole_number("--batch-size", batch_size, 1)
        sleep_ms = whole_number("--sleep-ms", sleep_ms, 0)
        cutoff = timezone.now() - age
        old = Message.objects.filter(created_at__lt=cutoff)

        if dry_run:
            count = old.count()
            batches = -(-count // batch_size)
            self.stdout.write(f"dry run: would delete {count} messages in {batches} batches "
                              f"(created before {utc_text(cutoff)}, --older-than {older_than})")
            return

        verbose = options.get("verbosity", 1) >= 2
        deleted, batches = self._purge(old, "messages", batch_size, sleep_ms, verbose)
        events, _ = self._purge(RoomEvent.objects.filter(created_at__lt=cutoff), "room events", batch_size,
                                sleep_ms, verbose)
        self.stdout.write(f"deleted {deleted} messages in {batches} batches and {events} room events "
                          f"(created before {utc_text(cutoff)}, --older-than {older_than})")

    def _purge(self, old, what, batch_size, sleep_ms, verbose):
        """Delete the rows of `old` in batches by primary key; (rows deleted, batches)."""
        deleted = batches = 0
        after = 0  # keyset: ids below this were already purged (or are newer than the cutoff)
        while True:
            with transaction.atomic():
                ids = list(old.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                if old.model is Message:  # the database does not cascade Django's foreign keys
                    self._delete(Reaction, Reaction._meta.get_field("message").column, ids)
                deleted += self._delete(old.model, old.model._meta.pk.column, ids)
            batches += 1
            after = ids[-1]
            if verbose:
                self.stdout.write(f"batch {batches}: {len(ids)} {what}, ids {ids[0]}..{ids[-1]}")
            if len(ids) < batch_size:
                break
            if sleep_ms:
                time.sleep(sleep_ms / 1000)
        return deleted, batches

    @staticmethod
    def _delete(model, column, ids):
        """DELETE ... WHERE column IN (ids); a raw statement so no row is loaded back."""
        table = connection.ops.quote_name(model._meta.db_table)
        column = connection.ops.quote_name(column)
        per_statement = connection.features.max_query_params or len(ids)
        count = 0
        with connection.cursor() as cursor:
            for start in range(0, len(ids), per_statement):
                chunk = ids[start:start + per_statement]
                marks = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
                count += cursor.rowcount
        return count
