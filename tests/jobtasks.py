"""Jobs for tests of the job machinery (chat.jobs, chat.worker): importable by real worker
processes (they run from the repository root), with effects in files a test can read."""
import os
import time
from pathlib import Path

from django_tasks import task


@task()
def slow_effect(folder, key, secs):
    """Notes each attempt, works `secs`, then makes its effect idempotently: the file
    `key` is created once (O_EXCL), however many times the job runs to the end."""
    folder = Path(folder)
    with open(folder / f"{key}.attempts", "a") as notes:
        notes.write(f"{os.getpid()}\n")
    time.sleep(secs)
    try:
        with open(folder / key, "x") as effect:
            effect.write("done\n")
    except FileExistsError:
        pass
    return key


@task()
def always_fails(folder):
    with open(Path(folder) / "failures", "a") as notes:
        notes.write(f"{os.getpid()}\n")
    raise RuntimeError("the remote service refused (test)")
