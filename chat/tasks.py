"""The background jobs (django-tasks `@task`s), one line of policy each: what runs them,
retries and recovery are chat.jobs and chat.worker. Every job is idempotent (a retry or a
re-run after a lost worker has the effect of one run) and bounded in time."""
import logging
from io import StringIO

from django.conf import settings
from django.core.management import call_command
from django_tasks import task

from chat import digests, jobs

log = logging.getLogger("chat.tasks")


@task()
def send_digest(user_id):
    """One email of an account's unread DMs and mentions (chat.digests)."""
    return digests.send_digest(user_id)


@task()
def maintenance():
    """Recurring (every CHAT_MAINTENANCE_EVERY_SECS): prune finished jobs and sent digests, and
    with CHAT_RETENTION_AGE set, purge older messages (`manage.py purge_messages`, in batches)."""
    done = {"jobs_pruned": jobs.prune_results(), "digests_pruned": digests.prune()}
    if settings.CHAT_RETENTION_AGE:
        out = StringIO()
        call_command("purge_messages", "--older-than", settings.CHAT_RETENTION_AGE, stdout=out)
        done["retention"] = out.getvalue().strip()
    log.info("maintenance: %s", done)
    return done
