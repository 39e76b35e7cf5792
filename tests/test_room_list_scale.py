"""Scale of an account's room list: one account in 500 rooms holding 100,000 messages. The
list with unread and mention counts is ONE query that reads the account's memberships and
their rooms, never the messages (chat.members.my_rooms); its plan is printed for the record."""
import re

import pytest

from tests.cluster import shell_in_fresh_database

ROOM_LIST_AT_SCALE = r"""
import datetime, random
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from chat import members
from chat.models import Mention, Message, Room, RoomMember

random.seed(16)
ROOMS, PER_ROOM = 500, 200
amy = User.objects.create_user("amy", password="unused-here")
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
rooms = Room.objects.bulk_create([
    Room(name=f"r{i:03d}", kind=("public", "private", "direct")[i % 3], last_seq=PER_ROOM, message_count=PER_ROOM,
         last_active_at=start + datetime.timedelta(minutes=i * 7 % ROOMS)) for i in range(ROOMS)])
Message.objects.bulk_create([Message(room=room, seq=n, ordinal=n, author="bob", text=f"message {n}", created_at=start)
                             for room in rooms for n in range(1, PER_ROOM + 1)], batch_size=5000)
others = User.objects.bulk_create([User(username=f"other{i}", password="!") for i in range(200)])
RoomMember.objects.bulk_create([RoomMember(room=rooms[(i * 37 + j) % ROOMS], user=other)  # 50,000 more memberships
                                for i, other in enumerate(others) for j in range(250)], batch_size=5000)
marks = {room.pk: random.randrange(0, PER_ROOM + 1) for room in rooms}
RoomMember.objects.bulk_create([RoomMember(room=room, user=amy, last_read=marks[room.pk], read_count=marks[room.pk],
                                           mentions=int(room.pk % 5 == 0 and marks[room.pk] < PER_ROOM))
                                for room in rooms])
Mention.objects.bulk_create([Mention(room=room, seq=PER_ROOM, user=amy) for room in rooms
                             if room.pk % 5 == 0 and marks[room.pk] < PER_ROOM])
print("MESSAGES:", Message.objects.count())
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
with CaptureQueriesContext(connection) as ran:
    listed = members.my_rooms(amy.pk, 500)
print("QUERIES:", len(ran.captured_queries))
print("LISTED:", len(listed))
by_name = {room.name: room for room in rooms}
wrong = [entry["name"] for entry in listed
         if entry["unread"] != Message.objects.filter(room=by_name[entry["name"]], seq__gt=entry["last_read"]).count()
         or entry["mentions"] != Mention.objects.filter(room=by_name[entry["name"]], user=amy,
                                                        seq__gt=entry["last_read"]).count()]
print("WRONG:", wrong)
order = [entry["name"] for entry in listed]
print("ORDERED:", order == [r.name for r in sorted(rooms, key=lambda r: (-r.last_active_at.timestamp(), r.name))])
explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
with connection.cursor() as cursor:
    cursor.execute(explain + ran.captured_queries[0]["sql"])
    print("PLAN:")
    for row in cursor.fetchall():
        print("  " + " ".join(str(col) for col in row))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_room_list_of_an_account_in_500_rooms_is_one_query_that_reads_no_message(sqlite_template, backend):
    out = shell_in_fresh_database(sqlite_template, backend, ROOM_LIST_AT_SCALE)
    print(out)
    assert "MESSAGES: 100000" in out
    assert "QUERIES: 1\n" in out and "LISTED: 500" in out
    assert "WRONG: []" in out and "ORDERED: True" in out
    plan = out.split("PLAN:")[1]
    assert "chat_message" not in plan and "chat_mention" not in plan, plan  # counters, not row counts
    # the account's memberships: a range of the unique (user, room) index (SQLite names it itself)
    assert re.search(r"roommember_user_room_unique|SEARCH chat_roommember USING INDEX", plan), plan
