"""Bans: staff bar someone from a room (Django admin, or the staff-only `ban` / `unban`
socket events). A ban names a person by chat.identity's key: an account by its user id, a
guest online at the time by its guest id (its tokens carry it, so a reconnect is still
barred), and otherwise a name (`n:<name>`: any guest of that name). A ban takes effect at
once on every node: the node that records it sends a control message over the bus to every
node with members in the room, and each removes its own connections of that key. Joins
check the ban table (chat.permissions.room_access). Functions here run in chat.store's
workers."""
from django.contrib.auth import get_user_model

from chat.identity import key_of, legacy_key
from chat.models import Ban, Online


def key_for_name(name):
    """Whom a ban of `name` means: its account, else the guest online under it, else the name."""
    user_id = get_user_model()._default_manager.filter(username__iexact=name).values_list("pk", flat=True).first()
    if user_id is not None:
        return key_of(name, user_id)
    online = Online.objects.filter(key=name.lower(), user__isnull=True).values_list("identity", flat=True).first()
    return online or legacy_key(name)


def bans_of(name, key):
    """The bans that bar this person: by its key, or by a ban of its bare name."""
    return Ban.objects.filter(key__in={key, legacy_key(name)})


def banned_rooms(rooms, name, key):
    """Which of `rooms` bar this person."""
    return set(bans_of(name, key).filter(room__in=rooms).values_list("room", flat=True))


def ban(room, name, by_user_id, reason=""):
    """Returns the key banned (what the nodes look for)."""
    key = key_for_name(name)
    Ban.objects.update_or_create(room=room, key=key, defaults={"name": name, "created_by_id": by_user_id,
                                                               "reason": reason})
    return key


def unban(room, name):
    return Ban.objects.filter(room=room, key__in={key_for_name(name), legacy_key(name)}).delete()[0] > 0
