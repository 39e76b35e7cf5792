"""Real job workers (`manage.py db_worker`) for tests, and reading the job table of a
SQLite test database."""
import json
import signal
import sqlite3
import subprocess
import sys

from tests.serverproc import ROOT, base_env

TASKS_TABLE = "django_tasks_database_dbtaskresult"
FAST = dict(CHAT_JOB_HEARTBEAT_SECS=1, CHAT_JOB_LEASE_SECS=3, CHAT_JOB_BACKOFF_SECS=1)  # seconds, not minutes


class Worker:
    """One `manage.py db_worker` process on a database."""

    def __init__(self, database_url, **env):
        self.proc = subprocess.Popen([sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.2"],
                                     cwd=ROOT, env=base_env(DATABASE_URL=database_url, **{**FAST, **env}),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM: the worker must exit 0 within 10 s; SIGKILL: it dies at once."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            assert self.proc.wait(10) == (0 if sig == signal.SIGTERM else -sig)


def rows(url, sql, params=()):
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        return db.execute(sql, params).fetchall()


def job(url, job_id):
    """(status, worker ids, traceback) of one job."""
    status, worker_ids, traceback = rows(url, f"SELECT status, worker_ids, traceback FROM {TASKS_TABLE} WHERE id = ?",
                                         (job_id.replace("-", ""),))[0]
    return status, json.loads(worker_ids), traceback


def jobs_of(url, task_path):
    """[(status, return value)] of every job of a task, oldest first."""
    return [(status, json.loads(value) if value is not None else None) for status, value in rows(
        url, f"SELECT status, return_value FROM {TASKS_TABLE} WHERE task_path = ? ORDER BY enqueued_at", (task_path,))]
