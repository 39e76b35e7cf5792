"""Connection churn leaves nothing behind (the short runs; bench/churn.py is the long one)."""
import re

import requests

from tests.chatclient import ChatClient
from tests.churn import churn, health, issue_churn, process_footprint
from tests.serverproc import manage, wait_until

# vanished long-polling clients are noticed after ping interval + timeout
FAST_PINGS = {"CHAT_PING_INTERVAL_SECS": 1, "CHAT_PING_TIMEOUT_SECS": 1}
CHURN = {"CHAT_RATE_LIMITS": "off", "CHAT_MAX_CONNECTIONS_PER_IP": 0, **FAST_PINGS}

# RSS rises for the first thousands of cycles and then stays flat (bench/churn.py: 100,000
# cycles, see bench/results/churn-issue14-notes.md). The rise is SQLite's page caches filling
# as the database grows (CHAT_SQLITE_CACHE_KIB per connection, ~10,000 cycles at the default
# 512 KiB) and the allocator's high-water mark. The warm-up must outlast it, or a steady leak
# hides in the rise: here the caches are capped low so they fill within the warm-up (their
# bound is tested below). Issue 14 measured a leak of ~0.9 KB per cycle: 3.6 MB over MEASURED
# cycles, 5% of this server's ~72 MB. A settled server moves under 1% over the same run (RSS
# is a high-water mark: a burst of concurrent sessions raises it once), so the bound sits
# between the two.
WARMUP, MEASURED, RSS_GROWTH_ALLOWED = 3000, 4000, 1.035
SMALL_SQLITE_CACHE = {"CHAT_SQLITE_CACHE_KIB": 64}


def settled(url):
    return wait_until(lambda: (lambda h: h if h["connections"] == 0 and h["engineio_sockets"] == 0 else None)(health(url)),
                      timeout=30, interval=0.5, message="every churned connection gone")


def test_churn_returns_to_baseline_with_no_ghosts(start_server):
    server = start_server(**CHURN)
    churn(server.url, 150, "warm")  # warm-up: caches, pools
    baseline_health, baseline = settled(server.url), process_footprint(server.pid)
    churn(server.url, 600, "churn")
    after_health, after = settled(server.url), process_footprint(server.pid)
    released = set(re.findall(r" disconnect node=\S+ sid=\S+ addr=\S+ name=(churn\d+) ", server.output()))
    assert released == {f"churn{i}" for i in range(600)}  # clean closes, TCP resets and vanished pollers alike
    rooms = requests.get(server.url + "/api/rooms/", timeout=5).json()["rooms"]
    assert all(room["members"] == 0 for room in rooms), rooms  # no ghost members
    assert after_health["tracked_rooms"] == 0
    assert after["fds"] <= baseline["fds"] * 1.1 + 2, (baseline, after)
    assert after_health["greenlets"] <= baseline_health["greenlets"] * 1.1 + 5, (baseline_health, after_health)
    for name in ("churn0", "churn1", "churn2"):  # clean, reset and vanished names are free again
        ChatClient(server.url).connect(name=name).close()


def test_memory_does_not_grow_with_the_issue_churn(start_server):
    """Issue 14's mix (50 rooms, 40 at a time, a send every second cycle, 1 in 10 vanishing)."""
    server = start_server(**CHURN, **SMALL_SQLITE_CACHE)
    issue_churn(server.url, WARMUP, "warm")
    settled(server.url)
    baseline = process_footprint(server.pid)
    issue_churn(server.url, MEASURED, "churn", start=WARMUP)
    settled(server.url)
    after = process_footprint(server.pid)
    assert after["rss_kib"] <= baseline["rss_kib"] * RSS_GROWTH_ALLOWED, (baseline, after)


def test_sqlite_page_cache_is_bounded(start_server):
    """SQLite's page cache (2 MiB per connection by default) filled with the growing database
    and read as RSS growing with churn; every connection's cache is capped by the setting."""
    server = start_server()
    out = manage(server.database_url, "shell", "-c",
                 "from django.conf import settings; from django.db import connection; c = connection.cursor(); "
                 "c.execute('PRAGMA cache_size'); print(c.fetchone()[0], settings.CHAT_SQLITE_CACHE_KIB)")
    cache_size, setting = map(int, out.strip().splitlines()[-1].split())
    assert cache_size == -setting and setting <= 1024, (cache_size, setting)
