"""Background jobs (chat.jobs, chat.worker, chat.tasks) with real `manage.py db_worker`
processes on a real database: a job commits or rolls back with its cause, a SIGKILLed
worker's job runs again after the restart with one effect, a failing job is retried with
backoff and then kept FAILED with its error in the admin and /metrics, `run_server.py
--workers 1` (`make run`) runs and stops a worker with the node, and the retention purge
runs on the scheduler."""
import datetime
import os
import re
import signal
import subprocess
import sys

import pytest
import requests
from django.db import transaction

from tests.accounts import session_of
from tests.jobworkers import FAST, TASKS_TABLE, job, rows
from tests.serverproc import ROOT, ListeningProcess, base_env, manage, wait_until


def enqueue(url, call):
    """Enqueue `call` (e.g. "tests.jobtasks.always_fails.enqueue('/tmp/x')") from another
    process, as the server does; returns the job's id."""
    out = manage(url, "shell", "-c", f"import tests.jobtasks\nprint('JOB', {call}.id)")
    return re.search(r"JOB (\S+)", out).group(1)


def test_backoff_doubles_up_to_its_cap(settings):
    from chat import jobs

    settings.CHAT_JOB_BACKOFF_SECS, settings.CHAT_JOB_BACKOFF_MAX_SECS = 10, 60
    assert [jobs.backoff_secs(attempt) for attempt in range(1, 6)] == [10, 20, 40, 60, 60]


@pytest.mark.django_db
def test_a_job_is_written_in_its_causes_transaction_and_rolled_back_with_it():
    from django_tasks_db.models import DBTaskResult

    from chat import jobs, tasks

    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue(tasks.maintenance)
        assert DBTaskResult.objects.count() == 1  # written inside the transaction, not after it
        raise RuntimeError("the change fails")
    assert DBTaskResult.objects.count() == 0
    with transaction.atomic():
        jobs.enqueue(tasks.maintenance)
    assert DBTaskResult.objects.count() == 1


def test_a_job_of_a_sigkilled_worker_runs_again_after_the_restart_with_one_effect(sqlite_template, workers,
                                                                                      tmp_path):
    url = sqlite_template.fresh_url()
    job_id = enqueue(url, f"tests.jobtasks.slow_effect.enqueue({str(tmp_path)!r}, 'k1', 2)")
    first = workers(url)
    wait_until(lambda: (tmp_path / "k1.attempts").exists(), timeout=20, message="the first attempt")
    first.stop(signal.SIGKILL)
    assert job(url, job_id)[0] == "RUNNING" and not (tmp_path / "k1").exists()  # killed mid-job

    workers(url)
    wait_until(lambda: job(url, job_id)[0] == "SUCCESSFUL", timeout=30, message="the job done after the restart")
    status, worker_ids, _ = job(url, job_id)
    assert len(worker_ids) == 2 and worker_ids[0] != worker_ids[1]
    assert len((tmp_path / "k1.attempts").read_text().split()) == 2
    assert (tmp_path / "k1").read_text() == "done\n"  # one effect


def test_a_failing_job_is_retried_then_kept_failed_with_its_error_in_the_admin_and_metrics(
        sqlite_template, workers, start_server, tmp_path):
    url = sqlite_template.fresh_url()
    job_id = enqueue(url, f"tests.jobtasks.always_fails.enqueue({str(tmp_path)!r})")
    workers(url, CHAT_JOB_MAX_ATTEMPTS=3)
    wait_until(lambda: job(url, job_id)[0] == "FAILED" and len(job(url, job_id)[1]) == 3, timeout=30,
               message="three attempts")
    status, worker_ids, traceback = job(url, job_id)
    assert "the remote service refused (test)" in traceback
    assert len((tmp_path / "failures").read_text().split()) == 3  # never a fourth

    server = start_server(url)
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'chat_jobs{status="failed"} 1.0' in metrics and "chat_jobs_failed 1.0" in metrics
    manage(url, "shell", "-c", "from django.contrib.auth.models import User\n"
                               "User.objects.create_superuser('root', 'root@example.com', 'a-long-password-16')")
    admin = session_of(server, "root")
    page = admin.get(f"{server.url}/admin/django_tasks_database/dbtaskresult/{job_id}/change/", timeout=5)
    assert page.status_code == 200 and "the remote service refused (test)" in page.text


def test_run_server_with_workers_runs_jobs_and_stops_its_worker(sqlite_template, tmp_path):
    url = sqlite_template.fresh_url()
    job_id = enqueue(url, f"tests.jobtasks.slow_effect.enqueue({str(tmp_path)!r}, 'k2', 0)")
    node = ListeningProcess([sys.executable, "run_server.py", "--port", "0", "--workers", "1"],
                           env=base_env(DATABASE_URL=url, **FAST)).start()
    try:
        wait_until(lambda: job(url, job_id)[0] == "SUCCESSFUL", timeout=30, message="the job run by the node's worker")
        pid = int(wait_until(lambda: re.search(r"job worker\(s\): pids (\d+)", node.output()), timeout=5).group(1))
    finally:
        node.stop()  # SIGTERM: exits 0 within 10 s, worker included
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_retention_runs_on_the_scheduler_only_when_set(sqlite_template):
    url = sqlite_template.fresh_url()
    manage(url, "shell", "-c", "from tests.test_retention import post, age\nimport datetime\n"
                               "ids = post('old', 3)\nage('old', ids[:2], datetime.timedelta(days=40))")
    batch = [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay"]
    subprocess.run(batch, cwd=ROOT, env=base_env(DATABASE_URL=url), check=True, capture_output=True)
    assert rows(url, "SELECT COUNT(*) FROM chat_message")[0][0] == 3  # off by default

    rows(url, "UPDATE chat_jobschedule SET next_run_at = ?", (datetime.datetime(2000, 1, 1).isoformat(sep=" "),))
    subprocess.run(batch, cwd=ROOT, env=base_env(DATABASE_URL=url, CHAT_RETENTION_AGE="30d"), check=True,
                   capture_output=True)
    assert rows(url, "SELECT COUNT(*) FROM chat_message")[0][0] == 1
    assert rows(url, f"SELECT status FROM {TASKS_TABLE} WHERE task_path = 'chat.tasks.maintenance'") == [
        ("SUCCESSFUL",), ("SUCCESSFUL",)]
