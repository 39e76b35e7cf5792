"""Cluster paths on PostgreSQL: `unavailable` on connect, join and history while the
database link is cut, and nonce idempotency when a client moves to another node."""
import threading
import time

import psycopg
import pytest
import requests

from tests.chatclient import all_join, unique
from tests.cluster import FreezableProxy
from tests.test_cluster import cluster, free_port  # noqa: F401 (the fixture)
from tests.serverproc import wait_until
from tests.test_server import refusal_code

pytestmark = pytest.mark.cluster


def stored(db, room):
    return db.query("SELECT m.seq, m.author, m.text FROM chat_message m JOIN chat_room r ON r.id = m.room_id "
                    "WHERE r.name = %s ORDER BY m.seq", (room,))


def unavailable(reply):
    return reply["ok"] is False and reply["error"]["code"] == "unavailable" and reply["error"]["message"]


def test_connect_join_and_history_answer_unavailable_while_postgresql_is_cut(cluster, clients):  # noqa: F811
    proxy = FreezableProxy(free_port(), 5432)
    try:
        node = cluster.add_node(cluster.db.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.listen_port}"))
        room = unique("room")
        a, = all_join(room, clients(node.url).connect(name="amy"))
        first = a.send(room, "before the cut")
        proxy.cut()
        assert unavailable(a.call("history", {"room": room}))
        assert unavailable(a.call("join", {"room": unique("new")}))
        assert unavailable(a.call("rooms"))
        assert refusal_code(node.url, "websocket", name="bob") == "unavailable"
        assert refusal_code(node.url, "polling", name="bob") == "unavailable"
        assert requests.get(node.url + "/healthz", timeout=5).status_code == 503
        proxy.restore()
        deadline = time.monotonic() + 15
        while unavailable(reply := a.call("history", {"room": room})) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert reply == {"ok": True, "messages": [first]}
        assert clients(node.url).connect(name="bob").join(room)["history"] == [first]
        assert stored(cluster.db, room) == [(first["id"], "amy", "before the cut")]
    finally:
        proxy.close()


def lock_waiters(db):
    return db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                    (db.name,))[0][0]


def send_in_thread(client, payload, replies, timeout=20):
    def send():
        try:
            replies.append(client.call("send", payload, timeout=timeout))
        except Exception as exc:  # a replaced connection loses its ack
            replies.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_nonce_is_one_message_when_the_client_moves_to_another_node(cluster, clients):  # noqa: F811
    n1, n2 = cluster.add_node(), cluster.add_node()
    room = unique("room")
    watcher, mover = all_join(room, clients(n2.url).connect(name="watcher"), clients(n1.url).connect(name="mover"))
    first = mover.send(room, "once", nonce="n-1")
    mover.close()
    moved, = all_join(room, clients(n2.url).connect(token=mover.welcome["token"]))  # reconnect elsewhere
    assert moved.send(room, "once", nonce="n-1") == first
    # The same nonce committed by two nodes at once: both look it up before either commits.
    payload = {"room": room, "text": "twice?", "nonce": "n-2"}
    old_replies, new_replies = [], []
    with psycopg.connect(cluster.db.url.replace("postgres://", "postgresql://")) as blocker:
        blocker.execute("SELECT 1 FROM chat_room WHERE name = %s FOR NO KEY UPDATE", [room])  # holds the room's ids
        old = send_in_thread(moved, payload, old_replies, timeout=5)  # on node 2 ...
        wait_until(lambda: lock_waiters(cluster.db) == 1, message="node 2's commit waiting")
        taker, = all_join(room, clients(n1.url).connect(token=moved.welcome["token"]))  # ... taken over on node 1
        new = send_in_thread(taker, payload, new_replies)
        wait_until(lambda: lock_waiters(cluster.db) == 2, message="node 1's commit waiting too")
    new.join(20)
    old.join(20)
    reply, = new_replies
    assert reply["ok"], reply
    second = reply["message"]
    assert [r["message"] for r in old_replies if isinstance(r, dict) and r["ok"]] in ([], [second])
    assert stored(cluster.db, room) == [(first["id"], "mover", "once"), (second["id"], "mover", "twice?")]
    assert watcher.wait_messages(room, 2) == [first, second]
    time.sleep(0.5)  # a duplicate delivery would have arrived by now
    assert len(watcher.messages(room)) == 2
