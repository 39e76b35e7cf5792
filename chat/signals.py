"""Act on moderation done through the ORM (the Django admin, a shell): tell connected members
when a message is deleted, and enforce a new ban on every node.

The notice goes out after the deleting transaction commits, and only from a process that
runs a chat server (others have nobody to tell).
"""
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat.models import Ban, Message, Room


@receiver(post_delete, sender=Message)
def announce_deleted_message(sender, instance, **kwargs):
    from chat import server

    runtime = server.current()
    if runtime is None:
        return
    room_name = Room.objects.filter(pk=instance.room_id).values_list("name", flat=True).first()
    if room_name:
        transaction.on_commit(lambda: runtime.service.message_deleted(room_name, instance.seq))


@receiver(post_save, sender=Ban)
def enforce_saved_ban(sender, instance, **kwargs):
    from chat import server

    runtime = server.current()
    if runtime is not None:
        transaction.on_commit(lambda: runtime.service.enforce_ban(instance.room, instance.name))
