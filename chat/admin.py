"""Django admin for rooms and messages. Deleting a message here removes it live (chat.signals)."""
from django.contrib import admin

from chat.models import Ban, Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "last_seq", "created_at")
    search_fields = ("name",)
    readonly_fields = ("last_seq",)

    def has_delete_permission(self, request, obj=None):
        """Rooms are permanent: ids continue from `last_seq`, and every node's delivery (and
        every client's `since`) relies on a room's ids never starting over."""
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("room", "seq", "author", "short_text", "created_at")
    list_filter = ("room",)
    search_fields = ("author", "text")
    readonly_fields = ("room", "seq", "author", "user", "nonce", "created_at")
    list_select_related = ("room",)

    @admin.display(description="text")
    def short_text(self, message):
        return message.text[:80]


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
