"""Conversations that know who you are (chat.members, chat.mentions, chat.services.conversations):
private rooms refused to non-members at every door, direct messages, membership as room
events, read markers across an account's tabs and nodes, unread and mention counts.

Every protocol test runs over websocket and long-polling, on one node (SQLite) and across
two nodes (PostgreSQL + ZeroMQ): `people` puts A on the first node and B and C on the last.
"""
import time
from dataclasses import dataclass

import pytest
import requests

from tests.accounts import connect_as, error_code, make_accounts, mint_accounts, ok_reply, session_of
from tests.chatclient import ChatClient, unique
from tests.cluster import BrokerProcess, PostgresDatabase, require_postgres
from tests.test_cluster import Cluster

SETUPS = ["one-websocket", "one-polling", "two-websocket", "two-polling"]


@dataclass
class Person:
    name: str
    token: str
    url: str
    socket: ChatClient
    server: object = None

    @property
    def session(self):
        """A logged-in HTTP session of the account (made on first use: it hashes a password)."""
        if "_session" not in self.__dict__:
            self.__dict__["_session"] = session_of(self.server, self.name)
        return self.__dict__["_session"]


@pytest.fixture(scope="module")
def shared_cluster():
    """Two nodes on PostgreSQL for this module's tests (each uses fresh accounts and rooms)."""
    require_postgres()
    with PostgresDatabase() as database:
        made = Cluster(database, BrokerProcess().start())
        try:
            yield made.add_node(), made.add_node()
        finally:
            made.stop()


@pytest.fixture(scope="module")
def account_pool():
    """Fresh accounts made in bulk, per database: {database url: [(name, token)]}."""
    return {}


def fresh_accounts(pool, server, count):
    spare = pool.setdefault(server.database_url, [])
    if len(spare) < count:
        spare.extend(mint_accounts(server, 30, "acct"))
    taken, spare[:] = spare[:count], spare[count:]
    return taken


@pytest.fixture(params=SETUPS)
def people(request, clients, account_pool):
    """Three fresh accounts A, B and C, each connected once (A on the first node, B and C
    on the last), and a way to open more tabs."""
    nodes, transport = request.param.split("-")
    if nodes == "one":
        servers = [request.getfixturevalue("chat_server")]
    else:
        servers = list(request.getfixturevalue("shared_cluster"))
    crowd = {}
    for key, (name, token), server in zip("abc", fresh_accounts(account_pool, servers[0], 3),
                                          (servers[0], servers[-1], servers[-1])):
        socket = clients(server.url, transport).connect(token=token)
        assert socket.name == name
        crowd[key] = Person(name, token, server.url, socket, server)

    def tab(person, node=-1):
        """Another connection of `person`'s account, on node `node`."""
        return clients(servers[node].url, transport).connect(token=person.token)

    crowd["tab"], crowd["servers"], crowd["transport"] = tab, servers, transport
    return crowd


def private_room(owner, *invited):
    room = unique("priv")
    ok_reply(owner.socket, "create_room", {"room": room})
    owner.socket.join(room)
    for person in invited:
        ok_reply(owner.socket, "add_member", {"room": room, "user": person.name})
    return room


def entry(person, room):
    rooms = ok_reply(person.socket, "my_rooms")["rooms"]
    return next((r for r in rooms if r["name"] == room), None)


# -- private rooms ------------------------------------------------------------------------------
def test_a_private_room_is_closed_to_non_members_at_every_door(people):
    a, b, c = people["a"], people["b"], people["c"]
    room = private_room(a, b)
    added = b.socket.wait_for("room_added", lambda d: d["name"] == room)
    assert (added["kind"], added["role"], added["unread"]) == ("private", "member", 0)
    b.socket.join(room)
    sent = a.socket.send(room, "members only")
    assert b.socket.wait_for("message", lambda d: d["id"] == sent["id"])["text"] == "members only"

    assert error_code(c.socket, "join", {"room": room}) == "forbidden"
    assert error_code(c.socket, "join", {"room": room, "since": 0}) == "forbidden"
    assert error_code(c.socket, "history", {"room": room}) == "forbidden"
    assert error_code(c.socket, "send", {"room": room, "text": "let me in"}) == "not_member"
    assert error_code(c.socket, "add_member", {"room": room, "user": c.name}) == "forbidden"
    assert room not in [r["name"] for r in ok_reply(c.socket, "rooms")["rooms"]]
    assert room not in [r["name"] for r in ok_reply(c.socket, "rooms", {"query": room[:6]})["rooms"]]
    assert entry(c, room) is None
    api = c.session.get(f"{c.url}/api/rooms/{room}/messages", timeout=5)
    assert api.status_code == 403 and api.json()["error"]["code"] == "forbidden"
    assert requests.get(f"{c.url}/api/rooms/{room}/messages", timeout=5).status_code == 403  # no session
    assert b.session.get(f"{b.url}/api/rooms/{room}/messages", timeout=5).json()["messages"][-1]["id"] == sent["id"]
    assert c.socket.received("message", room) == [] and c.socket.received("member", room) == []
    assert c.socket.received("presence", room) == []


def test_membership_changes_are_room_events_and_a_removed_member_stops_at_once_everywhere(people):
    a, b = people["a"], people["b"]
    room = private_room(a, b)
    b_other = people["tab"](b, node=0)  # B's second tab, on the other node
    for tab in (b.socket, b_other):
        tab.join(room)
    a.socket.send(room, "before")
    removed = ok_reply(a.socket, "remove_member", {"room": room, "user": b.name})["event"]
    assert (removed["kind"], removed["action"], removed["user"], removed["by"]) == ("remove", "removed", b.name, a.name)
    for tab in (b.socket, b_other):
        assert tab.wait_for("room_removed", lambda d: d["room"] == room)["action"] == "removed"
    after = a.socket.send(room, "after removal")
    time.sleep(0.7)  # it would have arrived by now
    for tab in (b.socket, b_other):
        assert after["id"] not in [m["id"] for m in tab.messages(room)]
    assert error_code(b.socket, "join", {"room": room}) == "forbidden"
    assert error_code(b.socket, "send", {"room": room, "text": "still here?"}) == "not_member"

    # `since` replays the membership changes like every other event
    ok_reply(a.socket, "add_member", {"room": room, "user": b.name})
    replay = b.socket.join(room, since=0)
    kinds = [(e["kind"], e.get("action")) for e in replay["events"] if e["kind"] in ("join", "invite", "remove")]
    assert kinds == [("join", "joined"), ("invite", "added"), ("remove", "removed"), ("invite", "added")]
    assert [m["text"] for m in replay["history"]] == ["before", "after removal"]


def test_owners_and_moderators_manage_members_and_anyone_may_leave(people):
    a, b, c = people["a"], people["b"], people["c"]
    room = private_room(a, b)
    b.socket.join(room)
    assert error_code(b.socket, "add_member", {"room": room, "user": c.name}) == "forbidden"
    assert error_code(b.socket, "remove_member", {"room": room, "user": a.name}) == "forbidden"
    assert error_code(a.socket, "add_member", {"room": room, "user": unique("nobody")}) == "user_not_found"
    assert ok_reply(a.socket, "add_member", {"room": room, "user": b.name})["event"] is None  # already in
    left = ok_reply(b.socket, "remove_member", {"room": room, "user": b.name})["event"]
    assert left["action"] == "left"
    assert a.socket.wait_for("member", lambda d: d["room"] == room and d.get("action") == "left")["user"] == b.name
    assert error_code(a.socket, "create_room", {"room": room}) == "room_exists"

    # an owner makes C a moderator, who may then add and remove others (not change roles)
    ok_reply(a.socket, "add_member", {"room": room, "user": c.name})
    assert error_code(c.socket, "set_role", {"room": room, "user": c.name, "role": "owner"}) == "forbidden"
    promoted = ok_reply(a.socket, "set_role", {"room": room, "user": c.name, "role": "moderator"})["event"]
    assert (promoted["kind"], promoted["action"], promoted["role"]) == ("role", "role", "moderator")
    assert c.socket.wait_for("room_added", lambda d: d["name"] == room and d["role"] == "moderator")
    assert ok_reply(c.socket, "add_member", {"room": room, "user": b.name})["event"]["action"] == "added"
    assert ok_reply(c.socket, "remove_member", {"room": room, "user": b.name})["event"]["action"] == "removed"
    assert error_code(c.socket, "set_role", {"room": room, "user": b.name, "role": "member"}) == "forbidden"
    assert error_code(a.socket, "set_role", {"room": room, "user": b.name, "role": "moderator"}) == "not_member"
    assert error_code(a.socket, "set_role", {"room": room, "user": c.name, "role": "king"}) == "invalid_payload"


def test_archived_rooms_are_read_only_and_leave_the_lists(people):
    a, b = people["a"], people["b"]
    public = unique("pub")
    a.socket.join(public)  # an account creating a public room owns it
    b.socket.join(public)
    sent = a.socket.send(public, "last words")
    assert public in [r["name"] for r in ok_reply(b.socket, "rooms", {"query": public})["rooms"]]
    assert error_code(b.socket, "archive_room", {"room": public}) == "forbidden"
    archived = ok_reply(a.socket, "archive_room", {"room": public})["event"]
    assert b.socket.wait_for("room_archived", lambda d: d["room"] == public) == archived
    assert error_code(b.socket, "send", {"room": public, "text": "hello?"}) == "room_archived"
    assert error_code(b.socket, "react", {"room": public, "id": sent["id"], "emoji": "👍"}) == "room_archived"
    assert public not in [r["name"] for r in ok_reply(b.socket, "rooms", {"query": public})["rooms"]]
    assert entry(b, public) is None
    assert [m["text"] for m in ok_reply(b.socket, "history", {"room": public})["messages"]] == ["last words"]
    ok_reply(a.socket, "archive_room", {"room": public, "archived": False})
    assert b.socket.send(public, "back")["text"] == "back"


# -- direct messages ------------------------------------------------------------------------------
def test_the_same_people_always_get_the_same_direct_room_and_learn_of_it_live(people):
    a, b, c = people["a"], people["b"], people["c"]
    b_first_node = people["tab"](b, node=0)
    dm = ok_reply(a.socket, "open_dm", {"users": [b.name]})["room"]
    assert dm["kind"] == "direct" and dm["name"].startswith("dm-")
    assert set(dm["title"].split(", ")) == {a.name, b.name}
    for tab in (b.socket, b_first_node):
        assert tab.wait_for("room_added", lambda d: d["name"] == dm["name"])["kind"] == "direct"
    assert ok_reply(b.socket, "open_dm", {"users": [a.name.upper()]})["room"]["name"] == dm["name"]
    group = ok_reply(a.socket, "open_dm", {"users": [b.name, c.name]})["room"]["name"]
    assert group != dm["name"]
    assert ok_reply(c.socket, "open_dm", {"users": [b.name, a.name]})["room"]["name"] == group
    assert ok_reply(a.socket, "open_dm", {"users": [b.name, b.name]})["room"]["name"] == dm["name"]

    a.socket.join(dm["name"])
    b.socket.join(dm["name"])
    sent = a.socket.send(dm["name"], "just us")
    assert b.socket.wait_for("message", lambda d: d["room"] == dm["name"])["id"] == sent["id"]
    assert error_code(c.socket, "join", {"room": dm["name"]}) == "forbidden"
    assert c.session.get(f"{c.url}/api/rooms/{dm['name']}/messages", timeout=5).status_code == 403
    assert error_code(a.socket, "add_member", {"room": dm["name"], "user": c.name}) == "forbidden"

    listed = ok_reply(b.socket, "my_rooms")["rooms"]
    assert {dm["name"], group} <= {r["name"] for r in listed}
    assert next(r for r in listed if r["name"] == dm["name"])["unread"] == 1  # joining reads nothing


def test_direct_messages_are_for_accounts_and_small_groups(people, clients):
    a = people["a"]
    assert error_code(a.socket, "open_dm", {"users": [unique("ghost")]}) == "user_not_found"
    assert error_code(a.socket, "open_dm", {"users": [a.name]}) == "invalid_payload"
    assert error_code(a.socket, "open_dm", {"users": [f"p{i}" for i in range(8)]}) == "too_many_people"
    assert error_code(a.socket, "open_dm", {"users": "bob"}) == "invalid_payload"
    guest = clients(a.url, people["transport"]).connect(name=unique("guest"))
    for event, payload in (("open_dm", {"users": [a.name]}), ("create_room", {"room": unique("g")}),
                           ("mark_read", {"room": "lobby", "id": 1}), ("mute", {"room": "lobby", "muted": True})):
        assert error_code(guest, event, payload) == "account_required", event
    assert ok_reply(guest, "my_rooms")["rooms"] == []


# -- read markers and unread counts --------------------------------------------------------------
def test_read_markers_move_forward_only_and_every_tab_of_the_account_follows(people):
    a, b = people["a"], people["b"]
    room = private_room(a, b)
    b_other = people["tab"](b, node=0)
    sent = [a.socket.send(room, f"m{i}") for i in range(3)]
    assert (entry(b, room)["unread"], entry(a, room)["unread"]) == (3, 0)  # your own messages are read
    moved = ok_reply(b.socket, "mark_read", {"room": room, "id": sent[1]["id"]})["room"]
    assert (moved["last_read"], moved["unread"]) == (sent[1]["id"], 1)
    for tab in (b.socket, b_other):
        state = tab.wait_for("read_state", lambda d: d["name"] == room and d["last_read"] == sent[1]["id"])
        assert state["unread"] == 1
    back = ok_reply(b_other, "mark_read", {"room": room, "id": sent[0]["id"]})["room"]
    assert (back["last_read"], back["unread"]) == (sent[1]["id"], 1)  # never back
    past = ok_reply(b.socket, "mark_read", {"room": room, "id": 10**9})["room"]
    assert (past["last_read"], past["unread"]) == (sent[2]["id"], 0)  # never past the end
    assert error_code(people["c"].socket, "mark_read", {"room": room, "id": 1}) == "not_member"
    muted = ok_reply(b.socket, "mute", {"room": room, "muted": True})["room"]
    assert muted["muted"] and b_other.wait_for("read_state", lambda d: d["name"] == room and d["muted"])


def test_unread_counts_stay_right_after_a_reconnect_on_the_other_node(people):
    a, b = people["a"], people["b"]
    room = private_room(a, b)
    b.socket.join(room)
    first = a.socket.send(room, "seen")
    b.socket.wait_for("message", lambda d: d["id"] == first["id"])
    ok_reply(b.socket, "mark_read", {"room": room, "id": first["id"]})
    b.socket.close()
    missed = [a.socket.send(room, f"missed {i} @{b.name}" if i == 1 else f"missed {i}") for i in range(4)]
    back = people["tab"](b, node=0)  # the other node when there are two
    listed = next(r for r in ok_reply(back, "my_rooms")["rooms"] if r["name"] == room)
    assert (listed["unread"], listed["mentions"]) == (4, 1)
    rejoined = back.join(room, since=first["id"])
    assert [m["id"] for m in rejoined["history"]] == [m["id"] for m in missed]
    assert rejoined["member"]["unread"] == 4 and rejoined["history"][1].get("mention") is True
    done = ok_reply(back, "mark_read", {"room": room, "id": missed[-1]["id"]})["room"]
    assert (done["unread"], done["mentions"]) == (0, 0)


# -- mentions ------------------------------------------------------------------------------------
def test_mentions_notify_members_count_until_read_and_an_edit_notifies_only_the_newly_named(people):
    a, b, c = people["a"], people["b"], people["c"]
    room = private_room(a, b)
    b.socket.join(room)
    sent = a.socket.send(room, f"hi @{b.name}, and @{c.name} who is not in here")
    assert sent["mentions"] == [b.name]
    note = b.socket.wait_for("mention", lambda d: d["room"] == room)
    assert (note["id"], note["user"]) == (sent["id"], a.name)
    assert b.socket.wait_for("message", lambda d: d["id"] == sent["id"])["mentions"] == [b.name]
    assert entry(b, room)["mentions"] == 1
    assert ok_reply(b.socket, "history", {"room": room})["messages"][-1]["mention"] is True
    assert "mention" not in ok_reply(a.socket, "history", {"room": room})["messages"][-1]

    ok_reply(a.socket, "add_member", {"room": room, "user": c.name})
    plain = a.socket.send(room, "nobody named")
    ok_reply(a.socket, "edit", {"room": room, "id": plain["id"], "text": f"now @{c.name}"})
    assert c.socket.wait_for("mention", lambda d: d["room"] == room)["id"] == plain["id"]
    ok_reply(a.socket, "edit", {"room": room, "id": plain["id"], "text": f"still @{c.name}, and @{b.name}"})
    assert b.socket.wait_for("mention", lambda d: d["id"] == plain["id"])
    time.sleep(0.5)  # a second mention of C would have arrived by now
    assert len([n for n in c.socket.received("mention") if n["id"] == plain["id"]]) == 1
    assert (entry(b, room)["mentions"], entry(c, room)["mentions"]) == (2, 1)
    ok_reply(b.socket, "mark_read", {"room": room, "id": sent["id"]})
    assert entry(b, room)["mentions"] == 1  # the edited message is after the marker


def test_here_and_room_mentions(people):
    a, b, c = people["a"], people["b"], people["c"]
    room = private_room(a, b, c)
    b.socket.join(room)  # B is online in the room, C is not
    here = a.socket.send(room, "anyone @here?")
    assert here["mentions"] == ["@here"]
    assert b.socket.wait_for("mention", lambda d: d["id"] == here["id"])
    everyone = b.socket.send(room, "listen up @room")
    assert everyone["mentions"] == ["@room"]
    # B's own message read the @here before it; @room counts for the others once
    assert (entry(a, room)["mentions"], entry(b, room)["mentions"], entry(c, room)["mentions"]) == (1, 0, 1)
    time.sleep(0.5)
    assert [n["id"] for n in c.socket.received("mention")] == []  # @room is seen on the message itself


def test_room_mentions_in_large_rooms_are_for_owners_and_moderators(start_server, clients):
    server = start_server(CHAT_ROOM_MENTION_OPEN_MAX=1)
    (a_name, a_token), (b_name, b_token) = mint_accounts(server, 2, "own")
    a, b = clients(server.url).connect(token=a_token), clients(server.url).connect(token=b_token)
    room = unique("big")
    ok_reply(a, "create_room", {"room": room})
    ok_reply(a, "add_member", {"room": room, "user": b_name})
    a.join(room)
    b.join(room)
    assert "mentions" not in b.send(room, "hey @room")  # 2 members > 1: a member's @room is text
    assert a.send(room, "hey @room")["mentions"] == ["@room"]
    assert b.call("my_rooms")["rooms"][0]["mentions"] == 1


def test_an_account_may_be_online_from_several_tabs_and_counts_once(people):
    a, b = people["a"], people["b"]
    room = unique("tabs")
    second = people["tab"](a, node=-1)
    a.socket.join(room)
    joined = second.join(room)
    assert a.socket.sio.connected and second.sio.connected
    assert joined["members"] == [a.name] and joined["count"] == 1
    b.socket.join(room)
    second.close()
    sent = b.socket.send(room, "still with us?")
    assert a.socket.wait_for("message", lambda d: d["id"] == sent["id"])
    assert ok_reply(b.socket, "rooms", {"query": room})["rooms"] == [{"name": room, "members": 2}]


def test_guests_can_be_turned_off(start_server, clients):
    server = start_server(CHAT_GUESTS="false")
    guest = ChatClient(server.url)
    with pytest.raises(Exception):
        guest.connect(name=unique("guest"))
    assert guest.connect_error["data"]["code"] == "guests_disabled"
    name, = make_accounts(server, "only")
    assert connect_as(clients, server, session_of(server, name)).name == name  # a logged-in browser


def test_room_full(start_server, clients):
    server = start_server(CHAT_ROOM_MEMBERS_MAX=2)
    (_, a_token), (b_name, _), (c_name, _) = mint_accounts(server, 3, "full")
    a = clients(server.url).connect(token=a_token)
    room = unique("full")
    ok_reply(a, "create_room", {"room": room})
    ok_reply(a, "add_member", {"room": room, "user": b_name})
    assert error_code(a, "add_member", {"room": room, "user": c_name}) == "room_full"
