"""Connection churn leaves nothing behind (the short run; bench/churn.py is the long one)."""
import re

import requests

from tests.chatclient import ChatClient
from tests.churn import churn, health, process_footprint
from tests.serverproc import wait_until

# vanished long-polling clients are noticed after ping interval + timeout
FAST_PINGS = {"CHAT_PING_INTERVAL_SECS": 1, "CHAT_PING_TIMEOUT_SECS": 1}


def settled(url):
    return wait_until(lambda: (lambda h: h if h["connections"] == 0 and h["engineio_sockets"] == 0 else None)(health(url)),
                      timeout=20, interval=0.5, message="every churned connection gone")


def test_churn_returns_to_baseline_with_no_ghosts(start_server):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_CONNECTIONS_PER_IP=0, **FAST_PINGS)
    churn(server.url, 150, "warm")  # warm-up: caches, pools, allocator arenas
    baseline_health, baseline = settled(server.url), process_footprint(server.pid)
    churn(server.url, 600, "churn")
    after_health, after = settled(server.url), process_footprint(server.pid)
    released = set(re.findall(r" disconnect node=\S+ sid=\S+ addr=\S+ name=(churn\d+) ", server.output()))
    assert released == {f"churn{i}" for i in range(600)}  # clean closes, TCP resets and vanished pollers alike
    rooms = requests.get(server.url + "/api/rooms/", timeout=5).json()["rooms"]
    assert all(room["members"] == 0 for room in rooms), rooms  # no ghost members
    assert after_health["tracked_rooms"] == 0
    assert after["fds"] <= baseline["fds"] * 1.1 + 2, (baseline, after)
    assert after["rss_kib"] <= baseline["rss_kib"] * 1.1, (baseline, after)
    assert after_health["greenlets"] <= baseline_health["greenlets"] * 1.1 + 5, (baseline_health, after_health)
    for name in ("churn0", "churn1", "churn2"):  # clean, reset and vanished names are free again
        ChatClient(server.url).connect(name=name).close()
