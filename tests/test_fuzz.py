"""Fuzzing a real server process over raw websockets (Engine.IO v4 / Socket.IO v5 framing).

`test_fuzz_keeps_server_and_chat_healthy` sends well over 10,000 malformed, random and
oversized packets on several raw connections (random bytes, invalid UTF-8, garbage text,
wrong packet types, truncated JSON, deep nesting, payloads at and over
CHAT_MAX_PAYLOAD_BYTES, binary attachments, wrong types for every event, and
hypothesis-generated payloads per event) while two well-behaved python-socketio clients
chat in the same room. A connection the server drops after protocol garbage is reopened
under a fresh name; an oversized frame must close that connection only. At the end:

- the chatters got every message of the room exactly once, in id order;
- every ack of a well-formed event is `{ok: true, ...}` or `{ok: false, error: {code,
  message}}` with a documented code, never `internal` and never exception text (payloads
  built to be invalid must be refused), and no well-formed event goes unanswered;
- no connection is dropped after well-formed events only;
- the process is alive, `/healthz` answers 200, RSS stays flat between the warm-up round
  and the end, and the server printed no Python traceback.

The tests after it pin down, one payload each, the server bugs the fuzz ran into.
"""
import json
import random
import re
import string
import threading
import time
from collections import Counter, deque

import requests
import websocket
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chat import protocol
from tests.chatclient import ChatClient, unique
from tests.serverproc import wait_until

ENV = {"CHAT_RATE_LIMITS": "off", "CHAT_MAX_CONNECTIONS_PER_IP": "0"}
ROOM = "fuzzroom"
MAX_PAYLOAD = 65536  # CHAT_MAX_PAYLOAD_BYTES default
FUZZERS = 4
WINDOW = 64  # unanswered events per fuzz connection before the sender waits
ACK_TIMEOUT = 10
MAIN_ROUNDS = 3
EXAMPLES_PER_EVENT = 220  # hypothesis examples per event per round
MIN_PACKETS = 10_000

# Every error code chat/protocol.py defines (the documented ones).
KNOWN_CODES = {value for key, value in vars(protocol).items()
               if key.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+", value)}
EXCEPTION_TEXT = re.compile(r"Traceback|Exception|Error\(|Error:|NoneType|object has no attribute|"
                            r"object is not|not subscriptable|unsupported operand|\bFile \"")
ACK = re.compile(r"43(\d+)(.*)", re.S)
QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")
HOLDS_ATTACHMENTS = re.compile(r"4[56]")  # a binary event or ack: later packets become its attachments
# Events whose names reach the server's lifecycle handlers (see the tests at the end): sent in
# the fuzz as garbage without expectations, checked precisely by their own tests.
LIFECYCLE = {"connect", "disconnect", "*"}


def ws_url(server):
    return f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def close_all(*clients, wait=3):
    """Disconnect ChatClients in parallel, waiting at most `wait` seconds: a server whose
    writer is stuck never completes the disconnect."""
    closers = [threading.Thread(target=client.close, daemon=True) for client in clients]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(wait)


def mb(value):
    return "?" if value is None else f"{value:.0f}"


def tracebacks(output):
    """Distinct tracebacks in a server's output: {signature: count}, signature = the last
    frame line and the exception line."""
    found = Counter()
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        where, j = "?", i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            if lines[j].strip().startswith("File "):
                where = lines[j].strip()
            j += 1
        exc = lines[j] if j < len(lines) else "?"
        exc = re.sub(r"\d+", "N", QUOTED.sub("'...'", exc))  # one line per kind of failure
        found[f"{where} -> {exc[:160]}"] += 1
    return found


class Report:
    """Problems by category (count + first examples) and statistics, shared by all threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.problems = {}
        self.stats = Counter()
        self.stalled = False  # the server stopped answering well-formed events

    def problem(self, category, detail):
        with self.lock:
            count, examples = self.problems.get(category, (0, []))
            if len(examples) < 3:
                examples.append(str(detail)[:300])
            self.problems[category] = (count + 1, examples)

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def check_ack(self, expect, event, args, frame):
        """expect: 'invalid' (must be refused) or 'any' (accepted or refused)."""
        where = f"{frame[:160]!r} -> {json.dumps(args)[:200]}"
        if not isinstance(args, list):
            return self.problem("ack is not a JSON array", where)
        if not args:
            if event == "typing" and expect == "any":
                return self.count("ack ok")
            return self.problem("empty ack (no {ok: ...} value)", where)
        reply = args[0]
        if len(args) != 1 or not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            return self.problem("ack is not one {ok: bool, ...} object", where)
        if reply["ok"]:
            if expect == "invalid":
                return self.problem("invalid payload accepted", where)
            return self.count("ack ok")
        error = reply.get("error")
        if not (isinstance(error, dict) and isinstance(error.get("code"), str)
                and isinstance(error.get("message"), str)):
            return self.problem("refusal without error {code, message}", where)
        code = error["code"]
        self.count(f"code {code}")
        if code == protocol.INTERNAL:
            self.problem("internal error ack (a server bug)", where)
        elif code not in KNOWN_CODES:
            self.problem("undocumented error code", where)
        if EXCEPTION_TEXT.search(error["message"]):
            self.problem("exception text in an error message", where)


class Link:
    """One raw websocket connection, signed in and joined to ROOM; a thread reads it."""

    def __init__(self, url, name, report, headers=()):
        self.report = report
        self.name = name
        self.cond = threading.Condition()
        self.pending = {}  # ack id -> (kind, event, frame); kind: invalid, any, probe or call
        self.replies = {}  # ack id -> ack arguments, for `call`
        self.next_id = 0
        self.closed = False
        self.expect_drop = False  # an oversized frame was sent: the server must close
        self.garbage_unconfirmed = 0  # garbage frames since the last answered probe
        self.recent = deque(maxlen=6)
        self.ws = websocket.create_connection(url, timeout=15, enable_multithread=True, header=list(headers))
        opening = self.ws.recv()
        assert opening.startswith("0{"), opening
        self.ws.send("40" + json.dumps({"name": name}))
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
            elif frame.startswith("40{"):
                break
            elif frame.startswith("44"):
                raise AssertionError(f"fuzz connection {name} refused: {frame}")
        threading.Thread(target=self._read, daemon=True, name=f"read-{name}").start()
        reply = self.call("join", {"room": ROOM})
        assert reply and reply[0].get("ok"), f"{name} could not join {ROOM}: {reply}"

    def _read(self):
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except Exception:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode != websocket.ABNF.OPCODE_TEXT:
                self.report.problem("binary frame from the server", data[:80])
                continue
            frame = data.decode("utf-8", "replace")
            if frame == "2":
                try:
                    self.ws.send("3")
                except Exception:
                    break
            elif frame.startswith("43"):
                self._ack(frame)
            elif frame.startswith("42"):
                self.report.count("events received")
            elif frame == "1" or frame.startswith(("41", "44")):
                self.report.count(f"server sent {frame[:2]}")
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _ack(self, frame):
        match = ACK.match(frame)
        ack_id = int(match.group(1))
        try:
            args = json.loads(match.group(2))
        except ValueError:
            args = match.group(2)
        with self.cond:
            entry = self.pending.pop(ack_id, None)
            self.cond.notify_all()
        if entry is None:
            # garbage can carry an ack id ("425[null]"): the server may answer it, but only
            # with an error value
            error = args[0].get("error") if isinstance(args, list) and args and isinstance(args[0], dict) else None
            if isinstance(error, dict) and args[0].get("ok") is False and {"code", "message"} <= set(error):
                self.report.count("error acks for ids inside garbage")
            else:
                self.report.problem("ack for an id never sent", frame[:200])
        elif entry[0] == "probe":
            with self.cond:
                self.garbage_unconfirmed = 0
        elif entry[0] == "call":
            with self.cond:
                self.replies[ack_id] = args
                self.cond.notify_all()
        else:
            self.report.check_ack(entry[0], entry[1], args, entry[2])

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    def raw(self, frame, opcode=None):
        """Send one frame; False when the connection is gone."""
        self.recent.append(repr(frame[:100]) + (f" ({len(frame)} bytes)" if len(frame) > 100 else ""))
        try:
            if opcode is None:
                opcode = websocket.ABNF.OPCODE_BINARY if isinstance(frame, bytes) else websocket.ABNF.OPCODE_TEXT
            self.ws.send(frame, opcode=opcode)
            return True
        except Exception:
            with self.cond:
                self.closed = True
            return False

    def emit(self, args, expect, binary_attachments=(), header=None):
        """Send event `args` (a list) with an ack id; `expect` is 'invalid' (must be refused) or
        'any'. With `header` (the attachment count) it is a BINARY_EVENT followed by
        `binary_attachments`."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.closed or len(self.pending) < WINDOW, ACK_TIMEOUT):
                self._stalled()
            ack_id = self._new_id()
            frame = (f"42{ack_id}" if header is None else f"45{header}-{ack_id}") + json.dumps(args)
            self.pending[ack_id] = (expect, args[0] if args else None, frame)
        sent = self.raw(frame)
        for attachment in binary_attachments:
            sent = sent and self.raw(attachment)
        return sent

    def call(self, event, data, timeout=ACK_TIMEOUT):
        """A synchronous request of our own (not counted, not checked by the fuzz rules);
        returns the ack's arguments, or None without an answer."""
        return self.call_args([event, data], timeout)

    def call_args(self, args, timeout=ACK_TIMEOUT):
        with self.cond:
            ack_id = self._new_id()
            self.pending[ack_id] = ("call", args[0] if args else None, "")
        self.raw(f"42{ack_id}" + json.dumps(args))
        with self.cond:
            self.cond.wait_for(lambda: self.closed or ack_id in self.replies, timeout)
            self.pending.pop(ack_id, None)
            return self.replies.pop(ack_id, None)

    def probe(self, timeout=ACK_TIMEOUT):
        """Wait until the server answered everything sent so far; False if it closed or
        never answered."""
        with self.cond:
            ack_id = self._new_id()
            self.pending[ack_id] = ("probe", "probe", "")
        if not self.raw(f'42{ack_id}["fuzz-probe"]'):
            return False
        with self.cond:
            if not self.cond.wait_for(lambda: self.closed or ack_id not in self.pending, timeout):
                self.report.problem("no answer to a probe: the connection hangs", list(self.recent))
            return self.pending.pop(ack_id, None) is None and not self.closed

    def settle(self):
        """Wait for every outstanding ack; unanswered ones on a live connection are problems."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.closed or not self.pending, ACK_TIMEOUT):
                self._stalled()

    def _stalled(self):
        missing = [frame[:160] for kind, _, frame in self.pending.values() if kind in ("invalid", "any")]
        if missing:
            self.report.problem("well-formed events never answered", f"{len(missing)} on {self.name}: {missing[:3]}")
            self.report.stalled = True
        self.pending.clear()

    def wait_closed(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.closed, timeout)

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


class FuzzAborted(Exception):
    """The server stopped accepting connections: fuzzing cannot go on."""


class Fuzzer:
    """A fuzz connection slot: reopens its Link (under a fresh name) whenever it is gone."""

    def __init__(self, run, index):
        self.run = run
        self.index = index
        self.generation = 0
        self.link = None

    def live(self):
        if self.run.report.stalled:
            raise FuzzAborted("the server stopped answering well-formed events (see 'never answered')")
        link = self.link
        if link is not None and link.closed:
            self._dropped(link)
            link = None
        if link is None:
            self.generation += 1
            try:
                link = self.link = Link(self.run.url, f"fz{self.index}g{self.generation}", self.run.report)
            except Exception as exc:
                raise FuzzAborted(f"could not open fuzz connection {self.index} #{self.generation}: {exc!r}; "
                                  f"last frames of the previous one: {list(self.run.last_recent)}") from None
            self.run.report.count("fuzz connections opened")
        return link

    def _dropped(self, link):
        report = self.run.report
        report.count("connections dropped by the server")
        with link.cond:
            expected = link.garbage_unconfirmed > 0 or link.expect_drop
            missing = [frame for kind, _, frame in link.pending.values() if kind in ("invalid", "any")]
        self.run.last_recent = link.recent
        if not expected:
            report.problem("connection dropped after well-formed events only", list(link.recent))
        elif missing:
            report.count("acks lost with a garbage-dropped connection", len(missing))
        link.close()
        self.link = None

    def recycle(self):
        """Close on purpose (after packets that change the session's state)."""
        if self.link is not None:
            self.link.settle()
            self.link.close()
            self.link = None

    # -- what the generators call ------------------------------------------------------------
    def event(self, args, expect):
        self.run.sent += 1
        self.live().emit(args, expect)

    def binary_event(self, args, attachments, expect, declared=None):
        self.run.sent += 1 + len(attachments)
        self.live().emit(args, expect, binary_attachments=attachments,
                         header=len(attachments) if declared is None else declared)

    def garbage(self, frame, opcode=None, drops=False, probe=True):
        """A frame with no answer to check. `drops`: likely to make the server close. `probe`:
        False between a binary event's header and its attachments."""
        link = self.live()
        if drops:
            link.settle()
        self.run.sent += 1
        with link.cond:
            link.garbage_unconfirmed += 1
        if not link.raw(frame, opcode):
            return
        if not probe:
            return
        if isinstance(frame, str) and HOLDS_ATTACHMENTS.match(frame):
            self.recycle()  # the server now takes the next packets as attachments
            return
        if drops or link.garbage_unconfirmed >= 25:
            if not link.probe() and drops:
                self.run.report.count("dropped after " + describe(frame))

    def oversized(self, frame):
        """Over CHAT_MAX_PAYLOAD_BYTES: this connection (only) must be closed."""
        link = self.live()
        link.settle()
        link.expect_drop = True
        self.run.sent += 1
        link.raw(frame)
        if not link.wait_closed(10):
            self.run.report.problem("oversized frame did not close the connection", f"{len(frame)} bytes")
            link.expect_drop = False
            link.probe()
        self.run.report.count("oversized frames")


def describe(frame):
    if isinstance(frame, bytes):
        return "binary or invalid UTF-8 frame"
    return f"text frame starting {frame[:1]!r}" if frame else "empty text frame"


class FuzzRun:
    def __init__(self, server):
        self.url = ws_url(server)
        self.report = Report()
        self.sent = 0
        self.fuzzers = [Fuzzer(self, i) for i in range(FUZZERS)]
        self.last_recent = ()
        self._turn = 0

    def next(self):
        self._turn += 1
        return self.fuzzers[self._turn % len(self.fuzzers)]

    def settle(self):
        for fuzzer in self.fuzzers:
            if fuzzer.link is not None and not fuzzer.link.closed:
                fuzzer.link.settle()
                fuzzer.link.probe()


# --- payloads ---------------------------------------------------------------------------------
BAD_OBJECTS = [None, 5, -1, 1.5, True, "fuzzroom", "", [], [ROOM], [{"room": ROOM}]]
BAD_ROOMS = [None, 5, 1.5, True, "", "A", "Fuzzroom", "a" * 65, " fuzzroom", "fuzz room", "fuzzroom\n", "../etc",
             "caf\u00e9", "\u0000", [ROOM], {"$ne": ""}, {"name": ROOM}]
BAD_IDS = [-1, 2**63, -(2**63), 10**30, 1.5, 1e3, float("inf"), "1", "", True, False, [1], {"id": 1}]
BAD_LIMITS = [0, -1, 101, 10**6, 2**64, 1.0, 50.5, "10", True, False, [10], {}]
BAD_TEXTS = [None, 5, 1.5, True, False, "", " ", "\n\t \u3000", "x" * 4001, ["hi"], {"text": "hi"}]
BAD_NONCES = ["", "n" * 65, 5, 1.5, True, ["n"], {"n": 1}]
BAD_ACTIVE = [None, 0, 1, "true", "yes", [], {}, 1.5]
BAD_EMOJI = [None, 5, "", "x", ":+1:", "👍👍", "👍 ", " 👍", "\u200d", "\ufe0f", "\U0001F44D\u0000",
             "👍" * 40, ["👍"], {"emoji": "👍"}, True]
BAD_TOPICS = [None, 5, 1.5, True, "t" * 251, ["t"], {"topic": "t"}, "\u0000"]
CHANGES = ("edit", "delete", "react", "unreact", "set_topic")  # room events (chat.roomlog)


def invalid_cases():
    """Well-formed events with payloads the protocol must refuse: (args, note)."""
    cases = []
    for event in ("join", "leave", "send", "history", "typing"):
        cases += [[event, bad] for bad in BAD_OBJECTS]
        cases.append([event])  # no payload at all
        cases += [[event, {"room": bad, "text": "hi", "active": True}] for bad in BAD_ROOMS]
        cases.append([event, {"room": 5}, "extra", {"args": 1}])
    cases += [["rooms", bad] for bad in (5, -1, 1.5, True, False, "x", "", [], [{}])]
    cases += [["join", {"room": ROOM, "since": bad}] for bad in BAD_IDS]
    cases += [["history", {"room": ROOM, "before": bad}] for bad in BAD_IDS]
    cases += [["history", {"room": ROOM, "limit": bad}] for bad in BAD_LIMITS]
    cases += [["send", {"room": ROOM, "text": bad}] for bad in BAD_TEXTS]
    cases += [["send", {"room": ROOM}], ["send", {"text": "hi"}], ["send", {"room": "never-joined", "text": "hi"}]]
    cases += [["send", {"room": ROOM, "text": "hi", "nonce": bad}] for bad in BAD_NONCES]
    cases += [["typing", {"room": ROOM, "active": bad}] for bad in BAD_ACTIVE]
    cases += [["typing", {"room": "never-joined", "active": True}]]
    cases += change_cases()
    cases += [[name, {}] for name in ("nope", "JOIN", "Send", "", " ", "x" * 5000, "__proto__", "constructor",
                                       "welcome", "message", "presence", "kicked", "connect_error", "join ", "\u0000")]
    cases += [[5, {}], [1.5]]  # numeric event names: valid packets (as in Node's parser), answered unknown_event
    return cases


def change_cases():
    """Room events with payloads to refuse (a valid-looking one may also be refused because
    the message is not there: every answer must be a documented error)."""
    cases = []
    for event in CHANGES:
        cases += [[event, bad] for bad in BAD_OBJECTS]
        cases.append([event])
        cases += [[event, {"room": bad, "id": 1, "text": "hi", "emoji": "👍", "topic": "t"}] for bad in BAD_ROOMS]
    for event in CHANGES[:4]:
        cases += [[event, {"room": ROOM, "id": bad, "text": "hi", "emoji": "👍"}] for bad in BAD_IDS]
        cases += [[event, {"room": ROOM, "id": 10**15, "text": "hi", "emoji": "👍"}],
                  [event, {"room": "never-joined", "id": 1, "text": "hi", "emoji": "👍"}]]
    cases += [["edit", {"room": ROOM, "id": 1, "text": bad}] for bad in BAD_TEXTS]
    cases += [[event, {"room": ROOM, "id": 1, "emoji": bad}] for event in ("react", "unreact") for bad in BAD_EMOJI]
    cases += [["set_topic", {"room": ROOM, "topic": bad}] for bad in BAD_TOPICS]
    cases += [["send", {"room": ROOM, "text": "hi", "reply_to": bad}] for bad in [*BAD_IDS, 10**15]]
    return cases


def random_printable(rng, size):
    return "".join(rng.choice(string.printable) for _ in range(size))


def garbage_round(run, rng):
    """Protocol-level garbage; returns nothing, counts what it sends."""
    F = run.next
    text_op = websocket.ABNF.OPCODE_TEXT
    # Engine.IO level: not a packet at all. The server may drop the connection.
    for frame in ["", "x", "hello", "{}", "[]", " 42[\"rooms\"]", "-1", "\u0000", "b", "b!!notbase64", "\ufeff4"]:
        F().garbage(frame, drops=True)
    for _ in range(8):
        first = rng.choice("abcdefghijklmnopqrstuvwxyz{[\" ")
        F().garbage(first + random_printable(rng, rng.randint(0, 40)), drops=True)
    for frame in [b"\xff\xfe", b"42[\"send\",\"\xc3\x28\"]", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"4\x80"]:
        F().garbage(frame, opcode=text_op, drops=True)  # invalid UTF-8 in a text frame
    F().garbage("1", drops=True)  # Engine.IO CLOSE
    # Socket.IO v5: an EVENT payload must be an array starting with a string or number name.
    for frame in ['42[true,{}]', "42[false]", '42[null,{}]', '42[{"a":1}]', "42{}", "42[]"]:
        F().garbage(frame, drops=True)
    # Engine.IO packet types a client should not send, or with odd data.
    for frame in ["0", "0{}", "2", "2probe", "3", "3probe", "5", "6", "7", "8", "9", "4", "bAAAA", "bNDI="]:
        F().garbage(frame)
    # Socket.IO level garbage inside an Engine.IO message.
    fixed = ["4x", "4{", "47", "48[]", "49", "44{}", "44", "43", "43999[]", "43x", "46", "461-0[]", "42", "42[",
             '42["send"', '42["send",{"room":"fuzz', '421["join",{', "42null", '42"str"', "42{}", "425", "42[]",
             "42[1]", "42[null]", "42[{}]", "42[[]]", "42[true,{}]", '42[{"a":1},{}]', '42[["join"],{}]',
             '42/nsp,["join",{}]', '42/,["x"]', "40/nope,{}", "41/nope,", "4" + "9" * 200,
             "42" + "9" * 101 + '["rooms"]', '42["join",' + "9" * 5000 + "]",
             '42["send",{"room":"fuzzroom","text":"\\ud8"}]',
             '42["send",{"room":"fuzzroom","text":"\\x41"}]', "4512345678901-[\"send\"]", '42["join",{"room":"a"}',
             '42["join",{"room":"fuzzroom"}]]]', '42["join",{"room":"fuzzroom"}]garbage']
    for frame in fixed:
        F().garbage(frame)
    for _ in range(150):
        F().garbage("4" + random_printable(rng, rng.randint(0, 60)))
    for _ in range(150):
        event = rng.choice(["join", "send", "history", "typing", "rooms", "leave", "x"])
        whole = f"42{rng.randint(1, 10**6)}" + json.dumps([event, {"room": ROOM, "text": random_printable(rng, 30)}])
        F().garbage(whole[:rng.randint(2, len(whole) - 1)])  # truncated JSON
    # Binary frames: random bytes, and bytes that look like packets.
    for _ in range(300):
        F().garbage(rng.randbytes(rng.randint(1, 2000)))
    for frame in [b"4", b"42", b'42["rooms"]', b'421["rooms"]', b"\x04" + b'2["rooms"]', b"\x00" * 100, b"-"]:
        F().garbage(frame)
    # Deep nesting.
    deep_list = "[" * 10_000 + "]" * 10_000
    deep_dict = '{"a":' * 10_000 + "1" + "}" * 10_000
    for frame in ['42["join",' + deep_list + "]", '421["history",' + deep_list + "]", '42["send",' + deep_dict + "]",
                  '42[' + deep_list + "]", "42" + deep_list]:
        F().garbage(frame)
    # Binary attachments that do not match their placeholders.
    placeholder = {"_placeholder": True, "num": 0}
    for header, attachments in [
        ('451-["send",{"_placeholder":true,"num":5}]', [b"\x01"]),
        ('451-["send",{"_placeholder":true,"num":"0"}]', [b"\x01"]),
        ('451-["send",{"_placeholder":true,"num":-7}]', [b"\x01"]),
        ('451-["send",{"_placeholder":true,"num":null}]', [b"\x01"]),
        ('451-["send",' + "[" * 600 + json.dumps(placeholder) + "]" * 600 + "]", [b"\x01"]),
        ("451-", [b"\x01"]),
        ('451-"x"', [b"\x01"]),
        ('461-77[{"_placeholder":true,"num":0}]', [b"\x01"]),  # binary ack nobody asked for
    ]:
        fuzzer = F()
        fuzzer.garbage(header, probe=False)
        for attachment in attachments:
            fuzzer.garbage(attachment, probe=False)
        fuzzer.recycle()  # a failed reconstruction leaves the connection expecting attachments
    # Packets that change the session's state: sent, then the connection is replaced.
    for frame in ["41", "40", '40{"name":"fzother"}', '40{"token":5}', "4599-[\"send\",{}]",
                  '42["disconnect"]', '42["connect",{"REMOTE_ADDR":"203.0.113.7"},{"name":"fzrenamed"}]',
                  '42["connect","environ",null]', '42["*"]']:
        fuzzer = F()
        fuzzer.garbage(frame, probe=False)
        fuzzer.recycle()


def structured_round(run, rng):
    """Well-formed events: invalid payloads (must be refused), sizes at and over the limit,
    well-formed binary attachments."""
    for args in invalid_cases():
        run.next().event(args, "invalid")
    # Exactly at the payload limit (accepted, refused as too long) and just over it (closed).
    prefix = '42999["send",{"room":"fuzzroom","text":"'
    fill = MAX_PAYLOAD - len(prefix) - len('"}]')
    run.next().event(["send", {"room": ROOM, "text": "x" * (fill - 10)}], "invalid")
    run.next().event(["history", {"room": "r" * 60_000}], "invalid")
    run.next().event(["join", {"room": ROOM, "since": 1, "pad": "p" * 60_000}], "any")
    for size in (MAX_PAYLOAD + 1, MAX_PAYLOAD + 1000, 4 * MAX_PAYLOAD, 1_000_000):
        run.next().oversized('42["send",{"room":"fuzzroom","text":"' + "y" * size + '"}]')
    run.next().oversized(rng.randbytes(MAX_PAYLOAD + 10))
    # Well-formed binary attachments: wrong types for every event.
    placeholder = {"_placeholder": True, "num": 0}
    blob = rng.randbytes(64)
    for args in [["send", placeholder], ["send", {"room": ROOM, "text": placeholder}],
                 ["send", {"room": ROOM, "text": "hi", "nonce": placeholder}], ["join", {"room": placeholder}],
                 ["join", placeholder], ["leave", {"room": placeholder}],
                 ["history", {"room": ROOM, "before": placeholder}],
                 ["typing", {"room": ROOM, "active": placeholder}], ["rooms", placeholder], ["nope", placeholder]]:
        run.next().binary_event(args, [blob], "invalid")
    run.next().binary_event(["history", placeholder, {"_placeholder": True, "num": 1}], [blob, b""], "invalid")
    # A text frame where the attachment should be: the handler gets a string.
    fuzzer = run.next()
    link = fuzzer.live()
    fuzzer.run.sent += 2
    link.emit(["send", placeholder], "invalid", binary_attachments=["4not binary"], header=1)


# Hypothesis strategies: JSON values, and payloads per event with plausible and odd fields.
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**40, 10**40), st.floats(allow_nan=True),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
any_chars = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # lone surrogates too
texts = st.one_of(st.text(max_size=40), st.text(any_chars, max_size=20),
                  st.sampled_from(["", " ", "hi", "\u0000", "x" * 4000, " " + "x" * 4000 + " ", "x" * 4001,
                                   "<script>alert(1)</script>", "\u202e", "\ud800", "a\udfffb"]))
rooms = st.one_of(st.sampled_from([ROOM, "lobby", "", "A", "a" * 64, "a" * 65, " fuzzroom", "fuzzroom\n", "-", "_"]),
                  st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True), st.text(max_size=70), json_values)
ids = st.one_of(st.integers(-10, 10**6), st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, -(2**63)]),
                st.integers(-10**30, 10**30), st.floats(allow_nan=True), st.booleans(), st.text(max_size=5),
                json_values)
names = st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True), st.text(max_size=40), json_values)


def objects(**fields):
    extra = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    return st.tuples(st.fixed_dictionaries({}, optional=fields), extra).map(lambda t: {**t[1], **t[0]})


PAYLOADS = {
    "join": objects(room=rooms, since=ids),
    "leave": objects(room=rooms),
    "send": st.one_of(
        objects(room=st.one_of(st.just(ROOM), rooms), text=texts, nonce=st.one_of(st.none(), texts, json_values)),
        st.fixed_dictionaries({"room": st.just(ROOM), "text": texts}, optional={"nonce": texts})),
    "history": objects(room=rooms, before=ids, limit=st.one_of(st.integers(-5, 120), ids)),
    "typing": objects(room=st.one_of(st.just(ROOM), rooms), active=st.one_of(st.booleans(), json_values)),
    "rooms": st.one_of(st.none(), objects(), json_values),
    "ban": objects(room=rooms, user=names, reason=texts),
    "unban": objects(room=rooms, user=names),
}
event_names = st.one_of(st.sampled_from(list(PAYLOADS)), st.text(max_size=30)).filter(lambda n: n not in LIFECYCLE)


def hypothesis_round(run, examples):
    """`examples` hypothesis-generated payloads per event (deterministic: derandomize)."""
    fuzz_settings = settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                             phases=[Phase.generate], suppress_health_check=list(HealthCheck))

    for event, payload in PAYLOADS.items():
        shapes = st.one_of(payload.map(lambda p: [p]), payload.map(lambda p: [p, "extra"]),
                           st.lists(json_values, max_size=3), st.just([]))

        @fuzz_settings
        @given(args=shapes)
        def send_event(args):
            run.next().event([event, *args], "any")

        send_event()

    @fuzz_settings
    @given(name=event_names, args=st.lists(json_values, max_size=2))
    def send_any_event(name, args):
        run.next().event([name, *args], "any")

    send_any_event()


def fuzz_round(run, seed, examples):
    rng = random.Random(seed)
    garbage_round(run, rng)
    structured_round(run, rng)
    hypothesis_round(run, examples)
    run.settle()


class Chat:
    """Two well-behaved clients taking turns to send in ROOM until stopped."""

    def __init__(self, url):
        self.a = ChatClient(url).connect(unique("chat-a"))
        self.b = ChatClient(url).connect(unique("chat-b"))
        self.a.join(ROOM)
        self.b.join(ROOM)
        self.acked = []  # (id, sender name, text)
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._talk, daemon=True)

    def _talk(self):
        turn = 0
        while not self.stop.is_set() and len(self.errors) < 2:
            sender = (self.a, self.b)[turn % 2]
            text = f"chat {turn}"
            try:
                reply = sender.call("send", {"room": ROOM, "text": text, "nonce": f"n{turn}"}, timeout=5)
                assert isinstance(reply, dict) and reply.get("ok"), reply
                self.acked.append((reply["message"]["id"], sender.name, text))
            except Exception as exc:
                self.errors.append(f"{sender.name} send {text!r}: {exc!r}")
            turn += 1
            self.stop.wait(0.02)

    def verify(self, failures):
        if len(self.acked) < 20:
            failures.append(f"the chatters got only {len(self.acked)} sends acknowledged: {self.errors}")
        if self.errors:
            failures.append(f"well-behaved sends failed during the fuzz (chat stalled?): {self.errors}")
        try:
            last = self.a.call("history", {"room": ROOM, "limit": 1})["messages"][-1]["id"]
        except Exception as exc:
            failures.append(f"history of {ROOM} failed after the fuzz: {exc!r}")
            return
        for client in (self.a, self.b):
            try:
                wait_until(lambda: any(m["id"] >= last for m in client.messages(ROOM)), timeout=15,
                           message=f"{client.name} to receive message {last}")
            except AssertionError as exc:
                failures.append(str(exc))
            got = [n for n in client.stream(ROOM) if n <= last]  # fuzzers' reactions take numbers too
            if got != list(range(1, last + 1)):
                dups = [i for i, n in Counter(got).items() if n > 1]
                missing = sorted(set(range(1, last + 1)) - set(got))
                unordered = [p for p in zip(got, got[1:]) if p[1] <= p[0]]
                failures.append(f"{client.name} did not get the stream 1..{last} exactly once in order: "
                                f"{len(got)} received, duplicates {dups[:10]}, missing {missing[:10]}, "
                                f"out of order {unordered[:10]}")
            by_id = {m["id"]: (m["user"], m["text"]) for m in client.messages(ROOM)}
            wrong = [(i, who, text, by_id.get(i)) for i, who, text in self.acked if by_id.get(i) != (who, text)]
            if wrong:
                failures.append(f"{client.name} got chat messages wrong: {wrong[:5]}")

    def close(self):
        """Bounded: a server that no longer answers must not hold the test up."""
        self.stop.set()
        self.thread.join(10)
        close_all(self.a, self.b)


def test_fuzz_keeps_server_and_chat_healthy(start_server):
    started = time.monotonic()
    server = start_server(**ENV)
    chat = Chat(server.url)
    run = FuzzRun(server)
    failures = []
    rss_warm = rss_after = None
    warm_sent = 0
    try:
        rss_before = rss_mb(server.pid)
        chat.thread.start()
        try:
            fuzz_round(run, seed=1, examples=EXAMPLES_PER_EVENT)  # warm-up
            time.sleep(0.5)
            rss_warm = rss_mb(server.pid)
            warm_sent = run.sent
            for seed in range(2, 2 + MAIN_ROUNDS):
                fuzz_round(run, seed=seed, examples=EXAMPLES_PER_EVENT)
            time.sleep(0.5)
            rss_after = rss_mb(server.pid)
        except FuzzAborted as exc:
            failures.append(f"SERVER BUG: fuzzing stopped after {run.sent} packets: {exc}")
        chat.stop.set()
        chat.thread.join(20)
        chat.verify(failures)
    finally:
        chat.close()
        for fuzzer in run.fuzzers:
            if fuzzer.link is not None:
                fuzzer.link.close()

    report = run.report
    summary = (f"sent {run.sent} fuzz packets ({warm_sent} in the warm-up) in {time.monotonic() - started:.0f}s; "
               f"RSS {rss_before:.0f} -> {mb(rss_warm)} (after the warm-up) -> {mb(rss_after)} MB; "
               f"chat messages acked {len(chat.acked)}; stats {dict(sorted(report.stats.items()))}")
    print(summary)
    if run.sent < MIN_PACKETS:
        failures.append(f"only {run.sent} packets sent, want >= {MIN_PACKETS}")
    if not server.alive():
        failures.append(f"the server process died: exit code {server.proc.poll()}")
    else:
        try:
            health = requests.get(server.url + "/healthz", timeout=10)
            if health.status_code != 200:
                failures.append(f"/healthz answered {health.status_code}: {health.text[:300]}")
        except requests.RequestException as exc:
            failures.append(f"/healthz failed: {exc!r}")
    if rss_after is not None and rss_after - rss_before > 60:
        failures.append(f"RSS grew {rss_after - rss_before:.0f} MB over the fuzz (limit 60)")
    if rss_after is not None and rss_after - rss_warm > 20:
        failures.append(f"RSS grew {rss_after - rss_warm:.0f} MB after the warm-up round (limit 20): a leak")
    for category, (count, examples) in sorted(report.problems.items()):
        failures.append(f"{category}: {count}x, e.g. " + " | ".join(examples))
    found = tracebacks(server.output())
    if found:
        failures.append("SERVER BUG: tracebacks in the server output (distinct: count):\n  "
                        + "\n  ".join(f"{n}x {sig}" for sig, n in found.most_common()))
    if report.stalled or chat.errors:
        server.kill()  # something in it is stuck: a graceful stop would only wait for it
    assert not failures, summary + "\n\n" + "\n\n".join(failures)


# --- the bugs the fuzz ran into, one reproducible payload each ------------------------------------
def output_since(server, mark):
    return "\n".join(server.lines[mark:])


def report_problems(report):
    """What a Link saw go wrong (acks for ids never sent, binary frames, stalls), as failures."""
    return [f"{category}: {count}x, e.g. " + " | ".join(examples)
            for category, (count, examples) in sorted(report.problems.items())]


def test_lone_surrogate_in_a_message_is_refused_and_the_writer_survives(start_server):
    """JSON may carry a lone UTF-16 surrogate ("\\ud800"), which no database can store as UTF-8."""
    server = start_server(**ENV)
    chatter = ChatClient(server.url).connect(unique("sur"))
    chatter.join(ROOM)
    report = Report()
    link = Link(ws_url(server), "surrogate", report)
    failures = []
    try:
        for frame_args in (["send", {"room": ROOM, "text": "lone \ud800 surrogate"}],
                           ["send", {"room": ROOM, "text": "fine", "nonce": "\udfff"}]):
            reply = link.call_args(frame_args, timeout=3)
            if not (reply and isinstance(reply[0], dict) and reply[0].get("ok") is False
                    and reply[0]["error"].get("code") not in (None, protocol.INTERNAL)):
                failures.append(f"{json.dumps(frame_args)} answered {reply!r}, want an error ack such as invalid_text")
            try:
                after = chatter.call("send", {"room": ROOM, "text": "still working?"}, timeout=3)
                ok = isinstance(after, dict) and after.get("ok") is True
            except Exception as exc:
                after, ok = repr(exc), False
            if not ok:
                failures.append(f"after {json.dumps(frame_args)} a normal send got {after!r}: "
                                "the message writer is dead")
                break
    finally:
        close_all(chatter, wait=0.5)
        link.close()
    failures += report_problems(report)
    found = tracebacks(server.output())
    if found:
        failures.append("tracebacks: " + "; ".join(found))
    if failures:
        server.kill()  # a stuck writer would make a graceful stop wait
    assert not failures, "SERVER BUG (lone surrogate):\n" + "\n".join(failures)


def test_room_and_guest_names_with_a_trailing_newline_are_refused(start_server):
    """`re.match(r"^[a-z0-9_-]{1,64}$")` also matches "lobby\\n": `$` matches before a final newline."""
    server = start_server(**ENV)
    report = Report()
    link = Link(ws_url(server), "newline", report)
    failures = []
    try:
        for event, payload in [("join", {"room": "lobby\n"}), ("history", {"room": "lobby\n"}),
                               ("leave", {"room": "lobby\n"}), ("typing", {"room": "lobby\n", "active": True})]:
            reply = link.call(event, payload, timeout=5)
            code = reply[0].get("error", {}).get("code") if reply and isinstance(reply[0], dict) else None
            if code != protocol.INVALID_ROOM:
                failures.append(f"{event} {json.dumps(payload)} answered {reply!r}, want invalid_room")
        amy = ChatClient(server.url).connect("amy")
        try:
            twin = websocket.create_connection(ws_url(server), timeout=5)
            twin.recv()
            twin.send("40" + json.dumps({"name": "amy\n"}))
            answer = twin.recv()
            if "invalid_name" not in answer:
                failures.append(f'connect with name "amy\\n" while amy is online answered {answer[:160]!r}, '
                                "want a connect_error invalid_name (a look-alike of amy)")
            twin.close()
        finally:
            amy.close()
    finally:
        link.close()
    failures += report_problems(report)
    assert not failures, "SERVER BUG (names with a trailing newline pass validation):\n" + "\n".join(failures)


def test_events_named_connect_or_disconnect_do_not_reach_the_lifecycle_handlers(start_server):
    """python-socketio dispatches a client EVENT packet named "connect"/"disconnect" (or "*")
    to the handler registered under that name, i.e. chat.events' lifecycle handlers."""
    server = start_server(CHAT_RATE_LIMITS="off", CHAT_MAX_CONNECTIONS_PER_IP="2", CHAT_TRUSTED_PROXIES="127.0.0.1")
    url = ws_url(server)
    failures = []
    watcher = ChatClient(server.url).connect(unique("watch"), headers={"X-Forwarded-For": "198.51.100.1"})
    watcher.join(ROOM)
    report = Report()
    mallory = Link(url, "mallory", report, headers=["X-Forwarded-For: 198.51.100.2"])
    mark = len(server.lines)
    try:
        # 1. A fake "disconnect": the server must not sign the live connection out.
        reply = mallory.call_args(["disconnect"], timeout=5)
        time.sleep(0.5)
        left = [p for p in watcher.received("presence", ROOM)
                if p.get("user") == "mallory" and p.get("action") == "leave"]
        if left:
            failures.append(f'42["disconnect"] (ack {reply!r}) made the server announce {left[0]} '
                            "while mallory is still connected")
        sent = mallory.call("send", {"room": ROOM, "text": "still here"}, timeout=5)
        if not (sent and isinstance(sent[0], dict) and sent[0].get("ok")):
            failures.append(f'after 42["disconnect"] mallory\'s send answered {sent!r}: '
                            "signed out of a live connection")
        # 2. A fake "connect": no renaming, no client-chosen environ (address spoofing).
        reply = mallory.call_args(["connect", {"REMOTE_ADDR": "203.0.113.9"}, {"name": "eve"}], timeout=5)
        time.sleep(0.3)
        if "name=eve" in output_since(server, mark) or "203.0.113.9" in output_since(server, mark):
            failures.append(f'42["connect",{{"REMOTE_ADDR":"203.0.113.9"}},{{"name":"eve"}}] (ack {reply!r}) '
                            "signed the connection in again as eve with the client-chosen address 203.0.113.9")
        if not (reply and isinstance(reply[0], dict) and reply[0].get("ok") is False):
            failures.append(f'42["connect",...] answered {reply!r}, want an error ack (unknown_event)')
        # 3. "*" reaches the catch-all handler with the wrong arguments.
        for args in (["*"], ["*", {}]):
            reply = mallory.call_args(args, timeout=1.5)
            if not (reply and isinstance(reply[0], dict) and reply[0].get("ok") is False):
                failures.append(f"{json.dumps(args)} answered {reply!r}, want an error ack (unknown_event)")
        # 4. Impact on CHAT_MAX_CONNECTIONS_PER_IP (2): fake connects with another client's address
        # count against that address and are never given back.
        spoofer = Link(url, "spoofer", report, headers=["X-Forwarded-For: 198.51.100.3"])
        for i in range(3):
            spoofer.call_args(["connect", {"REMOTE_ADDR": "203.0.113.50"}, {"name": f"spoof{i}"}], timeout=3)
        spoofer.close()
        time.sleep(0.5)
        victims = []
        try:
            for i in range(2):
                victim = ChatClient(server.url)
                victims.append(victim)
                try:
                    victim.connect(unique("victim"), headers={"X-Forwarded-For": "203.0.113.50"})
                except Exception as exc:
                    failures.append(f"connection {i + 1} of 2 allowed from 203.0.113.50 was refused "
                                    f"({victim.connect_error or exc!r}) after another client sent "
                                    '42["connect",{"REMOTE_ADDR":"203.0.113.50"},...] events: '
                                    "the per-address count was inflated by a client")
                    break
        finally:
            for victim in victims:
                victim.close()
    finally:
        watcher.close()
        mallory.close()
    failures += report_problems(report)
    found = tracebacks(output_since(server, mark))
    if found:
        failures.append("tracebacks: " + "; ".join(found))
    assert not failures, "SERVER BUG (client events reach the connect/disconnect handlers):\n" + "\n".join(failures)


def test_malformed_engineio_frame_does_not_leave_a_ghost_session(start_server):
    """A text frame that is not an Engine.IO packet ("x", "") ends the websocket with an
    exception that skips the session's close: the name stays online until the ping timeout."""
    server = start_server(**ENV)
    url = ws_url(server)
    report = Report()
    failures = []
    for frame in ("x", ""):
        name = unique("ghost")
        link = Link(url, name, report)
        link.raw(frame)
        link.wait_closed(5)
        link.close()
        deadline, answer = time.monotonic() + 2, None
        while time.monotonic() < deadline:
            try:
                Link(url, name, report).close()
                answer = "ok"
                break
            except AssertionError as exc:
                answer = str(exc)
                time.sleep(0.25)
        if answer != "ok":
            failures.append(f"{frame!r}: 2 s after its websocket closed, {name} is still online ({answer[:120]})")
    failures += report_problems(report)
    found = tracebacks(server.output())
    if found:
        failures.append("tracebacks: " + "; ".join(found))
    assert not failures, "SERVER BUG (malformed Engine.IO frame leaves a ghost session):\n" + "\n".join(failures)


MALFORMED_SOCKETIO = [
    "4{", "4x", "49", "44{}", "43x", "42[]", "42{}", "42null", "425", "42[1,{}]" + "", "42[{}]", "42[[]]",
    "4" + "9" * 200, '42["join",' + "9" * 5000 + "]", '42["join",' + "[" * 10_000 + "]" * 10_000 + "]",
    b"\xff\xfe\x00", b"42[\"rooms\"]", "45", '451-["send",{"_placeholder":true,"num":5}]',
]


def test_malformed_socketio_packets_are_ignored_quietly(start_server):
    """Each packet alone on a connection: no traceback in the server output, and the
    connection still answers afterwards (or is closed, never left wedged)."""
    server = start_server(**ENV)
    url = ws_url(server)
    report = Report()
    failures = []
    link = None
    for frame in MALFORMED_SOCKETIO:
        if link is None or link.closed:
            link = Link(url, unique("bad"), report)
        mark = len(server.lines)
        link.raw(frame)
        if isinstance(frame, str) and frame.startswith("451-"):
            link.raw(b"\x01")  # its attachment
        alive = link.probe(timeout=1.5)
        time.sleep(0.1)
        found = tracebacks(output_since(server, mark))
        shown = repr(frame[:60]) + (f"... ({len(frame)} chars)" if len(frame) > 60 else "")
        if found:
            failures.append(f"{shown}: " + "; ".join(sig.split(" -> ")[-1] for sig in found))
        if not alive and not link.closed:
            failures.append(f"{shown}: the connection stays open but never answers again (wedged)")
            link.close()
            link = None
    if link is not None:
        link.close()
    failures += report_problems(report)
    assert not failures, ("SERVER BUG (malformed Socket.IO packets raise inside python-socketio and are logged "
                          "with a traceback each):\n" + "\n".join(failures))
