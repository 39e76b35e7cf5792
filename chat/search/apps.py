"""App config of message search. Starts nothing (management commands and tests import it);
the server starts the indexer (chat.server)."""
from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "chat.search"
    label = "chat_search"
    verbose_name = "Message search"
    default_auto_field = "django.db.models.BigAutoField"
