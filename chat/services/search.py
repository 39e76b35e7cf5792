"""Search over the socket: `search` pages (chat.search does the work, in a store reader),
and the indexer's nudge after every commit. `history {around}` is chat/services/messages.py's."""
from django.conf import settings

from chat.protocol import ok
from chat.search import service as search_service
from chat.search.query import parse_search


class Searching:
    """Part of ChatService (chat/services/__init__.py); shares its state."""

    def search(self, sid, data):
        who = self._who(sid)
        query = parse_search(data, settings.CHAT_SEARCH_MAX_QUERY, settings.CHAT_SEARCH_PAGE, who.name)
        self._limit(sid, who.name, "search")
        return ok(**self.store.read(search_service.search, query, who.name, who.user_id, who.key))

    def index_committed(self, items):
        """After a commit (messages and room events): the indexer, if this node runs one,
        indexes those rooms soon. Never waited for."""
        if self.indexer is not None:
            self.indexer.nudge({item["room"] for item in items})
