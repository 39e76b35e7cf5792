"""`manage.py purge_messages`: old messages go in bounded batches, new ones and rooms stay."""
import datetime
import re
import sqlite3
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat import persistence
from chat.models import Message, Room
from chat.persistence import Draft
from tests.serverproc import ROOT, base_env, migrate

SUMMARY = re.compile(r"^deleted (\d+) messages in (\d+) batches and (\d+) room events "
                     r"\(created before (\S+), --older-than (\S+)\)$")


def post(room, count, prefix="m"):
    persistence.create_room(room)
    drafts = [Draft(room, "amy", None, f"{prefix}{i}", None) for i in range(count)]
    return [p.message["id"] for p in persistence.commit_posts(drafts)]


def age(room, ids, delta):
    """Back-date messages `ids` of `room` by `delta`."""
    Message.objects.filter(room__name=room, seq__in=ids).update(created_at=timezone.now() - delta)


def purge(*args, **options):
    out = StringIO()
    call_command("purge_messages", *args, stdout=out, **options)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def summary(line):
    match = SUMMARY.match(line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


def remaining(room):
    return list(Message.objects.filter(room__name=room).order_by("seq").values_list("seq", flat=True))


@pytest.mark.django_db
def test_only_old_messages_are_deleted_and_rooms_keep_their_ids():
    ids_a = post("alpha", 8)
    ids_b = post("beta", 4)
    post("gamma", 3)  # all recent
    age("alpha", ids_a[:5], datetime.timedelta(days=31))
    age("alpha", ids_a[5:6], datetime.timedelta(days=29))  # younger than the cutoff
    age("beta", ids_b, datetime.timedelta(days=45))

    line = purge("--older-than", "30d")
    assert summary(line) == (9, 1)
    assert "--older-than 30d" in line
    assert remaining("alpha") == ids_a[5:]
    assert remaining("beta") == []
    assert remaining("gamma") == [1, 2, 3]
    # Rooms survive with their sequence, so ids continue and are never reused.
    assert set(Room.objects.values_list("name", flat=True)) == {"alpha", "beta", "gamma"}
    assert Room.objects.get(name="beta").last_seq == 4
    assert post("beta", 1) == [5]
    assert post("alpha", 1) == [9]


@pytest.mark.django_db
def test_old_room_events_and_reactions_go_with_old_messages():
    """Reactions reference their message: the raw DELETE must remove them first (the
    database does not cascade Django's foreign keys), and old room events go too."""
    from chat import roomlog
    from chat.models import Reaction, RoomEvent

    ids = post("r", 2)
    actor = roomlog.Actor("bob", None)
    for message_id in ids:
        roomlog.commit(roomlog.Change("react", "r", message_id, emoji="👍"), actor)
    age("r", ids[:1], datetime.timedelta(days=31))
    RoomEvent.objects.filter(message_seq=ids[0]).update(created_at=timezone.now() - datetime.timedelta(days=31))
    line = purge("--older-than", "30d")
    assert SUMMARY.match(line).group(3) == "1"
    assert summary(line) == (1, 1)
    assert remaining("r") == ids[1:]
    assert list(Reaction.objects.values_list("message__seq", flat=True)) == ids[1:]
    assert list(RoomEvent.objects.values_list("message_seq", flat=True)) == ids[1:]


@pytest.mark.django_db
def test_batches_are_bounded():
    ids = post("r", 14)
    age("r", ids[:10], datetime.timedelta(hours=13))
    assert summary(purge("--older-than", "12h", "--batch-size", "3")) == (10, 4)
    assert remaining("r") == ids[10:]
    # Nothing left to purge: no batch at all.
    assert summary(purge("--older-than", "12h", "--batch-size", "3")) == (0, 0)


@pytest.mark.django_db
def test_exact_multiple_of_batch_size_and_interleaved_new_rows():
    old_ids = post("a", 3)
    new_ids = post("b", 3)  # created between the old rows' primary keys
    more_old = post("a", 3)
    age("a", old_ids + more_old, datetime.timedelta(minutes=91))
    deleted, batches = summary(purge(older_than="90m", batch_size=2, sleep_ms=1))
    assert (deleted, batches) == (6, 3)
    assert remaining("a") == [] and remaining("b") == new_ids


@pytest.mark.django_db
def test_units_seconds_and_minutes():
    ids = post("r", 4)
    age("r", ids[:1], datetime.timedelta(seconds=50))
    age("r", ids[1:2], datetime.timedelta(seconds=40))
    assert summary(purge("--older-than", "45s")) == (1, 1)
    assert remaining("r") == ids[1:]
    assert summary(purge("--older-than", "1m")) == (0, 0)


@pytest.mark.django_db
def test_dry_run_deletes_nothing():
    ids = post("r", 7)
    age("r", ids[:5], datetime.timedelta(days=2))
    line = purge("--older-than", "1d", "--dry-run", "--batch-size", "2")
    assert line.startswith("dry run: would delete 5 messages in 3 batches"), line
    assert remaining("r") == ids
    assert summary(purge("--older-than", "1d")) == (5, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("duration", ["", "30", "d", "30x", "-5d", "0d", "1.5h", "30 days", "3d4h", "99999999999d"])
def test_bad_durations_are_refused(duration):
    ids = post("r", 2)
    age("r", ids, datetime.timedelta(days=400))
    with pytest.raises(CommandError, match="--older-than"):
        call_command("purge_messages", "--older-than", duration, stdout=StringIO())
    assert remaining("r") == ids


@pytest.mark.django_db
@pytest.mark.parametrize("args, match", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--batch-size", "many"], "--batch-size must be a whole number"),
    (["--sleep-ms", "-1"], "--sleep-ms must be at least 0"),
    (["--sleep-ms", "soon"], "--sleep-ms must be a whole number"),
])
def test_bad_options_are_refused(args, match):
    with pytest.raises(CommandError, match=match):
        call_command("purge_messages", "--older-than", "1d", *args, stdout=StringIO())


@pytest.mark.django_db
def test_older_than_is_required():
    with pytest.raises(CommandError, match="--older-than"):
        call_command("purge_messages", stdout=StringIO())


def test_cli_against_a_sqlite_database(tmp_path):
    """The real command line (as cron runs it) against a migrated SQLite file."""
    path = tmp_path / "retention.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    stamp = lambda days: str(now - datetime.timedelta(days=days))  # noqa: E731  Django's SQLite format
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO chat_room (name, created_at, last_seq) VALUES ('lobby', ?, 6)", [stamp(90)])
        room_id = db.execute("SELECT id FROM chat_room WHERE name = 'lobby'").fetchone()[0]
        for seq, days in enumerate([60, 40, 31, 29, 1, 0], start=1):
            db.execute("INSERT INTO chat_message (room_id, seq, author, text, created_at) VALUES (?, ?, 'amy', ?, ?)",
                       [room_id, seq, f"m{seq}", stamp(days)])

    def run(*args):
        return subprocess.run([sys.executable, "manage.py", "purge_messages", *args], cwd=ROOT,
                              env=base_env(DATABASE_URL=url), capture_output=True, text=True, timeout=60)

    dry = run("--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("dry run: would delete 3 messages"), dry.stdout

    done = run("--older-than", "30d", "--batch-size", "2", "--sleep-ms", "5")
    assert done.returncode == 0, done.stderr
    assert summary(done.stdout.strip()) == (3, 2)

    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT seq FROM chat_message ORDER BY seq")] == [4, 5, 6]
        assert db.execute("SELECT last_seq FROM chat_room").fetchone()[0] == 6

    bad = run("--older-than", "a month")
    assert bad.returncode != 0
    assert "--older-than must be a positive whole number" in bad.stderr
    assert "Traceback" not in bad.stderr
