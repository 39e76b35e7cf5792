"""Queries and batched commits against the real database (SQLite here; PostgreSQL in cluster tests)."""
import pytest

from chat import persistence
from chat.models import Message, Room, RoomEvent
from chat.persistence import Draft
from chat.protocol import ProtocolError

pytestmark = pytest.mark.django_db


def draft(text, room="r", author="amy", nonce=None):
    return Draft(room, author, None, text, nonce)


def fill(room, count):
    persistence.create_room(room)
    return [p.message for p in persistence.commit_posts([draft(f"m{i}", room) for i in range(1, count + 1)])]


def test_ids_are_contiguous_per_room_and_batch_keeps_order():
    persistence.create_room("a")
    persistence.create_room("b")
    out = persistence.commit_posts([draft("a1", "a"), draft("b1", "b"), draft("a2", "a")])
    assert [(o.message["room"], o.message["id"], o.message["text"]) for o in out] == [
        ("a", 1, "a1"), ("b", 1, "b1"), ("a", 2, "a2")]
    assert Room.objects.get(name="a").last_seq == 2
    more = persistence.commit_posts([draft("a3", "a")])
    assert more[0].message["id"] == 3


def test_repeated_nonce_returns_stored_message():
    persistence.create_room("r")
    first = persistence.commit_posts([draft("hello", nonce="n1")])[0]
    again = persistence.commit_posts([draft("hello (retry)", nonce="n1")])[0]
    assert first.created and not again.created
    assert again.message == first.message
    in_batch = persistence.commit_posts([draft("x", nonce="n2"), draft("x", nonce="n2")])
    assert in_batch[0].created and not in_batch[1].created
    assert in_batch[1].message == in_batch[0].message
    other_author = persistence.commit_posts([draft("y", author="bob", nonce="n1")])[0]
    assert other_author.created
    assert Message.objects.count() == 3


def test_post_to_missing_room_is_an_error_not_a_crash():
    persistence.create_room("r")
    out = persistence.commit_posts([draft("ok"), draft("lost", room="nope")])
    assert out[0].created
    assert isinstance(out[1], ProtocolError)


def test_snapshot_recent_and_since():
    fill("r", 10)
    recent = persistence.snapshot("r", None, None, 3, 100)
    assert [m["id"] for m in recent.messages] == [8, 9, 10] and recent.upto == 10
    since = persistence.snapshot("r", 6, None, 3, 100)
    assert [m["id"] for m in since.messages] == [7, 8, 9, 10] and not since.truncated
    capped = persistence.snapshot("r", 2, None, 3, 4)
    assert [m["id"] for m in capped.messages] == [3, 4, 5, 6] and capped.truncated and capped.upto == 10
    bounded = persistence.snapshot("r", None, 5, 3, 100)
    assert [m["id"] for m in bounded.messages] == [3, 4, 5]


def test_paging_backwards_by_id():
    fill("r", 7)
    assert [m["id"] for m in persistence.messages_before("r", None, 3)] == [5, 6, 7]
    assert [m["id"] for m in persistence.messages_before("r", 5, 3)] == [2, 3, 4]
    assert [m["id"] for m in persistence.messages_before("r", 2, 3)] == [1]
    assert persistence.messages_before("r", 1, 3) == []
    assert [m["id"] for m in persistence.gap_fill("r", 2, 5, 10)[0]] == [3, 4, 5]


def test_wire_format():
    message = fill("r", 1)[0]
    assert set(message) == {"id", "room", "user", "account", "text", "ts"}
    assert message["account"] is False
    assert message["ts"].endswith("Z") and "T" in message["ts"]
    assert persistence.messages_before("r", None, 1) == [message]  # the commit path and a read agree


def test_wire_message_tells_an_account_from_a_guest_of_the_same_name():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("amy", password="x")
    persistence.create_room("r")
    posted = persistence.commit_posts([draft("as a guest"), Draft("r", "amy", user.pk, "as the account", None)])
    assert [(p.message["user"], p.message["account"]) for p in posted] == [("amy", False), ("amy", True)]
    assert persistence.messages_before("r", None, 5) == [p.message for p in posted]


def test_room_list_is_the_most_active_rooms_and_is_bounded():
    fill("quiet", 1)
    fill("busy", 5)
    persistence.create_room("empty")
    assert persistence.most_active_rooms(10) == ["busy", "quiet", "empty"]
    assert persistence.most_active_rooms(2) == ["busy", "quiet"]


def test_the_commit_path_insert_covers_every_column_of_the_model():
    """The fast path's INSERT is generated from Message: a column added to the model is
    written (its default) without touching the SQL, and a value for no column is refused."""
    model_columns = [f.attname for f in Message._meta.concrete_fields if not f.primary_key]
    assert persistence.INSERT.columns == model_columns
    assert persistence.INSERT.sql.count("%s") == len(model_columns)
    with pytest.raises(TypeError):
        persistence.INSERT.row(room_id=1, colour="red")
    fill("r", 1)
    via_fast_path = Message.objects.get(room__name="r", seq=1)
    via_orm = Message(room=via_fast_path.room, seq=2, author="amy", author_key="n:amy", text="m1",
                      created_at=via_fast_path.created_at)
    via_orm.save()
    for name in model_columns:
        if name not in ("seq", "ordinal"):  # the room's counters, assigned by the commit path
            assert getattr(via_fast_path, name) == getattr(via_orm, name), name


def test_a_reply_stores_its_parent_and_counts_on_it():
    parent = fill("r", 1)[0]
    [reply] = persistence.commit_posts([Draft("r", "bob", None, "re", None, reply_to=parent["id"])])
    assert reply.message["reply_to"] == {"id": parent["id"], "user": "amy", "excerpt": "m1", "replies": 1}
    [bad] = persistence.commit_posts([Draft("r", "bob", None, "re", None, reply_to=99)])
    assert isinstance(bad, ProtocolError) and bad.code == "message_not_found"
    assert Room.objects.get(name="r").last_seq == 2  # a refused reply takes no number
    assert persistence.messages_before("r", None, 5) == [{**parent, "replies": 1}, reply.message]


def test_pages_of_the_stream_hold_messages_and_events_in_order_each_once():
    """Gap fills and `since` catch-ups read the stream in pages bounded per kind: walking it
    from `covered` to `covered` yields every live message and every event once, in number
    order; a deleted message is a gap and the events that changed it before are left out."""
    from chat import roomlog
    from chat.roomlog import Change, number

    amy = roomlog.Actor("amy", None)
    ids = [m["id"] for m in fill("r", 2)]
    for step in range(6):
        roomlog.commit(Change("edit", "r", ids[0], text=f"edit {step}"), amy)
        ids.append(persistence.commit_posts([draft(f"more {step}")])[0].message["id"])
        roomlog.commit(Change("react" if step % 2 == 0 else "unreact", "r", ids[0], emoji="👍"), amy)
    doomed = ids[1]
    roomlog.commit(Change("edit", "r", doomed, text="changed, then deleted"), amy)
    roomlog.commit(Change("delete", "r", doomed), amy)
    last = Room.objects.get(name="r").last_seq

    expected = [m["id"] for m in persistence.messages_before("r", None, 100)]
    expected += list(RoomEvent.objects.filter(room__name="r").exclude(message_seq=doomed, kind="edit")
                     .values_list("seq", flat=True))
    for limit in (1, 2, 3, 100):
        walked, after, pages = [], 0, 0
        while True:
            items, covered, last_id = persistence.gap_fill("r", after, last, limit)
            assert last_id == last and all(after < number(i) <= covered for i in items)
            walked += items
            pages += 1
            if covered >= last:
                break
            after = covered
        assert [number(i) for i in walked] == sorted(expected), limit
        assert pages >= len(expected) // (2 * limit)
