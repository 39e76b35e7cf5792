"""Durable background work: the rules around django-tasks' database backend.

django-tasks (`django_tasks.task`, the backport of Django 6's `django.tasks`) and
django-tasks-db keep the queue in a table of DATABASE_URL, so a job is a row written in the
transaction that causes it (nothing lost, nothing for a rolled-back change). What that
backend leaves to us, this module owns:

- retries: a job that raises is ready again after CHAT_JOB_BACKOFF_SECS, doubling per attempt
  up to CHAT_JOB_BACKOFF_MAX_SECS; after CHAT_JOB_MAX_ATTEMPTS it stays FAILED with its error
  (Django admin, "Task results"). Never retried forever.
- dead workers (django-tasks-db issue #5: a SIGKILLed worker's row stays RUNNING for ever):
  every worker heartbeats a `JobWorker` row; a RUNNING job whose worker is silent for
  CHAT_JOB_LEASE_SECS is ready again (counted as an attempt). Jobs are idempotent, so a
  re-run is the same effect once.
- recurring jobs (`RECURRING`): a `JobSchedule` row per job, taken under a row lock by one
  worker, which enqueues the job in the same transaction as it moves `next_run_at` on.
- what /metrics shows of the queue (`queue_stats`).

Workers call these from chat.worker; the server only enqueues.
"""
import datetime
import logging
import os
import socket
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from chat.models import JobSchedule, JobWorker

log = logging.getLogger("chat.jobs")

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
FAILED, SUCCESSFUL = TaskResultStatus.FAILED, TaskResultStatus.SUCCESSFUL
RECOVERY_BATCH = 100  # RUNNING rows examined per pass (at most one per worker in practice)
WORKER_ROWS_KEEP_SECS = 86400  # heartbeat rows of workers gone this long are deleted


class WorkerLost(Exception):
    """Recorded as a job's error when the worker running it stopped heartbeating."""


@dataclass(frozen=True)
class Recurring:
    name: str
    task_path: str
    every_secs: callable  # () -> seconds, read from settings when due


def maintenance_every():
    return settings.CHAT_MAINTENANCE_EVERY_SECS


def index_every():
    return settings.CHAT_SEARCH_INDEX_SECS


RECURRING = [Recurring("maintenance", "chat.tasks.maintenance", maintenance_every),
             Recurring("index_search", "chat.tasks.index_search", index_every)]


# -- enqueueing -------------------------------------------------------------------------------
def enqueue(task, *args, delay_secs=0):
    """Queue `task(*args)` in the current transaction (the database backend writes its row
    with the connection's open transaction, so a rollback takes the job with it)."""
    if delay_secs:
        task = task.using(run_after=timezone.now() + datetime.timedelta(seconds=delay_secs))
    return task.enqueue(*args)


# -- retries ----------------------------------------------------------------------------------
def backoff_secs(attempts):
    """Wait before attempt `attempts + 1`: CHAT_JOB_BACKOFF_SECS doubling, capped."""
    return min(settings.CHAT_JOB_BACKOFF_SECS * 2 ** max(attempts - 1, 0), settings.CHAT_JOB_BACKOFF_MAX_SECS)


def retry_or_fail(row):
    """After a failed attempt (the backend has marked `row` FAILED with its error): ready
    again after the backoff, keeping the error for the admin, unless attempts are spent."""
    attempts = len(row.worker_ids)
    if attempts >= settings.CHAT_JOB_MAX_ATTEMPTS:
        log.warning("job %s (%s) failed for good after %d attempts", row.id, row.task_path, attempts)
        return False
    run_after = timezone.now() + datetime.timedelta(seconds=backoff_secs(attempts))
    DBTaskResult.objects.filter(pk=row.pk, status=FAILED).update(status=READY, run_after=run_after, finished_at=None)
    log.info("job %s (%s) failed attempt %d, retrying at %s", row.id, row.task_path, attempts, run_after.isoformat())
    return True


# -- workers' heartbeats and the jobs of dead workers -------------------------------------------
def new_worker_id():
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{os.urandom(3).hex()}"


def heartbeat(worker_id):
    JobWorker.objects.update_or_create(worker_id=worker_id, defaults={
        "host": socket.gethostname()[:100], "pid": os.getpid(), "seen_at": timezone.now()})


def forget_worker(worker_id):
    JobWorker.objects.filter(worker_id=worker_id).delete()


def recover_lost():
    """RUNNING jobs whose worker is silent for CHAT_JOB_LEASE_SECS: ready again (or FAILED
    when that was the last attempt). Returns how many were recovered."""
    now = timezone.now()
    alive_since = now - datetime.timedelta(seconds=settings.CHAT_JOB_LEASE_SECS)
    alive = set(JobWorker.objects.filter(seen_at__gte=alive_since).values_list("worker_id", flat=True))
    recovered = 0
    with transaction.atomic():
        for row in DBTaskResult.objects.select_for_update().filter(status=RUNNING)[:RECOVERY_BATCH]:
            if row.worker_ids and row.worker_ids[-1] in alive:
                continue
            _lost(row, now)
            recovered += 1
    JobWorker.objects.filter(seen_at__lt=now - datetime.timedelta(seconds=WORKER_ROWS_KEEP_SECS)).delete()
    return recovered


def _lost(row, now):
    attempts = len(row.worker_ids)
    worker = row.worker_ids[-1] if row.worker_ids else "?"
    row.exception_class_path = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
    row.traceback = (f"WorkerLost: worker {worker} stopped heartbeating for {settings.CHAT_JOB_LEASE_SECS}s "
                     f"during attempt {attempts}\n")
    if attempts >= settings.CHAT_JOB_MAX_ATTEMPTS:
        row.status, row.finished_at = FAILED, now
    else:
        row.status, row.run_after = READY, now + datetime.timedelta(seconds=backoff_secs(attempts))
    row.save(update_fields=["status", "finished_at", "run_after", "exception_class_path", "traceback"])
    log.warning("job %s (%s) of lost worker %s is %s", row.id, row.task_path, worker, row.status)


# -- recurring jobs -----------------------------------------------------------------------------
def enqueue_due():
    """Enqueue each recurring job whose time has come, once across all workers: its schedule
    row is locked (skipped by a worker that finds it locked) and moved on in the transaction
    that writes the job. Returns the names enqueued."""
    from django.utils.module_loading import import_string

    now = timezone.now()
    for spec in RECURRING:
        JobSchedule.objects.get_or_create(name=spec.name, defaults={"next_run_at": now})
    done = []
    with transaction.atomic():
        for row in JobSchedule.objects.select_for_update(skip_locked=True).filter(next_run_at__lte=now):
            spec = next((s for s in RECURRING if s.name == row.name), None)
            if spec is None:
                continue
            enqueue(import_string(spec.task_path))
            row.next_run_at = now + datetime.timedelta(seconds=spec.every_secs())
            row.save(update_fields=["next_run_at"])
            done.append(row.name)
    return done


def prune_results():
    """Finished job rows go after CHAT_JOB_KEEP_SECS (successful) and CHAT_JOB_KEEP_FAILED_SECS
    (failed), so the queue table stays bounded. Returns rows deleted."""
    now = timezone.now()
    ok = DBTaskResult.objects.filter(status=SUCCESSFUL,
                                     finished_at__lt=now - datetime.timedelta(seconds=settings.CHAT_JOB_KEEP_SECS))
    failed = DBTaskResult.objects.filter(
        status=FAILED, finished_at__lt=now - datetime.timedelta(seconds=settings.CHAT_JOB_KEEP_FAILED_SECS))
    return ok.delete()[0] + failed.delete()[0]


# -- what /metrics shows ------------------------------------------------------------------------
def queue_stats():
    """{status: rows} and the jobs due now (queue depth), read at scrape time."""
    from django.db.models import Count

    counts = {status: 0 for status in TaskResultStatus.values}
    for row in DBTaskResult.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    due = DBTaskResult.objects.ready().count()
    retrying = DBTaskResult.objects.filter(status=READY).exclude(exception_class_path="").count()
    return counts, due, retrying
