"""Rooms and their messages: the durable record every delivery is checked against.

A message's public id is its room sequence number (`seq`): contiguous per room and assigned
inside the committing transaction while the room row is locked, so ids become visible in
the same order on every node and `since` recovery can never skip one.
"""
from django.conf import settings
from django.db import models
import datetime

from django.utils import timezone

from chat.protocol import ACCOUNT_NAME_MAX_CHARS as NAME_MAX_CHARS  # a Django username fits


class Room(models.Model):
    name = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seq = models.BigIntegerField(default=0, help_text="Highest message id assigned in this room.")

    class Meta:
        ordering = ["name"]
        # The room list (`rooms`, /api/rooms/): the most active rooms first, read as an index range.
        indexes = [models.Index(fields=["-last_seq", "name"], name="room_last_seq_idx")]

    def __str__(self):
        return self.name


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField(help_text="Public message id: the room's sequence number.")
    author = models.CharField(max_length=NAME_MAX_CHARS)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    nonce = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [
            # Also the index for history, paging and `since` (room, seq range scans).
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author", "nonce"],
                condition=models.Q(nonce__isnull=False),
                name="message_author_nonce_unique",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="message_created_idx")]

    def __str__(self):
        return f"{self.room.name}#{self.seq} {self.author}"

    def to_wire(self, room_name=None):
        """The Message object of docs/PROTOCOL.md."""
        return {
            "id": self.seq,
            "room": room_name or self.room.name,
            "user": self.author,
            "account": self.user_id is not None,  # posted by a logged-in Django account
            "text": self.text,
            "ts": wire_time(self.created_at),
        }


def wire_time(moment):
    """A Message's `ts`: UTC, ISO 8601 with a Z."""
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Node(models.Model):
    """A running server process; rows of nodes that stop heartbeating are reaped."""

    id = models.CharField(max_length=100, primary_key=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return self.id


class Online(models.Model):
    """One row per signed-in name in the whole cluster: the unique key makes names unique."""

    key = models.CharField(max_length=NAME_MAX_CHARS, unique=True, help_text="Lower-cased name.")
    name = models.CharField(max_length=NAME_MAX_CHARS)
    node = models.ForeignKey(Node, on_delete=models.CASCADE)
    sid = models.CharField(max_length=64, db_index=True)
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "online"


class Membership(models.Model):
    """Who is in which room, on which node."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=NAME_MAX_CHARS)
    node = models.ForeignKey(Node, on_delete=models.CASCADE)
    sid = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "name"], name="membership_room_name_unique")]


class Ban(models.Model):
    """A name barred from a room until the ban is deleted (unban)."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=NAME_MAX_CHARS, help_text="User or guest name, any case.")
    key = models.CharField(max_length=NAME_MAX_CHARS, editable=False)
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "key"], name="ban_room_key_unique")]

    def save(self, *args, **kwargs):
        self.key = self.name.lower()
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.name} banned from {self.room}"
