"""Cluster parts for tests: a throwaway PostgreSQL database and the ZeroMQ broker process.

Every broker and node of a test run is on a CURVE-authenticated bus: one key set is made
per run (`run_bus_keys`), the broker gets its half by environment, and nodes take theirs
from `BrokerProcess.node_env()`.
"""
import functools
import socket
import subprocess
import sys
import uuid

from chat import busauth
from tests.needs import missing
from tests.serverproc import ROOT, base_env, migrate, wait_until

PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")


def postgres_refusal(**overrides):
    """None when PostgreSQL answers on 127.0.0.1:5432 as `postgres`; the error text when
    nothing listens there (connection refused). Any other failure (authentication, a
    missing role, a timeout) is a broken setup and raises."""
    import psycopg

    try:
        with psycopg.connect(**{**PG_ADMIN, **overrides}, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        if "Connection refused" in str(exc):
            return str(exc).splitlines()[0]
        raise


def postgres_reachable():
    return postgres_refusal() is None


def require_postgres():
    refusal = postgres_refusal()
    if refusal is not None:
        missing(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({refusal})")


class PostgresDatabase:
    """CREATE DATABASE on entry (migrated), DROP on exit."""

    def __init__(self):
        self.name = "chat_test_" + uuid.uuid4().hex[:10]
        self.url = f"postgres://postgres@127.0.0.1:5432/{self.name}"

    def _admin(self, sql):
        import psycopg

        with psycopg.connect(**PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql)

    def __enter__(self):
        self._admin(f'CREATE DATABASE "{self.name}"')
        migrate(self.url)
        return self

    def __exit__(self, *exc):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql, params=()):
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


def free_port_pair():
    """A port P with P+1 free too (the broker binds both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            try:
                with socket.socket() as s2:
                    s2.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


@functools.cache
def run_bus_keys():
    """The bus keys of this test run (a restarted broker keeps admitting the same nodes)."""
    return busauth.generate()


class BrokerProcess:
    def __init__(self, port=None, keys=None):
        self.port = port or free_port_pair()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.keys = keys or run_bus_keys()
        self.proc = None

    def node_env(self, index=0):
        """The settings a node needs to be admitted to this broker."""
        return self.keys.node_env(index)

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "run_server.py", "broker", "--bind", self.url], cwd=ROOT,
                                     env=base_env(**self.keys.broker_env()), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: self._bound(), timeout=15, message="broker bound")
        return self

    def _bound(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port + 1)) == 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class FreezableProxy:
    """TCP forwarder 127.0.0.1:listen_port -> 127.0.0.1:target_port for link-failure tests.

    `freeze()` makes every connection open at that moment stop forwarding (and stop reading)
    without closing, like a firewall that dropped its state; connections made afterwards are
    forwarded normally. `cut()` closes everything and refuses new connections (the far end
    is down) until `restore()`.
    """

    def __init__(self, listen_port, target_port):
        import threading

        self.listen_port, self.target_port = listen_port, target_port
        self.frozen_below = 0  # connections with a generation below this are frozen
        self.generation = 0
        self.sockets = []
        self.stopped = threading.Event()
        self.restore()

    def restore(self):
        import threading

        self.listener = socket.create_server(("127.0.0.1", self.listen_port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self):
        self.frozen_below = self.generation
        for sock in [self.listener, *self.sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.sockets = []

    def _accept(self, listener):
        import threading

        while not self.stopped.is_set():
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                if listener.fileno() == -1:
                    return  # cut
                continue
            generation = self.generation
            self.generation += 1
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, generation), daemon=True).start()

    def _pump(self, src, dst, generation):
        import time

        try:
            while not self.stopped.is_set():
                if generation < self.frozen_below:
                    time.sleep(0.05)  # hold everything: neither read nor forward nor close
                    continue
                src.settimeout(0.1)
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                if not data or generation < self.frozen_below:
                    if not data:
                        return
                    continue  # frozen mid-read: this chunk is dropped, as on a dead link
                dst.sendall(data)
        except OSError:
            return

    def freeze(self):
        self.frozen_below = self.generation

    def close(self):
        self.stopped.set()
        for sock in [self.listener, *self.sockets]:
            try:
                sock.close()
            except OSError:
                pass


def shell_in_fresh_database(sqlite_template, backend, script):
    """Run `script` in `manage.py shell` on a fresh migrated database of `backend`
    ("sqlite" or "postgresql", dropped afterwards); returns its output."""
    from tests.serverproc import manage

    if backend == "sqlite":
        return manage(sqlite_template.fresh_url(), "shell", "-c", script)
    require_postgres()
    with PostgresDatabase() as database:
        return manage(database.url, "shell", "-c", script)
