"""200 connected clients sending: the server's database connections stay within their bound."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.chatclient import ChatClient
from tests.serverproc import open_fds_to

CLIENTS = 200
READERS = 3


def test_200_clients_use_a_bounded_number_of_database_connections(start_server):
    server = start_server(CHAT_DB_READERS=READERS, CHAT_MAX_CONNECTIONS_PER_IP=0)  # 200 from one address
    db_path = Path(server.database_url.removeprefix("sqlite:///"))
    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], open_fds_to(server.pid, db_path))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    members = []
    try:
        def arrive(i):
            client = ChatClient(server.url).connect(name=f"load{i}")
            client.join(f"room{i % 4}")
            return client

        with ThreadPoolExecutor(max_workers=20) as pool:
            members.extend(pool.map(arrive, range(CLIENTS)))
        threads = [threading.Thread(target=m.send, args=(f"room{i % 4}", f"hello from {i}"))
                   for i, m in enumerate(members)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, member in enumerate(members):
            got = member.wait_messages(f"room{i % 4}", CLIENTS // 4, timeout=30)
            assert sorted(m["id"] for m in got) == [m["id"] for m in got] == list(range(1, CLIENTS // 4 + 1))
    finally:
        stop.set()
        watcher.join()
        for member in members:
            member.close()
    # The store holds READERS + 1 connections; no HTTP requests ran during the test.
    assert 1 <= peak[0] <= READERS + 1, peak[0]
