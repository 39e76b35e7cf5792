"""Payload validation: every malformed shape becomes a ProtocolError with a documented code."""
import pytest

from chat import protocol
from chat.protocol import ProtocolError


def code_of(fn, *args):
    with pytest.raises(ProtocolError) as caught:
        fn(*args)
    return caught.value.code


@pytest.mark.parametrize("room", ["a", "lobby", "room_1-x", "z" * 64])
def test_valid_room_names(room):
    assert protocol.parse_join({"room": room}).room == room


@pytest.mark.parametrize("room", ["", "Lobby", "a b", "é", "z" * 65, None, 5, ["x"], "a/b", "../x"])
def test_invalid_room_names(room):
    assert code_of(protocol.parse_join, {"room": room}) == protocol.INVALID_ROOM


@pytest.mark.parametrize("payload", [None, 5, "x", [], True])
def test_payload_must_be_object(payload):
    assert code_of(protocol.parse_join, payload) == protocol.INVALID_PAYLOAD


@pytest.mark.parametrize("since", [-1, "3", 1.5, True, 2**63])
def test_since_must_be_an_id(since):
    assert code_of(protocol.parse_join, {"room": "a", "since": since}) == protocol.INVALID_PAYLOAD


def test_send_strips_and_limits_text():
    assert protocol.parse_send({"room": "a", "text": "  hi \n"}, 10).text == "hi"
    assert code_of(protocol.parse_send, {"room": "a", "text": "   "}, 10) == protocol.INVALID_TEXT
    assert code_of(protocol.parse_send, {"room": "a", "text": 7}, 10) == protocol.INVALID_TEXT
    assert code_of(protocol.parse_send, {"room": "a", "text": "x" * 11}, 10) == protocol.TEXT_TOO_LONG
    assert protocol.parse_send({"room": "a", "text": " " + "x" * 10 + " "}, 10).text == "x" * 10


@pytest.mark.parametrize("nonce", ["", 5, "n" * 65, {"a": 1}])
def test_send_nonce_shape(nonce):
    assert code_of(protocol.parse_send, {"room": "a", "text": "t", "nonce": nonce}, 10) == protocol.INVALID_PAYLOAD


def test_history_limit_bounds():
    assert protocol.parse_history({"room": "a"}, 50, 100).limit == 50
    assert protocol.parse_history({"room": "a", "limit": 100, "before": 9}, 50, 100).before == 9
    for limit in (0, 101, "5", 2.0, False):
        assert code_of(protocol.parse_history, {"room": "a", "limit": limit}, 50, 100) == protocol.INVALID_PAYLOAD


def test_typing_needs_boolean():
    assert protocol.parse_typing({"room": "a", "active": True}) == ("a", True)
    assert code_of(protocol.parse_typing, {"room": "a", "active": 1}) == protocol.INVALID_PAYLOAD


@pytest.mark.parametrize("name", ["a", "Bob.Smith", "x_y-z", "9" * 32])
def test_valid_user_names(name):
    assert protocol.parse_auth({"name": name}) == (name, None)


@pytest.mark.parametrize("name", ["", "a b", "é", "n" * 33, 5, "<b>", "a@b"])
def test_invalid_user_names(name):
    assert code_of(protocol.parse_auth, {"name": name}) == protocol.INVALID_NAME


@pytest.mark.parametrize("name", ["a.b+c@d", "é-ü_9", "u" * 150, "Bob.Smith"])
def test_django_usernames_are_account_names(name):
    assert protocol.account_name(name) == name
    assert protocol.parse_ban({"room": "r", "user": name}) == ("r", name, "")


@pytest.mark.parametrize("name", ["", "a b", "u" * 151, "<b>", "a\n", None, 5])
def test_invalid_account_names(name):
    assert code_of(protocol.account_name, name) == protocol.INVALID_NAME


def test_auth_token_must_be_string():
    assert code_of(protocol.parse_auth, {"token": 5}) == protocol.INVALID_TOKEN
    assert protocol.parse_auth(None) == (None, None)
