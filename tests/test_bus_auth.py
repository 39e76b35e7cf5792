"""The cluster bus admits only peers holding its CURVE keys (chat.busauth): a stranger on the
broker's ports reads nothing and injects nothing, and a broker or node without keys refuses
to start. Raw pyzmq peers in this process play the stranger, next to an insider with a
node's key that proves the same sockets and frames do work when the key is right."""
import shlex
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import zmq

from chat import busauth
from chat.broker import split_endpoint
from chat.bus import frame
from tests.chatclient import unique
from tests.cluster import BrokerProcess, PostgresDatabase, free_port_pair, require_postgres
from tests.serverproc import ROOT, ServerProcess, base_env, wait_until

FAST = {"CHAT_NODE_HEARTBEAT_SECS": 1, "CHAT_NODE_TIMEOUT_SECS": 5, "CHAT_DELIVERY_CHECK_SECS": 2}
NO_BUS_KEYS = {"CHAT_BUS_SERVER_SECRET_KEY": "", "CHAT_BUS_CLIENT_PUBLIC_KEYS": "",
               "CHAT_BUS_SERVER_PUBLIC_KEY": "", "CHAT_BUS_CLIENT_SECRET_KEY": "", "CHAT_BUS_INSECURE": ""}
QUIET_SECS = 2  # how long a stranger keeps listening (or forging) after real traffic went by


def read_env_file(path):
    return dict(shlex.split(line)[0].split("=", 1) for line in path.read_text().splitlines() if line.strip())


def keys_from_command(directory):
    """Run `manage.py make_bus_keys --nodes 2 --write DIR` and read back what it wrote."""
    subprocess.run([sys.executable, "manage.py", "make_bus_keys", "--nodes", "2", "--write", str(directory)],
                   cwd=ROOT, env=base_env(), check=True, capture_output=True)
    broker_env = read_env_file(directory / "broker.env")
    nodes = [read_env_file(directory / f"node{i}.env") for i in (1, 2)]
    publics = broker_env["CHAT_BUS_CLIENT_PUBLIC_KEYS"].split(",")
    pairs = tuple(busauth.NodeKey(public, node["CHAT_BUS_CLIENT_SECRET_KEY"]) for public, node in zip(publics, nodes))
    assert [busauth.public_of(pair.secret) for pair in pairs] == publics
    server_public = nodes[0]["CHAT_BUS_SERVER_PUBLIC_KEY"]
    assert busauth.public_of(broker_env["CHAT_BUS_SERVER_SECRET_KEY"]) == server_public
    return busauth.BusKeys(server_public, broker_env["CHAT_BUS_SERVER_SECRET_KEY"], pairs)


class SecuredCluster:
    """A broker and two nodes on keys made by the management command, and raw peers."""

    def __init__(self, db, keys):
        self.db, self.keys = db, keys
        self.broker = BrokerProcess(keys=keys).start()
        self.nodes = [ServerProcess(db.url, CHAT_BROKER_URL=self.broker.url, **keys.node_env(i), **FAST).start()
                      for i in range(2)]
        self.publish_url, self.subscribe_url = split_endpoint(self.broker.url)
        self.context = zmq.Context()

    def peer(self, kind, url, curve=None):
        """A raw socket: curve=None speaks plain ZeroMQ, else (server public, client public, secret)."""
        sock = self.context.socket(kind)
        sock.linger = 0
        if curve:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (k.encode() for k in curve)
        sock.connect(url)
        return sock

    def strangers(self):
        public, secret = (key.decode() for key in zmq.curve_keypair())
        return {"no keys": None, "unlisted key": (self.keys.server_public, public, secret)}

    def insider(self):
        node = self.keys.nodes[0]
        return self.keys.server_public, node.public, node.secret

    def stop(self):
        self.context.destroy(linger=0)
        for node in self.nodes:
            node.stop()
        self.broker.stop()


@pytest.fixture
def secured(tmp_path):
    require_postgres()
    with PostgresDatabase() as db:
        made = SecuredCluster(db, keys_from_command(tmp_path / "keys"))
        try:
            yield made
        finally:
            made.stop()


def two_members(secured, clients):
    room = unique("room")
    amy = clients(secured.nodes[0].url).connect(name=unique("amy"))
    bob = clients(secured.nodes[1].url).connect(name=unique("bob"))
    amy.join(room)
    bob.join(room)
    return room, amy, bob


def frames_within(sock, secs):
    got, deadline = [], time.monotonic() + secs
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            got.append(sock.recv())
    return got


@pytest.mark.cluster
def test_nodes_on_keys_from_make_bus_keys_chat_across_the_cluster(secured, clients):
    room, amy, bob = two_members(secured, clients)
    sent = [amy.send(room, "over curve"), bob.send(room, "and back")]
    for member in (amy, bob):
        assert member.wait_messages(room, 2) == sent


@pytest.mark.cluster
def test_a_peer_without_a_node_key_reads_no_bus_traffic(secured, clients):
    listeners = {label: secured.peer(zmq.SUB, secured.subscribe_url, curve)
                 for label, curve in {**secured.strangers(), "insider": secured.insider()}.items()}
    for sock in listeners.values():
        sock.subscribe(b"")  # everything: the broker forwards it to every node's publisher
    room, amy, bob = two_members(secured, clients)
    time.sleep(1)  # subscriptions travel to the nodes' publishers
    sent = [(amy if i % 2 else bob).send(room, f"secret {i}") for i in range(10)]
    for member in (amy, bob):
        assert member.wait_messages(room, 10) == sent  # real traffic crossed the bus
    heard = {label: frames_within(sock, QUIET_SECS) for label, sock in listeners.items()}
    assert heard["no keys"] == [] and heard["unlisted key"] == [], {k: len(v) for k, v in heard.items()}
    assert any(b"secret 9" in raw for raw in heard["insider"])  # the same socket with a node key hears it


@pytest.mark.cluster
def test_a_node_whose_key_the_broker_does_not_list_says_so(secured, clients):
    unlisted = busauth.generate().nodes[0].secret
    node = ServerProcess(secured.db.url, CHAT_BROKER_URL=secured.broker.url, **FAST,
                         CHAT_BUS_SERVER_PUBLIC_KEY=secured.keys.server_public, CHAT_BUS_CLIENT_SECRET_KEY=unlisted)
    try:
        node.start()
        clients(node.url).connect(name=unique("early"))  # python-socketio starts the bus watcher lazily
        wait_until(lambda: "bus handshake with" in node.output(), timeout=10, message="refused handshake logged")
        assert "bus linked" not in node.output()
    finally:
        node.stop()


def forged_frames(room, name, text):
    message = {"id": 10 ** 12, "room": room, "user": "mallory", "text": text, "ts": time.time()}
    emit = {"method": "emit", "event": "message", "data": message, "namespace": "/", "room": room,
            "skip_sid": None, "callback": None, "host_id": "forger"}
    ban = {"method": "control", "room": room, "message": {"kind": "ban", "room": room, "name": name},
           "host_id": "forger"}
    feed = {"method": "room_messages", "room": room, "messages": [message], "host_id": "forger", "at": time.time()}
    return [frame("r:" + room, data) for data in (emit, ban, feed)]


def forge_for(sock, frames, secs, stop=lambda: False):
    """Publish `frames` every 50 ms (a PUB sends only once the broker's subscriptions arrive)."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline and not stop():
        for raw in frames:
            sock.send(raw)
        time.sleep(0.05)


@pytest.mark.cluster
def test_a_peer_without_a_node_key_cannot_inject_messages_bans_or_emits(secured, clients):
    room, amy, bob = two_members(secured, clients)
    for label, curve in secured.strangers().items():
        forge_for(secured.peer(zmq.PUB, secured.publish_url, curve), forged_frames(room, bob.name, "forged"),
                  QUIET_SECS)
    assert [m for m in bob.messages(room) if m.get("user") == "mallory"] == []
    assert bob.received("banned") == []

    insider = secured.peer(zmq.PUB, secured.publish_url, secured.insider())
    emit_only = forged_frames(room, bob.name, "from a key holder")[:1]
    forge_for(insider, emit_only, 10, stop=lambda: bob.messages(room))
    assert bob.messages(room)[0]["text"] == "from a key holder"  # the frame itself works with a node key
    sent = amy.send(room, "still chatting")
    assert bob.wait_for("message", lambda m: m.get("id") == sent["id"])["text"] == "still chatting"


def refusal(proc, timeout=20):
    """(exit code, output) of a process that should exit by itself; kills it if it does not."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        return None, output
    return proc.returncode, output


@pytest.mark.parametrize("bind, env", [
    ("tcp://127.0.0.1:{port}", {}),
    ("tcp://0.0.0.0:{port}", {"CHAT_BUS_INSECURE": "1"}),
])
def test_a_broker_without_keys_refuses_to_start(bind, env):
    url = bind.format(port=free_port_pair())
    proc = subprocess.Popen([sys.executable, "run_server.py", "broker", "--bind", url], cwd=ROOT,
                            env=base_env(**{**NO_BUS_KEYS, **env}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    code, output = refusal(proc)
    assert code not in (None, 0), output
    assert "make_bus_keys" in output, output


def test_an_insecure_broker_is_allowed_on_loopback_only_when_asked():
    url = f"tcp://127.0.0.1:{free_port_pair()}"
    proc = subprocess.Popen([sys.executable, "run_server.py", "broker", "--bind", url], cwd=ROOT,
                            env=base_env(**{**NO_BUS_KEYS, "CHAT_BUS_INSECURE": "1"}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(3)  # still forwarding
    finally:
        proc.kill()
        output, _ = proc.communicate()
    assert "UNAUTHENTICATED" in output


@pytest.mark.parametrize("broker_url, env", [
    ("tcp://127.0.0.1:{port}", {}),
    ("tcp://192.0.2.1:{port}", {"CHAT_BUS_INSECURE": "1"}),
    ("tcp://127.0.0.1:{port}", {"CHAT_BUS_SERVER_PUBLIC_KEY": "not a key", "CHAT_BUS_CLIENT_SECRET_KEY": "x" * 40}),
])
def test_a_cluster_node_without_valid_keys_refuses_to_start(sqlite_template, broker_url, env):
    node = ServerProcess(sqlite_template.fresh_url(), CHAT_BROKER_URL=broker_url.format(port=free_port_pair()),
                         **{**NO_BUS_KEYS, **env})
    proc = subprocess.Popen(node.args, cwd=node.cwd, env=node.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    code, output = refusal(proc)
    assert code not in (None, 0), output
    assert "listening on" not in output and "CHAT_BUS_" in output, output


# -- the rules, without processes ---------------------------------------------------------------
def settings_with(**values):
    return SimpleNamespace(**{"CHAT_BUS_SERVER_SECRET_KEY": "", "CHAT_BUS_CLIENT_PUBLIC_KEYS": [],
                              "CHAT_BUS_SERVER_PUBLIC_KEY": "", "CHAT_BUS_CLIENT_SECRET_KEY": "",
                              "CHAT_BUS_INSECURE": False, **values})


def test_keys_from_settings_are_checked_and_the_plain_bus_is_loopback_only():
    keys = busauth.generate(nodes=2)
    broker = busauth.broker_auth("tcp://0.0.0.0:5555", settings_with(**{k: v.split(",") if "KEYS" in k else v
                                                                        for k, v in keys.broker_env().items()}))
    assert broker.allowed == {node.public for node in keys.nodes}
    node = busauth.node_auth("tcp://10.0.0.5:5555", settings_with(**keys.node_env(1)))
    assert (node.server_public, node.public) == (keys.server_public, keys.nodes[1].public)
    assert busauth.node_auth("tcp://localhost:5555", settings_with(CHAT_BUS_INSECURE=True)) is None
    assert busauth.broker_auth("tcp://[::1]:5555", settings_with(CHAT_BUS_INSECURE=True)) is None
    refused = [
        lambda: busauth.node_auth("tcp://10.0.0.5:5555", settings_with(CHAT_BUS_INSECURE=True)),
        lambda: busauth.node_auth("tcp://127.0.0.1:5555", settings_with()),
        lambda: busauth.node_auth("tcp://127.0.0.1:5555", settings_with(CHAT_BUS_SERVER_PUBLIC_KEY=keys.server_public)),
        lambda: busauth.broker_auth("tcp://127.0.0.1:5555", settings_with(CHAT_BUS_SERVER_SECRET_KEY=keys.server_secret)),
        lambda: busauth.broker_auth("tcp://127.0.0.1:5555", settings_with(
            CHAT_BUS_SERVER_SECRET_KEY=keys.server_secret, CHAT_BUS_CLIENT_PUBLIC_KEYS=["short"])),
    ]
    for attempt in refused:
        with pytest.raises(busauth.BusKeyError):
            attempt()
