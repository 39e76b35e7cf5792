"""Who may change what: the one function every door calls before a message is changed.

Socket events (`edit`, `delete`) reach it through chat.roomlog's apply rules, and the
Django admin's delete goes through the same rule with a staff actor, so a permission is
decided in one place whatever the door. Runs in chat.store's workers (it may read the
user table)."""
from django.conf import settings
from django.contrib.auth import get_user_model

from chat import protocol
from chat.protocol import ProtocolError


def is_staff(user_id):
    return user_id is not None and get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).exists()


def is_author(actor, message):
    """The same name and the same account (guests: no account), so a guest `amy` never owns
    the account `amy`'s messages."""
    return message.author == actor.name and message.user_id == actor.user_id


def check_message_change(actor, message, now):
    """Edit or delete: authors within CHAT_EDIT_WINDOW_SECS of sending, staff at any time."""
    if is_author(actor, message):
        age_secs = (now - message.created_at).total_seconds()
        if age_secs <= settings.CHAT_EDIT_WINDOW_SECS or is_staff(actor.user_id):
            return
        raise ProtocolError(protocol.EDIT_WINDOW_CLOSED,
                            f"messages can be changed for {settings.CHAT_EDIT_WINDOW_SECS} seconds after sending")
    if not is_staff(actor.user_id):
        raise ProtocolError(protocol.FORBIDDEN, "only its author or staff may change this message")
