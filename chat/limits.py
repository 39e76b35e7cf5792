"""Rate limits: token buckets per connection and per name for `send`, `typing`, `join`,
`history`, `rooms` (both room lists), `edit` (edits and deletions), `react` (both ways),
`topic`, `members` (adding, removing, archiving), `create` (private rooms and direct
conversations), `read` (read markers, muting) and `search` (each page of a search), and quotas of rooms created per name and
per address.

A request must find a token in both its connection's bucket and its name's bucket (so a
reconnect does not refill anything). A refused request answers `rate_limited` with
`retry_after` seconds; a connection refused CHAT_FLOOD_STRIKES times in a row is a flood and
is disconnected by the caller. Buckets exist only for live connections; name buckets are
kept for at most `names_tracked` names (least recently used go first, as a full bucket
would). One `RateLimiter` per process, owned by chat.services.

A catch-up is not a flood: after a `truncated` join page, the join that continues it
(same connection, room, and `since` = the page's last id) takes no token, so a client
following the pages catches up a gap of any length. Each connection holds at most
CONTINUATIONS_PER_CONNECTION such passes (one per room it is catching up in).

Room creation (CHAT_ROOM_CREATES) is a quota, not a rate: `name=20/3600` lets a name
create 20 rooms, and one more every 3600/20 s; `address=` the same per client address.
Only a room really created is counted: many people joining a new room at the same moment
(one of them creates it) take one room from one quota, not one each. Refusals answer
`rate_limited` with `retry_after` but are no flood strikes.
"""
import time
from collections import OrderedDict
from dataclasses import dataclass

from chat.protocol import RATE_LIMITED, ProtocolError

# per second / burst: a fast human never hits them (scrolling back is a history page a second)
DEFAULT_RULES = ("send=4/20,typing=10/30,join=5/30,history=5/30,rooms=1/10,edit=2/10,react=4/20,topic=1/5,"
                 "members=2/10,create=1/10,read=5/30,search=2/10")
DEFAULT_ROOM_CREATES = "name=20/3600,address=100/3600"  # rooms / seconds
OFF = ("off", "0", "false", "no")
CONTINUATIONS_PER_CONNECTION = 64


@dataclass(frozen=True)
class Rule:
    per_sec: float
    burst: float


def parse_rules(text):
    """'send=4/20,typing=10/30' -> {'send': Rule(4, 20), ...}; 'off' -> {}; 'on' -> defaults."""
    text = text.strip().lower()
    if text in OFF:
        return {}
    if text in ("on", "", "1", "true", "yes"):
        text = DEFAULT_RULES
    rules = {}
    for part in text.split(","):
        try:
            event, spec = part.split("=")
            per_sec, burst = spec.split("/")
            rules[event.strip()] = Rule(float(per_sec), float(burst))
        except ValueError:
            raise ValueError(f"CHAT_RATE_LIMITS: cannot read {part!r}; write event=per_sec/burst") from None
    return rules


def parse_quotas(text):
    """'name=20/3600,address=100/3600' (rooms / seconds) -> {'name': Rule(20/3600, 20), ...};
    'off' -> {}; 'on' -> DEFAULT_ROOM_CREATES."""
    text = text.strip().lower()
    if text in OFF:
        return {}
    if text in ("on", "", "1", "true", "yes"):
        text = DEFAULT_ROOM_CREATES
    quotas = {}
    for part in text.split(","):
        try:
            kind, spec = part.split("=")
            count, window_secs = (float(value) for value in spec.split("/"))
            if kind.strip() not in ("name", "address") or count <= 0 or window_secs <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"CHAT_ROOM_CREATES: cannot read {part!r}; write name=rooms/secs,address=rooms/secs") from None
        quotas[kind.strip()] = Rule(count / window_secs, count)
    return quotas


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst, now):
        self.tokens, self.updated = burst, now

    def refill(self, rule, now):
        self.tokens = min(rule.burst, self.tokens + (now - self.updated) * rule.per_sec)
        self.updated = now


class RateLimiter:
    def __init__(self, rules, flood_strikes, names_tracked=10_000, clock=time.monotonic, room_creates=None):
        self.rules = rules
        self.flood_strikes = flood_strikes
        self.names_tracked = names_tracked
        self.clock = clock
        self.room_creates = room_creates or {}  # {"name" | "address": Rule}
        self._by_sid = {}  # sid -> {event: bucket}
        self._by_name = OrderedDict()  # name -> {event: bucket}
        self._strikes = {}  # sid -> refusals in a row
        self._continuations = {}  # sid -> [key of the request that continues a truncated answer]
        self._created = {kind: OrderedDict() for kind in self.room_creates}  # kind -> {key: bucket}

    def check(self, sid, name, event):
        """Take a token or raise ProtocolError(rate_limited). Returns True when `sid` is flooding."""
        rule = self.rules.get(event)
        if rule is None:
            return False
        now = self.clock()
        buckets = [self._bucket(self._by_sid.setdefault(sid, {}), event, rule, now),
                   self._bucket(self._name_buckets(name), event, rule, now)]
        short = max(1 - bucket.tokens for bucket in buckets)
        if short > 0:
            strikes = self._strikes[sid] = self._strikes.get(sid, 0) + 1
            if strikes >= self.flood_strikes:
                return True
            raise ProtocolError(RATE_LIMITED, f"too many {event} requests; slow down",
                                retry_after=round(short / rule.per_sec, 3))
        for bucket in buckets:
            bucket.tokens -= 1
        self._strikes.pop(sid, None)
        return False

    def allow_continuation(self, sid, key):
        """The next request with `key` (e.g. ("join", room, since)) from `sid` is free."""
        keys = self._continuations.setdefault(sid, [])
        keys.append(key)
        del keys[:-CONTINUATIONS_PER_CONNECTION]

    def continues(self, sid, key):
        """True (and the pass is used) when `sid` holds a pass for `key`."""
        keys = self._continuations.get(sid)
        if not keys or key not in keys:
            return False
        keys.remove(key)
        return True

    def check_room_create(self, name, address):
        """Raise ProtocolError(rate_limited) when the name's or the address's quota has no
        room left (not a flood strike: the request itself was allowed). Takes nothing:
        `charge_room_create` does, once a room was really created."""
        waits = [(1 - bucket.tokens) / rule.per_sec for bucket, rule in self._room_buckets(name, address)
                 if bucket.tokens < 1]
        if waits:
            raise ProtocolError(RATE_LIMITED, "too many rooms created; join an existing room or try later",
                                retry_after=round(max(waits), 3))

    def charge_room_create(self, name, address):
        """A room was created: take it from both quotas. Creations checked at the same time
        may take a quota a little below zero; it refills from there."""
        for bucket, _ in self._room_buckets(name, address):
            bucket.tokens -= 1

    def _room_buckets(self, name, address):
        now = self.clock()
        return [(self._created_bucket(kind, key, now), self.room_creates[kind])
                for kind, key in (("name", name), ("address", address)) if kind in self.room_creates]

    def _created_bucket(self, kind, key, now):
        tracked = self._created[kind]
        bucket = tracked.pop(key, None) or _Bucket(self.room_creates[kind].burst, now)
        tracked[key] = bucket
        while len(tracked) > self.names_tracked:
            tracked.popitem(last=False)
        bucket.refill(self.room_creates[kind], now)
        return bucket

    def _name_buckets(self, name):
        buckets = self._by_name.pop(name, None) or {}
        self._by_name[name] = buckets
        while len(self._by_name) > self.names_tracked:
            self._by_name.popitem(last=False)
        return buckets

    @staticmethod
    def _bucket(buckets, event, rule, now):
        bucket = buckets.get(event)
        if bucket is None:
            bucket = buckets[event] = _Bucket(rule.burst, now)
        bucket.refill(rule, now)
        return bucket

    def forget(self, sid):
        self._by_sid.pop(sid, None)
        self._strikes.pop(sid, None)
        self._continuations.pop(sid, None)
