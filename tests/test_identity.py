"""Reconnect tokens and session users."""
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chat import identity, protocol
from chat.protocol import ProtocolError


def test_token_round_trip_keeps_name_and_user():
    token = identity.make_token(identity.Identity("alice", 7))
    assert identity.read_token(token, 60) == identity.Identity("alice", 7)


def test_token_cannot_be_edited_for_another_name():
    token = identity.make_token(identity.Identity("alice"))
    payload, rest = token.split(":", 1)
    forged = identity.make_token(identity.Identity("mallory")).split(":", 1)[0] + ":" + rest
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(forged, 60)
    assert caught.value.code == protocol.INVALID_TOKEN


@pytest.mark.parametrize("token", ["", "garbage", "a:b:c", "x" * 500])
def test_garbage_tokens_are_invalid(token):
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(token, 60)
    assert caught.value.code == protocol.INVALID_TOKEN


def test_token_signed_with_another_key_is_invalid(settings):
    token = identity.make_token(identity.Identity("alice"))
    settings.SECRET_KEY = "another-key-" + "x" * 40
    with pytest.raises(ProtocolError):
        identity.read_token(token, 60)


def test_token_expires():
    token = identity.make_token(identity.Identity("alice"))
    time.sleep(1.1)
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(token, 1)
    assert caught.value.code == protocol.TOKEN_EXPIRED


@pytest.mark.django_db
def test_session_cookie_gives_the_logged_in_user():
    user = get_user_model().objects.create_user("carol", password="pw-for-carol-1")
    browser = Client()
    assert browser.login(username="carol", password="pw-for-carol-1")
    key = browser.cookies["sessionid"].value
    environ = {"HTTP_COOKIE": f"other=1; sessionid={key}"}
    assert identity.user_for_session(identity.session_key_from_environ(environ)) == user
    user.set_password("changed-pw-2")  # password change invalidates old sessions
    user.save()
    assert identity.user_for_session(key) is None
    assert identity.user_for_session("not-a-session") is None


@pytest.mark.django_db
def test_registered_names_are_reserved_case_insensitively():
    get_user_model().objects.create_user("Dave", password="x")
    assert identity.is_reserved_name("dave")
    assert not identity.is_reserved_name("eve")
