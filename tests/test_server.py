"""End to end: a real `run_server.py` process driven by python-socketio clients over
websocket and long-polling."""
import pytest
import requests
import socketio

from tests.chatclient import all_join, start_senders, unique
from tests.serverproc import wait_until

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


def pair(chat_server, clients, transport, room):
    a = clients(chat_server.url, transport).connect(name=unique("a"))
    b = clients(chat_server.url, transport).connect(name=unique("b"))
    a.join(room)
    b.join(room)
    return a, b


def test_join_send_receive_exactly_once_in_order(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    sent = [a.send(room, f"hello {i}") for i in range(5)] + [b.send(room, "hi back")]
    for client in (a, b):
        got = client.wait_messages(room, 6)
        assert [m["id"] for m in got] == [m["id"] for m in sent] == list(range(1, 7))
    gotten = a.messages(room)
    assert gotten[0] == {"id": 1, "room": room, "user": a.name, "account": False, "text": "hello 0",
                         "ts": gotten[0]["ts"]}


def test_join_returns_history_and_members(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    for i in range(3):
        a.send(room, f"m{i}")
    c = clients(chat_server.url, transport).connect(name=unique("c"))
    reply = c.join(room)
    assert [m["text"] for m in reply["history"]] == ["m0", "m1", "m2"]
    assert reply["members"] == sorted([a.name, b.name, c.name])
    assert reply["room"] == room and "truncated" not in reply


def test_history_is_capped_at_chat_history(start_server, clients):
    server = start_server(CHAT_HISTORY=4)
    a = clients(server.url).connect(name="writer")
    a.join("r")
    for i in range(7):
        a.send("r", f"m{i}")
    b = clients(server.url).connect(name="reader")
    assert [m["text"] for m in b.join("r")["history"]] == ["m3", "m4", "m5", "m6"]


def test_nonce_makes_send_idempotent(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    first = a.send(room, "once", nonce="n-123")
    again = a.send(room, "once", nonce="n-123")
    assert again == first
    other = a.send(room, "once", nonce="n-456")
    assert other["id"] == first["id"] + 1
    b.wait_messages(room, 2)
    assert [m["id"] for m in b.messages(room)] == [first["id"], other["id"]]


def test_since_recovers_exactly_the_gap(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    a.send(room, "before")
    last_seen = b.wait_messages(room, 1)[-1]["id"]
    b.close()
    missed = [a.send(room, f"missed {i}") for i in range(4)]
    back = clients(chat_server.url, transport).connect(token=b.welcome["token"])
    reply = back.join(room, since=last_seen)
    assert reply["history"] == missed
    after = a.send(room, "after")
    assert back.wait_messages(room, 1) == [after]


def test_since_catch_up_is_truncated_and_resumable(start_server, clients):
    server = start_server(CHAT_SINCE_MAX=3)
    a = clients(server.url).connect(name="writer")
    a.join("r")
    ids = [a.send("r", f"m{i}")["id"] for i in range(8)]
    b = clients(server.url).connect(name="late")
    first = b.call("join", {"room": "r", "since": 0})
    assert first["ok"] and first["truncated"] and [m["id"] for m in first["history"]] == ids[:3]
    assert b.name not in first["members"]  # not a member until caught up
    got = list(first["history"])
    while True:
        reply = b.call("join", {"room": "r", "since": got[-1]["id"]})
        got += reply["history"]
        if not reply.get("truncated"):
            break
    assert [m["id"] for m in got] == ids and b.name in reply["members"]


def test_history_pages_backwards_by_id(chat_server, clients, transport):
    room = unique("room")
    a, _ = pair(chat_server, clients, transport, room)
    for i in range(12):
        a.send(room, f"m{i}")
    page = a.call("history", {"room": room, "limit": 5})
    assert [m["id"] for m in page["messages"]] == [8, 9, 10, 11, 12]
    page = a.call("history", {"room": room, "before": 8, "limit": 5})
    assert [m["id"] for m in page["messages"]] == [3, 4, 5, 6, 7]
    page = a.call("history", {"room": room, "before": 3, "limit": 100})
    assert [m["id"] for m in page["messages"]] == [1, 2]
    assert a.call("history", {"room": room, "limit": 101})["error"]["code"] == "invalid_payload"


def test_typing_is_relayed_to_others_only(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    a.sio.emit("typing", {"room": room, "active": True})
    assert b.wait_for("typing") == {"room": room, "user": a.name, "active": True}
    a.sio.emit("typing", {"room": room, "active": False})
    b.wait_for("typing", lambda d: d["active"] is False)
    a.call("rooms")  # a round trip after both typings: a would have its own by now
    assert a.received("typing") == []


def test_presence_join_and_leave(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    assert a.wait_for("presence", lambda d: d["user"] == b.name) == {
        "room": room, "user": b.name, "action": "join", "count": 2}
    assert b.call("leave", {"room": room}) == {"ok": True}
    assert a.wait_for("presence", lambda d: d["action"] == "leave") == {
        "room": room, "user": b.name, "action": "leave", "count": 1}
    assert b.call("send", {"room": room, "text": "x"})["error"]["code"] == "not_member"
    b.close()
    c = clients(chat_server.url, transport).connect(name=unique("c"))
    c.join(room)
    c.close()
    a.wait_for("presence", lambda d: d["user"] == c.name and d["action"] == "leave")


def test_rooms_lists_online_counts(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    listed = {r["name"]: r["members"] for r in a.call("rooms")["rooms"]}
    assert listed[room] == 2
    api = requests.get(chat_server.url + "/api/rooms/", timeout=5).json()
    assert {"name": room, "members": 2} in api["rooms"]


def test_token_reconnect_takes_over_a_live_socket(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    again = clients(chat_server.url, transport).connect(token=a.welcome["token"])
    assert again.name == a.name
    a.wait_for("kicked", lambda d: d["code"] == "replaced")
    wait_until(lambda: not a.sio.connected, message="old socket dropped")
    again.join(room)
    sent = b.send(room, "still here?")
    assert again.wait_messages(room, 1) == [sent]


def refusal_code(url, transport, headers=None, **auth):
    from tests.chatclient import ChatClient

    late = ChatClient(url, transport)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            late.connect(headers=headers, **auth)
        return late.connect_error["data"]["code"]
    finally:
        late.close()


def test_names_are_unique_and_validated(chat_server, clients):
    name = unique("n")
    clients(chat_server.url).connect(name=name)
    for auth, code in (({"name": name}, "name_taken"), ({"name": name.upper()}, "name_taken"),
                       ({"name": "bad name"}, "invalid_name"), ({"name": "x" * 33}, "invalid_name"),
                       ({"token": "forged"}, "invalid_token"), ({}, "invalid_name")):
        assert refusal_code(chat_server.url, "websocket", **auth) == code


def test_refusal_over_long_polling(start_server, clients):
    # python-engineio's client lingers one ping interval after a refused polling connect
    server = start_server(CHAT_PING_INTERVAL_SECS=1, CHAT_PING_TIMEOUT_SECS=2)
    clients(server.url, "polling").connect(name="taken")
    assert refusal_code(server.url, "polling", name="taken") == "name_taken"


BAD_PAYLOADS = [
    ("join", None, "invalid_payload"), ("join", [], "invalid_payload"), ("join", {"room": "A"}, "invalid_room"),
    ("join", {"room": "x" * 65}, "invalid_room"), ("join", {"room": "ok", "since": "1"}, "invalid_payload"),
    ("leave", {"room": 5}, "invalid_room"), ("send", {"room": "ok"}, "invalid_text"),
    ("send", {"room": "ok", "text": "   "}, "invalid_text"), ("send", {"room": "ok", "text": "x" * 4001}, "text_too_long"),
    ("send", {"room": "not-joined", "text": "hi"}, "not_member"), ("send", {"room": "ok", "text": "hi", "nonce": 5}, "invalid_payload"),
    ("history", {"room": "ok", "before": -1}, "invalid_payload"), ("history", "x", "invalid_payload"),
    ("rooms", 5, "invalid_payload"), ("no_such_event", {}, "unknown_event"),
]


def test_bad_payloads_get_error_values_and_keep_the_connection(chat_server, clients, transport):
    room = unique("room")
    a, b = pair(chat_server, clients, transport, room)
    for event, payload, code in BAD_PAYLOADS:
        reply = a.call(event, payload)
        assert reply["ok"] is False and reply["error"]["code"] == code, (event, payload, reply)
        assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    a.sio.emit("typing", {"room": room, "active": "yes"})
    assert a.sio.connected
    sent = a.send(room, "still connected")
    assert b.wait_messages(room, 1) == [sent]


def test_concurrent_senders_every_member_gets_one_order(chat_server, clients):
    room = unique("room")
    members = all_join(room, *[clients(chat_server.url).connect(name=unique("m")) for _ in range(6)])
    per_sender = 15
    for thread in start_senders(members, room, per_sender):
        thread.join()
    total = per_sender * len(members)
    for member in members:
        got = member.wait_messages(room, total)
        assert [m["id"] for m in got] == list(range(1, total + 1))


def test_json_api_and_health(chat_server, clients):
    room = unique("room")
    a = clients(chat_server.url).connect(name=unique("a"))
    a.join(room)
    for i in range(4):
        a.send(room, f"m{i}")
    page = requests.get(f"{chat_server.url}/api/rooms/{room}/messages?limit=2", timeout=5).json()
    assert page["ok"] and [m["id"] for m in page["messages"]] == [3, 4]
    page = requests.get(f"{chat_server.url}/api/rooms/{room}/messages?before=3&limit=5", timeout=5).json()
    assert [m["text"] for m in page["messages"]] == ["m0", "m1"]
    for query in ("limit=abc", "limit=0", "limit=101", "before=-1", f"before={2**63}", "before=x"):
        bad = requests.get(f"{chat_server.url}/api/rooms/{room}/messages?{query}", timeout=5)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_payload", query
    missing = requests.get(f"{chat_server.url}/api/rooms/no-such-room-x/messages", timeout=5)
    assert missing.status_code == 404 and missing.json()["ok"] is False
    health = requests.get(chat_server.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["ok"] and health.json()["database"] == "ok"


def test_pages_are_served_with_csp_and_the_client_library(chat_server):
    for path in ("/", "/r/some-room/"):
        page = requests.get(chat_server.url + path, timeout=5)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert "<script>" not in page.text
    assert requests.get(chat_server.url + "/r/Bad Room/", timeout=5).status_code == 404
    lib = requests.get(chat_server.url + "/static/vendor/socket.io/socket.io.min.js", timeout=5)
    assert lib.status_code == 200 and "socket.io" in lib.text[:400].lower()


def test_large_rooms_get_throttled_counts_instead_of_each_join(start_server, clients):
    server = start_server(CHAT_PRESENCE_DETAIL_MAX=2, CHAT_PRESENCE_INTERVAL_MSECS=300)
    first = clients(server.url).connect(name="first")
    first.join("big")
    second = clients(server.url).connect(name="second")
    second.join("big")
    assert first.wait_for("presence", lambda d: d["user"] == "second")["count"] == 2
    for i in range(4):  # past the detail limit: no per-user events, one count after the burst
        clients(server.url).connect(name=f"crowd{i}").join("big")
    counted = first.wait_for("presence", lambda d: d["action"] == "count" and d["count"] == 6)
    assert counted == {"room": "big", "user": None, "action": "count", "count": 6}
    assert not [d for d in first.received("presence") if d["user"] and d["user"].startswith("crowd")]
    reply = clients(server.url).connect(name="late").join("big")
    assert reply["count"] == 7 and len(reply["members"]) == 7


def test_flooding_is_rate_limited_then_cut_off_while_others_chat(start_server, clients):
    server = start_server(CHAT_RATE_LIMITS="send=5/5,typing=5/5,join=5/5", CHAT_FLOOD_STRIKES=30)
    room = unique("room")
    a, b = all_join(room, clients(server.url).connect(name="calm-a"), clients(server.url).connect(name="calm-b"))
    flooder, = all_join(room, clients(server.url).connect(name="flooder"))
    replies = [flooder.call("send", {"room": room, "text": f"spam {i}"}) for i in range(8)]
    assert all(r["ok"] for r in replies[:5])
    limited = [r for r in replies[5:] if not r["ok"]]
    assert limited and limited[0]["error"]["code"] == "rate_limited" and limited[0]["error"]["retry_after"] > 0
    for i in range(40):  # keeps flooding: disconnected
        flooder.sio.emit("typing", {"room": room, "active": True})
    flooder.wait_for("kicked", lambda d: d["code"] == "flooding")
    wait_until(lambda: not flooder.sio.connected, message="flooder cut off")
    sent = [a.send(room, "still fine"), b.send(room, "yes")]
    assert b.wait_messages(room, 5 + len(sent))[-2:] == sent


def test_connections_per_address_are_limited(start_server, clients):
    server = start_server(CHAT_MAX_CONNECTIONS_PER_IP=2)
    first = clients(server.url).connect(name="one")
    clients(server.url).connect(name="two")
    assert refusal_code(server.url, "websocket", name="three") == "too_many_connections"
    first.close()
    wait_until(lambda: clients(server.url).connect(name="three").name == "three", timeout=5,
               message="a slot frees when a connection closes")


def chat_latencies(sender, receiver, room, count=30):
    """Send `count` messages one by one; the seconds each took to reach the receiver."""
    import statistics
    import time

    latencies = []
    for i in range(count):
        started = time.monotonic()
        sent = sender.send(room, f"ping {i}")
        receiver.wait_for("message", lambda m, sent=sent: m["id"] == sent["id"] and m["room"] == room, timeout=10)
        latencies.append(time.monotonic() - started)
        time.sleep(0.03)
    return statistics.median(latencies)


def test_a_sustained_flood_does_not_slow_the_others_down(start_server, clients):
    import threading

    # strikes high enough that the flood goes on for the whole measurement
    server = start_server(CHAT_RATE_LIMITS="send=20/40", CHAT_FLOOD_STRIKES=10**9)
    room = unique("room")
    a, b = all_join(room, clients(server.url).connect(name="calm-a"), clients(server.url).connect(name="calm-b"))
    flooder, = all_join(room, clients(server.url).connect(name="flooder"))
    calm = chat_latencies(a, b, room)
    stop = threading.Event()
    refused = []

    def flood():
        while not stop.is_set():
            reply = flooder.call("send", {"room": room, "text": "spam"})
            if not reply["ok"]:
                refused.append(reply["error"]["code"])

    floods = [threading.Thread(target=flood) for _ in range(4)]
    for thread in floods:
        thread.start()
    try:
        flooded = chat_latencies(a, b, room)
    finally:
        stop.set()
        for thread in floods:
            thread.join()
    assert len(refused) > 100 and set(refused) == {"rate_limited"}
    assert flooded <= 2 * calm + 0.005, (calm, flooded)  # ratio, with 5 ms of slack for a noisy machine
    ids = [m["id"] for m in b.messages(room)]
    assert ids == sorted(set(ids)) and len(ids) == max(ids)  # nothing lost, nothing twice


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_is_cut_off_and_recovers(start_server, clients):
    import json

    from tests.rawclient import RawPolling

    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_OUTBOX=50)
    room = unique("room")
    a, b = all_join(room, clients(server.url).connect(name="fast-a"), clients(server.url).connect(name="fast-b"))
    stalled = RawPolling(server.url)  # a tab on a bad link: connected, joined, then it stops polling
    stalled.post('40{"name": "stalled"}')
    token = json.loads(stalled.until(lambda p: p.startswith('42["welcome"'))[2:])[1]["token"]
    stalled.post('421["join", {"room": "%s"}]' % room)
    assert json.loads(stalled.until(lambda p: p.startswith("431"))[3:])[0]["ok"]
    calm = chat_latencies(a, b, room, count=10)
    rss_before = rss_kib(server.pid)
    for i in range(80):
        (a if i % 2 else b).send(room, f"{i} " + "x" * 3900)
    wait_until(lambda: "outbox full" in server.output(), timeout=10, message="the stalled client was cut")
    a.wait_for("presence", lambda d: d["user"] == "stalled" and d["action"] == "leave")
    after = chat_latencies(a, b, room, count=10)
    assert after <= 2 * calm + 0.005, (calm, after)
    assert rss_kib(server.pid) - rss_before < 20 * 1024  # bounded by the outbox
    back = clients(server.url).connect(token=token)
    reply = back.call("join", {"room": room, "since": 0})
    assert [m["id"] for m in reply["history"]] == [m["id"] for m in a.messages(room)]


def test_rooms_per_connection_and_names_per_ack_are_limited(start_server, clients):
    server = start_server(CHAT_MAX_ROOMS_PER_CONNECTION=2, CHAT_MAX_MEMBERS_LISTED=2)
    busy = clients(server.url).connect(name="busy")
    busy.join("one")
    busy.join("two")
    refused = busy.call("join", {"room": "three"})
    assert refused["error"]["code"] == "too_many_rooms"
    assert busy.call("join", {"room": "two"})["ok"]  # joining again is not a new room
    busy.call("leave", {"room": "one"})
    assert busy.call("join", {"room": "three"})["ok"]
    for name in ("amy", "bob", "cat"):
        clients(server.url).connect(name=name).join("three")
    reply = clients(server.url).connect(name="dan").join("three")
    assert reply["members"] == ["amy", "bob"] and reply["count"] == 5


def test_join_ack_comes_before_live_messages_on_the_wire(start_server, clients):
    import json
    import threading

    from tests.rawclient import RawSocket

    server = start_server(CHAT_RATE_LIMITS="off")
    room = unique("room")
    senders = all_join(room, *[clients(server.url).connect(name=f"sender{i}") for i in range(4)])
    stop = threading.Event()
    streams = [threading.Thread(target=lambda s=s: [s.send(room, "x") for _ in iter(stop.is_set, True)])
               for s in senders]
    for stream in streams:
        stream.start()
    try:
        for attempt in range(20):
            joiner = RawSocket(server.url)
            joiner.connect(name=f"joiner{attempt}")
            joiner.ws.send('427["join",{"room":"%s"}]' % room)
            frames, ack = [], None
            while ack is None:
                frame = joiner.ws.recv()
                if frame.startswith("437"):
                    ack = json.loads(frame[3:])[0]
                elif frame.startswith('42["message"'):
                    frames.append(frame)
            assert frames == [], "a live message arrived before the join ack"
            live = []
            while len(live) < 5:
                frame = joiner.ws.recv()
                if frame.startswith('42["message"'):
                    live.append(json.loads(frame[2:])[1]["id"])
            ids = [m["id"] for m in ack["history"]] + live
            assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # contiguous: nothing lost or doubled
            joiner.close()
    finally:
        stop.set()
        for stream in streams:
            stream.join()
