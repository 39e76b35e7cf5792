"""The node heartbeat and the delivery check run forever, whatever one round raises, and a
node reaped while alive keeps trying to put its connections back until all are. The real
ChatService, Store and database; one planned failure is injected into the store's calls
(an unexpected error cannot be provoked from outside a healthy server). Issue 14, point 10."""
import gevent
import pytest
import socketio

from chat import bus, directory, persistence
from chat.delivery import RoomFeed
from chat.identity import Identity
from chat.limits import RateLimiter, parse_rules
from chat.models import Online
from chat.presence import Presence
from chat.protocol import UNAVAILABLE, ProtocolError
from chat.server import limits_from_settings
from chat.services import ChatService, Connection
from tests.serverproc import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NODE = "node-under-test"


class FailingOnce:
    """The real store, except that the first call of `fn` raises `error` instead of running."""

    def __init__(self, store, fn, error):
        self.store, self.fn, self.error = store, fn, error
        self.calls = 0

    def _run(self, call, fn, args):
        if fn is self.fn:
            self.calls += 1
            if self.calls == 1:
                raise self.error
        return call(fn, *args)

    def read(self, fn, *args):
        return self._run(self.store.read, fn, args)

    def write(self, fn, *args):
        return self._run(self.store.write, fn, args)


def make_service(store):
    manager = bus.InProcessManager()
    sio = socketio.Server(client_manager=manager, async_mode="threading")
    feed = RoomFeed(store, lambda room, message: None, 100, 100)
    limiter = RateLimiter(parse_rules("off"), 20)
    return ChatService(sio, manager, Presence(), store, feed, limits_from_settings(), NODE, limiter)


def settle(predicate, timeout=5):
    wait_until(lambda: (gevent.sleep(0.01), predicate())[1], timeout=timeout)


def test_an_unexpected_error_does_not_stop_the_heartbeat(store):
    faulty = FailingOnce(store, directory.heartbeat, RuntimeError("a bug in one round"))
    service = make_service(faulty)
    service.register_node(reap_others=False)
    beating = gevent.spawn(service.keep_alive, 0.01, 60)
    try:
        settle(lambda: faulty.calls >= 3)
    finally:
        beating.kill()


def test_an_unexpected_error_does_not_stop_the_delivery_checks(store):
    faulty = FailingOnce(store, persistence.last_ids, RuntimeError("a bug"))
    feed = RoomFeed(faulty, lambda room, message: None, 100, 100)
    feed.admit("r", None, 10, 10, enter=lambda: None)  # a tracked room, so checks read the database
    checking = gevent.spawn(feed.run_checks, 0.01)
    try:
        settle(lambda: faulty.calls >= 3)
    finally:
        checking.kill()


def test_a_reaped_node_retries_until_its_connections_are_back(store):
    faulty = FailingOnce(store, directory.claim, ProtocolError(UNAVAILABLE, "the database blinked"))
    service = make_service(faulty)
    service.register_node(reap_others=False)
    store.write(directory.claim, NODE, "sid-amy", "amy", False)
    service.presence.claim("sid-amy", "amy")
    service._connections["sid-amy"] = Connection(Identity("amy"), "127.0.0.1")
    store.write(directory.reap, -60, "another-node")  # reaped by another node while alive
    beating = gevent.spawn(service.keep_alive, 0.01, 60)
    try:
        settle(lambda: Online.objects.filter(key="amy", sid="sid-amy", node_id=NODE).exists())
    finally:
        beating.kill()
