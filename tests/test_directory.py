"""The cluster directory has no ghosts and no holes: per-address caps hold under a burst,
an aborted takeover hands the name back, a clean stop leaves no rows, and the heartbeat and
delivery checks survive any error. Issue 14, points 8 and 10."""
import json
import sqlite3
import threading
import time

import requests

from tests.chatclient import unique
from tests.cluster import PostgresDatabase, require_postgres
from tests.rawclient import RawPolling, RawSocket
from tests.serverproc import ServerProcess, wait_until


def connect_all_at_once(url, count):
    """`count` Engine.IO sessions from one address send their Socket.IO CONNECT together."""
    sockets = [RawSocket(url) for _ in range(count)]
    start, outcomes = threading.Barrier(count), []

    def connect(raw, name):
        start.wait()
        raw.ws.send("40" + json.dumps({"name": name}))
        outcomes.append(raw.until(lambda f: f.startswith('42["welcome"') or f.startswith("44")))

    threads = [threading.Thread(target=connect, args=(raw, unique("burst"))) for raw in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for raw in sockets:
        raw.close()
    return outcomes


def test_a_burst_of_connects_from_one_address_respects_the_cap(start_server):
    server = start_server(CHAT_MAX_CONNECTIONS_PER_IP=5, CHAT_RATE_LIMITS="off")
    outcomes = connect_all_at_once(server.url, 60)
    assert len(outcomes) == 60
    welcomed = [o for o in outcomes if o.startswith('42["welcome"')]
    refused = [o for o in outcomes if "too_many_connections" in o]
    assert len(welcomed) == 5 and len(refused) == 55


def abort_a_takeover(db, server, live, meanwhile=lambda: None):
    """A long-polling takeover of `live`'s name (with its token) whose session closes while
    its claim waits on the database row; `meanwhile()` runs during that wait too."""
    import psycopg

    taker = RawPolling(server.url)
    with psycopg.connect(db.url.replace("postgres://", "postgresql://")) as lock:
        lock.execute("SELECT 1 FROM chat_online WHERE key = %s FOR UPDATE", (live.name.lower(),))  # claims wait
        connecting = threading.Thread(target=taker.post, args=("40" + json.dumps({"token": live.welcome["token"]}),))
        connecting.start()
        time.sleep(0.5)
        meanwhile()
        requests.post(f"{taker.base}&sid={taker.sid}", data="1", timeout=5)  # Engine.IO close
        time.sleep(0.2)
    connecting.join(10)


def test_an_aborted_takeover_hands_the_name_back_to_the_live_connection(clients):
    require_postgres()
    with PostgresDatabase() as db:
        server = ServerProcess(db.url).start()
        try:
            live = clients(server.url).connect(name="alice")
            live_sid = live.sio.get_sid()
            abort_a_takeover(db, server, live)
            wait_until(lambda: db.query("SELECT sid FROM chat_online WHERE key = 'alice'") == [(live_sid,)],
                       timeout=10, message="alice's row back with the live connection")
            squatter = RawSocket(server.url)
            squatter.ws.send("40" + json.dumps({"name": "alice"}))
            answer = squatter.until(lambda f: f.startswith('42["welcome"') or f.startswith("44"))
            squatter.close()
            assert "name_taken" in answer, answer
            assert live.sio.connected and live.call("rooms")["ok"]
            assert not live.received("kicked")
        finally:
            server.stop()


def test_an_aborted_takeover_of_a_connection_that_left_meanwhile_frees_the_name(clients):
    """Both leave while the takeover's claim waits: the name goes back to nobody (it was
    handed back to the dead connection, a ghost that kept the name until a restart)."""
    require_postgres()
    with PostgresDatabase() as db:
        server = ServerProcess(db.url).start()
        try:
            live = clients(server.url).connect(name="alice")
            abort_a_takeover(db, server, live, meanwhile=live.close)  # its release waits behind the claim
            wait_until(lambda: db.query("SELECT sid FROM chat_online WHERE key = 'alice'") == [],
                       timeout=10, message="alice's row gone")
            assert clients(server.url).connect(name="alice").name == "alice"
        finally:
            server.stop()


def test_sigterm_takes_the_node_and_its_connections_out_of_the_directory(start_server, clients):
    server = start_server()
    room = unique("room")
    for i in range(3):
        clients(server.url).connect(name=unique("m")).join(room)
    server.stop()
    assert server.proc.returncode == 0
    path = server.database_url[len("sqlite:///"):]
    with sqlite3.connect(path) as db:
        left = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("chat_online", "chat_membership", "chat_node")]
    assert left == [0, 0, 0]
