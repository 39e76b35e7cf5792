"""Django admin for rooms, messages, bans and the email digests sent (background jobs are
django-tasks-db's own admin, "Task results", with each failure's traceback).

Deleting a message here is the same room event as a `delete` from its author (chat.roomlog):
the message becomes a tombstone, every member's client removes it live, and `since` replays
the deletion. A message's page shows every version of its text (its edit events)."""
from django.contrib import admin
from django.utils.html import format_html_join

from chat import roomlog
from chat.models import Ban, EmailDigest, Message, Room, RoomEvent


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "topic", "last_seq", "created_at")
    search_fields = ("name",)
    readonly_fields = ("last_seq", "topic")

    def has_delete_permission(self, request, obj=None):
        """Rooms are permanent: ids continue from `last_seq`, and every node's delivery (and
        every client's `since`) relies on a room's ids never starting over."""
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("room", "seq", "author", "short_text", "created_at", "edited_at", "deleted_at")
    list_filter = ("room",)
    search_fields = ("author", "text")
    fields = ("room", "seq", "author", "user", "text", "versions", "created_at", "edited_at", "deleted_at",
              "reply_to", "replies", "reactions", "nonce")
    readonly_fields = fields  # changes go through the room's events, never a silent save
    list_select_related = ("room",)

    @admin.display(description="text")
    def short_text(self, message):
        return message.text[:80]

    @admin.display(description="history")
    def versions(self, message):
        """Every version of the text, oldest first, from its edit (and deletion) events."""
        events = RoomEvent.objects.filter(room_id=message.room_id, message_seq=message.seq,
                                          kind__in=("edit", "delete")).order_by("seq")
        rows = [(e.created_at.strftime("%Y-%m-%d %H:%M:%S"), f"{e.kind} by {e.actor}", e.previous_text or "")
                for e in events]
        if not rows:
            return "never edited"
        return format_html_join("", "<p>{} · {}: replaced <q>{}</q></p>", rows)

    def has_add_permission(self, request):
        return False  # messages are sent by people, through the chat

    def delete_model(self, request, obj):
        _publish(roomlog.delete_as_staff(obj, request.user))

    def delete_queryset(self, request, queryset):
        for message in queryset.filter(deleted_at__isnull=True).select_related("room"):
            _publish(roomlog.delete_as_staff(message, request.user))


def _publish(event):
    """Send a committed event to the room's members now; without a chat server in this
    process, every node's periodic delivery check finds it in the database instead."""
    from chat import server

    runtime = server.current()
    if event is not None and runtime is not None:
        runtime.service.messages_committed([event])


@admin.register(Ban)
class BanAdmin(admin.ModelAdmin):
    """Saving a ban removes the name from the room at once, on every node (chat.signals)."""

    list_display = ("room", "name", "reason", "created_by", "created_at")
    search_fields = ("room", "name")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(EmailDigest)
class EmailDigestAdmin(admin.ModelAdmin):
    """What was emailed to whom (chat.digests); kept CHAT_EMAIL_KEEP_SECS after sending."""

    list_display = ("to_email", "subject", "created_at", "sent_at")
    search_fields = ("to_email",)
    readonly_fields = ("user", "to_email", "subject", "body", "created_at", "claimed_at", "sent_at")

    def has_add_permission(self, request):
        return False
