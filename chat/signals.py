"""Act on moderation done through the ORM (the Django admin, a shell): enforce a new ban on
every node. (A message deleted in the admin is a room event, published by chat.admin.)

The enforcement goes out after the saving transaction commits, and only from a process that
runs a chat server (others have nobody to tell).
"""
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from chat.models import Ban


@receiver(post_save, sender=Ban)
def enforce_saved_ban(sender, instance, **kwargs):
    from chat import server

    runtime = server.current()
    if runtime is not None:
        transaction.on_commit(lambda: runtime.service.enforce_ban(instance.room, instance.key))
