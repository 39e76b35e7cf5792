"""The long connection-churn run (issue 14's mix): every cycle connects with a new name and
joins one of 50 rooms, every second cycle sends, then it leaves by clean close, TCP reset or
(1 in 10) a long-polling client that vanishes; 40 at a time, rate limits off.

The server's RSS is measured every `--every` cycles, each time once every churned connection
is gone, and printed as a series. The verdict: from the end of the warm-up (`--warmup`
cycles: the allocator's high-water mark, pymalloc arenas and malloc'd blocks kept for reuse)
to the end, RSS may grow by at most `--max-growth` percent, and sockets and greenlets must
be back at their baseline with no tracked rooms. A leak of a few hundred bytes per cycle
shows as a steady slope across the series; the slope per cycle after the warm-up is printed
too. `make test` runs the short version (tests/test_churn.py).

    .venv/bin/python bench/churn.py [--cycles 100000] [--warmup 20000] [--every 5000]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.churn import health, issue_churn, process_footprint  # noqa: E402
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


def slope_bytes_per_cycle(points):
    """Least-squares slope of RSS (KiB) over cycles, in bytes per cycle."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if len(points) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 1024 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def run(server, args):
    baseline = snapshot(server)
    print("baseline", json.dumps(baseline), flush=True)
    series, done, started = [], 0, time.monotonic()
    while done < args.cycles:
        step = min(args.every, args.cycles - done)
        issue_churn(server.url, step, "c", start=done)
        done += step
        state = snapshot(server)
        series.append((done, state["rss_kib"]))
        print(f"{done:>7} cycles {time.monotonic() - started:6.0f}s  {json.dumps(state)}", flush=True)
    return baseline, state, series, time.monotonic() - started


def verdict(args, baseline, final, series, elapsed):
    settled_rss = next((rss for cycles, rss in series if cycles >= args.warmup), series[0][1])
    after = [(c, r) for c, r in series if c >= args.warmup]
    growth = 100 * (final["rss_kib"] / settled_rss - 1)
    peak = 100 * (max(r for _, r in after) / settled_rss - 1)
    clean = (final["fds"] <= baseline["fds"] * 1.1 + 2 and final["greenlets"] <= baseline["greenlets"] * 1.1 + 5
             and final["tracked_rooms"] == 0)
    ok = clean and growth <= args.max_growth and peak <= args.max_growth
    print("RSS KiB series:", " ".join(f"{c}:{r}" for c, r in series))
    print(f"{args.cycles} cycles in {elapsed:.0f}s ({args.cycles / elapsed:.0f}/s); "
          f"RSS {baseline['rss_kib']} KiB at start, {settled_rss} after {args.warmup} cycles, {final['rss_kib']} at the end: "
          f"{growth:+.1f}% after the warm-up (peak {peak:+.1f}%, limit {args.max_growth}%), "
          f"slope {slope_bytes_per_cycle(after):+.0f} B/cycle; sockets/greenlets {'back at baseline' if clean else 'NOT back'}")
    print("PASS: no growth after the warm-up" if ok else "FAIL: grows with churn")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20_000, help="cycles before the RSS reference point")
    parser.add_argument("--every", type=int, default=5_000, help="measure RSS every this many cycles")
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent allowed after the warm-up")
    args = parser.parse_args()
    server = ServerProcess(SqliteTemplate(tempfile.mkdtemp(prefix="churn-")).fresh_url(), **SETTINGS).start()
    try:
        issue_churn(server.url, 300, "warm")
        return 0 if verdict(args, *run(server, args)) else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
