"""How many jobs a second `manage.py db_worker` processes (chat.worker on django-tasks-db).

    .venv/bin/python bench/jobs.py [--jobs 2000] [--workers 1,2] [--database-url URL]

Enqueues `--jobs` digest jobs for accounts that do not exist (each job then does the
queries of a digest that finds nothing: the common case, a read-before-the-delay), starts
N workers with `--batch` and reports jobs/s from the first claim to the last finish, for
each N. SQLite by default (a fresh file); `--database-url postgres://...` names an empty
database to use (it is migrated). The load to compare with: at most one digest job per
account per CHAT_EMAIL_DELAY_SECS, plus one maintenance job per CHAT_MAINTENANCE_EVERY_SECS.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env(url):
    return dict(os.environ, DJANGO_SETTINGS_MODULE="settings", DATABASE_URL=url, LOG_LEVEL="WARNING")


def manage(url, *args):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env(url), check=True,
                          capture_output=True, text=True).stdout


ENQUEUE = """
from django.db import transaction
from django_tasks_db.models import DBTaskResult
from chat import jobs, tasks
DBTaskResult.objects.all().delete()
with transaction.atomic():
    for n in range({count}):
        jobs.enqueue(tasks.send_digest, 10**9 + n)
"""

SPAN = """
from django.db.models import Max, Min
from django_tasks_db.models import DBTaskResult
span = DBTaskResult.objects.filter(task_path='chat.tasks.send_digest').aggregate(a=Min('started_at'), b=Max('finished_at'))
done = DBTaskResult.objects.filter(task_path='chat.tasks.send_digest', status='SUCCESSFUL').count()
print('SPAN', (span['b'] - span['a']).total_seconds(), done)
"""


def run(url, count, workers):
    manage(url, "shell", "-c", ENQUEUE.format(count=count))
    procs = [subprocess.Popen([sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay",
                               "--interval", "0.05", "-v", "0"], cwd=ROOT, env=env(url)) for _ in range(workers)]
    for proc in procs:
        proc.wait()
    _, seconds, done = manage(url, "shell", "-c", SPAN).split()[-3:]
    return float(seconds), int(done)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/jobs.sqlite3"
        manage(url, "migrate", "--noinput", "-v", "0")
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.monotonic()
            seconds, done = run(url, args.jobs, workers)
            print(f"{url.split(':')[0]}: {workers} worker(s): {done}/{args.jobs} jobs in {seconds:.2f} s "
                  f"= {done / seconds:,.0f} jobs/s (wall {time.monotonic() - started:.1f} s with start-up)", flush=True)


if __name__ == "__main__":
    main()
