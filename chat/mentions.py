"""Mentions: `@name`, `@here` and `@room` in a message's text, resolved when it is committed.

`@name` names an account that is a member of the room, or a guest online in it (guests get
only the `mentions` entry on the message: they keep no counters). `@here` notifies the
member accounts online in the room, `@room` every member account; in a room of more than
CHAT_ROOM_MENTION_OPEN_MAX members only its owners, moderators and staff may use `@room`
(anyone else's stays plain text). At most CHAT_MENTIONS_PER_MESSAGE names count.

Resolution stores a `Mention` row per notified account (one row with no account for
`@room`) and raises the notified members' mention counters (chat.members). The message's
`mentions` lists who it notified, so every reader can tell whether it mentions them.
Functions here run inside the committing transaction, in chat.store's workers.
"""
import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Lower

from chat import permissions
from chat.models import MODERATOR, OWNER, Membership, Mention, RoomMember

MENTION_RE = re.compile(r"(?<![\w@.+-])@([\w.@+-]{1,150})")
HERE, ROOM = "@here", "@room"


@dataclass(frozen=True)
class Resolved:
    names: list  # for the message's `mentions`: who it notifies, then @here / @room
    notify: frozenset = frozenset()  # account ids to tell (`mention`), the author left out
    everyone: bool = False  # @room


NOTHING = Resolved([])


def parse(text):
    """The mentioned names in order, lower-cased and without repeats; @here/@room as such."""
    if "@" not in text:
        return []
    seen = []
    for match in MENTION_RE.finditer(text):
        name = match.group(1).rstrip(".").lower()
        name = {"here": HERE, "room": ROOM}.get(name, name)
        if name and name not in seen:
            seen.append(name)
    return seen


def mentions_reader(message, reader):
    """The `mention` flag: the message names the reader, or says @here or @room (the
    browser applies the same rule to live messages)."""
    names = message.get("mentions")
    if not names or message.get("user", "").lower() == reader.lower():
        return False
    return HERE in names or ROOM in names or reader.lower() in (name.lower() for name in names)


def resolve(room_id, room_name, author_id, text):
    """Who `text` notifies in the room; NOTHING when it mentions no one."""
    wanted = parse(text)
    if not wanted:
        return NOTHING
    plain = [name for name in wanted if name not in (HERE, ROOM)][:settings.CHAT_MENTIONS_PER_MESSAGE]
    accounts = _member_accounts(room_id, plain)
    guests = _online_guests(room_name, [name for name in plain if name not in {k for k, _, _ in accounts}])
    names = [username for _, _, username in accounts] + guests
    notify = {user_id for _, user_id, _ in accounts}
    if HERE in wanted:
        names.append(HERE)
        notify |= _online_member_ids(room_id, room_name)
    everyone = ROOM in wanted and _may_notify_everyone(room_id, author_id)
    if everyone:
        names.append(ROOM)
    notify.discard(author_id)
    return Resolved(names, frozenset(notify), everyone) if names else NOTHING


def _member_accounts(room_id, keys):
    if not keys:
        return []
    return list(RoomMember.objects.filter(room_id=room_id).annotate(key=Lower("user__username"))
                .filter(key__in=keys).values_list("key", "user_id", "user__username"))


def _online_guests(room_name, keys):
    if not keys:
        return []
    return sorted(set(Membership.objects.filter(room=room_name).annotate(key=Lower("name"))
                      .filter(key__in=keys).values_list("name", flat=True)))


def _online_member_ids(room_id, room_name):
    online = Membership.objects.filter(room=room_name).values("name")
    return set(RoomMember.objects.filter(room_id=room_id, user__username__in=online).values_list("user_id", flat=True))


def _may_notify_everyone(room_id, author_id):
    if author_id is None:
        return False
    if RoomMember.objects.filter(room_id=room_id).count() <= settings.CHAT_ROOM_MENTION_OPEN_MAX:
        return True
    role = RoomMember.objects.filter(room_id=room_id, user_id=author_id).values_list("role", flat=True).first()
    return role in (OWNER, MODERATOR) or permissions.is_staff(author_id)


def record(room_id, seq, author_id, resolved):
    """Store the mentions of message `seq` and raise the counters of the accounts it newly
    notifies: an edit that repeats a mention of an earlier version notifies nobody again.
    Returns the account ids newly notified."""
    already = set(Mention.objects.filter(room_id=room_id, seq=seq, user__isnull=False).values_list("user_id", flat=True))
    fresh = resolved.notify - already
    Mention.objects.bulk_create([Mention(room_id=room_id, seq=seq, user_id=user_id) for user_id in sorted(fresh)],
                                ignore_conflicts=True)
    counted = RoomMember.objects.filter(room_id=room_id, last_read__lt=seq).exclude(user_id=author_id)
    if resolved.everyone and not Mention.objects.filter(room_id=room_id, seq=seq, user__isnull=True).exists():
        Mention.objects.create(room_id=room_id, seq=seq, user=None)
        counted.update(mentions=F("mentions") + 1)  # @room counts once, whoever else is named
        return fresh
    if fresh:
        counted.filter(user_id__in=fresh).update(mentions=F("mentions") + 1)
    return fresh
