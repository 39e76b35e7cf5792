"""A single SQLite node when things go wrong: the database file locked by another process
(`unavailable` after the 5 s busy timeout), SIGKILL, and a SIGTERM with sends in flight.
After each, every acknowledged message reads back."""
import signal
import sqlite3
import threading

import requests

from tests.chatclient import ChatClient, all_join, unique
from tests.serverproc import wait_until
from tests.test_limits_paths import stored_texts
from tests.test_server import refusal_code


def sqlite_path(server):
    return server.database_url.removeprefix("sqlite:///")


def unavailable(reply):
    return reply["ok"] is False and reply["error"]["code"] == "unavailable" and reply["error"]["message"]


def test_a_locked_database_file_answers_unavailable_and_the_node_recovers(start_server, clients):
    server = start_server()
    room, other = unique("room"), unique("room")
    a, = all_join(room, clients(server.url).connect(name="amy"))
    clients(server.url).connect(name="bob").join(other)  # `other` exists: joining it needs one write only
    first = a.send(room, "before the lock")
    holder = sqlite3.connect(sqlite_path(server), isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE chat_room SET last_seq = last_seq WHERE name = ?", (room,))
        assert unavailable(a.call("send", {"room": room, "text": "while locked"}, timeout=20))
        assert unavailable(a.call("join", {"room": unique("new")}, timeout=20))  # creating a room
        assert unavailable(a.call("join", {"room": other}, timeout=20))  # entering an existing one
        assert a.call("history", {"room": room})["ok"]  # WAL: reads go on under the writer's lock
        assert refusal_code(server.url, "websocket", name="carl") == "unavailable"
        assert requests.get(server.url + "/healthz", timeout=10).json()["database"] == "ok"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    after = a.send(room, "after the lock")
    assert a.join(other)["ok"] and clients(server.url).connect(name="carl").name == "carl"
    assert stored_texts(server, room) == [(first["id"], "amy", "before the lock"), (after["id"], "amy", "after the lock")]
    assert after["id"] == first["id"] + 1  # the refused send used no id


def keep_sending(client, room, acked, attempted, stop):
    """Send until `stop` or the connection drops; every ack is recorded as (id, text)."""
    i = 0
    while not stop.is_set() and client.sio.connected:
        text = f"{client.name} {i}"
        attempted.add(text)
        try:
            reply = client.call("send", {"room": room, "text": text}, timeout=5)
        except Exception:  # the connection went away with this send in flight
            return
        if reply["ok"]:
            acked.append((reply["message"]["id"], client.name, text))
        i += 1


def start_sending(server, room, count):
    """`count` members sending in threads; returns (acked, attempted, stop, threads)."""
    acked, attempted, stop = [], set(), threading.Event()
    members = all_join(room, *[ChatClient(server.url).connect(name=f"sender{i}") for i in range(count)])
    threads = [threading.Thread(target=keep_sending, args=(m, room, acked, attempted, stop)) for m in members]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 50, timeout=15, message="sends under way")
    return acked, attempted, stop, threads, members


def check_after_restart(start_server, server, room, acked, attempted):
    again = start_server(database_url=server.database_url)
    stored = stored_texts(again, room)
    stored_set = set(stored)
    assert set(acked) <= stored_set, sorted(set(acked) - stored_set)[:5]  # no acked message lost
    assert {text for _, _, text in stored} <= attempted and len(stored) == len(stored_set)
    assert [m[0] for m in stored] == list(range(1, len(stored) + 1))  # ids without holes
    assert clients_can_chat(again, room)
    return stored


def clients_can_chat(server, room):
    client = ChatClient(server.url).connect(name="sender0")  # the old names are free again
    try:
        client.join(room)
        return client.send(room, "back")["id"] > 0
    finally:
        client.close()


def stop_sending(stop, threads, members):
    stop.set()
    for thread in threads:
        thread.join(10)
    for member in members:
        member.close()


def test_sigkill_of_a_sqlite_node_loses_no_acknowledged_message(start_server):
    server = start_server(CHAT_RATE_LIMITS="off")
    room = unique("room")
    acked, attempted, stop, threads, members = start_sending(server, room, 4)
    server.kill()
    stop_sending(stop, threads, members)
    stored = check_after_restart(start_server, server, room, acked, attempted)
    print(f"SIGKILL: {len(acked)} acked, {len(stored)} stored")


def test_sigterm_drains_a_sqlite_node_keeping_every_ack_and_exits_0(start_server):
    server = start_server(CHAT_RATE_LIMITS="off")
    room = unique("room")
    acked, attempted, stop, threads, members = start_sending(server, room, 4)
    assert server.stop(signal.SIGTERM) == 0  # within 10 s, or stop() raises
    assert "stopped node=" in server.output()
    stop_sending(stop, threads, members)
    stored = check_after_restart(start_server, server, room, acked, attempted)
    print(f"SIGTERM: {len(acked)} acked, {len(stored)} stored")
