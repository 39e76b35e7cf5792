"""Benchmarks: this chat server against a Node.js Socket.IO reference, side by side.

    .venv/bin/python bench/run.py [--scenarios 1,2,4] [--rounds 2] [--smoke] [--out bench/results]

Every scenario runs against each of its targets in turn (ours, reference, ours, reference,
... for --rounds rounds), each run on freshly started servers; the table shows the medians.
Load comes from bench/loadgen.mjs processes (raw Engine.IO/Socket.IO over websocket).
Results: <out>/<YYYY-MM-DD>.json (every raw figure, machine and versions) and a markdown
table next to it (.md), also printed. See bench/README.md.
"""
import argparse
import datetime
import json
import math
import os
import platform
import queue
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() \
        and not os.environ.get("CHAT_BENCH_NO_REEXEC"):
    # The servers are started with sys.executable: make sure it is the project's venv.
    os.environ["CHAT_BENCH_NO_REEXEC"] = "1"
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(ROOT))

from tests.cluster import BrokerProcess, PostgresDatabase, postgres_refusal  # noqa: E402
from tests.serverproc import ListeningProcess, ServerProcess, SqliteTemplate, base_env  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
OURS_ENV = {
    "CHAT_RATE_LIMITS": "off",
    "CHAT_MAX_CONNECTIONS_PER_IP": "0",
    "CHAT_MAX_MEMBERS_LISTED": "50",
}
REFERENCE_ENV = {"CHAT_MAX_MEMBERS_LISTED": "50"}

# Scenario 8's accounts, made in the run's fresh database by one `manage.py shell` (logging in
# 2,000 accounts over HTTP would hash passwords for minutes): users BENCH_PREFIX0 ..
# BENCH_PREFIX<count-1> with an unusable password, and each one's reconnect token, by index,
# as a JSON list in BENCH_TOKENS. The server is started with the same SECRET_KEY.
ACCOUNTS_SCRIPT = '''
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from chat import identity
User = get_user_model()
prefix, count = os.environ["BENCH_PREFIX"], int(os.environ["BENCH_COUNT"])
names = [f"{prefix}{g}" for g in range(count)]
User.objects.bulk_create([User(username=n, password=make_password(None)) for n in names], batch_size=500)
users = {u.username: u for u in User.objects.filter(username__in=names)}
tokens = [identity.make_token(identity.account(users[n])) for n in names]
with open(os.environ["BENCH_TOKENS"], "w") as f:
    json.dump(tokens, f)
'''


class BenchError(Exception):
    """A run that could not be measured (a server that did not start, clients refused...)."""


class Skip(Exception):
    """A target or scenario that cannot run here; the message says why."""


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def epoch_ms():
    return time.time() * 1000.0


# -- /proc ------------------------------------------------------------------------------------
def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


# -- histograms (same layout as bench/loadgen.mjs) ---------------------------------------------
def merge_histograms(histograms):
    merged = {"n": 0, "sum": 0.0, "max": 0.0, "counts": {}, "base": 0.01, "growth": 1.02}
    for h in histograms:
        if not h:
            continue
        merged["base"], merged["growth"] = h["base"], h["growth"]
        merged["n"] += h["n"]
        merged["sum"] += h["sum"]
        merged["max"] = max(merged["max"], h["max"])
        for idx, count in h["buckets"]:
            merged["counts"][idx] = merged["counts"].get(idx, 0) + count
    return merged


def percentile(hist, fraction):
    """Upper bound of the bucket holding the given fraction (2 % resolution), in ms."""
    if not hist["n"]:
        return None
    rank = max(1, math.ceil(fraction * hist["n"]))
    seen = 0
    for idx in sorted(hist["counts"]):
        seen += hist["counts"][idx]
        if seen >= rank:
            return min(hist["base"] * hist["growth"] ** idx, hist["max"])
    return hist["max"]


def summarize(hist):
    if not hist["n"]:
        return {"n": 0}
    return {"n": hist["n"], "mean": hist["sum"] / hist["n"], "p50": percentile(hist, 0.50),
            "p90": percentile(hist, 0.90), "p99": percentile(hist, 0.99), "max": hist["max"]}


# -- processes under test ---------------------------------------------------------------------
class ReferenceProcess(ListeningProcess):
    """`node bench/reference/server.mjs --port 0`; `url` once it logs its address."""

    def __init__(self, node):
        super().__init__([node, str(BENCH / "reference" / "server.mjs"), "--host", "127.0.0.1", "--port", "0"],
                         cwd=BENCH / "reference", env=dict(os.environ, **REFERENCE_ENV))

    def start(self, timeout=20):
        try:
            return super().start(timeout)
        except RuntimeError:
            raise BenchError("reference server did not start:\n" + "\n".join(self.lines[-20:])) from None


def stop_worker(worker):
    worker.terminate()
    try:
        worker.wait(15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)


class Deployment:
    """What one run measures: the servers' urls and the pids whose CPU and RSS count."""

    def __init__(self, label):
        self.label = label
        self.urls = []
        self.pids = []
        self._stoppers = []
        self.tokens_file = None  # scenario 8, ours: the clients' reconnect tokens (JSON list)
        self.setup = {}  # figures of the preparation (accounts_secs), copied into the run's result

    def add(self, url, pid, stop):
        if url:
            self.urls.append(url)
        self.pids.append(pid)
        self._stoppers.append(stop)

    def alive(self):
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(")")[-1].split()[0] == "Z":
                        return False
            except OSError:
                return False
        return True

    def cpu(self):
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss(self):
        return sum(rss_kib(pid) for pid in self.pids)

    def stop(self):
        for stop in reversed(self._stoppers):
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping a process of {self.label} failed: {exc}")


class Bench:
    """Shared state of one invocation: temp dir, SQLite template, PostgreSQL, node."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="chat-bench-"))
        self._sqlite = None
        self.node = shutil.which("node")
        self.npm = shutil.which("npm")
        self.pg_reason = None
        self.reference_reason = None
        self.loadgen_reason = None
        self.run_counter = 0
        self.databases = []
        self.secret_key = "bench-" + secrets.token_urlsafe(40)  # scenario 8: the shell and the server sign alike

    def close(self):
        for db in self.databases:
            try:
                db.__exit__(None, None, None)
            except Exception as exc:
                log(f"dropping PostgreSQL database {db.name} failed: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- preparation ----------------------------------------------------------------------
    def prepare(self):
        if not self.node or not self.npm:
            missing = "node" if not self.node else "npm"
            self.loadgen_reason = f"{missing} not found on PATH: the load generator (bench/loadgen.mjs) needs Node.js"
            self.reference_reason = f"{missing} not found on PATH"
        else:
            problem = npm_install(self.npm, BENCH, "ws")
            if problem:
                self.loadgen_reason = problem
            problem = npm_install(self.npm, BENCH / "reference", "socket.io")
            if problem:
                self.reference_reason = problem
        if self.args.no_postgres:
            self.pg_reason = "--no-postgres given"
        else:
            self.pg_reason = self.postgres_problem()
        for reason in (self.loadgen_reason, self.reference_reason, self.pg_reason):
            if reason:
                log(f"note: {reason}")

    @staticmethod
    def postgres_problem():
        """None when PostgreSQL answers; else why not. Only "nothing listens" is quiet: a
        refused login or a timeout is printed as it is, so a broken setup is not mistaken
        for an absent one."""
        import psycopg

        try:
            refusal = postgres_refusal()
        except psycopg.Error as exc:
            return f"PostgreSQL on 127.0.0.1:5432 does not let user postgres in: {str(exc).strip()}"
        return refusal and f"PostgreSQL is not reachable on 127.0.0.1:5432: {refusal}"

    def sqlite_url(self):
        if self._sqlite is None:
            self._sqlite = SqliteTemplate(self.tmp)
        return self._sqlite.fresh_url()

    def postgres(self):
        """A throwaway database (created and migrated), dropped when the bench ends."""
        if self.pg_reason:
            raise Skip(self.pg_reason)
        db = PostgresDatabase()
        db.__enter__()
        self.databases.append(db)
        return db

    def make_accounts(self, database_url, prefix, count):
        """Accounts prefix0 .. prefix<count-1> in the database: (path of their tokens, seconds taken)."""
        path = self.tmp / f"tokens-{prefix}.json"
        started = time.monotonic()
        try:
            subprocess.run([sys.executable, "manage.py", "shell", "-c", ACCOUNTS_SCRIPT], cwd=ROOT, check=True,
                           capture_output=True, text=True, timeout=300,
                           env=base_env(DATABASE_URL=database_url, SECRET_KEY=self.secret_key, BENCH_PREFIX=prefix,
                                        BENCH_COUNT=count, BENCH_TOKENS=path))
        except subprocess.CalledProcessError as exc:
            raise BenchError(f"creating {count} accounts failed:\n{exc.stderr[-2000:]}") from None
        except subprocess.TimeoutExpired:
            raise BenchError(f"creating {count} accounts took over 300 s") from None
        return path, time.monotonic() - started

    def next_run_id(self):
        self.run_counter += 1
        return self.run_counter

    # -- targets --------------------------------------------------------------------------
    def start_ours(self, database_url, label, **env):
        deployment = Deployment(label)
        server = ServerProcess(database_url, **OURS_ENV, **env)
        try:
            server.start(timeout=60)
        except RuntimeError as exc:
            raise BenchError(str(exc)[-2000:]) from None
        deployment.add(server.url, server.pid, server.stop)
        deployment.output = server.output
        for _ in range(self.args.workers):  # as `make run` deploys: job workers beside the node
            worker = subprocess.Popen([sys.executable, "manage.py", "db_worker"], cwd=ROOT,
                                      env=base_env(DATABASE_URL=database_url, **OURS_ENV, **env),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deployment.add(None, worker.pid, lambda w=worker: stop_worker(w))
        return deployment

    def start_reference(self):
        if self.reference_reason:
            raise Skip(self.reference_reason)
        deployment = Deployment("reference")
        ref = ReferenceProcess(self.node).start()
        deployment.add(ref.url, ref.pid, ref.stop)
        deployment.output = lambda: "\n".join(ref.lines)
        return deployment

    def start_cluster(self, database_url, run_id, nodes=2):
        deployment = Deployment("cluster")
        broker = BrokerProcess()
        try:
            broker.start()
        except Exception as exc:
            broker.stop()
            raise BenchError(f"broker did not start: {exc}") from None
        deployment.add(None, broker.proc.pid, broker.stop)
        servers = [ServerProcess(database_url, **OURS_ENV, CHAT_BROKER_URL=broker.url, **broker.node_env(),
                                 CHAT_NODE_ID=f"bench{run_id}-node{i + 1}") for i in range(nodes)]
        errors = []

        def start(server):
            try:
                server.start(timeout=60)
            except Exception as exc:
                errors.append(str(exc)[-2000:])

        threads = [threading.Thread(target=start, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for server in servers:
            if server.proc is not None:
                deployment.add(server.url, server.pid, server.stop)
        if errors or len(deployment.urls) != nodes:
            deployment.stop()
            raise BenchError("cluster node did not start: " + "; ".join(errors))
        deployment.output = lambda: "\n".join(s.output() for s in servers)
        return deployment


def npm_install(npm, folder, probe_package):
    """Install a folder's npm packages if missing; returns a reason when impossible."""
    if (folder / "node_modules" / probe_package / "package.json").exists():
        return None
    command = [npm, "ci" if (folder / "package-lock.json").exists() else "install",
               "--no-audit", "--no-fund", "--loglevel=error"]
    log(f"installing npm packages in {folder.relative_to(ROOT)}: {' '.join(command[1:])}")
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return f"npm install in {folder.relative_to(ROOT)} timed out"
    if done.returncode != 0:
        return f"npm install in {folder.relative_to(ROOT)} failed: {done.stderr.strip()[-500:]}"
    return None


# -- load generator processes ----------------------------------------------------------------
class LoadGens:
    """Several bench/loadgen.mjs processes sharing `total` clients (contiguous index blocks)."""

    def __init__(self, bench, urls, total, rooms, prefix, room_prefix, procs, pairs=False, tokens_file=None):
        self.bench = bench
        self.procs = []
        self.queues = []
        self.logs = []
        self.configs = []
        unit = 2 if pairs else 1  # pairs: both members of a pair in the same process
        procs = max(1, min(procs, total // unit))
        base, extra = divmod(total // unit, procs)
        first = 0
        for index in range(procs):
            count = unit * (base + (1 if index < extra else 0))
            config = {"index": index, "urls": urls, "prefix": prefix, "first": first, "count": count,
                      "total": total, "rooms": rooms, "roomPrefix": room_prefix,
                      "connectConcurrency": bench.args.connect_concurrency,
                      # pairs: 25 pairs at a time, each open_dm then two joins (up to 50 requests in
                      # flight per process): enough to keep a server busy, and no request waits behind
                      # hundreds of others past its 15 s timeout when the server is slow to set up.
                      "joinConcurrency": 25 if pairs else 100,
                      "timeoutMs": 15000, "textPad": 40, "maxLifetimeSecs": 1800,
                      "pairs": pairs, "tokensFile": str(tokens_file) if tokens_file else None}
            first += count
            self.configs.append(config)

    def __enter__(self):
        for config in self.configs:
            log_path = self.bench.tmp / f"loadgen-{uuid.uuid4().hex[:8]}.log"
            log_file = open(log_path, "w")
            self.logs.append((log_path, log_file))
            proc = subprocess.Popen([self.bench.node, str(BENCH / "loadgen.mjs"), json.dumps(config)], cwd=BENCH,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                    bufsize=1)
            answers = queue.Queue()
            threading.Thread(target=self._read, args=(proc, answers), daemon=True).start()
            self.procs.append(proc)
            self.queues.append(answers)
        return self

    @staticmethod
    def _read(proc, answers):
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                answers.put(json.loads(line))
            except ValueError:
                answers.put({"event": "error", "error": f"not JSON: {line[:200]}"})
        answers.put({"event": "exited", "code": proc.poll()})

    def command(self, cmd, expect, timeout):
        line = json.dumps(cmd) + "\n"
        for proc in self.procs:
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise BenchError(f"load generator {proc.pid} is gone") from None
        deadline = time.monotonic() + timeout
        answers = []
        for proc, answers_queue in zip(self.procs, self.queues):
            try:
                answer = answers_queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"load generator {proc.pid}: no answer to {cmd['cmd']} in {timeout:.0f}s") from None
            if answer.get("event") != expect:
                raise BenchError(f"load generator {proc.pid}: expected {expect}, got {str(answer)[:500]}"
                                 f"\n{self.stderr_tail()}")
            answers.append(answer)
        return answers

    def cpu(self):
        """CPU seconds of each load generator process."""
        return [cpu_seconds(p.pid) if p.poll() is None else 0.0 for p in self.procs]

    def stderr_tail(self):
        tails = []
        for path, handle in self.logs:
            handle.flush()
            try:
                text = path.read_text()[-1000:]
            except OSError:
                text = ""
            if text.strip():
                tails.append(text)
        return "\n".join(tails)

    def __exit__(self, *exc):
        for proc in self.procs:
            try:
                if proc.poll() is None:
                    proc.stdin.write('{"cmd":"quit"}\n')
                    proc.stdin.flush()
                    proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for _, handle in self.logs:
            handle.close()


# -- one measured run ------------------------------------------------------------------------
def connect_clients(gens, spec):
    started = epoch_ms() + 300
    answers = gens.command({"cmd": "connect", "at": started}, "connected", timeout=60 + spec["clients"] * 0.03)
    ok = sum(a["ok"] for a in answers)
    failed = sum(a["failed"] for a in answers)
    errors = {}
    for a in answers:
        for code, n in a["errors"].items():
            errors[code] = errors.get(code, 0) + n
    lasts = [a["last"] for a in answers if a["ok"]]
    span = (max(lasts) - min(a["first"] for a in answers)) / 1000 if lasts else None
    return {"connected": ok, "connect_failed": failed, "connect_errors": errors, "connect_secs": span,
            "connects_per_s": ok / span if span else None}


def join_clients(gens, spec):
    answers = gens.command({"cmd": "join"}, "joined", timeout=60 + spec["clients"] * 0.03)
    errors = {}
    for a in answers:
        for code, n in a["errors"].items():
            errors[code] = errors.get(code, 0) + n
    span = (max(a["last"] for a in answers) - min(a["first"] for a in answers)) / 1000
    return {"joined": sum(a["ok"] for a in answers), "join_failed": sum(a["failed"] for a in answers),
            "join_errors": errors, "join_secs": span, "dms_opened": sum(a.get("opened", 0) for a in answers)}


def run_traffic(gens, spec, tag, duration, drain_ms):
    cmd = {"cmd": "run", "at": epoch_ms() + 300, "mode": spec["mode"], "rate": spec.get("rate", 1),
           "duration": duration, "drainMs": drain_ms, "quietMs": spec.get("quiet_ms", 500), "tag": tag,
           "mix": {"edit": spec.get("edit_share", 0), "react": spec.get("react_share", 0)}}
    return gens.command(cmd, "ran", timeout=duration + drain_ms / 1000 + 60)


def measure_traffic(bench, deployment, spec):
    """Connect, join, warm up, then one measured window of traffic."""
    run_id = bench.next_run_id()
    result = {"target": deployment.label, "run": run_id, "loadavg_before": loadavg(), **deployment.setup,
              "server_rss_start_kib": deployment.rss()}
    with LoadGens(bench, deployment.urls, spec["clients"], spec["rooms"], f"b{run_id}u", f"b{run_id}room",
                  spec["procs"], pairs=spec.get("pairs", False), tokens_file=deployment.tokens_file) as gens:
        result.update(connect_clients(gens, spec))
        if result["connected"] != spec["clients"]:
            raise BenchError(f"{result['connect_failed']} of {spec['clients']} clients could not connect: "
                             f"{result['connect_errors']}")
        result.update(join_clients(gens, spec))
        if result["joined"] != spec["clients"]:
            raise BenchError(f"{result['join_failed']} of {spec['clients']} clients could not join: "
                             f"{result['join_errors']}")
        if spec["warmup"]:
            run_traffic(gens, spec, f"w{run_id}", spec["warmup"], spec["drain_ms"])
        profilers = start_profilers(bench, deployment, run_id, spec["duration"] + 1)
        cpu0, gen_cpu0, wall0 = deployment.cpu(), gens.cpu(), time.monotonic()
        answers = run_traffic(gens, spec, f"m{run_id}", spec["duration"], spec["drain_ms"])
        cpu1, gen_cpu1, wall1 = deployment.cpu(), gens.cpu(), time.monotonic()
        rss1 = deployment.rss()  # every client still connected and in its room
        if profilers:
            result["profiles"] = finish_profilers(profilers)
        if not deployment.alive():
            raise BenchError("a server process died during the run")
    wall = wall1 - wall0
    total = lambda key: sum(a[key] for a in answers)  # noqa: E731
    ack_errors = add_counts(a["ackErrors"] for a in answers)
    announced = total("acked") - total("ackedNull")  # acks with a message or an event: each reaches the room
    room_size = spec["clients"] / spec["rooms"]
    deliveries = total("deliveries")
    server_cpu = cpu1 - cpu0
    gen_cpu = [b - a for a, b in zip(gen_cpu0, gen_cpu1)]
    latency = summarize(merge_histograms(a["latency"] for a in answers))
    ack_latency = summarize(merge_histograms(a["ackLatency"] for a in answers))
    result.update({
        "duration_s": spec["duration"], "measured_wall_s": wall,
        "sent": total("sent"), "acked": total("acked"), "acked_in_window": total("ackedInWindow"),
        "acked_no_event": total("ackedNull"), "requests": add_counts(a["requests"] for a in answers),
        "ack_errors": ack_errors, "ack_errors_total": sum(ack_errors.values()),
        "skipped_sends": total("skipped"), "pending_acks_left": total("pendingLeft"),
        "deliveries": deliveries, "deliveries_in_window": total("deliveriesInWindow"),
        "own_copies": total("ownCopies"),  # pairs: the sender's copy of its message (not in the latency)
        "deliveries_by_kind": add_counts(a["kinds"] for a in answers),
        "expected_deliveries": announced * room_size,
        "delivery_ratio": deliveries / (announced * room_size) if announced else None,
        "out_of_order": total("outOfOrder"), "gaps": total("gaps"),
        "sockets_closed_by_server": total("closed"),
        "deliveries_per_s": total("deliveriesInWindow") / spec["duration"],
        "acked_per_s": total("ackedInWindow") / spec["duration"],
        "offered_deliveries_per_s": (spec["clients"] * spec["rate"] * room_size) if spec["mode"] == "rate" else None,
        "server_cpu_s": server_cpu, "server_cpu_pct": 100 * server_cpu / wall,
        "server_cpu_us_per_delivery": 1e6 * server_cpu / deliveries if deliveries else None,
        "server_cpu_us_per_ack": 1e6 * server_cpu / total("acked") if total("acked") else None,
        "loadgen_cpu_s": gen_cpu, "loadgen_cpu_pct_max": 100 * max(gen_cpu) / wall,
        "loadgen_cpu_pct_total": 100 * sum(gen_cpu) / wall,
        "latency_ms": latency, "ack_latency_ms": ack_latency,
        "server_rss_kib": rss1, "server_rss_mib": rss1 / 1024,
        "loadavg_after": loadavg(),
    })
    return result


def add_counts(dicts):
    """{"a": 1} + {"a": 2, "b": 1} -> {"a": 3, "b": 1}"""
    out = {}
    for counts in dicts:
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


def start_profilers(bench, deployment, run_id, seconds):
    """With --py-spy DIR: sample our Python processes during the measured window."""
    if not bench.args.py_spy or deployment.label == "reference":
        return []
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    folder = Path(bench.args.py_spy)
    folder.mkdir(parents=True, exist_ok=True)
    profilers = []
    for pid in deployment.pids:
        path = folder / f"run{run_id}-{deployment.label}-{pid}.txt"
        try:
            proc = subprocess.Popen([py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(bench.args.py_spy_rate),
                                     "--nonblocking", "-f", "raw", "-o", str(path)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            log(f"py-spy could not start: {exc}")
            return profilers
        profilers.append((proc, path))
    return profilers


def finish_profilers(profilers, top=12):
    """Wait for py-spy; return each profile's path and its hottest functions (own samples)."""
    out = []
    for proc, path in profilers:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        own, total = {}, 0
        try:
            with open(path) as f:
                for line in f:
                    stack, _, count = line.rstrip("\n").rpartition(" ")
                    if not stack or not count.isdigit():
                        continue
                    leaf = stack.rsplit(";", 1)[-1]
                    own[leaf] = own.get(leaf, 0) + int(count)
                    total += int(count)
        except OSError:
            continue
        hottest = sorted(own.items(), key=lambda kv: -kv[1])[:top]
        out.append({"path": str(path), "samples": total,
                    "hottest_self": [[name, round(100 * n / total, 1)] for name, n in hottest] if total else []})
        log(f"  py-spy profile {path} ({total} samples); hottest own time:")
        for name, n in hottest[:8]:
            log(f"    {100 * n / max(total, 1):5.1f}%  {name}")
    return out


def measure_idle(bench, deployment, spec):
    """Connect N clients that stay idle; RSS per connection and connects/s."""
    run_id = bench.next_run_id()
    result = {"target": deployment.label, "run": run_id, "loadavg_before": loadavg()}
    time.sleep(spec["settle"])
    rss0, cpu0 = deployment.rss(), deployment.cpu()
    with LoadGens(bench, deployment.urls, spec["clients"], 0, f"b{run_id}u", f"b{run_id}room", spec["procs"]) as gens:
        gen_cpu0 = gens.cpu()
        result.update(connect_clients(gens, spec))
        cpu1, gen_cpu1 = deployment.cpu(), gens.cpu()
        time.sleep(spec["settle"])
        rss1 = deployment.rss()
        status = gens.command({"cmd": "status"}, "status", timeout=30)
        if not deployment.alive():
            raise BenchError("a server process died during the run")
    if result["connected"] == 0:
        raise BenchError(f"no client could connect: {result['connect_errors']}")
    still_open = sum(s["open"] for s in status)
    result.update({
        "still_open": still_open, "rss_before_kib": rss0, "rss_after_kib": rss1,
        "rss_per_connection_kib": (rss1 - rss0) / result["connected"],
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_us_per_connect": 1e6 * (cpu1 - cpu0) / result["connected"],
        "loadgen_cpu_s": [b - a for a, b in zip(gen_cpu0, gen_cpu1)],
        "loadgen_rss_bytes": [s["rss"] for s in status],
        "loadavg_after": loadavg(),
    })
    return result


# -- scenarios ----------------------------------------------------------------------------------
def specs(smoke, procs, dm_rate=1.0):
    """Scenario parameters; --smoke shrinks them to seconds. `dm_rate`: scenario 8's msgs/s per client."""
    common = {"procs": procs, "warmup": 0 if smoke else 2, "drain_ms": 3000 if smoke else 15000,
              "quiet_ms": 300 if smoke else 500}
    if smoke:
        return {
            1: dict(common, clients=10, rooms=1, mode="rate", rate=1, duration=1),
            2: dict(common, clients=10, rooms=1, mode="closed", duration=1),
            3: dict(common, clients=20, rooms=4, mode="rate", rate=1, duration=1),
            4: dict(common, clients=200, settle=0.5),
            5: dict(common, clients=10, rooms=1, mode="rate", rate=1, duration=1),
            6: dict(common, clients=10, rooms=2, mode="closed", duration=1),
            7: dict(common, clients=10, rooms=1, mode="rate", rate=4, duration=1, edit_share=0.1, react_share=0.1),
            8: dict(common, clients=20, rooms=10, pairs=True, accounts=True, mode="rate", rate=1, duration=1),
        }
    return {
        1: dict(common, clients=200, rooms=1, mode="rate", rate=1, duration=10),
        2: dict(common, clients=200, rooms=1, mode="closed", duration=10),
        3: dict(common, clients=2000, rooms=200, mode="rate", rate=1, duration=10),
        4: dict(common, clients=10000, settle=3),
        5: dict(common, clients=200, rooms=1, mode="rate", rate=1, duration=10),
        6: dict(common, clients=200, rooms=20, mode="closed", duration=10),
        7: dict(common, clients=200, rooms=1, mode="rate", rate=1, duration=10, edit_share=0.05, react_share=0.05),
        8: dict(common, clients=2000, rooms=1000, pairs=True, accounts=True, mode="rate", rate=dm_rate, duration=10),
    }


# Rows of the table: (metric label, key in the run result, number format).
LATENCY_ROWS = [("latency p50 ms (lower better)", ("latency_ms", "p50"), "{:.2f}"),
                ("latency p99 ms (lower better)", ("latency_ms", "p99"), "{:.2f}")]
TRAFFIC_ROWS = [("server CPU µs/delivery (lower better)", "server_cpu_us_per_delivery", "{:.1f}"),
                ("deliveries/s", "deliveries_per_s", "{:,.0f}")] + LATENCY_ROWS
LOADGEN_ROW = [("loadgen CPU % of a core, busiest process", "loadgen_cpu_pct_max", "{:.0f}")]

SCENARIOS = {
    1: {"name": "fan-out", "title": "1 fan-out",
        "about": "clients in one room, each sending 1 msg/s (open loop)",
        "targets": ["ours", "reference"], "measure": measure_traffic,
        "rows": TRAFFIC_ROWS + [("delivered / expected", "delivery_ratio", "{:.3f}")] + LOADGEN_ROW},
    2: {"name": "saturation", "title": "2 saturation",
        "about": "clients in one room, each sending as fast as its acks come back",
        "targets": ["ours", "reference"], "measure": measure_traffic,
        "rows": [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
                 ("acked msgs/s", "acked_per_s", "{:,.0f}"),
                 ("server CPU µs/delivery (lower better)", "server_cpu_us_per_delivery", "{:.1f}"),
                 ("ack p50 ms (lower better)", ("ack_latency_ms", "p50"), "{:.2f}")] + LOADGEN_ROW},
    3: {"name": "many-rooms", "title": "3 many rooms",
        "about": "clients spread over many rooms, each sending 1 msg/s",
        "targets": ["ours", "reference"], "measure": measure_traffic,
        "rows": LATENCY_ROWS + [("deliveries/s", "deliveries_per_s", "{:,.0f}"),
                                ("server CPU µs/delivery (lower better)", "server_cpu_us_per_delivery", "{:.1f}"),
                                ("delivered / expected", "delivery_ratio", "{:.3f}")] + LOADGEN_ROW},
    4: {"name": "idle", "title": "4 idle",
        "about": "connected clients doing nothing (no room)",
        "targets": ["ours", "reference"], "measure": measure_idle,
        "rows": [("server RSS KiB/connection (lower better)", "rss_per_connection_kib", "{:.1f}"),
                 ("connects/s", "connects_per_s", "{:,.0f}"),
                 ("server CPU µs/connect (lower better)", "server_cpu_us_per_connect", "{:.0f}")]},
    5: {"name": "cluster", "title": "5 cluster (ref = ours, 1 node, PostgreSQL)",
        "about": "scenario 1 with the clients split over 2 nodes + broker (PostgreSQL), "
                 "against one node on PostgreSQL",
        "targets": ["cluster", "single-pg"], "measure": measure_traffic,
        "rows": [("server CPU µs/delivery, all processes (lower better)", "server_cpu_us_per_delivery", "{:.1f}"),
                 ("deliveries/s", "deliveries_per_s", "{:,.0f}")] + LATENCY_ROWS
                + [("delivered / expected", "delivery_ratio", "{:.3f}")]},
    6: {"name": "persistence", "title": "6 persistence",
        "about": "senders spread over rooms (10 per room in the full run), each waiting for its ack; "
                 "acked (committed) messages/s",
        "targets": ["ours", "reference", "ours-pg"], "measure": measure_traffic,
        "rows": None},  # built in table_rows: SQLite and PostgreSQL against the in-memory reference
    7: {"name": "fan-out-events", "title": "7 fan-out, 10% edits/reactions",
        "about": "scenario 1 where some requests are edits of the sender's own last message or react/unreact "
                 "toggles instead of sends (5% each in the full run); messages, edits and reactions are "
                 "deliveries alike, in one order",
        "targets": ["ours", "reference"], "measure": measure_traffic,
        "rows": TRAFFIC_ROWS + [("delivered / expected", "delivery_ratio", "{:.3f}")] + LOADGEN_ROW},
    8: {"name": "dm-pairs", "title": "8 dm pairs",
        "about": "pairs of clients, each pair in its own room, each client sending (open loop); ours: "
                 "accounts (token auth) in direct rooms from open_dm; reference: a room per pair",
        "targets": ["ours", "reference"], "measure": measure_traffic,
        "rows": [("latency p50 ms to the other member (lower better)", ("latency_ms", "p50"), "{:.2f}"),
                 ("latency p99 ms to the other member (lower better)", ("latency_ms", "p99"), "{:.2f}"),
                 ("server CPU µs/message (lower better)", "server_cpu_us_per_ack", "{:.1f}"),
                 ("server CPU % of a core", "server_cpu_pct", "{:.0f}"),
                 ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
                 ("delivered / expected", "delivery_ratio", "{:.3f}"),
                 ("ack p50 ms (lower better)", ("ack_latency_ms", "p50"), "{:.2f}"),
                 ("ack errors", "ack_errors_total", "{:,.0f}"),
                 ("server RSS MiB, all clients in their rooms (lower better)", "server_rss_mib", "{:.0f}")]
                + LOADGEN_ROW},
}


def start_target(bench, spec, target, run_id, state):
    if target == "reference":
        return bench.start_reference()
    if target == "ours" and spec.get("accounts"):
        url = bench.sqlite_url()
        tokens, secs = bench.make_accounts(url, f"b{run_id}u", spec["clients"])
        deployment = bench.start_ours(url, "ours", SECRET_KEY=bench.secret_key)
        deployment.tokens_file, deployment.setup = tokens, {"accounts_secs": secs}
        return deployment
    if target == "ours":
        return bench.start_ours(bench.sqlite_url(), "ours")
    if target in ("ours-pg", "single-pg"):
        if "pg" not in state:
            state["pg"] = bench.postgres()
        return bench.start_ours(state["pg"].url, target, CHAT_NODE_ID=f"bench{run_id}-single")
    if target == "cluster":
        if "pg" not in state:
            state["pg"] = bench.postgres()
        return bench.start_cluster(state["pg"].url, run_id)
    raise ValueError(target)


def run_scenario(bench, number, spec, rounds):
    scenario = SCENARIOS[number]
    log(f"scenario {number} {scenario['name']}: {spec['clients']} clients; {scenario['about']}")
    outcome = {"name": scenario["name"], "about": scenario["about"], "params": spec,
               "runs": {t: [] for t in scenario["targets"]}, "errors": {t: [] for t in scenario["targets"]},
               "skipped": {}}
    if bench.loadgen_reason:
        outcome["skipped"] = {t: bench.loadgen_reason for t in scenario["targets"]}
        return outcome
    if number == 5 and bench.pg_reason:
        outcome["skipped"] = {t: bench.pg_reason for t in scenario["targets"]}
        log(f"  skipped: {bench.pg_reason}")
        return outcome
    state = {}
    for round_index in range(rounds):
        for target in scenario["targets"]:
            if target in outcome["skipped"]:
                continue
            deployment = None
            started = time.monotonic()
            try:
                deployment = start_target(bench, spec, target, bench.run_counter + 1, state)
                result = scenario["measure"](bench, deployment, spec)
                result["round"] = round_index + 1
                outcome["runs"][target].append(result)
                log(f"  round {round_index + 1} {target}: {brief(result)} ({time.monotonic() - started:.0f}s)")
            except Skip as exc:
                outcome["skipped"][target] = str(exc)
                log(f"  {target} skipped: {exc}")
            except Exception as exc:  # BenchError, or a bug: record it, go on with the next run
                if not isinstance(exc, BenchError):
                    exc = BenchError("".join(traceback.format_exception(exc))[-4000:])
                outcome["errors"][target].append(str(exc)[:4000])
                log(f"  round {round_index + 1} {target} FAILED: {str(exc)[:1500]}")
                if deployment is not None:
                    tail = "\n".join(deployment.output().splitlines()[-15:])
                    log(f"  last server output:\n{tail}")
            finally:
                if deployment is not None:
                    deployment.stop()
            time.sleep(bench.args.pause)
    outcome["medians"] = {t: medians(runs) for t, runs in outcome["runs"].items() if runs}
    return outcome


def brief(result):
    if "rss_per_connection_kib" in result:
        return (f"{result['connected']} connected, {result['connects_per_s'] or 0:,.0f} connects/s, "
                f"{result['rss_per_connection_kib']:.1f} KiB/conn")
    lat = result["latency_ms"]
    return (f"{result['deliveries']:,} deliveries ({result['deliveries_per_s']:,.0f}/s, "
            f"ratio {result['delivery_ratio'] or 0:.3f}), {result['acked']:,} acked, "
            f"p50 {fmt_ms(lat.get('p50'))} p99 {fmt_ms(lat.get('p99'))} ms, "
            f"server CPU {result['server_cpu_pct']:.0f}% "
            f"({result['server_cpu_us_per_delivery'] or 0:.1f} µs/delivery), "
            f"loadgen CPU {result['loadgen_cpu_pct_max']:.0f}% max"
            + requests_brief(result)
            + (f", ack errors {result['ack_errors']}" if result["ack_errors"] else "")
            + (f", {result['sockets_closed_by_server']} sockets closed by the server"
               if result["sockets_closed_by_server"] else "")
            + (f", {result['out_of_order']} out of order, {result['gaps']} gaps"
               if result["out_of_order"] or result["gaps"] else ""))


def requests_brief(result):
    """The mix of requests when it is not only sends: ", requests: 1,800 send, 100 edit, ..."."""
    requests = result["requests"]
    if not any(n for kind, n in requests.items() if kind != "send"):
        return ""
    counts = ", ".join(f"{n:,} {kind}" for kind, n in requests.items())
    no_event = result["acked_no_event"]
    return f", requests: {counts}" + (f" ({no_event} acked without event)" if no_event else "")


def fmt_ms(value):
    return "-" if value is None else f"{value:.2f}"


def lookup(result, key):
    if isinstance(key, tuple):
        value = result
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return result.get(key)


def medians(runs):
    """Median of every numeric figure over the rounds (nested one level for latencies)."""
    out = {}
    keys = set().union(*(r.keys() for r in runs))
    for key in sorted(keys):
        values = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
        elif all(isinstance(v, dict) for v in values) and key.endswith("_ms"):
            inner = {}
            for sub in ("p50", "p90", "p99", "max", "mean"):
                subs = [v.get(sub) for v in values]
                if all(isinstance(s, (int, float)) for s in subs):
                    inner[sub] = statistics.median(subs)
            out[key] = inner
    return out


# -- output ---------------------------------------------------------------------------------------
def table_rows(results):
    rows = []
    for number, outcome in results.items():
        scenario = SCENARIOS[int(number)]
        med = outcome.get("medians", {})
        title = scenario["title"]
        if int(number) == 6:
            spec_rows = [("SQLite: acked msgs/s (ref in memory)", "ours", "acked_per_s", "{:,.0f}"),
                         ("SQLite: ack p50 ms (lower better)", "ours", ("ack_latency_ms", "p50"), "{:.2f}"),
                         ("SQLite: ack p99 ms (lower better)", "ours", ("ack_latency_ms", "p99"), "{:.2f}"),
                         ("PostgreSQL: acked msgs/s (ref in memory)", "ours-pg", "acked_per_s", "{:,.0f}"),
                         ("PostgreSQL: ack p50 ms (lower better)", "ours-pg", ("ack_latency_ms", "p50"), "{:.2f}"),
                         ("PostgreSQL: ack p99 ms (lower better)", "ours-pg", ("ack_latency_ms", "p99"), "{:.2f}")]
            for label, ours_target, key, fmt in spec_rows:
                rows.append(make_row(title, label, med.get(ours_target), med.get("reference"), key, fmt,
                                     outcome, ours_target, "reference"))
            continue
        ours_target, ref_target = scenario["targets"]
        for label, key, fmt in scenario["rows"]:
            rows.append(make_row(title, label, med.get(ours_target), med.get(ref_target), key, fmt,
                                 outcome, ours_target, ref_target))
    return rows


def make_row(title, label, ours, ref, key, fmt, outcome, ours_target, ref_target):
    def cell(figures, target):
        if figures is None:
            reason = outcome["skipped"].get(target)
            if reason:
                return "skipped"
            return "failed" if outcome["errors"].get(target) else "-"
        value = lookup(figures, key)
        return "-" if value is None else fmt.format(value)

    ours_value = lookup(ours, key) if ours else None
    ref_value = lookup(ref, key) if ref else None
    ratio = f"{ours_value / ref_value:.2f}" if ours_value is not None and ref_value else "-"
    return [title, label, cell(ours, ours_target), cell(ref, ref_target), ratio]


def markdown(rows, results, info):
    lines = ["| scenario | metric | ours | reference | ratio ours/reference |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    for number, outcome in results.items():
        for target, reason in outcome["skipped"].items():
            notes.append(f"- scenario {number} {target} skipped: {reason}")
        for target, errors in outcome["errors"].items():
            if errors:
                notes.append(f"- scenario {number} {target}: {len(errors)} failed run(s): {errors[0][:300]}")
    header = (f"Chat benchmarks, {info['date']}: medians of {info['rounds']} round(s)"
              f"{' (SMOKE: tiny numbers, not a measurement)' if info['smoke'] else ''}; "
              f"{info['machine']['nproc']} CPUs ({info['machine']['cpu_model']}), "
              f"load average before {info['machine'].get('loadavg_start')}.")
    params = []
    for number, outcome in results.items():
        p = outcome["params"]
        bits = [f"{p['clients']} clients"]
        if p.get("pairs"):
            bits.append(f"{p['clients'] // 2} pairs, {p['rate']:g} msg/s per client")
        elif "rooms" in p:
            bits.append(f"{p['rooms']} room(s)")
        if "duration" in p:
            bits.append(f"{p['duration']} s window" + (f" after {p['warmup']} s warm-up" if p.get("warmup") else ""))
        if p.get("edit_share") or p.get("react_share"):
            bits.append(f"{p.get('edit_share', 0):.0%} edits and {p.get('react_share', 0):.0%} reaction toggles")
        params.append(f"- scenario {number} ({outcome['name']}): {', '.join(bits)}; {outcome['about']}")
    return "\n".join([header, "", *lines, "", *params, *([""] + notes if notes else [])]) + "\n"


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_total_kib": mem, "kernel": platform.release(),
            "platform": platform.platform(), "loadavg_start": loadavg()}


def versions(bench):
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("python-socketio", "python-engineio", "gevent", "gevent-websocket", "Django", "psycopg", "pyzmq"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    if bench.node:
        try:
            out["node"] = subprocess.run([bench.node, "--version"], capture_output=True, text=True,
                                         timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out["node"] = None
    for label, path in (("reference socket.io", BENCH / "reference" / "node_modules" / "socket.io"),
                        ("reference engine.io", BENCH / "reference" / "node_modules" / "engine.io"),
                        ("reference ws", BENCH / "reference" / "node_modules" / "ws"),
                        ("loadgen ws", BENCH / "node_modules" / "ws")):
        try:
            out[label] = json.loads((path / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            out[label] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def output_paths(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    day = datetime.date.today().isoformat()
    stem = out_dir / day
    if stem.with_suffix(".json").exists():  # several runs a day: keep the earlier ones
        stem = out_dir / f"{day}-{time.strftime('%H%M%S')}"
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Benchmark the chat server against a Node.js Socket.IO reference.")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6,7,8",
                        help="comma-separated scenario numbers (1 fan-out, 2 saturation, 3 many rooms, 4 idle, "
                             "5 cluster, 6 persistence, 7 fan-out with edits and reactions, 8 direct message "
                             "pairs); default all")
    parser.add_argument("--rounds", type=int, default=None, help="A/B rounds per scenario (default 2; 1 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks that everything runs, in seconds")
    parser.add_argument("--out", default=str(BENCH / "results"), help="folder of the .json and .md results")
    parser.add_argument("--loadgen-procs", type=int, default=2, help="load generator processes per run (default 2)")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="connections each load generator opens at once (default 100)")
    parser.add_argument("--pause", type=float, default=None, help="seconds between runs (default 2; 0.2 with --smoke)")
    parser.add_argument("--dm-rate", type=float, default=1.0, metavar="R",
                        help="scenario 8: messages per second of each client (default 1: 2,000 msg/s in all)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="job workers (manage.py db_worker) beside each of our single nodes, as `make run` "
                             "starts; their CPU and RSS count as ours (default 1)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL parts (5 and 6 on PG)")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="profile our server processes with py-spy during each measured traffic window "
                             "(raw collapsed stacks into DIR; adds some overhead, so figures are not comparable)")
    parser.add_argument("--py-spy-rate", type=int, default=100, metavar="HZ", help="py-spy samples per second")
    args = parser.parse_args(argv)
    try:
        args.scenario_list = sorted({int(x) for x in args.scenarios.split(",") if x.strip()})
    except ValueError:
        parser.error("--scenarios takes numbers like 1,3")
    unknown = [n for n in args.scenario_list if n not in SCENARIOS]
    if unknown or not args.scenario_list:
        parser.error(f"unknown scenario(s) {unknown}; choose from 1-{max(SCENARIOS)}")
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 2
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1 to 20")
    if args.pause is None:
        args.pause = 0.2 if args.smoke else 2.0
    if not 0.05 <= args.dm_rate <= 20:
        parser.error("--dm-rate must be 0.05 to 20")
    if not 1 <= args.loadgen_procs <= 16:
        parser.error("--loadgen-procs must be 1 to 16")
    return args


def stop_on_sigterm(signum, frame):
    """SIGTERM (a timeout, `kill`) ends the run like Ctrl-C: the finally blocks stop every
    server, load generator and database this run started."""
    raise SystemExit(f"stopped by signal {signum}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    started = datetime.datetime.now(datetime.timezone.utc)
    bench = Bench(args)
    results = {}
    try:
        bench.prepare()
        all_specs = specs(args.smoke, args.loadgen_procs, args.dm_rate)
        info = {"date": started.date().isoformat(), "started": started.isoformat(), "smoke": args.smoke,
                "rounds": args.rounds, "command": [sys.executable, *sys.argv], "machine": machine_info(),
                "versions": versions(bench), "ours_env": OURS_ENV, "reference_env": REFERENCE_ENV,
                "skipped": {"loadgen": bench.loadgen_reason, "reference": bench.reference_reason,
                            "postgres": bench.pg_reason}}
        for number in args.scenario_list:
            results[str(number)] = run_scenario(bench, number, all_specs[number], args.rounds)
    finally:
        bench.close()
    info["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    info["machine"]["loadavg_end"] = loadavg()
    rows = table_rows(results)
    table = markdown(rows, results, info)
    json_path, md_path = output_paths(Path(args.out))
    write_atomic(json_path, json.dumps({**info, "scenarios": results, "table": rows}, indent=1, default=str) + "\n")
    write_atomic(md_path, table)
    print()
    print(table)
    log(f"results: {json_path} and {md_path}")
    failed = [f"{n}/{t}" for n, o in results.items() for t, errors in o["errors"].items()
              if errors and not o["runs"].get(t)]
    if failed:
        log(f"no successful run for: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
