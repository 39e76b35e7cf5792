"""Room events end to end (chat.roomlog): edits, deletions, reactions, replies and the topic,
over websocket and long-polling, on one node and across two; the errors each can answer;
and that a client that was away converges to the state of one that never left."""
import random
import time

import pytest

from tests.chatclient import unique
from tests.test_cluster import cluster, two_nodes  # noqa: F401 (fixtures)
from tests.roomstate import RoomState
from tests.serverproc import wait_until

TRANSPORTS = ["websocket", "polling"]


def refused(client, event, payload):
    reply = client.call(event, payload)
    assert reply["ok"] is False, reply
    return reply["error"]["code"]


def changed(client, event, payload):
    reply = client.call(event, payload)
    assert reply["ok"], reply
    return reply["event"]


def pair(clients, urls, transport):
    """Two members of a fresh room, on the given node urls."""
    room = unique("ev")
    amy = clients(urls[0], transport).connect(unique("amy"))
    bob = clients(urls[1], transport).connect(unique("bob"))
    amy.join(room)
    bob.join(room)
    return room, amy, bob


def seen_by(client, event, room, predicate=lambda data: True):
    return client.wait_for(event, lambda d: d.get("room") == room and predicate(d))


def check_every_kind(room, amy, bob):
    """Each kind once: the actor's ack, then the other member's live event."""
    first = amy.send(room, "helo wrld")
    edit = changed(amy, "edit", {"room": room, "id": first["id"], "text": "hello world"})
    assert edit["kind"] == "edit" and edit["seq"] == first["id"] + 1 and edit["text"] == "hello world"
    assert seen_by(bob, "message_edited", room) == edit

    react = changed(bob, "react", {"room": room, "id": first["id"], "emoji": "👍🏽"})
    assert (react["count"], react["users"], react["user"]) == (1, [bob.name], bob.name)
    assert seen_by(amy, "reaction", room, lambda d: d["kind"] == "react") == react
    assert changed(bob, "react", {"room": room, "id": first["id"], "emoji": "👍🏽"}) is None  # already there
    unreact = changed(bob, "unreact", {"room": room, "id": first["id"], "emoji": "👍🏽"})
    assert (unreact["kind"], unreact["count"], unreact["users"]) == ("unreact", 0, [])
    assert seen_by(amy, "reaction", room, lambda d: d["kind"] == "unreact") == unreact

    reply = bob.send(room, "a reply", reply_to=first["id"])
    assert reply["reply_to"] == {"id": first["id"], "user": amy.name, "excerpt": "hello world", "replies": 1}
    assert seen_by(amy, "message", room, lambda d: d["id"] == reply["id"]) == reply

    topic = changed(bob, "set_topic", {"room": room, "topic": "  plans for friday "})
    assert (topic["topic"], topic["user"]) == ("plans for friday", bob.name)
    assert seen_by(amy, "topic", room) == topic

    deletion = changed(amy, "delete", {"room": room, "id": first["id"]})
    assert deletion == {"room": room, "seq": deletion["seq"], "kind": "delete", "id": first["id"]}
    assert seen_by(bob, "message_deleted", room) == deletion

    # the current state: the deleted parent is a gap, the reply still says it was one
    page = bob.call("history", {"room": room})["messages"]
    assert [m["id"] for m in page] == [reply["id"]]
    assert page[0]["reply_to"] == {"id": first["id"], "user": amy.name, "excerpt": None, "replies": 1}
    numbers = [edit["seq"], react["seq"], unreact["seq"], reply["id"], topic["seq"], deletion["seq"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_event_kind_on_one_node(chat_server, clients, transport):
    room, amy, bob = pair(clients, [chat_server.url, chat_server.url], transport)
    check_every_kind(room, amy, bob)


@pytest.mark.cluster
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_event_kind_across_two_nodes(cluster, two_nodes, clients, transport):
    room, amy, bob = pair(clients, [two_nodes[0].url, two_nodes[1].url], transport)
    check_every_kind(room, amy, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refusals_have_clear_codes_and_change_nothing(start_server, clients, transport):
    server = start_server(CHAT_EDIT_WINDOW_SECS="2", CHAT_REACTIONS_PER_MESSAGE="2", CHAT_REACTIONS_PER_USER="2",
                          CHAT_RATE_LIMITS="off")
    room, amy, bob = pair(clients, [server.url, server.url], transport)
    other_room = unique("other")
    amy.join(other_room)
    mine = amy.send(room, "mine")
    elsewhere = [amy.send(other_room, f"o{i}") for i in range(3)]
    assert refused(bob, "edit", {"room": room, "id": mine["id"], "text": "not yours"}) == "forbidden"
    assert refused(bob, "delete", {"room": room, "id": mine["id"]}) == "forbidden"
    assert refused(amy, "edit", {"room": room, "id": mine["id"] + 50, "text": "x"}) == "message_not_found"
    assert refused(amy, "edit", {"room": room, "id": mine["id"], "text": "   "}) == "invalid_text"
    for emoji in ("x", "👍👍", ":)", "", 5, "👍 "):
        assert refused(bob, "react", {"room": room, "id": mine["id"], "emoji": emoji}) == "invalid_emoji"
    assert refused(bob, "send", {"room": room, "text": "re", "reply_to": elsewhere[-1]["id"]}) == "message_not_found"
    assert refused(bob, "react", {"room": other_room, "id": elsewhere[0]["id"], "emoji": "👍"}) == "not_member"
    for emoji in ("👍", "🎉"):
        changed(bob, "react", {"room": room, "id": mine["id"], "emoji": emoji})
    assert refused(bob, "react", {"room": room, "id": mine["id"], "emoji": "😮"}) == "too_many_reactions"
    assert refused(amy, "react", {"room": room, "id": mine["id"], "emoji": "😮"}) == "too_many_reactions"
    time.sleep(2.5)  # past CHAT_EDIT_WINDOW_SECS
    assert refused(amy, "edit", {"room": room, "id": mine["id"], "text": "too late"}) == "edit_window_closed"
    assert refused(amy, "delete", {"room": room, "id": mine["id"]}) == "edit_window_closed"
    [stored] = amy.call("history", {"room": room})["messages"]
    assert stored["text"] == "mine" and "edited_at" not in stored
    assert [(r["emoji"], r["count"], r["me"]) for r in stored["reactions"]] == [("👍", 1, False), ("🎉", 1, False)]
    assert [e for e, d in bob.events if e in ("message_edited", "message_deleted")] == []


def test_every_room_event_door_refuses_a_non_member(chat_server, clients):
    room, amy, _ = pair(clients, [chat_server.url, chat_server.url], "polling")
    message = amy.send(room, "members only")
    outsider = clients(chat_server.url).connect(unique("out"))
    for event, extra in (("edit", {"text": "x"}), ("delete", {}), ("react", {"emoji": "👍"}),
                         ("unreact", {"emoji": "👍"}), ("set_topic", {"topic": "mine now"})):
        assert refused(outsider, event, {"room": room, "id": message["id"], **extra}) == "not_member", event
    assert refused(outsider, "send", {"room": room, "text": "re", "reply_to": message["id"]}) == "not_member"
    [stored] = amy.call("history", {"room": room})["messages"]
    assert stored == message and amy.join(room)["topic"] == ""


def test_any_single_emoji_counts(chat_server, clients):
    room, amy, bob = pair(clients, [chat_server.url, chat_server.url], "websocket")
    message = amy.send(room, "emoji")
    for emoji in ("👨‍👩‍👧", "👍🏿", "🏳️‍🌈", "🇫🇷", "1️⃣", "❤️"):
        assert changed(bob, "react", {"room": room, "id": message["id"], "emoji": emoji})["emoji"] == emoji


def test_replies_count_on_the_parent_and_survive_its_deletion(chat_server, clients):
    room, amy, bob = pair(clients, [chat_server.url, chat_server.url], "websocket")
    parent = amy.send(room, "x" * 150)
    first = bob.send(room, "one", reply_to=parent["id"])
    second = bob.send(room, "two", reply_to=parent["id"])
    assert (first["reply_to"]["replies"], second["reply_to"]["replies"]) == (1, 2)
    assert first["reply_to"]["excerpt"] == "x" * 100
    deletion = changed(bob, "delete", {"room": room, "id": first["id"]})
    assert deletion["reply_to"] == {"id": parent["id"], "replies": 1}
    page = amy.call("history", {"room": room})["messages"]
    assert [(m["id"], m.get("replies")) for m in page] == [(parent["id"], 1), (second["id"], None)]


def test_a_rejoin_with_since_replays_every_kind_and_a_fresh_join_shows_current_state(chat_server, clients):
    room, amy, bob = pair(clients, [chat_server.url, chat_server.url], "websocket")
    kept = amy.send(room, "kept")
    gone = amy.send(room, "gone")
    resume = gone["id"]
    changed(amy, "edit", {"room": room, "id": kept["id"], "text": "kept, edited"})
    changed(bob, "react", {"room": room, "id": kept["id"], "emoji": "🎉"})
    changed(amy, "delete", {"room": room, "id": gone["id"]})
    changed(amy, "edit", {"room": room, "id": kept["id"], "text": "kept, edited twice"})
    late = clients(chat_server.url).connect(unique("late"))
    ack = late.join(room, since=resume)
    assert ack["history"] == []
    assert [e["kind"] for e in ack["events"]] == ["edit", "react", "delete", "edit"]
    fresh = clients(chat_server.url).connect(unique("fresh")).join(room)
    assert fresh["events"] == [] and [m["id"] for m in fresh["history"]] == [kept["id"]]
    assert fresh["history"][0]["text"] == "kept, edited twice" and "edited_at" in fresh["history"][0]


@pytest.mark.cluster
def test_a_client_that_was_away_converges_to_one_that_never_left(cluster, clients):
    """Random sends, replies, edits, deletions, reactions and topics by people on two nodes,
    while one member is away; it comes back on the other node with `since` (in pages of a few
    items), and its state equals that of a member who never left, and the server's own."""
    settings = {"CHAT_RATE_LIMITS": "off", "CHAT_SINCE_MAX": "7"}
    nodes = [cluster.add_node(**settings), cluster.add_node(**settings)]
    room = unique("conv")
    actors = [clients(nodes[i % 2].url).connect(unique(f"p{i}")) for i in range(3)]
    stayer = clients(nodes[0].url, "polling").connect(unique("stay"))
    away = clients(nodes[1].url).connect(unique("away"))
    for member in (*actors, stayer):
        member.join(room)
    away_state = RoomState(away.name).load(away.join(room))
    stayer_state = RoomState(stayer.name)
    rng = random.Random(15)
    ids = [actors[0].send(room, "first")["id"]]
    away.call("react", {"room": room, "id": ids[0], "emoji": "👍"})
    wait_until(lambda: away_state.follow(away, room).messages.get(ids[0], {}).get("reactions"), message="own reaction")
    away.close()
    for step in range(120):
        random_change(rng, actors, room, ids, step)
    last = actors[0].send(room, "last")["id"]
    wait_until(lambda: stayer_state.follow(stayer, room).resume >= last, message="the stayer caught up")

    back = clients(nodes[0].url).connect(token=away.welcome["token"])  # the same guest (its guest id)
    since, pages = away_state.resume, 0
    while True:
        ack = back.join(room, since=since)
        away_state.load(ack, since=since)
        pages += 1
        if not ack.get("truncated"):
            break
        since = ack["next"]
    assert pages > 3  # the replay came in pages (CHAT_SINCE_MAX=7)
    away_state.follow(back, room)
    assert away_state.view(with_me=False) == stayer_state.view(with_me=False)
    assert away_state.topic == stayer_state.topic
    for state, client in ((away_state, back), (stayer_state, stayer)):
        server_view = client.call("history", {"room": room, "limit": 100})["messages"]
        assert state.view() == server_view
    assert any(m.get("edited_at") for m in stayer_state.view()) and any(m.get("reactions") for m in stayer_state.view())
    assert any(m.get("reply_to") for m in stayer_state.view()) and len(stayer_state.view()) < len(ids) + 1


def random_change(rng, actors, room, ids, step):
    """One random change by a random actor; refusals (someone else's message) are fine."""
    actor = rng.choice(actors)
    target = rng.choice(ids)
    roll = rng.random()
    if roll < 0.3:
        extra = {"reply_to": target} if rng.random() < 0.3 else {}
        reply = actor.call("send", {"room": room, "text": f"m{step}", **extra})
        if reply["ok"]:
            ids.append(reply["message"]["id"])
    elif roll < 0.45:
        actor.call("edit", {"room": room, "id": target, "text": f"edit {step}"})
    elif roll < 0.52:
        actor.call("delete", {"room": room, "id": target})
    elif roll < 0.95:
        event = "react" if rng.random() < 0.6 else "unreact"
        actor.call(event, {"room": room, "id": target, "emoji": rng.choice(["👍", "🎉", "😮"])})
    else:
        actor.call("set_topic", {"room": room, "topic": f"topic {step}"})


def test_the_http_api_serves_the_current_state_like_history(chat_server, clients):
    import requests

    room, amy, bob = pair(clients, [chat_server.url, chat_server.url], "websocket")
    first = amy.send(room, "first")
    amy.send(room, "doomed")
    changed(amy, "edit", {"room": room, "id": first["id"], "text": "first, edited"})
    changed(bob, "react", {"room": room, "id": first["id"], "emoji": "🎉"})
    changed(amy, "delete", {"room": room, "id": first["id"] + 1})
    reply = bob.send(room, "re", reply_to=first["id"])
    api = requests.get(f"{chat_server.url}/api/rooms/{room}/messages", timeout=5).json()["messages"]
    socket_page = bob.call("history", {"room": room})["messages"]
    assert [m["id"] for m in api] == [first["id"], reply["id"]]
    assert socket_page[0]["reactions"] == [{"emoji": "🎉", "count": 1, "users": [bob.name], "me": True}]
    assert api[0]["reactions"] == [{"emoji": "🎉", "count": 1, "users": [bob.name], "me": False}]
    assert {**api[0], "reactions": None} == {**socket_page[0], "reactions": None}
    assert api[0]["text"] == "first, edited" and api[0]["replies"] == 1
