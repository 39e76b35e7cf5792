"""The job workers a node starts beside itself: `run_server.py --workers N` (what `make run`
uses, so one machine needs no second command). Each is a `manage.py db_worker` child
(chat.worker), stopped with SIGTERM when the node stops (a worker finishes its current job
first; jobs are bounded) and told by the kernel (PR_SET_PDEATHSIG) to stop if the node dies
without stopping them. A cluster runs its workers as processes of their own (deploy/).
"""
import ctypes
import logging
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("chat.workerprocs")

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
WORKER_STOP_SECS = 2  # after the node's own shutdown; then the worker is killed (its job is re-run)


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: a worker outliving a killed node just keeps working


def worker_command():
    return [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay"]


def start(count):
    procs = [subprocess.Popen(worker_command(), cwd=ROOT, preexec_fn=_die_with_parent) for _ in range(count)]
    if procs:
        log.info("started %d job worker(s): pids %s", len(procs), " ".join(str(p.pid) for p in procs))
    return procs


def signal_all(procs, signum=signal.SIGTERM):
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)


def stop(procs, timeout=WORKER_STOP_SECS):
    signal_all(procs)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("job worker %d did not stop in %ss: killed (its job runs again later)", proc.pid, timeout)
            proc.kill()
            proc.wait(5)
