"""A real cluster: PostgreSQL, the ZeroMQ broker and several node processes on loopback."""
import signal
import threading
import time

import psycopg
import pytest
import requests
import socketio

from tests.chatclient import ChatClient, all_join, start_senders, unique
from tests.cluster import BrokerProcess, PostgresDatabase, require_postgres
from tests.serverproc import ServerProcess, stop_all, wait_until


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

pytestmark = pytest.mark.cluster

FAST = {"CHAT_NODE_HEARTBEAT_SECS": 1, "CHAT_NODE_TIMEOUT_SECS": 5, "CHAT_DELIVERY_CHECK_SECS": 2}


class Cluster:
    def __init__(self, db, broker):
        self.db, self.broker, self.nodes = db, broker, []

    def add_node(self, database_url=None, **env):
        node = ServerProcess(database_url or self.db.url, **{"CHAT_BROKER_URL": self.broker.url,
                                                             **self.broker.node_env(), **FAST, **env}).start()
        self.nodes.append(node)
        return node

    def stop(self):
        try:
            stop_all(self.nodes)  # each must exit 0 within 10 s of SIGTERM
        finally:
            self.broker.stop()


@pytest.fixture
def cluster():
    require_postgres()
    with PostgresDatabase() as db:
        made = Cluster(db, BrokerProcess().start())
        try:
            yield made
        finally:
            made.stop()


@pytest.fixture
def two_nodes(cluster):
    return cluster.add_node(), cluster.add_node()


def metric(node, name):
    for line in requests.get(node.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_members_on_two_nodes_chat_exactly_once(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    room = unique("room")
    a = clients(n1.url).connect(name="amy")
    b = clients(n2.url, "polling").connect(name="bob")
    a.join(room)
    reply = b.join(room)
    assert reply["members"] == ["amy", "bob"]
    assert a.wait_for("presence", lambda d: d["user"] == "bob") == {
        "room": room, "user": "bob", "action": "join", "count": 2}
    sent = [a.send(room, "from n1"), b.send(room, "from n2"), a.send(room, "again n1")]
    for client in (a, b):
        assert client.wait_messages(room, 3) == sent
    a.sio.emit("typing", {"room": room, "active": True})
    assert b.wait_for("typing") == {"room": room, "user": "amy", "active": True}
    assert {"name": room, "members": 2} in requests.get(n1.url + "/api/rooms/", timeout=5).json()["rooms"]
    b.call("leave", {"room": room})
    assert a.wait_for("presence", lambda d: d["action"] == "leave")["count"] == 1
    time.sleep(0.5)  # late duplicates would show up by now
    assert a.messages(room) == sent and len(b.received("typing")) == 1 and len(a.received("typing")) == 0
    history = [m["id"] for m in ChatClient(n2.url).connect(name="cat").join(room)["history"]]
    assert history == [m["id"] for m in sent]


def test_names_are_unique_across_nodes_and_tokens_take_over_across_nodes(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    first = clients(n1.url).connect(name="Zed")
    late = ChatClient(n2.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        late.connect(name="zed")
    assert late.connect_error["data"]["code"] == "name_taken"
    again = clients(n2.url).connect(token=first.welcome["token"])
    assert again.name == "Zed"
    first.wait_for("kicked", lambda d: d["code"] == "replaced")
    wait_until(lambda: not first.sio.connected, message="old socket on the other node dropped")


def test_a_node_gets_no_traffic_for_rooms_it_has_no_members_in(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    bystander = clients(n2.url).connect(name="bystander")
    bystander.join(unique("elsewhere"))
    time.sleep(0.5)
    before = metric(n2, "chat_bus_messages_in_total")
    room = unique("busy")
    talkers = [clients(n1.url).connect(name=f"talker{i}") for i in range(3)]
    for talker in talkers:
        talker.join(room)
    for i in range(20):
        talkers[i % 3].send(room, f"m{i}")
        talkers[i % 3].sio.emit("typing", {"room": room, "active": True})
    talkers[0].wait_messages(room, 20)
    time.sleep(1)
    assert metric(n1, "chat_bus_messages_out_total") > 0  # the traffic did go out on the bus
    assert metric(n2, "chat_bus_messages_in_total") == before


def test_concurrent_senders_on_two_nodes_share_one_order_and_since_is_exact(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    room = unique("race")
    members = all_join(room, *[clients(node.url).connect(name=f"s{i}-{j}")
                               for i, node in enumerate(two_nodes) for j in range(3)])
    watcher, = all_join(room, clients(n2.url).connect(name="watcher"))
    per_sender = 15  # within the default send burst
    threads = start_senders(members, room, per_sender)
    gap_start = watcher.wait_messages(room, 10)[9]["id"]
    watcher.close()  # misses the rest
    for t in threads:
        t.join()
    total = per_sender * len(members)
    orders = [[m["id"] for m in member.wait_messages(room, total, timeout=30)] for member in members]
    assert all(order == list(range(1, total + 1)) for order in orders), [o for o in orders if o != list(range(1, total + 1))][:1]
    assert all(member.messages(room) == members[0].messages(room) for member in members)
    back = clients(n1.url).connect(token=watcher.welcome["token"])
    recovered = back.join(room, since=gap_start)["history"]
    assert [m["id"] for m in recovered] == list(range(gap_start + 1, total + 1))
    assert recovered == members[0].messages(room)[gap_start:]


def test_killed_node_users_leave_everywhere_within_15s(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    room = unique("room")
    survivor = clients(n1.url).connect(name="survivor")
    survivor.join(room)
    doomed = [clients(n2.url).connect(name=f"doomed{i}") for i in range(3)]
    for client in doomed:
        client.join(room)
    survivor.wait_for("presence", lambda d: d["count"] == 4)
    n2.kill()
    killed_at = time.monotonic()
    for i in range(3):
        survivor.wait_for("presence", lambda d, i=i: d["user"] == f"doomed{i}" and d["action"] == "leave",
                          timeout=15)
    assert time.monotonic() - killed_at < 15
    assert survivor.call("join", {"room": room})["members"] == ["survivor"]
    again = clients(n1.url).connect(name="doomed0")  # the name is free again
    assert again.name == "doomed0"


def test_broker_restart_resumes_delivery_and_recovers_the_outage(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    room = unique("room")
    a = clients(n1.url).connect(name="amy")
    a2 = clients(n1.url).connect(name="ann")
    b = clients(n2.url).connect(name="bob")
    for client in (a, a2, b):
        client.join(room)
    first = a.send(room, "before outage")
    b.wait_messages(room, 1)
    cluster.broker.stop()
    during = [a.send(room, f"during outage {i}") for i in range(3)]
    assert a2.wait_messages(room, 4)[1:] == during  # local delivery goes on
    cluster.broker = BrokerProcess(cluster.broker.port).start()
    got = b.wait_messages(room, 4, timeout=5)  # the outage's messages reach node 2 within 5 s
    assert got == [first] + during
    after = a.send(room, "after restart")
    assert b.wait_messages(room, 5, timeout=5)[-1] == after
    assert [m["id"] for m in b.messages(room)] == [1, 2, 3, 4, 5]


def test_slow_database_query_does_not_stall_other_clients(cluster, clients):
    node = cluster.add_node()
    room = unique("slow")
    a = clients(node.url).connect(name="waiter")
    a.join(room)
    other = clients(node.url).connect(name="other")
    other.join(unique("fast"))
    pending = threading.Event()
    result = {}
    with psycopg.connect(cluster.db.url.replace("postgres://", "postgresql://")) as blocker:
        blocker.execute("SELECT * FROM chat_room WHERE name = %s FOR UPDATE", [room])

        def send():
            pending.set()
            result["ack"] = a.call("send", {"room": room, "text": "stuck behind a lock"})

        sender = threading.Thread(target=send)
        sender.start()
        pending.wait()
        time.sleep(0.2)
        for _ in range(5):  # reads go on while the writer waits in PostgreSQL ...
            assert other.call("rooms", timeout=5)["ok"]
            assert "ack" not in result and sender.is_alive()  # ... and the send is still held
        blocker.execute("SELECT pg_sleep(2)")
    sender.join(10)
    assert result["ack"]["ok"] and result["ack"]["message"]["text"] == "stuck behind a lock"


def test_database_connections_stay_bounded_per_node(cluster, clients):
    node = cluster.add_node(CHAT_DB_READERS=2)
    room = unique("room")
    crowd = [clients(node.url).connect(name=f"c{i}") for i in range(40)]
    for client in crowd:
        client.join(room)
    for client in crowd:
        client.send(room, "hi")
    rows = cluster.db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (cluster.db.name,))
    assert 1 <= rows[0][0] <= 2 + 1 + 1, rows  # readers + writer (+ this query's own connection)


def test_silent_link_loses_nothing_and_heals_within_10s(cluster, clients):
    from tests.cluster import FreezableProxy, free_port_pair

    proxy_port = free_port_pair()
    proxies = [FreezableProxy(proxy_port, cluster.broker.port), FreezableProxy(proxy_port + 1, cluster.broker.port + 1)]
    try:
        n1 = cluster.add_node()
        n2 = cluster.add_node(CHAT_BROKER_URL=f"tcp://127.0.0.1:{proxy_port}")
        room = unique("room")
        a = clients(n1.url).connect(name="amy")
        b = clients(n2.url).connect(name="bob")
        a.join(room)
        b.join(room)
        sent = [a.send(room, "hello"), b.send(room, "hi")]
        for client in (a, b):
            assert client.wait_messages(room, 2) == sent
        for proxy in proxies:
            proxy.freeze()  # node B's links to the broker go silent, still open
        frozen_at = time.monotonic()
        for i in range(5):
            sent.append(a.send(room, f"a{i}"))  # acknowledged: committed
            sent.append(b.send(room, f"b{i}"))
        for client in (a, b):
            got = client.wait_messages(room, len(sent), timeout=10)
            assert got == sent, [m["id"] for m in got]
        assert time.monotonic() - frozen_at < 10
        recovered = metric(n1, "chat_messages_recovered_total") + metric(n2, "chat_messages_recovered_total")
        assert recovered >= 5  # the missed deliveries came from the database
        wait_until(lambda: n2.output().count("bus linked") >= 2, timeout=10,
                   message="ZeroMQ heartbeats noticed the dead link and re-made it")
        after = [b.send(room, "link is back"), a.send(room, "good")]
        sent += after
        for client in (a, b):
            assert client.wait_messages(room, len(sent), timeout=10) == sent
        time.sleep(0.5)
        assert a.messages(room) == sent and b.messages(room) == sent  # nothing twice
    finally:
        for proxy in proxies:
            proxy.close()


def test_admin_deletion_on_one_node_reaches_members_on_the_other(cluster, two_nodes, clients):
    from tests.test_accounts_admin import delete_in_admin

    n1, n2 = two_nodes
    room = unique("room")
    a, b = all_join(room, clients(n1.url).connect(name="amy"), clients(n2.url).connect(name="bob"))
    doomed = b.send(room, "delete me")
    a.wait_messages(room, 1)
    delete_in_admin(n1, room, doomed["id"])
    for member in (a, b):
        assert member.wait_for("message_deleted") == {"room": room, "seq": doomed["id"] + 1, "kind": "delete",
                                                      "id": doomed["id"]}


def test_metrics_cover_the_node(cluster, two_nodes, clients):
    n1, n2 = two_nodes
    room = unique("room")
    a, b = all_join(room, clients(n1.url).connect(name="amy"), clients(n2.url).connect(name="bob"))
    a.send(room, "counted")
    b.wait_messages(room, 1)
    assert metric(n1, "chat_connected_clients") == 1 and metric(n1, "chat_rooms_with_local_members") == 1
    assert metric(n1, "chat_messages_received_total") == 1
    assert metric(n1, "chat_messages_delivered_total") == 1 and metric(n2, "chat_messages_delivered_total") == 1
    assert metric(n2, "chat_bus_lag_seconds_count") == 1 and metric(n1, "chat_db_write_seconds_count") == 1
    assert metric(n1, "chat_bus_messages_out_total") >= 1 and metric(n2, "chat_bus_messages_in_total") >= 1


def test_a_node_restarted_with_its_id_clears_its_old_users_and_serves_again(cluster, clients):
    n1 = cluster.add_node()
    n2 = cluster.add_node(CHAT_NODE_ID="steady", CHAT_NODE_TIMEOUT_SECS=60)  # only the restart can clear it
    room = unique("room")
    survivor = clients(n1.url).connect(name="survivor")
    survivor.join(room)
    gone = clients(n2.url).connect(name="gone")
    gone.join(room)
    survivor.wait_for("presence", lambda d: d["user"] == "gone")
    n2.kill()
    back = cluster.add_node(CHAT_NODE_ID="steady", CHAT_NODE_TIMEOUT_SECS=60)
    left = survivor.wait_for("presence", lambda d: d["user"] == "gone" and d["action"] == "leave", timeout=10)
    assert left == {"room": room, "user": "gone", "action": "leave", "count": 1}
    returning = clients(back.url).connect(name="gone")  # the name is free again at once
    returning.join(room)
    sent = survivor.send(room, "welcome back")
    assert returning.wait_messages(room, 1) == [sent]


def test_a_ban_on_one_node_removes_the_member_on_the_other_at_once(cluster, two_nodes, clients):
    from tests.test_accounts_admin import cookie_header, create_user, login

    n1, n2 = two_nodes
    room = unique("room")
    create_user(n1, "mod", "moderator-password-2", staff=True)
    _, jar = login(n1, "/accounts/login/", "mod", "moderator-password-2")
    moderator, = all_join(room, clients(n1.url).connect(headers={"Cookie": cookie_header(jar)}))
    troll, = all_join(room, clients(n2.url).connect(name="troll"))
    assert moderator.call("ban", {"room": room, "user": "troll"})["ok"]
    assert troll.wait_for("banned", timeout=5)["room"] == room
    moderator.wait_for("presence", lambda d: d["user"] == "troll" and d["action"] == "leave", timeout=5)
    assert troll.call("join", {"room": room})["error"]["code"] == "banned"


def test_database_down_answers_unavailable_stores_nothing_and_recovers(cluster, clients):
    from tests.cluster import FreezableProxy

    proxy_port = free_port()
    proxy = FreezableProxy(proxy_port, 5432)
    try:
        via_proxy = cluster.db.url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy_port}")
        node = cluster.add_node(via_proxy)
        room = unique("room")
        a, b = all_join(room, clients(node.url).connect(name="amy"), clients(node.url).connect(name="bob"))
        first = a.send(room, "before the outage")
        proxy.cut()
        down = a.call("send", {"room": room, "text": "during the outage"})
        assert down == {"ok": False, "error": {"code": "unavailable", "message": down["error"]["message"]}}
        assert node.alive() and requests.get(node.url + "/healthz", timeout=5).status_code == 503
        proxy.restore()
        back = wait_until(lambda: (lambda r: r if r["ok"] else None)(a.call("send", {"room": room, "text": "back"})),
                          timeout=15, interval=0.5, message="the node recovered by itself")
        stored = [text for (text,) in cluster.db.query(
            "SELECT text FROM chat_message m JOIN chat_room r ON r.id = m.room_id WHERE r.name = %s ORDER BY seq", (room,))]
        assert stored == ["before the outage", "back"]  # nothing claimed stored that was not
        assert b.wait_messages(room, 2) == [first, back["message"]]
    finally:
        proxy.close()
