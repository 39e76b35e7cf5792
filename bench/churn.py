"""The long connection-churn run: tens of thousands of connect/join/leave cycles (clean
closes, TCP resets, long-polling clients that vanish) against a real server, then a check
that sockets, greenlets and memory are back at their baseline (within 10%) with no ghost
members. `make test` runs the short version (tests/test_churn.py).

    .venv/bin/python bench/churn.py [--cycles 20000] [--rounds 4]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.churn import churn, health, process_footprint  # noqa: E402
from tests.serverproc import ServerProcess, SqliteTemplate, wait_until  # noqa: E402

SETTINGS = {"CHAT_RATE_LIMITS": "off", "CHAT_MAX_CONNECTIONS_PER_IP": 0,
            "CHAT_PING_INTERVAL_SECS": 1, "CHAT_PING_TIMEOUT_SECS": 1}


def settled(url):
    def quiet():
        state = health(url)
        return state if state["connections"] == 0 and state["engineio_sockets"] == 0 else None

    return wait_until(quiet, timeout=60, interval=0.5, message="churned connections gone")


def snapshot(server):
    state = settled(server.url)
    return {**process_footprint(server.pid), "greenlets": state["greenlets"], "tracked_rooms": state["tracked_rooms"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4, help="the cycles are split into rounds, measured after each")
    args = parser.parse_args()
    server = ServerProcess(SqliteTemplate(tempfile.mkdtemp(prefix="churn-")).fresh_url(), **SETTINGS).start()
    try:
        churn(server.url, 300, "warm")
        baseline = snapshot(server)
        print("baseline", json.dumps(baseline), flush=True)
        per_round, started = args.cycles // args.rounds, time.monotonic()
        for index in range(args.rounds):
            kinds = churn(server.url, per_round, f"r{index}-")
            print(f"round {index + 1}: {json.dumps(kinds)} -> {json.dumps(snapshot(server))}", flush=True)
        final = snapshot(server)
        elapsed = time.monotonic() - started
        ok = (final["fds"] <= baseline["fds"] * 1.1 + 2 and final["rss_kib"] <= baseline["rss_kib"] * 1.1
              and final["greenlets"] <= baseline["greenlets"] * 1.1 + 5 and final["tracked_rooms"] == 0)
        print(f"{args.cycles} cycles in {elapsed:.0f}s ({args.cycles / elapsed:.0f}/s); "
              f"final {json.dumps(final)}; {'back at baseline' if ok else 'NOT back at baseline'}")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
