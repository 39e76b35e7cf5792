"""Rooms, their messages and room events: the durable record every delivery is checked against.

Every change to a room has a number from the room's one sequence (`Room.last_seq`),
assigned inside the committing transaction while the room row is locked, so numbers become
visible in the same order on every node and `since` recovery can never skip one. A message
row's `seq` is the number of the event that created it (its public id); every later change
(edit, deletion, reaction, topic) is a `RoomEvent` row with its own number. The message row
holds the current state that `history` serves; chat.roomlog owns the event kinds.
"""
from django.conf import settings
from django.db import models
import datetime

from django.utils import timezone

from chat.protocol import ACCOUNT_NAME_MAX_CHARS as NAME_MAX_CHARS  # a Django username fits


NEVER = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def never():
    """`Room.last_active_at` of a room nobody has posted in: it sorts after every room in use."""
    return NEVER


PUBLIC, PRIVATE, DIRECT = "public", "private", "direct"
ROOM_KINDS = (PUBLIC, PRIVATE, DIRECT)
OWNER, MODERATOR, MEMBER = "owner", "moderator", "member"
ROLES = (OWNER, MODERATOR, MEMBER)


class Room(models.Model):
    name = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seq = models.BigIntegerField(default=0, help_text="Highest event number assigned in this room.")
    # Database defaults too, for the columns added with room events: a node still running the
    # code before them (a rolling upgrade) inserts rows without them.
    topic = models.CharField(max_length=250, blank=True, default="", db_default="")
    kind = models.CharField(max_length=8, choices=[(k, k) for k in ROOM_KINDS], default=PUBLIC, db_default=PUBLIC)
    title = models.CharField(max_length=200, blank=True, default="", db_default="",
                             help_text="Direct rooms: the people's names, as shown in their sidebars.")
    dm_key = models.CharField(max_length=200, null=True, blank=True, unique=True,
                              help_text="Direct rooms: the sorted account ids, so one set of people has one room.")
    message_count = models.BigIntegerField(default=0, db_default=0, help_text="Messages ever posted here: "
                                           "unread counts are this minus a member's read count.")
    last_active_at = models.DateTimeField(default=never, db_default=NEVER,
                                          help_text="When the last message was posted (never: 1970).")
    archived_at = models.DateTimeField(null=True, blank=True, help_text="Archived: read-only, off the public list.")

    class Meta:
        ordering = ["name"]
        indexes = [
            # The public room list (`rooms`, /api/rooms/): the most recently active first, an index range.
            models.Index(fields=["-last_active_at", "name"], name="room_public_active_idx",
                         condition=models.Q(kind=PUBLIC, archived_at__isnull=True)),
            # Searching it by name prefix on PostgreSQL (the unique index's collation cannot serve LIKE).
            models.Index(fields=["name"], name="room_name_prefix_idx", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self):
        return self.name


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField(help_text="Public message id: the room's sequence number.")
    author = models.CharField(max_length=NAME_MAX_CHARS, help_text="The author's name when posting (display).")
    author_key = models.CharField(max_length=40, default="", db_default="",
                                  help_text="Who posted it: chat.identity's stable key (u:<id>, g:<guest id>).")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    nonce = models.CharField(max_length=64, null=True, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="A tombstone: text cleared, never served.")
    reply_to = models.BigIntegerField(null=True, blank=True, help_text="Id of the message this one replies to.")
    reply_user = models.CharField(max_length=NAME_MAX_CHARS, blank=True, default="", db_default="")
    reply_excerpt = models.TextField(null=True, blank=True, help_text="The parent's text when replied to; "
                                                                      "cleared when the parent is deleted.")
    reply_replies = models.IntegerField(default=0, db_default=0, help_text="The parent's reply count right after this reply.")
    replies = models.IntegerField(default=0, db_default=0, help_text="Live replies to this message.")
    reactions = models.JSONField(null=True, blank=True, help_text="[{emoji, count, users}], first reaction first.")
    ordinal = models.BigIntegerField(default=0, db_default=0, help_text="Room.message_count right after this message.")
    mentions = models.JSONField(null=True, blank=True, help_text="Names it notifies, and @here / @room.")

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [
            # Also the index for history, paging and `since` (room, seq range scans).
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author_key", "nonce"],
                condition=models.Q(nonce__isnull=False),
                name="message_author_key_nonce_unique",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="message_created_idx")]

    def __str__(self):
        return f"{self.room.name}#{self.seq} {self.author}"

    def to_wire(self, room_name=None, my_emoji=()):
        """The Message object of docs/PROTOCOL.md in its current state; `my_emoji`: the
        emoji the reader reacted with here (each reaction's `me`)."""
        wire = {
            "id": self.seq,
            "room": room_name or self.room.name,
            "user": self.author,
            "account": self.user_id is not None,  # posted by a logged-in Django account
            "text": self.text,
            "ts": wire_time(self.created_at),
        }
        if self.edited_at is not None:
            wire["edited_at"] = wire_time(self.edited_at)
        if self.reply_to is not None:
            wire["reply_to"] = reply_wire(self.reply_to, self.reply_user, self.reply_excerpt, self.reply_replies)
        if self.replies:
            wire["replies"] = self.replies
        if self.reactions:
            wire["reactions"] = [{**r, "me": r["emoji"] in my_emoji} for r in self.reactions]
        if self.mentions:
            wire["mentions"] = self.mentions
        return wire


def reply_wire(parent_id, user, excerpt, replies):
    return {"id": parent_id, "user": user, "excerpt": excerpt, "replies": replies}


class RoomEvent(models.Model):
    """A numbered change to a room other than a new message (chat.roomlog owns the kinds).

    `data` is the event's wire payload beyond {room, seq, kind}; an edit also keeps the text it
    replaced (`previous_text`, staff-only: the admin's version history)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField(help_text="The room's sequence number of this event.")
    kind = models.CharField(max_length=16)
    message_seq = models.BigIntegerField(null=True, blank=True, help_text="Id of the message it changes.")
    actor = models.CharField(max_length=NAME_MAX_CHARS)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    data = models.JSONField(default=dict)
    previous_text = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="roomevent_room_seq_unique")]
        indexes = [models.Index(fields=["room", "message_seq"], name="roomevent_message_idx"),
                   models.Index(fields=["created_at"], name="roomevent_created_idx")]

    def __str__(self):
        return f"{self.room.name}#{self.seq} {self.kind} by {self.actor}"

    def to_wire(self, room_name):
        return {"room": room_name, "seq": self.seq, "kind": self.kind, **self.data}


class Reaction(models.Model):
    """One person's emoji on one message: the truth behind Message.reactions and `me`."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reaction_rows")
    user = models.CharField(max_length=NAME_MAX_CHARS, help_text="The name shown.")
    user_key = models.CharField(max_length=40, default="", db_default="", help_text="Who: chat.identity's key.")
    emoji = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user_key", "emoji"], name="reaction_key_unique")]
        indexes = [models.Index(fields=["message", "emoji", "id"], name="reaction_message_emoji_idx")]


def wire_time(moment):
    """A Message's `ts`: UTC, ISO 8601 with a Z."""
    return moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class RoomMember(models.Model):
    """An account's durable membership of a room, apart from being online in it (chat.directory):
    its role, its read marker and its unread mention count. Unread = Room.message_count -
    read_count, so no row is ever counted to show a badge."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    # db_index off: the unique (user, room) index serves every lookup by user
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships",
                             db_index=False)
    role = models.CharField(max_length=10, choices=[(r, r) for r in ROLES], default=MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    last_read = models.BigIntegerField(default=0, help_text="The number of the last event read.")
    read_count = models.BigIntegerField(default=0, help_text="Room.message_count when that message was posted.")
    mentions = models.IntegerField(default=0, help_text="Mentions after last_read.")
    muted = models.BooleanField(default=False)
    emailed_through = models.BigIntegerField(default=0, db_default=0, help_text="The last event an email digest told of (chat.digests).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="roommember_user_room_unique")]
        indexes = [models.Index(fields=["room", "role"], name="roommember_room_role_idx")]

    def __str__(self):
        return f"{self.user_id} in {self.room_id} ({self.role})"


class Mention(models.Model):
    """A message that notifies an account (user) or, for @room, every member (user null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="mention_rows")
    seq = models.BigIntegerField(help_text="The mentioning message's id.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "seq", "user"], name="mention_unique")]
        indexes = [models.Index(fields=["room", "user", "seq"], name="mention_room_user_seq_idx"),
                   models.Index(fields=["created_at"], name="mention_created_idx")]


class Node(models.Model):
    """A running server process; rows of nodes that stop heartbeating are reaped."""

    id = models.CharField(max_length=100, primary_key=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return self.id


class Online(models.Model):
    """One row per connection in the whole cluster. A guest's name is unique (one row per
    key); an account may be online from several tabs and devices, one row each."""

    key = models.CharField(max_length=NAME_MAX_CHARS, help_text="Lower-cased name.")
    name = models.CharField(max_length=NAME_MAX_CHARS)
    identity = models.CharField(max_length=40, default="", db_default="", help_text="chat.identity's stable key.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    node = models.ForeignKey(Node, on_delete=models.CASCADE)
    sid = models.CharField(max_length=64, unique=True)
    since = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "online"
        constraints = [models.UniqueConstraint(fields=["key"], condition=models.Q(user__isnull=True),
                                               name="online_guest_key_unique")]
        indexes = [models.Index(fields=["key"], name="online_key_idx")]


class Membership(models.Model):
    """Which connection is in which room, on which node (online presence; an account's tabs
    are a row each, counted once)."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=NAME_MAX_CHARS)
    node = models.ForeignKey(Node, on_delete=models.CASCADE)
    sid = models.CharField(max_length=64, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "sid"], name="membership_room_sid_unique")]
        indexes = [models.Index(fields=["room", "name"], name="membership_room_name_idx")]


class Ban(models.Model):
    """Someone barred from a room until the ban is deleted (unban): an account, or a guest
    by its guest id (online when banned) or by name (offline)."""

    room = models.CharField(max_length=64)
    name = models.CharField(max_length=NAME_MAX_CHARS, help_text="User or guest name, any case.")
    key = models.CharField(max_length=NAME_MAX_CHARS, editable=False, help_text="chat.identity's key of whom.")
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "key"], name="ban_room_key_unique")]

    def save(self, *args, **kwargs):
        if not self.key:
            from chat.moderation import key_for_name  # it reads the directory and the users
            self.key = key_for_name(self.name)
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.name} banned from {self.room}"


# -- email notifications and background work (chat.digests, chat.jobs) ------------------------
class EmailSettings(models.Model):
    """An account's email notifications (the account page): whether digests are wanted, and
    when the one digest job already queued for it is due (null: none), so that several
    messages become one email."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="email_settings")
    notify = models.BooleanField(default=True, help_text="Email DMs and mentions left unread.")
    due_at = models.DateTimeField(null=True, blank=True, help_text="The queued digest job runs then.")

    class Meta:
        verbose_name_plural = "email settings"


class EmailDigest(models.Model):
    """One email, written (and the messages it tells of marked) in one transaction before it is
    sent: a worker killed after that commit sends it on the retry instead of writing another."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_digests")
    to_email = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="A job is sending it since then.")
    sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.subject} to {self.to_email}"


class JobWorker(models.Model):
    """A `manage.py db_worker` process, alive while it heartbeats (chat.jobs): a RUNNING job
    whose worker fell silent is ready again."""

    worker_id = models.CharField(max_length=64, primary_key=True)
    host = models.CharField(max_length=100)
    pid = models.IntegerField()
    seen_at = models.DateTimeField(default=timezone.now)


class JobSchedule(models.Model):
    """A recurring job (chat.jobs.RECURRING): the next time a worker enqueues it."""

    name = models.CharField(max_length=64, primary_key=True)
    next_run_at = models.DateTimeField()
