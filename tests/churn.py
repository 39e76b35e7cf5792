"""Connection churn against a running server: clean closes, TCP resets and long-polling
clients that vanish. Used by tests/test_churn.py (short) and bench/churn.py (long).

Two mixes: `ROTATE` runs the three kinds 1:1:1; `ISSUE_MIX` is issue 14's: 1 cycle in 10 is a
vanishing long-polling client, the rest alternate clean closes and TCP resets in pairs, and
with `send_every=2` every second cycle sends a message before it leaves."""
import json
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.chatclient import ChatClient
from tests.rawclient import RawPolling, RawSocket


def clean_cycle(url, name, room, text=None):
    client = ChatClient(url).connect(name=name)
    client.join(room)
    if text is not None:
        client.send(room, text)
    client.call("leave", {"room": room})
    client.close()


def reset_cycle(url, name, room, text=None):
    raw = RawSocket(url)
    raw.connect(name=name)
    raw.call("join", {"room": room})
    if text is not None:
        assert raw.call("send", {"room": room, "text": text})["ok"]
    raw.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.ws.sock.close()  # RST, no close handshake


def vanish_cycle(url, name, room, text=None):
    poller = RawPolling(url)
    poller.post('40{"name": "%s"}' % name)
    poller.until(lambda p: p.startswith('42["welcome"'))
    poller.post('421["join", {"room": "%s"}]' % room)
    poller.until(lambda p: p.startswith("431"))
    if text is not None:
        poller.post("422" + json.dumps(["send", {"room": room, "text": text}]))
        poller.until(lambda p: p.startswith("432"))
    # then never polls again


CYCLES = (clean_cycle, reset_cycle, vanish_cycle)


def rotate(i):
    return CYCLES[i % len(CYCLES)]


def issue_mix(i):
    """Issue 14's mix: 1 in 10 vanishes; the others are clean, clean, reset, reset, ..."""
    if i % 10 == 9:
        return vanish_cycle
    return clean_cycle if (i // 2) % 2 == 0 else reset_cycle


def churn(url, count, prefix, rooms=5, workers=8, mix=rotate, send_every=0, start=0):
    """Run cycles `start` .. `start + count - 1` (cycle i joins room `churn{i % rooms}`,
    and sends when `send_every` divides i); returns how many of each kind ran."""

    def one(i):
        kind = mix(i)
        text = f"churn {i}" if send_every and i % send_every == 0 else None
        kind(url, f"{prefix}{i}", f"churn{i % rooms}", text)
        return kind.__name__

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(one, range(start, start + count)))
    return {kind.__name__: done.count(kind.__name__) for kind in CYCLES}


def issue_churn(url, count, prefix, start=0):
    """Issue 14's churn: 50 rooms, 40 at a time, a send every second cycle, 1 in 10 vanishing."""
    return churn(url, count, prefix, rooms=50, workers=40, mix=issue_mix, send_every=2, start=start)


def health(url):
    return requests.get(url + "/healthz?detail=gc", timeout=10).json()


def process_footprint(pid):
    fds = len(__import__("os").listdir(f"/proc/{pid}/fd"))
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return {"fds": fds, "rss_kib": rss}
