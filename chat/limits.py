"""Rate limits: token buckets per connection and per name for `send`, `typing` and `join`.

A request must find a token in both its connection's bucket and its name's bucket (so a
reconnect does not refill anything). A refused request answers `rate_limited` with
`retry_after` seconds; a connection refused CHAT_FLOOD_STRIKES times in a row is a flood and
is disconnected by the caller. Buckets exist only for live connections; name buckets are
kept for at most `names_tracked` names (least recently used go first, as a full bucket
would). One `RateLimiter` per process, owned by chat.services.
"""
import time
from collections import OrderedDict
from dataclasses import dataclass

from chat.protocol import RATE_LIMITED, ProtocolError

DEFAULT_RULES = "send=4/20,typing=10/30,join=5/30"  # per second / burst: a fast human never hits them


@dataclass(frozen=True)
class Rule:
    per_sec: float
    burst: float


def parse_rules(text):
    """'send=4/20,typing=10/30' -> {'send': Rule(4, 20), ...}; 'off' -> {}; 'on' -> defaults."""
    text = text.strip().lower()
    if text in ("off", "0", "false", "no"):
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


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst, now):
        self.tokens, self.updated = burst, now

    def refill(self, rule, now):
        self.tokens = min(rule.burst, self.tokens + (now - self.updated) * rule.per_sec)
        self.updated = now


class RateLimiter:
    def __init__(self, rules, flood_strikes, names_tracked=10_000, clock=time.monotonic):
        self.rules = rules
        self.flood_strikes = flood_strikes
        self.names_tracked = names_tracked
        self.clock = clock
        self._by_sid = {}  # sid -> {event: bucket}
        self._by_name = OrderedDict()  # name -> {event: bucket}
        self._strikes = {}  # sid -> refusals in a row

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
