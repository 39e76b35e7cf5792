"""Run a chat cluster on this machine: broker + N nodes + nginx, until Ctrl-C.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat python deploy/cluster.py [--port 8080] [--nodes 2] [--workers 2]

Creates the database if missing, migrates, collects static files, starts everything on
loopback and stops it all on Ctrl-C (or SIGTERM). The bus is authenticated with CURVE keys
made for this run (chat.busauth.generate, as `manage.py make_bus_keys` does) and handed to
the broker and nodes by environment. Tests import `render_nginx` and `ClusterRunner` so the
cluster under test is the one operators run.
"""
import argparse
import os
import pwd
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx.conf"
if str(ROOT) not in sys.path:  # run as `python deploy/cluster.py`
    sys.path.insert(0, str(ROOT))

from chat import busauth  # noqa: E402


def nginx_binary():
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        raise SystemExit("nginx is not installed: apt-get install nginx")
    return found


def node_id(port):
    return f"node-{port}"


def render_nginx(listen_port, node_ports, run_dir, listen_host="127.0.0.1", static_root=ROOT / "staticfiles"):
    servers = [f"127.0.0.1:{port}" for port in node_ports]
    per_node, mapping = [], []
    for port, server in zip(node_ports, servers):
        backups = "".join(f"        server {other} backup;\n" for other in servers if other != server)
        per_node.append(f"    upstream chat_{port} {{\n        server {server};\n{backups}    }}\n")
        mapping.append(f"        {node_id(port)} chat_{port};")
    user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    text = string.Template(TEMPLATE.read_text()).safe_substitute(
        RUN_DIR=run_dir, NGINX_USER=user, MIME_TYPES="/etc/nginx/mime.types",
        UPSTREAM_ANY="\n".join(f"        server {s} max_fails=0;" for s in servers),
        UPSTREAM_PER_NODE="".join(per_node), NODE_MAP="\n".join(mapping),
        LISTEN_HOST=listen_host, LISTEN_PORT=listen_port, STATIC_ROOT=static_root,
    )
    if "${" in text:  # nginx's own $variables stay; every ${FIELD} must be filled
        raise ValueError("unfilled field in deploy/nginx.conf: " + text[text.index("${"):][:40])
    return text


def ensure_database(database_url):
    """CREATE DATABASE when a PostgreSQL URL names one that does not exist yet."""
    parts = urlsplit(database_url)
    if not parts.scheme.startswith("postgres"):
        return
    import psycopg

    name = parts.path.lstrip("/")
    admin = dict(host=parts.hostname or "127.0.0.1", port=parts.port or 5432, user=parts.username or "postgres",
                 password=parts.password, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


class ClusterRunner:
    """Owns the broker, node and nginx processes of one local cluster."""

    def __init__(self, database_url, listen_port=8080, node_ports=(8001, 8002), broker_port=5555,
                 run_dir=None, node_env=None, log=sys.stdout, bus_keys=None):
        self.database_url = database_url
        self.listen_port = listen_port
        self.node_ports = list(node_ports)
        self.broker_url = f"tcp://127.0.0.1:{broker_port}"
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="chat-cluster-"))
        self.node_env = node_env or {}
        self.bus_keys = bus_keys or busauth.generate(nodes=len(self.node_ports))
        self.log = log
        self.broker = None
        self.nodes = {}
        self.workers = []
        self.nginx = None

    def env(self, **extra):
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="settings", DATABASE_URL=self.database_url,
                   PYTHONUNBUFFERED="1")
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def prepare(self):
        ensure_database(self.database_url)
        for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=self.env(), check=True)

    def start_broker(self):
        self.broker = subprocess.Popen([sys.executable, "run_server.py", "broker", "--bind", self.broker_url],
                                       cwd=ROOT, env=self.env(**self.bus_keys.broker_env()), stdout=self.log,
                                       stderr=subprocess.STDOUT)

    def start_node(self, port):
        bus = self.bus_keys.node_env(self.node_ports.index(port))  # each node its own key pair
        env = self.env(CHAT_NODE_ID=node_id(port), CHAT_TRUSTED_PROXIES="127.0.0.1", **{**bus, **self.node_env})
        self.nodes[port] = subprocess.Popen([sys.executable, "run_server.py", "--host", "127.0.0.1",
                                             "--port", str(port), "--broker", self.broker_url],
                                            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def start_workers(self, count):
        """Job workers (`manage.py db_worker`, chat.worker) beside the nodes: they share the
        queue in PostgreSQL, so any number on any host work one queue."""
        for index in range(count):
            self.workers.append(subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--worker-id", f"worker-{index + 1}-{os.getpid()}"],
                cwd=ROOT, env=self.env(), stdout=self.log, stderr=subprocess.STDOUT))

    def start_nginx(self):
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "nginx.conf"
        conf.write_text(render_nginx(self.listen_port, self.node_ports, self.run_dir))
        self.nginx = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(self.run_dir),
                                       "-g", "daemon off;"], stdout=self.log, stderr=subprocess.STDOUT)

    def start(self, nodes=None, workers=0):
        self.prepare()
        self.start_broker()
        for port in self.node_ports if nodes is None else nodes:
            self.start_node(port)
        self.start_workers(workers)
        self.start_nginx()
        return self

    def kill_node(self, port, sig=signal.SIGKILL):
        proc = self.nodes.pop(port)
        proc.send_signal(sig)
        proc.wait(15)

    def stop(self):
        procs = [self.nginx, *self.nodes.values(), *self.workers, self.broker]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080, help="nginx listens here")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--first-node-port", type=int, default=8001)
    parser.add_argument("--broker-port", type=int, default=5555)
    parser.add_argument("--workers", type=int, default=2, help="job workers (manage.py db_worker)")
    parser.add_argument("--render-only", action="store_true", help="print the nginx config and exit")
    args = parser.parse_args()
    ports = [args.first_node_port + i for i in range(args.nodes)]
    if args.render_only:
        print(render_nginx(args.port, ports, "/tmp/chat-cluster"))
        return
    database_url = os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL=postgres://USER@HOST:PORT/DB (a cluster shares PostgreSQL)")
    runner = ClusterRunner(database_url, args.port, ports, args.broker_port)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    runner.start(workers=args.workers)
    print(f"cluster: http://127.0.0.1:{args.port}/  nodes {ports}  broker {runner.broker_url}  "
          f"workers {args.workers}", flush=True)
    try:
        while not stopping and all(p.poll() is None for p in [runner.broker, runner.nginx, *runner.nodes.values(),
                                                              *runner.workers]):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the cluster", flush=True)
        runner.stop()


if __name__ == "__main__":
    main()
