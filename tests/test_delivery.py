"""RoomFeed: exactly once, in id order, gaps filled from the real database through the real Store."""
import gevent
import pytest

from chat import persistence
from chat.delivery import RoomFeed
from chat.models import Message
from chat.persistence import Draft
from tests.serverproc import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def commit(room, count):
    persistence.create_room(room)
    return [p.message for p in persistence.commit_posts([Draft(room, "amy", None, f"t{i}", None) for i in range(count)])]


def make_feed(store, buffer_limit=100):
    delivered = []
    feed = RoomFeed(store, lambda room, message: delivered.append(message["id"]), buffer_limit, page_limit=3)
    return feed, delivered


def admit(feed, room):
    entered = []
    snap = feed.admit(room, None, 50, 500, enter=lambda: entered.append(True))
    assert entered == [True]
    return snap


def settle(predicate):
    wait_until(lambda: (gevent.sleep(0.01), predicate())[1], timeout=5)


def test_in_order_stream_is_delivered_once(store):
    messages = commit("r", 3)
    feed, delivered = make_feed(store)
    assert [m["id"] for m in admit(feed, "r").messages] == [1, 2, 3]
    more = commit("r", 2)
    for message in more + more:  # a repeat must be dropped
        feed.accept("r", message)
    assert delivered == [4, 5]
    feed.accept("r", messages[0])
    assert delivered == [4, 5]


def test_gap_is_filled_from_database_in_order(store):
    commit("r", 1)
    feed, delivered = make_feed(store)
    admit(feed, "r")
    lost_then_seen = commit("r", 7)  # ids 2..8; the bus "loses" 2..7
    feed.accept("r", lost_then_seen[-1])
    settle(lambda: delivered == [2, 3, 4, 5, 6, 7, 8])
    feed.accept("r", lost_then_seen[2])
    gevent.sleep(0.05)
    assert delivered == [2, 3, 4, 5, 6, 7, 8]


def test_early_messages_wait_for_the_gap_even_past_the_buffer_limit(store):
    commit("r", 1)
    feed, delivered = make_feed(store, buffer_limit=2)
    admit(feed, "r")
    later = commit("r", 10)  # ids 2..11
    for message in reversed(later):
        feed.accept("r", message)
    settle(lambda: delivered == list(range(2, 12)))


def test_deleted_message_leaves_a_hole_that_is_skipped(store):
    commit("r", 1)
    feed, delivered = make_feed(store)
    admit(feed, "r")
    later = commit("r", 3)  # 2, 3, 4
    Message.objects.filter(room__name="r", seq=3).delete()
    feed.accept("r", later[2])
    settle(lambda: delivered == [2, 4])


def test_rooms_without_members_are_not_tracked(store):
    feed, delivered = make_feed(store)
    feed.accept("nobody", commit("nobody", 1)[0])
    assert delivered == [] and feed.tracked_rooms() == []
    admit(feed, "r") if commit("r", 1) else None
    feed.release("r", still_members=False)
    assert feed.tracked_rooms() == []


def test_admit_with_since_truncates_without_entering(store):
    commit("r", 10)
    feed, _ = make_feed(store)
    entered = []
    snap = feed.admit("r", 2, 50, 4, enter=lambda: entered.append(True))
    assert snap.truncated and [m["id"] for m in snap.messages] == [3, 4, 5, 6] and entered == []
    snap = feed.admit("r", 6, 50, 4, enter=lambda: entered.append(True))
    assert not snap.truncated and [m["id"] for m in snap.messages] == [7, 8, 9, 10] and entered == [True]


def test_messages_arriving_while_a_joiner_reads_are_not_lost_or_doubled(store):
    commit("r", 2)
    feed, delivered = make_feed(store)
    first = admit(feed, "r")
    assert [m["id"] for m in first.messages] == [1, 2]
    # a second joiner's read races with deliveries: history must end exactly where live begins
    racing = commit("r", 3)
    reader = gevent.spawn(feed.admit, "r", 2, 50, 500, lambda: None)
    for message in racing:
        feed.accept("r", message)
    snap = reader.get(timeout=5)
    assert [m["id"] for m in snap.messages] == [3, 4, 5] and snap.upto == feed.delivered("r") == 5


def test_a_fill_that_outlives_its_track_sends_nothing_to_the_next_joiner(store):
    """Issue 14, point 3: the last member leaves and someone rejoins while a gap fill reads;
    the new joiner's history holds those rows, so the stale fill must not send them again."""
    commit("r", 1)
    feed, delivered = make_feed(store)
    admit(feed, "r")
    later = commit("r", 3)  # ids 2..4; the bus "loses" 2 and 3
    feed.accept("r", later[-1])  # a gap: a fill starts and waits for its database read
    gevent.sleep(0)  # the fill is now reading
    feed.release("r", still_members=False)
    rejoined = admit(feed, "r")
    assert [m["id"] for m in rejoined.messages] == [1, 2, 3, 4]
    gevent.sleep(0.2)  # the old fill's read has long returned
    assert delivered == []


def test_an_id_the_database_lacks_does_not_skip_later_messages(store):
    """Issue 14, point 7: a forged huge id from the bus must not move the delivered mark past
    real messages committed later."""
    commit("r", 1)
    feed, delivered = make_feed(store)
    admit(feed, "r")
    feed.accept("r", {"id": 10 ** 9, "room": "r", "user": "mallory", "text": "forged", "ts": 0})
    settle(lambda: not feed._tracks["r"].filling)
    real = commit("r", 2)  # ids 2, 3
    for message in real:
        feed.accept("r", message)
    settle(lambda: delivered == [2, 3])
    assert feed.delivered("r") == 3
