"""Message search (chat/search/) end to end, the SAME tests on SQLite (FTS5) and PostgreSQL
(tsvector + GIN): real server processes, real socket clients (websocket, and long-polling
where the transport matters), real accounts, the HTTP API.

Indexing runs after the send is acknowledged, in the job worker's recurring `index_search`
job (chat.tasks), so a test that needs a message indexed polls
the search until it appears (`found`), never sleeps a fixed time. What must hold at once
(a deleted message, a removed member, a non-member) is asserted at once.
"""
import datetime
import uuid

import pytest
import requests

from tests.accounts import error_code, mint_accounts, ok_reply, session_of
from tests.chatclient import unique
from tests.cluster import PostgresDatabase, require_postgres
from tests.jobworkers import Worker
from tests.serverproc import ServerProcess, stop_all, wait_until

BACKENDS = ["sqlite", "postgresql"]
FAST = {"CHAT_RATE_LIMITS": "off", "CHAT_SEARCH_INDEX_SECS": "1"}


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, sqlite_template):
    """One server and one job worker (which runs the index job) per backend for the module
    (each test uses its own rooms, words, accounts)."""
    if request.param == "sqlite":
        yield from serve(sqlite_template.fresh_url())
        return
    require_postgres()
    with PostgresDatabase() as database:
        yield from serve(database.url)


def serve(database_url):
    made = ServerProcess(database_url, **FAST).start()
    worker = Worker(database_url, CHAT_SEARCH_INDEX_SECS="1")
    try:
        yield made
    finally:
        worker.stop()
        stop_all([made])


@pytest.fixture(scope="module")
def pool():
    return {}


@pytest.fixture
def people(server, clients, pool):
    """Connected accounts made on demand: people(3) -> [(name, socket)]."""
    def make(count, transport="websocket"):
        spare = pool.setdefault(server.database_url, [])
        if len(spare) < count:
            spare.extend(mint_accounts(server, 20, "srch"))
        taken, spare[:] = spare[:count], spare[count:]
        return [(name, clients(server.url, transport).connect(token=token)) for name, token in taken]
    return make


def word():
    """A word no other test sends (letters only: one run for every tokenizer)."""
    return "w" + "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])


def search(client, q, **extra):
    return ok_reply(client, "search", {"q": q, **extra})


def found(client, q, count=1, **extra):
    """Poll until the search returns at least `count` results (indexing follows the send)."""
    return wait_until(lambda: (r := search(client, q, **extra)) and len(r["results"]) >= count and r,
                      timeout=15, interval=0.2, message=f"{count} results for {q!r}")


def ids(reply):
    return [(r["room"], r["id"]) for r in reply["results"]]


def marked(result):
    return [part for i, part in enumerate(result["snippet"]) if i % 2 == 1]


# -- words, phrases, exclusions, highlights -----------------------------------------------------
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_words_phrases_exclusions_and_highlights(people, transport):
    (_, amy), = people(1, transport)
    room, w1, w2, w3 = unique("s"), word(), word(), word()
    amy.join(room)
    both = amy.send(room, f"the {w1} went out with {w2} today")
    only_first = amy.send(room, f"{w2} and then {w1}, later")
    other = amy.send(room, f"{w3} alone")
    reply = found(amy, w1, 2)
    assert ids(reply) == [(room, only_first["id"]), (room, both["id"])]  # newest first
    first = reply["results"][1]
    assert (first["user"], first["account"], first["kind"], first["ts"]) == (amy.name, True, "public", both["ts"])
    assert marked(first) == [w1] and "".join(first["snippet"]) == both["text"]

    assert ids(search(amy, f'"{w1} went out"')) == [(room, both["id"])]
    assert marked(search(amy, f'"{w1} went out"')["results"][0]) == [f"{w1} went out"]
    assert ids(search(amy, f'"{w2} {w1}"')) == []  # the words, but not as a phrase
    assert ids(search(amy, f"{w1} -{w3} -today")) == [(room, only_first["id"])]
    assert ids(search(amy, f'{w1} -"went out"')) == [(room, only_first["id"])]
    assert ids(search(amy, f"{w1} {w2}")) == [(room, only_first["id"]), (room, both["id"])]
    assert ids(search(amy, f"{w1} {w3}")) == []
    assert ids(found(amy, w3.upper())) == [(room, other["id"])]  # case does not matter


def test_query_syntax_is_never_database_syntax(people):
    (_, amy), = people(1)
    room, w = unique("s"), word()
    amy.join(room)
    sent = amy.send(room, f'{w} said "NEAR(a b)" OR * AND: col:umn ^x')
    found(amy, w)
    for q in [f'{w} NEAR(a', f'{w} OR', f'{w} *', f'{w} ^x', f'{w} "unclosed', f"{w} col:umn", f"{w} !! & | :*",
              f'{w} """', f"{w} -", f"{w} ' ; DROP TABLE chat_message; --"]:
        reply = search(amy, q)
        assert reply["ok"], (q, reply)
    assert ids(search(amy, f'{w} "near a b"')) == [(room, sent["id"])]
    assert ids(search(amy, f"{w} col:umn")) == [(room, sent["id"])]


# -- privacy ----------------------------------------------------------------------------------
def test_privacy_private_rooms_dms_and_removed_members(people, server):
    (a_name, a), (b_name, b), (c_name, c) = people(3)
    w = word()
    room = unique("priv")
    ok_reply(a, "create_room", {"room": room})
    ok_reply(a, "add_member", {"room": room, "user": b_name})
    a.join(room)
    secret = a.send(room, f"{w} is the secret")
    dm = ok_reply(a, "open_dm", {"users": [c_name]})["room"]["name"]
    a.join(dm)
    direct = a.send(dm, f"{w} only for c")
    public = unique("pub")
    a.join(public)
    said = a.send(public, f"{w} in public")

    assert ids(found(a, w, 3)) == [(public, said["id"]), (dm, direct["id"]), (room, secret["id"])]
    assert ids(found(b, w, 2)) == [(public, said["id"]), (room, secret["id"])]
    assert ids(found(c, w, 2)) == [(public, said["id"]), (dm, direct["id"])]
    assert {r["kind"] for r in search(c, w)["results"]} == {"public", "direct"}
    assert error_code(c, "search", {"q": f"{w} in:{room}"}) == "forbidden"
    anonymous = requests.get(f"{server.url}/api/search/", params={"q": w}, timeout=5).json()
    assert [(r["room"], r["id"]) for r in anonymous["results"]] == [(public, said["id"])]

    ok_reply(a, "remove_member", {"room": room, "user": b_name})
    assert ids(search(b, w)) == [(public, said["id"])]  # at once: no wait
    assert error_code(b, "search", {"q": w, "room": room}) == "forbidden"
    assert error_code(b, "history", {"room": room, "around": secret["id"]}) == "forbidden"


def test_http_search_is_the_same_service_with_the_session(people, server):
    (a_name, a), (b_name, b) = people(2)
    w, room = word(), unique("priv")
    ok_reply(a, "create_room", {"room": room})
    a.join(room)
    sent = a.send(room, f"{w} over http")
    found(a, w)
    as_a, as_b = session_of(server, a_name), session_of(server, b_name)
    reply = as_a.get(f"{server.url}/api/search/", params={"q": w}, timeout=5).json()
    assert reply["ok"] and [(r["room"], r["id"]) for r in reply["results"]] == [(room, sent["id"])]
    assert reply["results"] == search(a, w)["results"]
    assert as_b.get(f"{server.url}/api/search/", params={"q": w}, timeout=5).json()["results"] == []
    refused = as_b.get(f"{server.url}/api/search/", params={"q": f"{w} in:{room}"}, timeout=5)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    bad = requests.get(f"{server.url}/api/search/", params={"q": "   "}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"
    around = as_a.get(f"{server.url}/api/rooms/{room}/messages", params={"around": sent["id"]}, timeout=5).json()
    assert around["around"] == sent["id"] and [m["id"] for m in around["messages"]] == [sent["id"]]
    assert requests.post(f"{server.url}/api/search/", timeout=5).status_code == 405


# -- edits and deletions ------------------------------------------------------------------------
def test_edits_reindex_and_deleted_text_is_never_found(people):
    (_, amy), = people(1)
    room, before, after, kept = unique("s"), word(), word(), word()
    amy.join(room)
    sent = amy.send(room, f"{before} {kept} first version")
    found(amy, before)
    ok_reply(amy, "edit", {"room": room, "id": sent["id"], "text": f"{after} {kept} second version"})
    edited = found(amy, after)["results"][0]
    assert edited["id"] == sent["id"] and "edited_at" in edited and marked(edited) == [after]
    wait_until(lambda: search(amy, before)["results"] == [], timeout=15, interval=0.2, message="old text gone")
    ok_reply(amy, "delete", {"room": room, "id": sent["id"]})
    for q in (after, kept, f'"{after} {kept}"'):  # at once: searches check deleted_at themselves
        assert search(amy, q)["results"] == []
    other = amy.send(room, f"{kept} again")  # once this is indexed, the deletion is too
    assert ids(found(amy, kept)) == [(room, other["id"])]


# -- filters and paging ---------------------------------------------------------------------------
def test_filters_from_in_before_after(people):
    (a_name, a), (b_name, b) = people(2)
    room1, room2, w = unique("s"), unique("s"), word()
    for client in (a, b):
        client.join(room1)
        client.join(room2)
    a1 = a.send(room1, f"{w} by a in one")
    b1 = b.send(room1, f"{w} by b in one")
    a2 = a.send(room2, f"{w} by a in two")
    found(a, w, 3)
    assert ids(search(a, f"{w} from:{a_name}")) == [(room2, a2["id"]), (room1, a1["id"])]
    assert ids(search(a, f"{w} from:{b_name.upper()}")) == [(room1, b1["id"])]
    assert ids(search(b, f"{w} from:me")) == [(room1, b1["id"])]
    assert ids(search(a, w, **{"from": f"@{a_name}"}, room=room1)) == [(room1, a1["id"])]
    assert ids(search(a, f"{w} in:#{room2}")) == [(room2, a2["id"])]
    assert ids(search(a, f"from:{a_name} in:{room1}")) == [(room1, a1["id"])]  # filters alone
    assert search(a, f"from:{a_name} in:{room1}")["results"][0]["snippet"] == [a1["text"]]
    today = datetime.datetime.now(datetime.timezone.utc).date()
    day = datetime.timedelta(days=1)
    assert len(search(a, f"{w} after:{today - day}")["results"]) == 3
    assert len(search(a, f"{w} before:{today + day}")["results"]) == 3
    assert search(a, f"{w} before:{today}")["results"] == []
    assert search(a, f"{w} after:{today}")["results"] == []  # after excludes the day itself
    assert len(search(a, w, after=str(today - day), before=str(today + day))["results"]) == 3
    assert search(a, f"{w} in:{unique('none')}")["results"] == []


def test_paging_newest_first_and_by_relevance(people):
    (_, amy), = people(1)
    room, w = unique("s"), word()
    amy.join(room)
    sent = [amy.send(room, f"{w} number {i} " + "filler " * (i % 5)) for i in range(23)]
    dense = amy.send(room, f"{w} {w} {w} {w}")
    found(amy, f'"{w} {w}"')  # the room's last message: the index follows each room in order, so all are in
    pages, cursor = [], None
    while True:
        reply = search(amy, w, limit=10, **({"cursor": cursor} if cursor else {}))
        pages.append([r["id"] for r in reply["results"]])
        cursor = reply["cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [10, 10, 4]
    assert sum(pages, []) == [dense["id"]] + [m["id"] for m in reversed(sent)]

    ranked, cursor = [], None
    while True:
        reply = search(amy, w, sort="relevance", limit=7, **({"cursor": cursor} if cursor else {}))
        ranked += [r["id"] for r in reply["results"]]
        cursor = reply["cursor"]
        if cursor is None:
            break
    assert ranked[0] == dense["id"] and sorted(ranked) == sorted(sum(pages, []))
    assert error_code(amy, "search", {"q": w, "cursor": "r:7"}) == "invalid_payload"  # another order's cursor


def test_refusals(people):
    (_, amy), = people(1)
    for payload, code in [({"q": ""}, "invalid_query"), ({"q": "!!! ..."}, "invalid_query"),
                          ({"q": "-alone"}, "invalid_query"), ({"q": "x" * 201}, "invalid_query"),
                          ({"q": "x before:2026-13-01"}, "invalid_query"), ({"q": "x after:yesterday"}, "invalid_query"),
                          ({"q": "x in:a in:b"}, "invalid_query"), ({"q": "x in:lobby", "room": "other"}, "invalid_query"),
                          ({"q": " ".join(f"w{i}" for i in range(17))}, "invalid_query"),
                          ({"q": "x", "cursor": "n:abc"}, "invalid_payload"), ({"q": "x", "sort": "oldest"}, "invalid_payload"),
                          ({"q": "x", "limit": 21}, "invalid_payload"), ({"q": "x in:Not_A_Room"}, "invalid_room"),
                          ({"q": "x from:bad/name"}, "invalid_name"), ({"q": 5}, "invalid_query"), ("x", "invalid_payload")]:
        assert error_code(amy, "search", payload) == code, payload


# -- jump to a result ---------------------------------------------------------------------------
def test_history_around_a_message(people):
    (_, amy), = people(1)
    room = unique("s")
    amy.join(room)
    sent = [amy.send(room, f"line {i}") for i in range(11)]
    reply = ok_reply(amy, "history", {"room": room, "around": sent[5]["id"], "limit": 5})
    assert reply["around"] == sent[5]["id"]
    assert [m["id"] for m in reply["messages"]] == [m["id"] for m in sent[3:8]]
    near_end = ok_reply(amy, "history", {"room": room, "around": sent[10]["id"], "limit": 5})["messages"]
    assert [m["id"] for m in near_end] == [m["id"] for m in sent[6:11]]
    near_start = ok_reply(amy, "history", {"room": room, "around": sent[0]["id"], "limit": 4})["messages"]
    assert [m["id"] for m in near_start] == [m["id"] for m in sent[0:4]]
    ok_reply(amy, "delete", {"room": room, "id": sent[5]["id"]})
    gap = ok_reply(amy, "history", {"room": room, "around": sent[5]["id"], "limit": 5})["messages"]
    assert [m["id"] for m in gap] == [sent[3]["id"], sent[4]["id"], sent[6]["id"], sent[7]["id"], sent[8]["id"]]
    assert error_code(amy, "history", {"room": room, "around": 3, "before": 4}) == "invalid_payload"
    assert error_code(amy, "history", {"room": room, "around": -1}) == "invalid_payload"
