"""The search language and the `search` payload, parsed into a `Query` (no database here).

Users type what Slack and Zulip taught them: words (all must match), `"exact phrase"`,
`-word` or `-"phrase"` (must not match), `from:name` (`from:me`), `in:room` (`#room` too),
`before:YYYY-MM-DD` and `after:YYYY-MM-DD` (UTC days, the day itself excluded, as in Slack).
Anything else is words. A word is split into its letters-and-digits runs, as both backends'
tokenizers split text, so `e-mail` is the phrase `e mail` everywhere; punctuation alone is
dropped. The backends receive only these runs and quote each one themselves: user input
never reaches a database as query syntax.

The payload's `room`, `from`, `before` and `after` are the same filters as the operators;
given both ways they must agree.
"""
import datetime
import re
from dataclasses import dataclass, field

from chat import protocol
from chat.protocol import ProtocolError

TOKEN_RE = re.compile(r'(-?)"([^"]*)"?|(\S+)')
WORD_RE = re.compile(r"\w+")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OPERATORS = ("from", "in", "before", "after")
MAX_TERMS = 16  # words, phrases and exclusions together: each costs the database a lookup
CURSOR_MAX_CHARS = 40
NEWEST, RELEVANCE = "newest", "relevance"


@dataclass(frozen=True)
class Query:
    words: tuple = ()  # each a lower-cased run of \w
    phrases: tuple = ()  # each a tuple of runs, in order
    excluded: tuple = ()  # each a tuple of runs (a word is a 1-tuple)
    author: str | None = None  # from:
    room: str | None = None  # in:
    before: datetime.datetime | None = None  # created_at < before
    after: datetime.datetime | None = None  # created_at >= after
    sort: str = NEWEST
    limit: int = 20
    cursor: int | None = None  # newest: message pk to continue below; relevance: offset
    text: str = ""  # as typed, for logs and echo

    @property
    def has_terms(self):
        return bool(self.words or self.phrases)

    @property
    def has_filters(self):
        return any(value is not None for value in (self.author, self.room, self.before, self.after))

    def positive_runs(self):
        """Every run that must match: what snippets highlight."""
        return [*self.words, *(run for phrase in self.phrases for run in phrase)]


@dataclass
class _Parts:
    words: list = field(default_factory=list)
    phrases: list = field(default_factory=list)
    excluded: list = field(default_factory=list)
    filters: dict = field(default_factory=dict)


def _runs(text):
    return tuple(WORD_RE.findall(text.lower()))


def _add_terms(parts, runs, negative):
    if not runs:
        return
    if negative:
        parts.excluded.append(runs)
    elif len(runs) == 1:
        parts.words.append(runs[0])
    else:
        parts.phrases.append(runs)


def parse_text(text):
    """The typed query into words, phrases, exclusions and operator filters (raw strings)."""
    parts = _Parts()
    for negative, quoted, bare in TOKEN_RE.findall(text):
        if not bare:
            _add_terms(parts, _runs(quoted), bool(negative))
            continue
        name, colon, value = bare.partition(":")
        if colon and name.lower() in OPERATORS and value:
            parts.filters.setdefault(name.lower(), []).append(value)
            continue
        negative = bare.startswith("-") and len(bare) > 1
        _add_terms(parts, _runs(bare[1:] if negative else bare), negative)
    return parts


def _day(value, operator):
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise ProtocolError(protocol.INVALID_QUERY, f"{operator} takes a date as YYYY-MM-DD")
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise ProtocolError(protocol.INVALID_QUERY, f"{operator}:{value} is not a date") from None
    return datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.timezone.utc)


def _one(parts, payload, key, operator):
    """The filter given by operator and/or payload field: they must agree."""
    values = {v for v in parts.filters.get(operator, [])}
    given = payload.get(key)
    if given is not None:
        if not isinstance(given, str) or not given:
            raise ProtocolError(protocol.INVALID_PAYLOAD, f"{key} must be a non-empty string")
        values.add(given)
    if len(values) > 1:
        raise ProtocolError(protocol.INVALID_QUERY, f"more than one {operator}: given")
    return values.pop() if values else None


def _cursor(value, sort):
    if value is None:
        return None
    prefix = "n" if sort == NEWEST else "r"
    if not isinstance(value, str) or len(value) > CURSOR_MAX_CHARS or not re.fullmatch(prefix + r":\d{1,18}", value):
        raise ProtocolError(protocol.INVALID_PAYLOAD, "cursor must be the `cursor` of a previous page of this search")
    return int(value[2:])


def cursor_text(sort, position):
    return f"{'n' if sort == NEWEST else 'r'}:{position}"


def parse_search(data, max_query_chars, page_max, reader_name=""):
    """The `search` payload (socket and HTTP alike) into a Query; refusals as ProtocolError."""
    data = protocol.object_payload(data)
    text = data.get("q", "")
    if not isinstance(text, str):
        raise ProtocolError(protocol.INVALID_QUERY, "q must be a string")
    text = protocol.storable(text, "q").strip()
    if len(text) > max_query_chars:
        raise ProtocolError(protocol.INVALID_QUERY, f"the query is longer than {max_query_chars} characters")
    parts = parse_text(text)
    if len(parts.words) + len(parts.phrases) + len(parts.excluded) > MAX_TERMS:
        raise ProtocolError(protocol.INVALID_QUERY, f"at most {MAX_TERMS} words, phrases and exclusions")
    author = _one(parts, data, "from", "from")
    if author is not None:
        author = author.lstrip("@")
        author = reader_name if author.lower() == "me" and reader_name else protocol.account_name(author)
    room = _one(parts, data, "room", "in")
    room = None if room is None else protocol.room_name(room.lstrip("#"))
    before, after = (_one(parts, data, key, key) for key in ("before", "after"))
    sort = data.get("sort", NEWEST)
    if sort not in (NEWEST, RELEVANCE):
        raise ProtocolError(protocol.INVALID_PAYLOAD, "sort must be newest or relevance")
    query = Query(words=tuple(dict.fromkeys(parts.words)), phrases=tuple(dict.fromkeys(parts.phrases)),
                  excluded=tuple(dict.fromkeys(parts.excluded)), author=author, room=room,
                  before=None if before is None else _day(before, "before"),
                  after=None if after is None else _day(after, "after") + datetime.timedelta(days=1),
                  sort=sort, limit=protocol.parse_limit(data.get("limit"), page_max, page_max),
                  cursor=_cursor(data.get("cursor"), sort), text=text)
    if not query.has_terms and not query.has_filters:
        raise ProtocolError(protocol.INVALID_QUERY, "search for at least one word, phrase or filter"
                            + (" (an exclusion alone matches nearly everything)" if query.excluded else ""))
    if query.excluded and not query.has_terms:
        raise ProtocolError(protocol.INVALID_QUERY, "-word needs at least one word or phrase to exclude from")
    return query
