"""Nothing a client does can stall the node: committed messages are delivered outside the
message writer, and a socket closed while being written to runs its disconnect handler
(with its database work) elsewhere. Issue 14, point 1."""
import threading
import time

import requests

from tests.chatclient import unique
from tests.rawclient import RawPolling


def join_and_vanish(url, name, room):
    """A long-polling member that joins, then never polls again (a tab on a dead link)."""
    poller = RawPolling(url)
    poller.post('40{"name": "%s"}' % name)
    poller.until(lambda p: p.startswith('42["welcome"'))
    poller.post('421["join", {"room": "%s"}]' % room)
    poller.until(lambda p: p.startswith("431"))


def vanishing_members(url, room, stop, every_secs=0.15):
    """Until `stop` is set, every `every_secs` a new long-polling member joins `room` and goes quiet."""
    count = 0
    while not stop.is_set():
        count += 1
        threading.Thread(target=join_and_vanish, args=(url, unique(f"lp{count}"), room), daemon=True).start()
        stop.wait(every_secs)


def test_sends_are_acked_while_long_polling_members_time_out(start_server, clients):
    server = start_server(CHAT_PING_INTERVAL_SECS=2, CHAT_PING_TIMEOUT_SECS=1, CHAT_RATE_LIMITS="off",
                          CHAT_MAX_CONNECTIONS_PER_IP=0)
    room = unique("room")
    sender = clients(server.url).connect(name=unique("ws"))
    sender.join(room)
    stop = threading.Event()
    churn = threading.Thread(target=vanishing_members, args=(server.url, room, stop), daemon=True)
    churn.start()
    acked = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reply = sender.call("send", {"room": room, "text": f"m{len(acked)}"}, timeout=5)
            assert reply["ok"], reply
            acked.append(reply["message"]["id"])
            time.sleep(0.1)
    finally:
        stop.set()
        churn.join()
    assert acked == list(range(1, len(acked) + 1))
    assert "ping timeout" in server.output()  # the vanished members were really closed on a send
    assert requests.get(server.url + "/healthz", timeout=5).ok
    late = clients(server.url).connect(name=unique("late"))  # the node still takes new connections
    assert [m["id"] for m in late.join(room, since=0)["history"]][-1] == acked[-1]
