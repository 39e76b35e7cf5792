"""Real server processes for tests: `run_server.py` on a free port with its own database."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
SHUTDOWN_SECS = 10  # README: after SIGTERM a node exits within 10 s


def base_env(**overrides):
    env = dict(os.environ)
    env.update({"DJANGO_SETTINGS_MODULE": "settings", "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def migrate(database_url):
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=base_env(DATABASE_URL=database_url), check=True)


class ListeningProcess:
    """A process that logs `listening on http://HOST:PORT`; `url` is known once it has."""

    def __init__(self, args, cwd=ROOT, env=None):
        self.args, self.cwd, self.env = args, cwd, env
        self.proc = None
        self.url = None
        self.port = None
        self.lines = []
        self._ready = threading.Event()

    def start(self, timeout=30):
        self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"{self.args[1]} did not start:\n" + self.output())
        return self

    def _read_output(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(2))
                self.url = f"http://127.0.0.1:{self.port}"
                self._ready.set()

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        return "\n".join(self.lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=SHUTDOWN_SECS):
        """Signal the process and wait for it. After SIGTERM it must exit with status 0
        within `timeout` seconds (the server's shutdown promise): otherwise it is killed
        and AssertionError is raised, so a hung or failing shutdown fails the test."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            code = None
        if sig == signal.SIGTERM and code != 0:
            outcome = f"did not exit within {timeout}s" if code is None else f"exited with status {code}"
            raise AssertionError(f"{self.args[1]} {outcome} after SIGTERM:\n" + "\n".join(self.lines[-40:]))
        return code

    def kill(self):
        self.stop(signal.SIGKILL)


class ServerProcess(ListeningProcess):
    """One `python run_server.py --port 0` process with its own database."""

    def __init__(self, database_url, **env):
        self.database_url = database_url
        super().__init__([sys.executable, "run_server.py", "--host", "127.0.0.1", "--port", "0"],
                         env=base_env(DATABASE_URL=database_url, **env))


class SqliteTemplate:
    """Migrate one SQLite file per test session and copy it for each server."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.template = self.directory / "template.sqlite3"
        migrate(f"sqlite:///{self.template}")
        self.count = 0

    def fresh_url(self):
        self.count += 1
        path = self.directory / f"db{self.count}.sqlite3"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"


def stop_all(processes):
    """Stop every process (SIGTERM), then raise the first failed shutdown, if any."""
    failures = []
    for process in processes:
        try:
            process.stop()
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def wait_until(predicate, timeout=10, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def manage(database_url, *args):
    """Run a manage.py command against a server's database; returns its stdout."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base_env(DATABASE_URL=database_url),
                          check=True, capture_output=True, text=True)
    return done.stdout


def open_fds_to(pid, path):
    """How many file descriptors of process `pid` point at `path` (one per SQLite connection)."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                count += 1
        except OSError:
            pass
    return count
