"""Connection churn against a running server: clean closes, TCP resets and long-polling
clients that vanish. Used by tests/test_churn.py (short) and bench/churn.py (long)."""
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.chatclient import ChatClient
from tests.rawclient import RawPolling, RawSocket


def clean_cycle(url, name, room):
    client = ChatClient(url).connect(name=name)
    client.join(room)
    client.call("leave", {"room": room})
    client.close()


def reset_cycle(url, name, room):
    raw = RawSocket(url)
    raw.connect(name=name)
    raw.call("join", {"room": room})
    raw.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.ws.sock.close()  # RST, no close handshake


def vanish_cycle(url, name, room):
    poller = RawPolling(url)
    poller.post('40{"name": "%s"}' % name)
    poller.until(lambda p: p.startswith('42["welcome"'))
    poller.post('421["join", {"room": "%s"}]' % room)
    poller.until(lambda p: p.startswith("431"))  # then never polls again


CYCLES = (clean_cycle, reset_cycle, vanish_cycle)


def churn(url, count, prefix, rooms=5, workers=8):
    """Run `count` cycles, rotating through the three kinds; returns how many of each ran."""

    def one(i):
        kind = CYCLES[i % len(CYCLES)]
        kind(url, f"{prefix}{i}", f"churn{i % rooms}")
        return kind.__name__

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(one, range(count)))
    return {kind.__name__: done.count(kind.__name__) for kind in CYCLES}


def health(url):
    return requests.get(url + "/healthz?detail=gc", timeout=10).json()


def process_footprint(pid):
    fds = len(__import__("os").listdir(f"/proc/{pid}/fd"))
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return {"fds": fds, "rss_kib": rss}
