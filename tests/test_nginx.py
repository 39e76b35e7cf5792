"""The cluster behind nginx, run by deploy/cluster.py: balancing, sticky long-polling,
failover of a SIGKILLed node, and a reconnect storm of 1,000 socket.io-client clients."""
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from deploy.cluster import ClusterRunner, nginx_binary
from tests.chatclient import ChatClient, unique
from tests.cluster import PostgresDatabase, free_port_pair, require_postgres
from tests.serverproc import ROOT, wait_until

pytestmark = pytest.mark.cluster

FAST = {"CHAT_NODE_HEARTBEAT_SECS": 1, "CHAT_NODE_TIMEOUT_SECS": 5, "CHAT_DELIVERY_CHECK_SECS": 2}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url):
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Balanced:
    """A ClusterRunner on free ports, with helpers to wait for its parts."""

    def __init__(self, db, tmp_path, **node_env):
        self.runner = ClusterRunner(db.url, listen_port=free_port(), node_ports=[free_port(), free_port()],
                                    broker_port=free_port_pair(), run_dir=tmp_path / "run",
                                    node_env={**FAST, **node_env}, log=open(tmp_path / "cluster.log", "w"))
        self.url = f"http://127.0.0.1:{self.runner.listen_port}"
        self.db = db

    def node_url(self, index):
        return f"http://127.0.0.1:{self.runner.node_ports[index]}"

    def start(self, first_only=False):
        ports = self.runner.node_ports[:1] if first_only else self.runner.node_ports
        self.runner.start(nodes=ports)
        for index in range(len(ports)):
            wait_until(lambda i=index: healthy(self.node_url(i)), timeout=30, message="node up")
        wait_until(lambda: healthy(self.url), timeout=15, message="nginx up")
        return self

    def start_second(self):
        self.runner.start_node(self.runner.node_ports[1])
        wait_until(lambda: healthy(self.node_url(1)), timeout=30, message="second node up")

    def kill_first(self):
        self.runner.kill_node(self.runner.node_ports[0])

    def log_tail(self, lines=30):
        """The last lines the broker, nodes and nginx wrote, for a failure message."""
        self.runner.log.flush()
        return Path(self.runner.log.name).read_text(errors="replace").splitlines()[-lines:]

    def db_connections(self):
        return self.db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.db.name,))[0][0]


@pytest.fixture
def balanced(tmp_path):
    require_postgres()
    nginx_binary()
    with PostgresDatabase() as db:
        # every client comes from 127.0.0.1: a load test turns the per-address limit off
        made = Balanced(db, tmp_path, CHAT_MAX_CONNECTIONS_PER_IP=0)
        try:
            yield made
        finally:
            made.runner.stop()


def test_websocket_and_sticky_long_polling_clients_chat_through_nginx(balanced, clients):
    balanced.start()
    room = unique("room")
    members = [clients(balanced.url, transport).connect(name=f"{transport}-{i}")
               for i in range(4) for transport in ("websocket", "polling", "polling-upgrade")]
    for member in members:
        member.join(room)
    sent = [member.send(room, f"hello from {member.name}") for member in members]
    for member in members:
        assert member.wait_messages(room, len(sent)) == sent
    time.sleep(1)  # several polling round trips: a non-sticky balancer would have broken sessions
    assert all(member.sio.connected for member in members)
    static = requests.get(balanced.url + "/static/js/chat.js", timeout=5)
    assert static.status_code == 200 and static.headers["Server"].startswith("nginx")
    assert "Content-Security-Policy" not in static.headers  # served by nginx, not by a node
    page = requests.get(balanced.url + "/", timeout=5)
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers


def test_failover_clients_reconnect_to_the_survivor_and_recover_with_since(balanced, clients):
    balanced.start(first_only=True)  # everyone lands on node 0 ...
    room = unique("room")
    movers = [clients(balanced.url, reconnection=True).connect(name=f"mover{i}") for i in range(3)]
    leavers = [clients(balanced.url).connect(name=f"leaver{i}") for i in range(2)]
    for client in movers + leavers:
        client.join(room)
    balanced.start_second()  # ... then node 1 comes up and gets a member of its own
    survivor = clients(balanced.node_url(1)).connect(name="survivor")
    survivor.join(room)
    before = survivor.send(room, "before the crash")
    for mover in movers:
        mover.wait_messages(room, 1)
    last_seen = {m.name: m.messages(room)[-1]["id"] for m in movers}
    welcomes = {m.name: m.welcome for m in movers}
    balanced.kill_first()
    killed_at = time.monotonic()
    missed = [survivor.send(room, f"while you were away {i}") for i in range(3)]
    for i in range(2):
        survivor.wait_for("presence", lambda d, i=i: d["user"] == f"leaver{i}" and d["action"] == "leave",
                          timeout=15)
    assert time.monotonic() - killed_at < 15
    for mover in movers:
        wait_until(lambda m=mover: m.sio.connected and m.welcome is not welcomes[m.name], timeout=20,
                   message="reconnected through nginx")
        recovered = mover.call("join", {"room": room, "since": last_seen[mover.name]})
        assert recovered["ok"] and recovered["history"] == missed
    after = survivor.send(room, "welcome back")
    for mover in movers:
        assert mover.wait_messages(room, 2)[-1] == after
    assert before["id"] < missed[0]["id"]


def test_reconnect_storm_of_1000_clients_catches_up_within_30s(balanced):
    balanced.start(first_only=True)
    room = unique("storm")
    crowd = subprocess.Popen(["node", str(ROOT / "tests" / "js" / "crowd.mjs"), balanced.url, "1000", room, "storm"],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    replies = []
    threading.Thread(target=lambda: [replies.append(json.loads(line)) for line in crowd.stdout], daemon=True).start()

    def answers(event):
        return [reply for reply in list(replies) if reply["event"] == event]

    def ask(expected):
        count = len(answers("check"))
        crowd.stdin.write(f"check {expected}\n")
        crowd.stdin.flush()
        wait_until(lambda: len(answers("check")) > count, timeout=10, message="crowd answer")
        return answers("check")[-1]

    try:
        try:
            wait_until(lambda: answers("ready"), timeout=90, message="1000 clients joined")
        except AssertionError:
            raise AssertionError(f"not joined after 90s: progress {answers('progress')[-3:]}\n"
                                 + "\n".join(balanced.log_tail())) from None
        balanced.start_second()
        sender = ChatClient(balanced.node_url(1)).connect(name="sender")
        sender.join(room)
        sent = [sender.send(room, f"before {i}")["id"] for i in range(3)]
        wait_until(lambda: ask(len(sent))["complete"] == 1000, timeout=20, message="all got the first messages")
        balanced.kill_first()
        killed_at = time.monotonic()
        for i in range(20):
            sent.append(sender.send(room, f"during the storm {i}")["id"])
            time.sleep(0.1)
        assert sent == list(range(1, len(sent) + 1))
        try:
            wait_until(lambda: ask(len(sent))["complete"] == 1000, timeout=30, interval=1,
                       message="every client caught up")
        except AssertionError:
            raise AssertionError(f"not caught up 30s after the kill: {answers('check')[-1]} "
                                 f"progress: {answers('progress')[-3:]}") from None
        caught_up_secs = time.monotonic() - killed_at
        assert caught_up_secs < 30
        assert balanced.db_connections() <= 4 + 1 + 8  # survivor: readers + writer + HTTP slots
        sender.close()
    finally:
        crowd.stdin.write("quit\n")
        crowd.stdin.flush()
        try:
            crowd.wait(10)
        except subprocess.TimeoutExpired:
            crowd.kill()
    print(f"storm: 1000 clients caught up {caught_up_secs:.1f}s after the kill")


def test_sigterm_moves_clients_to_another_node_and_keeps_every_ack(balanced, clients):
    import signal

    balanced.start(first_only=True)
    room = unique("room")
    sender = clients(balanced.url, reconnection=True).connect(name="sender")  # on node 0
    sender.join(room)
    balanced.start_second()
    watcher = clients(balanced.node_url(1)).connect(name="watcher")
    watcher.join(room)
    acked, stop = [], threading.Event()

    def keep_sending():
        i = 0
        while not stop.is_set() and i < 500:
            try:
                reply = sender.call("send", {"room": room, "text": f"m{i}", "nonce": f"n{i}"}, timeout=3)
            except Exception:  # between nodes: retry the same nonce
                time.sleep(0.05)
                continue
            if reply["ok"]:
                acked.append(reply["message"]["id"])
                i += 1
            elif reply["error"]["code"] == "not_member":
                sender.call("join", {"room": room})  # a new node: join again
            else:
                time.sleep(0.05)

    thread = threading.Thread(target=keep_sending)
    thread.start()
    wait_until(lambda: len(acked) >= 20, timeout=10, message="sending")
    terminated_at = time.monotonic()
    node = balanced.runner.nodes[balanced.runner.node_ports[0]]
    node.send_signal(signal.SIGTERM)
    code = node.wait(15)
    exit_secs = time.monotonic() - terminated_at
    balanced.runner.nodes.pop(balanced.runner.node_ports[0])
    count_at_kill = len(acked)
    wait_until(lambda: len(acked) >= count_at_kill + 20, timeout=20, message="sending again via the other node")
    stop.set()
    thread.join(10)
    assert code == 0 and exit_secs < 10, (code, exit_secs)
    assert acked == sorted(set(acked))
    got = watcher.wait_messages(room, len(acked), timeout=15)
    assert set(acked) <= {m["id"] for m in got}  # no acknowledged message lost
    assert [m["id"] for m in got] == sorted({m["id"] for m in got})  # once each, in order
    stored = dict(balanced.db.query("SELECT m.seq, m.text FROM chat_message m JOIN chat_room r ON r.id = m.room_id "
                                    "WHERE r.name = %s", (room,)))
    texts = sorted(stored.values())
    assert len(texts) == len(set(texts)), [t for t in set(texts) if texts.count(t) > 1]  # a retry stored nothing twice
    assert [stored[i] for i in acked] == [f"m{k}" for k in range(len(acked))]  # each ack names its own message
    assert set(texts) <= {f"m{k}" for k in range(len(acked) + 1)}  # at most the last, unacked, one more
