"""Refusal paths of one node: a full database queue (`busy`), the per-name and `join` rate
limits, and nonce idempotency across reconnects, takeovers and concurrent duplicates."""
import threading
import time

import requests

from tests.chatclient import all_join, unique
from tests.serverproc import wait_until


def stored_texts(server, room):
    """Every stored (id, user, text) of the room, oldest first, paging back through the HTTP API."""
    rows, before = [], None
    while True:
        params = {"limit": 100, **({"before": before} if before else {})}
        page = requests.get(server.url + f"/api/rooms/{room}/messages", params=params, timeout=5).json()["messages"]
        rows = [(m["id"], m["user"], m["text"]) for m in page] + rows
        if len(page) < 100:
            return rows
        before = page[0]["id"]


def emit_all(client, event, payloads, timeout=20):
    """Emit every payload at once (not waiting for acks); returns the acks in order, once all
    arrived or the client was disconnected (then None for the unanswered)."""
    acks = [None] * len(payloads)

    def answered(index):
        return lambda reply: acks.__setitem__(index, reply)

    for index, payload in enumerate(payloads):
        client.sio.emit(event, payload, callback=answered(index))
    wait_until(lambda: all(ack is not None for ack in acks) or not client.sio.connected, timeout=timeout,
               message=f"acks of {len(payloads)} {event}s")
    return acks


def test_a_full_database_queue_answers_busy_and_stores_exactly_the_acked(start_server, clients):
    server = start_server(CHAT_DB_QUEUE=1, CHAT_WRITE_BATCH=1)
    room = unique("room")
    senders = all_join(room, *[clients(server.url).connect(name=f"s{i}") for i in range(30)])
    results = {}
    threads = [threading.Thread(target=lambda s=s: results.update({s.name: emit_all(s, "send", [
        {"room": room, "text": f"{s.name} {k}"} for k in range(5)])})) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    acks = [(name, k, ack) for name, replies in results.items() for k, ack in enumerate(replies)]
    assert len(acks) == 150 and None not in [ack for _, _, ack in acks]
    busy = [ack for _, _, ack in acks if not ack["ok"]]
    assert busy, "no send was refused with a queue of one"
    print(f"{len(busy)} of 150 busy")
    assert all(ack["error"]["code"] == "busy" and ack["error"]["message"] for ack in busy), busy[:3]
    acked = sorted((ack["message"]["id"], name, f"{name} {k}") for name, k, ack in acks if ack["ok"])
    assert acked and stored_texts(server, room) == acked  # every ack stored; nothing refused was
    assert [a.send(room, "the queue drained")["id"] for a in senders[:1]] == [len(acked) + 1]


def test_the_name_bucket_survives_a_reconnect(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="send=1/3,join=1/2", CHAT_FLOOD_STRIKES=100)
    room = unique("room")
    first, = all_join(room, clients(server.url).connect(name="eager"))
    assert [first.call("send", {"room": room, "text": f"m{i}"})["ok"] for i in range(3)] == [True] * 3
    refused = first.call("send", {"room": room, "text": "m3"})
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited", refused
    assert 0 < refused["error"]["retry_after"] <= 1, refused
    first.close()
    again = clients(server.url).connect(token=first.welcome["token"])  # a new connection, the same name
    again.join(room)
    refused = again.call("send", {"room": room, "text": "m3"})
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited", refused
    other, = all_join(room, clients(server.url).connect(name="patient"))  # another name has its own bucket
    assert other.call("send", {"room": room, "text": "fresh"})["ok"]
    time.sleep(refused["error"]["retry_after"] + 0.05)
    assert again.call("send", {"room": room, "text": "m3"})["ok"]  # after retry_after it goes through
    assert [text for _, _, text in stored_texts(server, room)] == ["m0", "m1", "m2", "fresh", "m3"]


def test_join_is_rate_limited_per_connection_and_per_name(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="join=1/2", CHAT_FLOOD_STRIKES=100)
    joiner = clients(server.url).connect(name="roamer")
    rooms = [unique("room") for _ in range(3)]
    assert joiner.call("join", {"room": rooms[0]})["ok"] and joiner.call("join", {"room": rooms[1]})["ok"]
    refused = joiner.call("join", {"room": rooms[2]})
    assert refused["ok"] is False and refused["error"]["code"] == "rate_limited", refused
    assert 0 < refused["error"]["retry_after"] <= 1
    assert joiner.call("send", {"room": rooms[2], "text": "not in"})["error"]["code"] == "not_member"
    joiner.close()
    back = clients(server.url).connect(token=joiner.welcome["token"])
    assert back.call("join", {"room": rooms[2]})["error"]["code"] == "rate_limited"  # the name's bucket is empty too
    time.sleep(refused["error"]["retry_after"] + 0.05)
    assert back.call("join", {"room": rooms[2]})["ok"]


def test_a_nonce_is_one_message_across_reconnect_and_takeover(start_server, clients):
    server = start_server()
    room = unique("room")
    watcher, sender = all_join(room, clients(server.url).connect(name="watcher"),
                               clients(server.url).connect(name="sender"))
    first = sender.send(room, "exactly once", nonce="n-1")
    sender.close()
    back, = all_join(room, clients(server.url).connect(token=sender.welcome["token"]))  # reconnect
    assert back.send(room, "exactly once", nonce="n-1") == first
    taker, = all_join(room, clients(server.url).connect(token=back.welcome["token"]))  # takeover of a live socket
    back.wait_for("kicked", lambda d: d["code"] == "replaced")
    assert taker.send(room, "exactly once", nonce="n-1") == first
    assert taker.send(room, "another", nonce="n-2")["id"] == first["id"] + 1
    time.sleep(0.3)  # a duplicate delivery would have arrived by now
    assert [m["id"] for m in watcher.messages(room)] == [first["id"], first["id"] + 1]
    assert stored_texts(server, room) == [(first["id"], "sender", "exactly once"), (first["id"] + 1, "sender", "another")]


def test_concurrent_duplicates_of_a_nonce_store_one_message(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="off")
    room = unique("room")
    watcher, sender = all_join(room, clients(server.url).connect(name="watcher"),
                               clients(server.url).connect(name="sender"))
    payload = {"room": room, "text": "retried", "nonce": "dup"}
    replies = {}
    pipelined = threading.Thread(target=lambda: replies.update(old=emit_all(sender, "send", [payload] * 20)))
    pipelined.start()  # 20 copies in flight on the old connection ...
    taker, = all_join(room, clients(server.url).connect(token=sender.welcome["token"]))  # ... while it is taken over
    replies["new"] = emit_all(taker, "send", [payload] * 20)
    pipelined.join(30)
    assert None not in replies["new"]
    answers = replies["new"] + [r for r in replies["old"] if r is not None]  # the old socket's last ones may be cut
    ids = {r["message"]["id"] for r in answers if r["ok"]}
    refused = {r["error"]["code"] for r in answers if not r["ok"]}
    assert len(ids) == 1 and refused <= {"not_member"}, (ids, refused)  # not_member: a send after the kick
    wait_until(lambda: watcher.messages(room), message="the one message delivered")
    time.sleep(0.3)
    assert [m["id"] for m in watcher.messages(room)] == list(ids)
    assert stored_texts(server, room) == [(ids.pop(), "sender", "retried")]
