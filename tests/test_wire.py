"""The websocket transport of chat.wire against a real server: one greenlet per session,
pings on timers, direct writes bounded by the outbox limits, the hand-over of a connection
from the pywsgi handler (bytes that arrive with the upgrade), and RFC 6455 control frames."""
import json
import os
import socket
import time

import pytest
import requests
import websocket

from tests.chatclient import all_join, unique
from tests.rawclient import RawPolling, RawSocket
from tests.serverproc import wait_until
from tests.test_server import rss_kib

CLOSED = (websocket.WebSocketConnectionClosedException, ConnectionError, OSError)


def detail(server):
    return requests.get(server.url + "/healthz?detail=gc", timeout=10).json()


def test_idle_websocket_sessions_hold_one_greenlet_each(start_server):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_CONNECTIONS_PER_IP=0)
    before = detail(server)["greenlets"]
    sessions = [RawSocket(server.url) for _ in range(40)]
    try:
        for i, raw in enumerate(sessions):
            raw.connect(name=f"idle{i}")
        wait_until(lambda: detail(server)["engineio_sockets"] == 40, timeout=10, message="all connected")
        held = detail(server)["greenlets"] - before
        assert 40 <= held <= 40 + 3, held  # the session's reader; no writer, no sleeping ping task
    finally:
        for raw in sessions:
            raw.close()
    wait_until(lambda: detail(server)["greenlets"] <= before + 1, timeout=10, message="greenlets released")


def test_pings_run_on_timers_and_a_silent_client_is_dropped(start_server):
    server = start_server(CHAT_PING_INTERVAL_SECS=1, CHAT_PING_TIMEOUT_SECS=1)
    answering, silent = RawSocket(server.url), RawSocket(server.url)
    try:
        answering.connect(name="answers")
        silent.connect(name="silent")
        pings = 0
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:  # answers every ping: stays connected
            if answering.ws.recv() == "2":
                pings += 1
                answering.ws.send("3")
        assert pings >= 3
        frames = []
        with pytest.raises(CLOSED):
            while True:  # never answers: the server closes it after interval + timeout
                frame = silent.ws.recv()
                if not frame:
                    raise ConnectionError("closed")
                frames.append(frame)
        assert "2" in frames
        assert answering.call("rooms", {})["ok"]
    finally:
        answering.close()
        silent.close()


def test_a_websocket_reader_that_stops_reading_is_cut_at_the_byte_limit(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_OUTBOX_BYTES=256 * 1024)
    room = unique("room")
    a, b = all_join(room, clients(server.url).connect(name="writer-a"), clients(server.url).connect(name="writer-b"))
    stalled = RawSocket(server.url, rcvbuf=4096)  # stops reading after its join
    token = json.loads(stalled.connect(name="stalled")[2:])[1]["token"]
    assert stalled.call("join", {"room": room})["ok"]
    rss_before = rss_kib(server.pid)
    for i in range(1500):  # ~6 MB for each member: past what the kernel buffers (up to tcp_wmem) and the limit
        (a if i % 2 else b).send(room, f"{i} " + "x" * 3900)
    wait_until(lambda: "outbox full" in server.output(), timeout=15, message="the stalled reader was cut")
    a.wait_for("presence", lambda d: d["user"] == "stalled" and d["action"] == "leave")
    assert len(b.wait_messages(room, 1500, timeout=30)) == 1500  # the others got everything meanwhile
    assert rss_kib(server.pid) - rss_before < 20 * 1024
    stalled.close()
    back, recovered, reply = clients(server.url).connect(token=token), [], {"truncated": True}
    while reply.get("truncated"):  # catch-up comes in pages of CHAT_SINCE_MAX
        reply = back.call("join", {"room": room, "since": recovered[-1] if recovered else 0})
        recovered += [m["id"] for m in reply["history"]]
    assert recovered == [m["id"] for m in a.messages(room)]


def test_frames_that_arrive_with_the_upgrade_packet_are_kept(chat_server):
    polling = RawPolling(chat_server.url)
    polling.post('40{"name": "%s"}' % unique("upgrader"))
    polling.until(lambda p: p.startswith('42["welcome"'))
    url = chat_server.url.replace("http://", "ws://") + f"/socket.io/?EIO=4&transport=websocket&sid={polling.sid}"
    ws = websocket.create_connection(url, timeout=10)
    try:
        ws.send("2probe")
        assert ws.recv() == "3probe"
        room = unique("room")
        upgrade_and_join = b"".join(websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT).format()
                                    for text in ["5", '421["join",{"room":"%s"}]' % room])
        ws.sock.sendall(upgrade_and_join)  # one TCP write: the join is read with the upgrade
        frame = ws.recv()
        while not frame.startswith("431"):  # pings, NOOP, our own presence event
            frame = ws.recv()
        assert json.loads(frame[3:])[0]["ok"], frame
    finally:
        ws.close()


def test_control_frames_are_answered_and_a_protocol_error_closes(chat_server):
    raw = RawSocket(chat_server.url)
    try:
        raw.connect(name=unique("pinger"))
        raw.ws.ping("are you there")
        opcode, data = raw.ws.recv_data(control_frame=True)
        while opcode != websocket.ABNF.OPCODE_PONG:
            opcode, data = raw.ws.recv_data(control_frame=True)
        assert data == b"are you there"
        unmasked = bytes([0x81, 2]) + b"40"  # client frames must be masked (RFC 6455 5.1)
        raw.ws.sock.sendall(unmasked)
        opcode, data = raw.ws.recv_data(control_frame=True)
        while opcode != websocket.ABNF.OPCODE_CLOSE:
            opcode, data = raw.ws.recv_data(control_frame=True)
        assert int.from_bytes(data[:2], "big") == 1002
    finally:
        raw.close()


def test_a_connection_reset_mid_session_leaves_no_ghost(chat_server, clients):
    room = unique("room")
    watcher = clients(chat_server.url).connect(name=unique("watcher"))
    watcher.join(room)
    raw = RawSocket(chat_server.url)
    name = unique("resetter")
    raw.connect(name=name)
    assert raw.call("join", {"room": room})["ok"]
    raw.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.ws.sock.close()  # RST, no close frame
    watcher.wait_for("presence", lambda d: d["user"] == name and d["action"] == "leave")
    assert watcher.call("join", {"room": room})["members"] == [watcher.name]


def test_a_connections_events_run_in_order(chat_server):
    """A send pipelined right behind its join (one TCP write) is handled after the join."""
    raw = RawSocket(chat_server.url)
    try:
        raw.connect(name=unique("eager"))
        room = unique("room")
        packets = ['421["join",{"room":"%s"}]' % room, '422["send",{"room":"%s","text":"first!"}]' % room]
        raw.ws.sock.sendall(b"".join(websocket.ABNF.create_frame(p, websocket.ABNF.OPCODE_TEXT).format()
                                     for p in packets))
        acks = []
        while len(acks) < 2:
            frame = raw.ws.recv()
            if frame == "2":
                raw.ws.send("3")
            elif frame.startswith("43"):
                acks.append(frame)
        assert [a[:3] for a in acks] == ["431", "432"], acks
        sent = json.loads(acks[1][3:])[0]
        assert sent["ok"] and sent["message"]["text"] == "first!", sent
    finally:
        raw.close()


def socket_fds(pid):
    """How many sockets process `pid` has open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_a_stalled_reader_under_the_outbox_limit_is_released_after_its_ping_timeout(start_server, clients):
    """Its backlog stays under the limits, so only the ping timeout ends it: closing must
    not wait forever for a socket that never drains."""
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_PING_INTERVAL_SECS=10, CHAT_PING_TIMEOUT_SECS=2,
                          CHAT_MAX_OUTBOX=100_000, CHAT_MAX_OUTBOX_BYTES=256 * 1024 * 1024, CHAT_MAX_MESSAGE=7800)
    room = unique("room")
    a = clients(server.url).connect(name="talker")
    a.join(room)
    sockets_before = socket_fds(server.pid)
    stalled = RawSocket(server.url, rcvbuf=4096)
    try:
        stalled.connect(name="frozen")
        assert stalled.call("join", {"room": room})["ok"]
        started = time.monotonic()
        for i in range(750):  # ~6 MB in few sends: more than the kernel buffers hold, far under the limit
            a.send(room, f"{i} " + "x" * 7790)
        assert time.monotonic() - started < 10  # the backlog is there before the first ping is due (not a speed check)
        a.wait_for("presence", lambda d: d["user"] == "frozen" and d["action"] == "leave", timeout=25)
        wait_until(lambda: socket_fds(server.pid) <= sockets_before, timeout=15,
                   message="the frozen client's connection closed by the server")
        assert "outbox full" not in server.output()
    finally:
        stalled.close()
