"""The job worker process: django-tasks-db's `Worker`, plus what chat.jobs adds to it.

`manage.py db_worker` is this worker (chat is listed before django_tasks_db in INSTALLED_APPS,
so Django finds chat's command first, as staticfiles does with `runserver`). Same options,
same loop (claim a due row under a lock, run it, record the outcome); in addition:

- a failed attempt is retried with backoff until CHAT_JOB_MAX_ATTEMPTS (chat.jobs.retry_or_fail);
- a housekeeping thread: every CHAT_JOB_HEARTBEAT_SECS it heartbeats this worker and re-queues
  the jobs of dead workers; every second it enqueues due recurring jobs (chat.jobs.RECURRING:
  maintenance, and the search index every CHAT_SEARCH_INDEX_SECS). A thread, so heartbeats go on while a
  job runs; it has its own database connection (Django's are per thread).
"""
import logging
import threading

from django.conf import settings
from django.db import connection
from django_tasks_db.management.commands.db_worker import Worker

from chat import jobs
from chat.jobs import FAILED

log = logging.getLogger("chat.worker")

TICK_SECS = 1.0


class ChatWorker(Worker):
    def run(self):
        self._housekeep_once()  # alive before the first claim; `--batch` runs due recurring jobs too
        stop = threading.Event()
        threading.Thread(target=self._housekeeping, args=(stop,), name="job-housekeeping", daemon=True).start()
        try:
            super().run()
        finally:
            stop.set()
            jobs.forget_worker(self.worker_id)

    def run_task(self, db_task_result):
        super().run_task(db_task_result)
        if db_task_result.status == FAILED:
            jobs.retry_or_fail(db_task_result)

    def _housekeep_once(self):
        try:
            jobs.heartbeat(self.worker_id)
            if jobs.recover_lost():
                log.info("re-queued the jobs of lost workers")
            jobs.enqueue_due()
        except Exception:  # a locked or unreachable database: the next round tries again
            log.exception("job housekeeping failed")
            connection.close()

    def _housekeeping(self, stop):
        """Recurring jobs are looked at every second (the search index runs every few
        seconds); heartbeats and recovery every CHAT_JOB_HEARTBEAT_SECS."""
        ticks_per_heartbeat = max(1, round(settings.CHAT_JOB_HEARTBEAT_SECS / TICK_SECS))
        tick = 0
        while not stop.wait(TICK_SECS):
            tick += 1
            if tick % ticks_per_heartbeat == 0:
                self._housekeep_once()
            else:
                self._enqueue_due()
        connection.close()

    def _enqueue_due(self):
        try:
            jobs.enqueue_due()
        except Exception:  # a locked or unreachable database: the next tick tries again
            log.exception("enqueueing recurring jobs failed")
            connection.close()
