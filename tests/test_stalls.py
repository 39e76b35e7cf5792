"""Nothing a client does can stall the node: committed messages are delivered outside the
message writer, and a socket closed while being written to runs its disconnect handler
(with its database work) elsewhere. Issue 14, point 1."""
import random
import threading
import time

import requests

from tests.chatclient import unique
from tests.rawclient import RawPolling

# a vanished long-polling member times out 3 s after its last poll
QUICK_TIMEOUTS = {"CHAT_PING_INTERVAL_SECS": 2, "CHAT_PING_TIMEOUT_SECS": 1, "CHAT_RATE_LIMITS": "off",
                  "CHAT_MAX_CONNECTIONS_PER_IP": 0}
SEND_SECS = 20


def join_and_vanish(url, name, room):
    """A long-polling member that joins, then never polls again (a tab on a dead link);
    returns when it is in the room."""
    poller = RawPolling(url)
    poller.post('40{"name": "%s"}' % name)
    poller.until(lambda p: p.startswith('42["welcome"'))
    poller.post('421["join", {"room": "%s"}]' % room)
    poller.until(lambda p: p.startswith("431"))


def send_while_vanishing(sender, room, vanish, every_secs=0.15):
    """Send every 100 ms for SEND_SECS (each send acked within 5 s) while, every `every_secs`,
    a thread runs `vanish(name)` for a new name. Returns the acked ids once every thread is done."""
    stop, threads = threading.Event(), []

    def spawn():
        while not stop.is_set():
            threads.append(threading.Thread(target=vanish, args=(unique(f"lp{len(threads)}"),), daemon=True))
            threads[-1].start()
            stop.wait(every_secs)

    spawner = threading.Thread(target=spawn, daemon=True)
    spawner.start()
    acked, deadline = [], time.monotonic() + SEND_SECS
    try:
        while time.monotonic() < deadline:
            reply = sender.call("send", {"room": room, "text": f"m{len(acked)}"}, timeout=5)
            assert reply["ok"], reply
            acked.append(reply["message"]["id"])
            time.sleep(0.1)
    finally:
        stop.set()
        spawner.join()
        for thread in threads:
            thread.join(20)
    return acked, len(threads)


def test_sends_are_acked_while_long_polling_members_time_out(start_server, clients):
    server = start_server(**QUICK_TIMEOUTS)
    room = unique("room")
    sender = clients(server.url).connect(name=unique("ws"))
    sender.join(room)
    acked, _ = send_while_vanishing(sender, room, lambda name: join_and_vanish(server.url, name, room))
    assert acked == list(range(1, len(acked) + 1))
    assert "ping timeout" in server.output()  # the vanished members were really closed on a send
    assert requests.get(server.url + "/healthz", timeout=5).ok
    late = clients(server.url).connect(name=unique("late"))  # the node still takes new connections
    assert [m["id"] for m in late.join(room, since=0)["history"]][-1] == acked[-1]


def test_bans_of_timed_out_long_polling_members_do_not_stall_the_node(start_server, clients):
    """The ban path: a ban commits in the message writer and is enforced on every node; the
    `banned` event to a long-polling member whose ping has timed out closes that socket.
    Neither may run inside the writer. The banned members sit in another room than the
    sender, so only the ban path meets the timed-out sockets."""
    from tests.test_accounts_admin import cookie_header, create_user, login

    server = start_server(**QUICK_TIMEOUTS)
    staff = unique("staff")
    create_user(server, staff, "staff-password-7", staff=True)
    _, jar = login(server, "/accounts/login/", staff, "staff-password-7")
    moderator = clients(server.url).connect(headers={"Cookie": cookie_header(jar)})
    room, ban_room = unique("room"), unique("bans")
    sender = clients(server.url).connect(name=unique("ws"))
    sender.join(room)
    bans = []

    def vanish_then_ban(name):
        join_and_vanish(server.url, name, ban_room)
        time.sleep(random.uniform(2.5, 4.5))  # around the ping timeout
        bans.append(moderator.call("ban", {"room": ban_room, "user": name}, timeout=10))

    acked, banned = send_while_vanishing(sender, room, vanish_then_ban)
    assert acked == list(range(1, len(acked) + 1))
    assert len(bans) == banned > 100
    assert all(reply == {"ok": True} for reply in bans), [b for b in bans if b != {"ok": True}][:3]
    assert "ping timeout" in server.output()
    late = clients(server.url).connect(name=unique("late"))  # the node still takes new connections
    assert late.join(room)["ok"]
