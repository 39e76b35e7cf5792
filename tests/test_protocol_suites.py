"""The official Engine.IO v4 and Socket.IO v5 protocol test suites (../shared/protocol-suites),
run unchanged by Node's mocha against tests/conformance_app.py: this project's own server
stack (gevent server, chat.engine, chat.wire, chat.outbox) serving the suites' reference
behaviour, configured through settings with the suites' timings.

Every test of each suite must pass, on websocket and long-polling alike; the counts are
checked too, so a suite that silently ran fewer tests would fail here. The read-only suites
are copied to a temporary folder and their locked npm packages installed there.

Two tests race by design, and mocha may retry them (and only them) twice; any other test
must pass at its first attempt:
- "ignores HTTP requests with same sid after upgrade" sends `2probe` and `5` without waiting
  for `3probe`, polls, then expects the next websocket message to be the echo. When the
  client's ws delivers `3probe` in the same event loop turn as the poll's answer, the test
  takes `3probe` for the echo. Node's own engine.io 6 server fails it the same way, 6 runs
  in 20 on this machine, as ours does (5 in 20).
- "forcefully closes the session" sends a poll and the POST of a close packet at the same
  moment, on two connections, and expects the poll to be answered `6`. Nothing orders the
  two: when a loaded server reads the POST first, the session is gone before the poll
  arrives (400). Seen once, in a full CI run; never in 32 runs of the suite alone."""
import json
import shutil
import subprocess
import sys

import pytest

from tests.needs import missing
from tests.serverproc import ROOT, ListeningProcess, base_env

SUITES = ROOT.parent / "shared" / "protocol-suites"
RACY = {"Engine.IO protocol upgrade ignores HTTP requests with same sid after upgrade",
        "Engine.IO protocol close HTTP long-polling forcefully closes the session"}
RETRIES = 2
SUITE_TIMINGS = {  # what both suites' README expects of the server under test
    "CHAT_PING_INTERVAL_MS": 300, "CHAT_PING_TIMEOUT_MS": 200, "CHAT_CONNECT_TIMEOUT_MS": 1000,
    "CHAT_MAX_PAYLOAD_BYTES": 1_000_000, "CHAT_ALLOWED_ORIGINS": "*",
}


@pytest.fixture(scope="module")
def conformance_url(tmp_path_factory):
    database = tmp_path_factory.mktemp("conformance") / "unused.sqlite3"
    server = ListeningProcess([sys.executable, "tests/conformance_app.py", "--port", "0"],
                              env=base_env(DATABASE_URL=f"sqlite:///{database}", **SUITE_TIMINGS)).start()
    yield server.url
    server.stop()


def installed_suite(name, tmp_path_factory):
    if not (SUITES / name / "test-suite.js").exists():
        missing(f"the protocol suites are not at {SUITES}")
    if shutil.which("npm") is None:
        missing("npm is not installed")
    folder = tmp_path_factory.mktemp("suites") / name
    shutil.copytree(SUITES / name, folder, ignore=shutil.ignore_patterns("node_modules"))
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, check=True,
                   timeout=300)
    return folder


def run_suite(folder, url, **env):
    """Run the suite with mocha's JSON reporter; returns (stats, failures as 'title: message',
    titles of the tests that passed only on a retry)."""
    done = subprocess.run(["npx", "mocha", "test-suite.js", "--reporter", "json", "--retries", str(RETRIES)], cwd=folder,
                          env=base_env(SUITE_URL=url, **env), capture_output=True, text=True, timeout=300)
    start = done.stdout.find("{")
    assert start >= 0, f"mocha printed no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    report = json.loads(done.stdout[start:])
    failures = [f"{test['fullTitle']}: {test['err'].get('message')}" for test in report["failures"]]
    retried = {test["fullTitle"] for test in report["passes"] if test.get("currentRetry")}
    return report["stats"], failures, retried


@pytest.mark.parametrize("suite, expected, env", [
    ("engine.io-protocol", 24, {"EIO_PATH": "/engine.io/"}),
    ("socket.io-protocol", 32, {}),
])
def test_official_suite_passes_every_test(suite, expected, env, conformance_url, tmp_path_factory):
    stats, failures, retried = run_suite(installed_suite(suite, tmp_path_factory), conformance_url, **env)
    assert failures == []
    assert retried <= RACY, "passed only when retried"
    assert (stats["tests"], stats["passes"]) == (expected, expected)
