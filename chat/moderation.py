"""Bans: staff bar a name from a room (Django admin, or the staff-only `ban` / `unban`
socket events). A ban takes effect at once on every node: the node that records it sends a
control message over the bus to every node with members in the room, and each removes its
own connection of that name. Joins check the ban table. Functions here run in chat.store's
workers."""
from chat.models import Ban


def is_banned(room, name):
    return Ban.objects.filter(room=room, key=name.lower()).exists()


def ban(room, name, by_user_id, reason=""):
    Ban.objects.update_or_create(room=room, key=name.lower(),
                                 defaults={"name": name, "created_by_id": by_user_id, "reason": reason})


def unban(room, name):
    return Ban.objects.filter(room=room, key=name.lower()).delete()[0] > 0
