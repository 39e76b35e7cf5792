"""Tell connected members when a message is deleted (admin, shell, any ORM delete).

The notice goes out after the deleting transaction commits, and only from a process that
runs a chat server (others have nobody to tell).
"""
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from chat.models import Message, Room


@receiver(post_delete, sender=Message)
def announce_deleted_message(sender, instance, **kwargs):
    from chat import server

    runtime = server.current()
    if runtime is None:
        return
    room_name = Room.objects.filter(pk=instance.room_id).values_list("name", flat=True).first()
    if room_name:
        transaction.on_commit(lambda: runtime.service.message_deleted(room_name, instance.seq))
