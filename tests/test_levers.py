"""Levers a stranger could pull, and limits a healthy client must never hit (issue 14,
points 4, 9 and 11), against real server processes: outbox accounting of a reader that
keeps up, bounded control packets, readable oversize refusals, rate limits of `history`,
`rooms` and room creation, catch-ups of any length, trusted-only diagnostics, typing in
large rooms, and the indexed room list."""
import json
import socket
import struct
import threading
import time

import pytest
import requests
import websocket

from tests.chatclient import all_join, unique
from tests.rawclient import RawSocket
from tests.serverproc import wait_until

CLOSED = (websocket.WebSocketConnectionClosedException, ConnectionError, OSError)
TEXT = "x" * 3900


def kernel_bytes_in_flight(rcvbuf):
    """How many bytes the kernel takes from a server socket towards a reader that does not
    read (its send buffer plus the reader's receive window), measured on a loopback pair
    like the one under test: the wire holds frames only beyond this."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    reader.connect(listener.getsockname())
    writer, _ = listener.accept()
    writer.setblocking(False)
    taken = 0
    try:
        while True:
            taken += writer.send(b"x" * 4000)
    except BlockingIOError:
        pass
    finally:
        for sock in (writer, reader, listener):
            sock.close()
    return taken


def server_frames(sock):
    """The payloads of the unmasked frames a server sends, read straight from the socket
    (websocket-client validates UTF-8 in Python: too slow to keep up with a busy room)."""
    buffer = b""
    while True:
        frame = _split_frame(buffer)
        if frame is not None:
            payload, buffer = frame
            yield payload
            continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        buffer += chunk


def _split_frame(buffer):
    if len(buffer) < 2:
        return None
    size, start = buffer[1] & 0x7F, 2
    if size == 126:
        size, start = (struct.unpack("!H", buffer[2:4])[0], 4) if len(buffer) >= 4 else (None, 0)
    elif size == 127:
        size, start = (struct.unpack("!Q", buffer[2:10])[0], 10) if len(buffer) >= 10 else (None, 0)
    if size is None or len(buffer) < start + size:
        return None
    return buffer[start:start + size], buffer[start + size:]


class PacedReader(threading.Thread):
    """A raw websocket member that reads at most `bytes_per_sec`: it keeps up, but late."""

    def __init__(self, raw, bytes_per_sec, wanted):
        super().__init__(daemon=True)
        self.raw, self.rate, self.wanted = raw, bytes_per_sec, wanted
        self.received = 0
        self.error = None

    def run(self):
        started, read = time.monotonic(), 0
        try:
            for payload in server_frames(self.raw.ws.sock):
                read += len(payload)
                if payload == b"2":
                    self.raw.ws.send("3")
                elif payload.startswith(b'42["message"'):
                    self.received += 1
                    if self.received >= self.wanted:
                        return
                ahead = read / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except CLOSED as exc:
            self.error = exc


class Drain(threading.Thread):
    """Reads a socket as fast as it can until it closes."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock

    def run(self):
        try:
            while self.sock.recv(1 << 20):
                pass
        except OSError:
            pass


def test_a_late_reader_that_keeps_up_is_not_cut_as_outbox_full(start_server):
    """Point 4. The reader is always behind by what the kernel holds plus ~400 frames in
    the wire (under CHAT_MAX_OUTBOX=1000): before the fix the wire's frame count only grew
    while its drain greenlet ran, and the reader was cut after about 1,000 messages."""
    server = start_server(CHAT_RATE_LIMITS="off")
    room = unique("room")
    sender, raw = RawSocket(server.url), RawSocket(server.url, rcvbuf=4096)
    sender.connect(name="busy-sender")
    raw.connect(name="late-reader")
    assert sender.call("join", {"room": room})["ok"] and raw.call("join", {"room": room})["ok"]
    Drain(sender.ws.sock).start()
    window = kernel_bytes_in_flight(4096) // (len(TEXT) + 120) + 400  # messages sent, not yet read
    wanted = window + 2500
    reader = PacedReader(raw, bytes_per_sec=2_000_000, wanted=wanted)
    reader.start()
    sent = 0
    try:
        while reader.is_alive() and sent < wanted:
            if sent - reader.received >= window:
                time.sleep(0.002)
                continue
            sender.ws.send("42" + json.dumps(["send", {"room": room, "text": f"{sent} {TEXT}"}]))  # no ack asked
            sent += 1
        reader.join(60)
    finally:
        raw.close()
        sender.close()
    cuts = [line for line in server.output().splitlines() if "outbox full" in line]
    assert reader.error is None and not cuts, (reader.error, reader.received, cuts)
    assert reader.received == wanted



def _ping(ws, i):
    ws.ping(b"p" * 125)  # answered by a 127-byte pong frame


def _unknown_event(ws, i):
    ws.send(f'42{i}["nope", {{}}]')  # answered by an unknown_event ack


@pytest.mark.parametrize("request_reply", [_ping, _unknown_event], ids=["pongs", "acks"])
def test_replies_to_a_client_that_never_reads_are_bounded(start_server, request_reply):
    """Point 9: pongs and acks (and their binary attachments) went around the outbox bound,
    so a client that sends requests and never reads piled them up without limit."""
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_OUTBOX=50)
    greedy = RawSocket(server.url, rcvbuf=4096)
    greedy.connect(name="never-reads")
    try:
        for i in range(80_000):  # ~8 MB of replies: the kernel holds ~3 MB, the limit is 50 more
            request_reply(greedy.ws, i)
    except CLOSED:
        pass  # cut while still sending
    try:
        wait_until(lambda: "outbox full" in server.output(), timeout=30, message="the never-reading client cut")
    finally:
        greedy.close()
    other = RawSocket(server.url)
    try:
        other.connect(name="still-served")
        assert other.call("rooms", {})["ok"]
    finally:
        other.close()


def test_a_websocket_packet_over_the_limit_gets_close_code_1009(start_server):
    server = start_server(CHAT_MAX_PAYLOAD_BYTES=4096)
    raw = RawSocket(server.url)
    try:
        raw.connect(name="oversize")
        raw.ws.send("4" + "x" * 5000)
        while True:
            opcode, data = raw.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        code, reason = struct.unpack("!H", data[:2])[0], data[2:].decode()
        assert (code, reason) == (1009, "packet too large: over 4096 bytes")
    finally:
        raw.close()


def test_a_polling_post_over_the_limit_gets_413(start_server):
    from tests.rawclient import RawPolling

    server = start_server(CHAT_MAX_PAYLOAD_BYTES=4096)
    polling = RawPolling(server.url)
    polling.post('40{"name": "big-poster"}')
    reply = polling.http.post(f"{polling.base}&sid={polling.sid}", data="4" + "x" * 5000, timeout=10)
    assert (reply.status_code, reply.text) == (413, "packet too large: over 4096 bytes")
    wait_until(lambda: polling.http.get(f"{polling.base}&sid={polling.sid}", timeout=10).status_code == 400,
               timeout=10, message="the session closed")


@pytest.mark.parametrize("event", ["history", "rooms"])
def test_history_and_rooms_are_rate_limited(start_server, clients, event):
    server = start_server(CHAT_RATE_LIMITS=f"{event}=0.1/3")
    a = clients(server.url).connect(name=unique("reader"))
    payload = {"room": "lobby"} if event == "history" else {}
    assert all(a.call(event, payload)["ok"] for _ in range(3))
    refused = a.call(event, payload)
    assert refused["error"]["code"] == "rate_limited" and refused["error"]["retry_after"] > 0, refused


def test_the_default_rate_limits_cover_history_and_rooms(start_server, clients):
    server = start_server()
    a = clients(server.url).connect(name=unique("reader"))
    replies = [a.call("rooms", {}) for _ in range(15)]
    assert [r["error"]["code"] for r in replies if not r["ok"]][:1] == ["rate_limited"], replies


def test_a_catch_up_longer_than_the_join_tokens_completes(start_server, clients):
    """Point 11: each truncated page cost a join token, so a catch-up longer than
    burst x CHAT_SINCE_MAX messages ended in rate_limited (about 15k by default)."""
    server = start_server(CHAT_SINCE_MAX=5, CHAT_RATE_LIMITS="send=1000/1000,join=0.01/3")
    room = unique("room")
    writer = clients(server.url).connect(name="long-writer")
    writer.join(room)
    sent = [writer.send(room, f"m{i}")["id"] for i in range(60)]  # 12 pages, 3 join tokens
    late = clients(server.url).connect(name="long-reader")
    since, got, pages = 0, [], 0
    while True:
        reply = late.call("join", {"room": room, "since": since})
        assert reply["ok"], (pages, reply)
        got += [m["id"] for m in reply["history"]]
        pages += 1
        if not reply.get("truncated"):
            break
        since = reply["history"][-1]["id"]
    assert got == sent and pages == 12
    assert late.call("send", {"room": room, "text": "caught up"})["ok"]  # a member now
    other = late.call("join", {"room": unique("room")})  # a new join still takes a token
    assert other["ok"]
    refused = [late.call("join", {"room": unique("room")}) for _ in range(3)]
    assert "rate_limited" in [r["error"]["code"] for r in refused if not r["ok"]], refused


def test_room_creation_is_limited_per_name_and_per_address(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_ROOM_CREATES="name=2/3600,address=3/3600")
    a = clients(server.url).connect(name="creator-a")
    assert a.call("join", {"room": "made-1"})["ok"] and a.call("join", {"room": "made-2"})["ok"]
    refused = a.call("join", {"room": "made-3"})
    assert refused["error"]["code"] == "rate_limited" and refused["error"]["retry_after"] > 0, refused
    b = clients(server.url).connect(name="creator-b")  # same address (127.0.0.1)
    assert b.call("join", {"room": "made-1"})["ok"]  # joining an existing room creates nothing
    assert b.call("join", {"room": "made-4"})["ok"]  # the address's third room
    assert b.call("join", {"room": "made-5"})["error"]["code"] == "rate_limited"
    assert a.call("join", {"room": "made-4"})["ok"]
    rooms = {r["name"] for r in requests.get(server.url + "/api/rooms/", timeout=10).json()["rooms"]}
    assert rooms >= {"made-1", "made-2", "made-4"} and not rooms & {"made-3", "made-5"}


def test_a_crowd_joining_a_new_room_at_once_takes_one_room_from_the_quota(start_server, clients):
    """Every join that found the room missing took from the address's quota, so a crowd
    behind one address (a proxy, the storm test's nginx) opening a new room together was
    refused `rate_limited` beyond the quota although one room was created."""
    server = start_server(CHAT_RATE_LIMITS="on", CHAT_ROOM_CREATES="name=20/3600,address=3/3600",
                          CHAT_MAX_CONNECTIONS_PER_IP=0)
    crowd = [clients(server.url).connect(name=unique("crowd")) for _ in range(30)]
    room, replies = unique("fresh"), {}
    threads = [threading.Thread(target=lambda c=c: replies.update({c.name: c.call("join", {"room": room})}))
               for c in crowd]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    refused = [reply for reply in replies.values() if not reply["ok"]]
    assert len(replies) == 30 and refused == [], refused[:3]
    first = crowd[0]
    assert first.call("join", {"room": unique("second")})["ok"]  # the address's second and third rooms
    assert first.call("join", {"room": unique("third")})["ok"]
    assert first.call("join", {"room": unique("fourth")})["error"]["code"] == "rate_limited"


def test_typing_is_not_relayed_in_rooms_over_the_presence_detail_limit(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_PRESENCE_DETAIL_MAX=2)
    small, large = unique("small"), unique("large")
    a, b, c = (clients(server.url).connect(name=unique(n)) for n in ("typer", "watcher", "third"))
    all_join(small, a, b)
    all_join(large, a, b, c)
    assert a.call("typing", {"room": large, "active": True}) is None  # accepted, not relayed
    assert a.call("typing", {"room": small, "active": True}) is None
    b.wait_for("typing", lambda d: d["room"] == small)
    a.send(large, "after typing")
    b.wait_messages(large, 1)  # anything relayed in the large room would have come first
    assert b.received("typing", large) == [] and c.received("typing", large) == []


EXPLAIN_ROOM_LIST = """
from django.db import connection
from django.test.utils import CaptureQueriesContext
from chat import directory
from chat.models import Membership, Node, Room
import datetime
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
Room.objects.bulk_create([Room(name=f"r{i}", last_seq=i % 977, last_active_at=start + datetime.timedelta(seconds=i % 977))
                          for i in range(20000)], batch_size=2000)
node = Node.objects.create(id="n1")
Membership.objects.bulk_create([Membership(room=f"r{i % 20000}", name=f"u{i}", node=node, sid=f"s{i}")
                                for i in range(100000)], batch_size=5000)
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
with CaptureQueriesContext(connection) as ran:
    listed = directory.rooms_with_counts(200)
assert len(listed) == 200 and len(ran.captured_queries) == 2, (len(listed), ran.captured_queries)
explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
for label, query in zip(("ROOMS:", "COUNTS:"), ran.captured_queries):
    with connection.cursor() as cursor:
        cursor.execute(explain + query["sql"])
        print(label, " ".join(" ".join(str(col) for col in row) for row in cursor.fetchall()))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_room_list_reads_index_ranges_not_every_room(sqlite_template, backend):
    """Point 9: `rooms` and /api/rooms/ sorted every room by an unindexed last_seq and
    grouped every membership. Now both are index lookups bounded by CHAT_ROOMS_LISTED: the
    two queries chat.directory.rooms_with_counts runs are captured and explained."""
    from tests.cluster import shell_in_fresh_database

    plans = shell_in_fresh_database(sqlite_template, backend, EXPLAIN_ROOM_LIST)
    rooms = next(line for line in plans.splitlines() if line.startswith("ROOMS:"))
    counts = next(line for line in plans.splitlines() if line.startswith("COUNTS:"))
    assert "room_public_active_idx" in rooms and "TEMP B-TREE" not in rooms and "Sort" not in rooms, rooms
    assert "Seq Scan" not in counts and "SCAN chat_membership" not in counts, counts


def test_the_room_list_puts_occupied_rooms_first_among_the_most_recently_active(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_ROOMS_LISTED=3)
    a, b = clients(server.url).connect(name="lister-a"), clients(server.url).connect(name="lister-b")
    for room, count in (("busiest", 3), ("busy", 2), ("quiet", 1), ("oldest", 0)):
        a.join(room)
        for i in range(count):
            a.send(room, f"{room} {i}")
        a.call("leave", {"room": room})
    b.join("quiet")
    # by the last post: quiet, busy, busiest (oldest never had one), then people online first
    expected = [{"name": "quiet", "members": 1}, {"name": "busy", "members": 0}, {"name": "busiest", "members": 0}]
    assert a.call("rooms")["rooms"] == expected
    assert requests.get(server.url + "/api/rooms/", timeout=10).json()["rooms"] == expected


def test_metrics_and_health_detail_are_served_only_to_trusted_addresses(start_server):
    """Point 9: /healthz?detail=1 walked every object (blocking the node) and, like
    /metrics, was served to anyone, nginx passing them on."""
    server = start_server(CHAT_TRUSTED_PROXIES="127.0.0.1")
    stranger = {"X-Forwarded-For": "203.0.113.9"}  # through a trusted proxy, from outside
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
    detail = requests.get(server.url + "/healthz?detail=1", timeout=10).json()
    assert "engineio_sockets" in detail and "greenlets" not in detail  # no walk over every object
    assert "greenlets" in requests.get(server.url + "/healthz?detail=gc", timeout=10).json()
    for path in ("/metrics", "/healthz?detail=1", "/healthz?detail=gc"):
        refused = requests.get(server.url + path, headers=stranger, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", path
    assert requests.get(server.url + "/healthz", headers=stranger, timeout=10).json()["ok"]
    elsewhere = start_server(CHAT_METRICS_ALLOWED="10.0.0.0/8")
    assert requests.get(elsewhere.url + "/metrics", timeout=10).status_code == 403


@pytest.mark.cluster
def test_nginx_does_not_pass_on_metrics_or_health_detail(tmp_path):
    from deploy.cluster import nginx_binary
    from tests.cluster import PostgresDatabase, require_postgres
    from tests.test_nginx import Balanced

    require_postgres()
    nginx_binary()
    with PostgresDatabase() as db:
        balanced = Balanced(db, tmp_path)
        try:
            balanced.start(first_only=True)
            assert requests.get(balanced.url + "/healthz", timeout=10).status_code == 200
            assert requests.get(balanced.url + "/healthz?detail=1", timeout=10).status_code == 403
            assert requests.get(balanced.url + "/metrics", timeout=10).status_code == 403
            assert requests.get(balanced.node_url(0) + "/metrics", timeout=10).status_code == 200  # the operator
        finally:
            balanced.runner.stop()


def test_replies_to_a_poller_that_never_polls_are_bounded(start_server):
    from tests.rawclient import RawPolling

    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_OUTBOX=50)
    polling = RawPolling(server.url)
    polling.post('40{"name": "never-polls"}')
    for batch in range(10):  # 100 acks owed, never fetched
        body = RawPolling.SEPARATOR.join(f'42{batch * 10 + i}["nope", {{}}]' for i in range(10))
        if polling.http.post(f"{polling.base}&sid={polling.sid}", data=body, timeout=10).status_code != 200:
            break  # cut meanwhile
    wait_until(lambda: "outbox full" in server.output(), timeout=10, message="the poller cut")
    assert polling.http.get(f"{polling.base}&sid={polling.sid}", timeout=10).status_code == 400  # session gone
