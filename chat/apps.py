"""Django app config. Starts nothing: management commands and tests import it too."""
from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from chat import signals  # noqa: F401  (connects the live-deletion receiver)
