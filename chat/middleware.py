"""HTTP middleware: a bound on database use by page and API requests, and the CSP header.

`DatabaseGateMiddleware` lets at most CHAT_HTTP_DB_SLOTS Django requests run at once and
closes each request's connection before freeing its slot, so HTTP traffic adds at most that
many database connections to the store's CHAT_DB_READERS + 1. Further requests wait their
turn. Socket.IO traffic never passes through Django.
"""
from django.conf import settings
from django.db import close_old_connections
from gevent.lock import BoundedSemaphore

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


class DatabaseGateMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.slots = BoundedSemaphore(settings.CHAT_HTTP_DB_SLOTS)  # owned by this instance

    def __call__(self, request):
        with self.slots:
            try:
                return self.get_response(request)
            finally:
                close_old_connections()  # CONN_MAX_AGE=0: closes this greenlet's connection


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
