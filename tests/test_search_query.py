"""The search language (chat.search.query) and the snippet marks, without a database."""
import datetime

import pytest

from chat.protocol import ProtocolError
from chat.search.backends import split_marks
from chat.search.backends.sqlite import match_expression
from chat.search.query import parse_search, parse_text


def parse(q, **extra):
    return parse_search({"q": q, **extra}, 200, 20, "me_myself")


def test_words_phrases_exclusions_and_operators():
    query = parse('Deploy "went out" -broken -"on fire" from:@amy in:#ops before:2026-12-01 after:2026-11-01 e-mail')
    assert query.words == ("deploy",)
    assert query.phrases == (("went", "out"), ("e", "mail"))
    assert query.excluded == (("broken",), ("on", "fire"))
    assert (query.author, query.room) == ("amy", "ops")
    assert query.before == datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    assert query.after == datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc)  # the day after
    assert parse("x from:me").author == "me_myself"
    assert parse_text('unknown:op "unclosed phrase').phrases == [("unknown", "op"), ("unclosed", "phrase")]


def test_fts5_expressions_quote_every_term():
    query = parse('a "b c" -d -"e f"')
    assert match_expression(query) == '("a" AND "b c") NOT "d" NOT "e f"'
    assert match_expression(parse('NEAR(x OR y*')) == '("or" AND "y" AND "near x")'  # NEAR(x: the runs of one word


@pytest.mark.parametrize("q", ["", "   ", "-x", "...", "x before:2026-02-30", '" "'], ids=repr)
def test_refused(q):
    with pytest.raises(ProtocolError):
        parse(q)


def test_split_marks():
    assert split_marks("a \x02b\x03 c") == ["a ", "b", " c"]
    assert split_marks("\x02went\x03 \x02out\x03 x") == ["", "went out", " x"]
    assert split_marks("no marks") == ["no marks"]
