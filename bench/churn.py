"""The long connection-churn run: tens of thousands of connect/join/leave cycles (clean
closes, TCP resets, long-polling clients that vanish) against a real server, then a check
that sockets and greenlets are back at their baseline with no ghost members, and that
memory does not grow once settled: RSS may rise in the first round (the allocator's
high-water mark: pymalloc arenas and malloc'd blocks are kept for reuse) but must stay
within 2% from the end of the first round to the end. The rise over the baseline is
printed too. `make test` runs the short version (tests/test_churn.py).

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
        settled_rss = None
        for index in range(args.rounds):
            kinds = churn(server.url, per_round, f"r{index}-")
            state = snapshot(server)
            settled_rss = settled_rss or state["rss_kib"]
            print(f"round {index + 1}: {json.dumps(kinds)} -> {json.dumps(state)}", flush=True)
        final = snapshot(server)
        elapsed = time.monotonic() - started
        ok = (final["fds"] <= baseline["fds"] * 1.1 + 2 and final["greenlets"] <= baseline["greenlets"] * 1.1 + 5
              and final["tracked_rooms"] == 0 and final["rss_kib"] <= settled_rss * 1.02)
        print(f"{args.cycles} cycles in {elapsed:.0f}s ({args.cycles / elapsed:.0f}/s); final {json.dumps(final)}; "
              f"RSS {100 * (final['rss_kib'] / baseline['rss_kib'] - 1):+.0f}% over the baseline, "
              f"{100 * (final['rss_kib'] / settled_rss - 1):+.1f}% after round 1; "
              f"{'no growth, back at baseline' if ok else 'NOT settled'}")
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
