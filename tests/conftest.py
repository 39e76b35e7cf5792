"""Shared fixtures: real server processes on free ports, and clients that clean up."""
import pytest

from tests.chatclient import ChatClient
from tests.serverproc import ServerProcess, SqliteTemplate, stop_all


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def chat_server(sqlite_template):
    """One shared server for tests that use their own rooms and names. Every test comes from
    127.0.0.1, so the address's room quota (100 by default) would run out as the suite grows:
    it is raised here; the quotas themselves are tested on servers of their own."""
    server = ServerProcess(sqlite_template.fresh_url(), CHAT_ROOM_CREATES="name=20/3600,address=100000/3600").start()
    yield server
    server.stop()


@pytest.fixture
def start_server(sqlite_template):
    """Start private servers (custom settings; a fresh SQLite database unless `database_url`
    is given); all are stopped after the test and must exit 0 within 10 s of SIGTERM."""
    started = []

    def start(database_url=None, **env):
        server = ServerProcess(database_url or sqlite_template.fresh_url(), **env).start()
        started.append(server)
        return server

    yield start
    stop_all(started)


@pytest.fixture
def workers():
    """Start real job workers (`manage.py db_worker`) on a database; all stopped after the
    test, each must exit 0 within 10 s of SIGTERM."""
    from tests.jobworkers import Worker

    started = []

    def start(database_url, **env):
        started.append(Worker(database_url, **env))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def clients():
    """Factory of ChatClients that are all disconnected after the test."""
    made = []

    def make(url, transport="websocket", **kwargs):
        client = ChatClient(url, transport=transport, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def store():
    """A real chat.store.Store on the test database (pytest-django), for in-process tests."""
    from chat.store import Store

    store = Store(readers=2, queue_limit=100, batch_limit=50, on_committed=lambda messages: None)
    store.start()
    yield store
    store.stop()
