"""The background jobs (django-tasks `@task`s), one line of policy each: what runs them,
retries and recovery are chat.jobs and chat.worker. Every job is idempotent (a retry or a
re-run after a lost worker has the effect of one run) and bounded in time."""
import logging
from io import StringIO

from django.conf import settings
from django.core.management import call_command
from django_tasks import task

from chat import digests, jobs
from chat.search import indexer

log = logging.getLogger("chat.tasks")


@task()
def send_digest(user_id):
    """One email of an account's unread DMs and mentions (chat.digests)."""
    return digests.send_digest(user_id)


@task()
def maintenance():
    """Recurring (every CHAT_MAINTENANCE_EVERY_SECS): prune finished jobs and sent digests;
    with CHAT_RETENTION_AGE set, purge older messages (`manage.py purge_messages`, in batches);
    then drop search index rows of messages that are gone."""
    done = {"jobs_pruned": jobs.prune_results(), "digests_pruned": digests.prune()}
    if settings.CHAT_RETENTION_AGE:
        out = StringIO()
        call_command("purge_messages", "--older-than", settings.CHAT_RETENTION_AGE, stdout=out)
        done["retention"] = out.getvalue().strip()
    done["search_pruned"] = indexer.prune()  # index rows of purged messages (a scan: hourly, not per index run)
    log.info("maintenance: %s", done)
    return done


INDEX_ROUNDS = 50  # catch_up calls per run at most: a backlog larger than that is the next run's


@task()
def index_search():
    """Recurring (every CHAT_SEARCH_INDEX_SECS): bring the search index in step with the
    messages, edits and deletions committed since (chat.search.indexer: cursor per room,
    idempotent). Index rows of messages the retention purge deleted go in `maintenance`."""
    done = 0
    for _ in range(INDEX_ROUNDS):
        handled = indexer.catch_up()
        done += handled
        if handled < indexer.BATCH:
            break
    return {"indexed": done}
