"""`manage.py search_index`: bring the message search index in step (chat.search.indexer).

Once by default; `--follow` keeps following (for a server run with CHAT_SEARCH_INDEXER=off);
`--rebuild` starts again from nothing (after changing CHAT_SEARCH_CONFIG); `--prune` also removes index rows of messages the retention job deleted."""
import time

from django.core.management.base import BaseCommand

from chat.search import indexer


class Command(BaseCommand):
    help = "Index new, edited and deleted messages for search (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=indexer.BATCH, help="stream items per transaction")
        parser.add_argument("--follow", action="store_true", help="keep indexing, every --interval seconds")
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--rebuild", action="store_true", help="drop the index and index every message again")
        parser.add_argument("--prune", action="store_true", help="also drop entries of purged messages")

    def handle(self, limit, follow, interval, rebuild, prune, **options):
        if rebuild:
            indexer.reset()
        while True:
            done = indexer.catch_up_all(limit)
            pruned = indexer.prune() if prune else 0
            if not follow:
                self.stdout.write(f"indexed {done} stream items" + (f", pruned {pruned}" if prune else ""))
                return
            time.sleep(interval)
