"""Reconnect tokens and session users."""
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from chat import identity, protocol
from chat.protocol import ProtocolError


def test_token_round_trip_keeps_name_and_user():
    account = identity.Identity("alice", 7, auth="digest")
    assert identity.read_token(identity.make_token(account), 60) == account
    guest = identity.guest("bob")
    assert identity.read_token(identity.make_token(guest), 60) == guest


def test_guest_token_chain_ends_max_age_after_the_name_was_taken():
    """Each reconnect mints a fresh token, but it keeps the time the guest took the name."""
    taken_long_ago = identity.guest("alice", since=int(time.time()) - 61)
    fresh = identity.make_token(taken_long_ago)  # signed just now
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(fresh, 60)
    assert caught.value.code == protocol.TOKEN_EXPIRED
    assert identity.read_token(fresh, 120).since == taken_long_ago.since


def test_identity_keys_are_stable_ids_not_names():
    """An account is its user id, a guest its server-issued guest id, kept by its tokens."""
    first, second = identity.guest("bob"), identity.guest("bob")
    assert first.key.startswith("g:") and first.key != second.key  # the same name, two people
    assert identity.read_token(identity.make_token(first), 60).key == first.key
    assert identity.Identity("bob", 7, auth="digest").key == "u:7"
    assert identity.key_of("Bob", None) == "n:bob"  # rows from before keys


@pytest.mark.parametrize("payload", [{"n": "alice", "u": None}, {"n": "alice", "u": 7},
                                     {"n": "alice", "i": int(time.time())}])  # the last: no guest id
def test_tokens_of_the_unbound_format_are_expired(payload):
    from django.core import signing

    old = signing.dumps(payload, salt=identity.TOKEN_SALT, compress=True)
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(old, 60)
    assert caught.value.code == protocol.TOKEN_EXPIRED


def test_token_cannot_be_edited_for_another_name():
    token = identity.make_token(identity.guest("alice"))
    payload, rest = token.split(":", 1)
    forged = identity.make_token(identity.guest("mallory")).split(":", 1)[0] + ":" + rest
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(forged, 60)
    assert caught.value.code == protocol.INVALID_TOKEN


@pytest.mark.parametrize("token", ["", "garbage", "a:b:c", "x" * 500])
def test_garbage_tokens_are_invalid(token):
    with pytest.raises(ProtocolError) as caught:
        identity.read_token(token, 60)
    assert caught.value.code == protocol.INVALID_TOKEN


def test_token_signed_with_another_key_is_invalid(settings):
    token = identity.make_token(identity.guest("alice"))
    settings.SECRET_KEY = "another-key-" + "x" * 40
    with pytest.raises(ProtocolError):
        identity.read_token(token, 60)


def test_token_expires():
    token = identity.make_token(identity.guest("alice"))
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


@pytest.mark.django_db
def test_account_token_dies_with_a_password_change_a_rename_or_deactivation():
    users = get_user_model().objects
    user = users.create_user("frank", password="pw-for-frank-1")
    token = identity.make_token(identity.account(user))
    assert identity.verify_account(identity.read_token(token, 60)).user_id == user.pk
    for change in (lambda u: u.set_password("pw-for-frank-2"), lambda u: setattr(u, "username", "franky"),
                   lambda u: setattr(u, "is_active", False)):
        user = users.get(pk=user.pk)
        token = identity.make_token(identity.account(user))
        change(user)
        user.save()
        with pytest.raises(ProtocolError) as caught:
            identity.verify_account(identity.read_token(token, 60))
        assert caught.value.code == protocol.INVALID_TOKEN
        user.is_active = True
        user.save()


@pytest.mark.django_db
def test_reserved_names_are_refused_to_guests():
    get_user_model().objects.create_user("Gina", password="x")
    with pytest.raises(ProtocolError) as caught:
        identity.refuse_reserved("gINA")
    assert caught.value.code == protocol.NAME_RESERVED
    identity.refuse_reserved("gino")
