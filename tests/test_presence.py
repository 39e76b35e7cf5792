"""Presence bookkeeping: unique names, takeover, membership."""
import pytest

from chat.presence import NameTaken, Presence


def test_names_are_unique_case_insensitively():
    p = Presence()
    p.claim("s1", "Alice")
    with pytest.raises(NameTaken):
        p.claim("s2", "alice")
    assert p.name_of("s1") == "Alice" and p.sid_of("ALICE") == "s1"


def test_takeover_returns_previous_and_keeps_name_on_release_of_old():
    p = Presence()
    p.claim("s1", "alice")
    p.join("s1", "r")
    assert p.claim("s2", "alice", takeover=True) == "s1"
    name, rooms = p.release("s1")
    assert (name, rooms) == ("alice", ["r"])
    assert p.sid_of("alice") == "s2" and p.is_online("alice")
    assert p.count("r") == 0


def test_join_leave_counts_and_members():
    p = Presence()
    for sid, name in (("s1", "bob"), ("s2", "amy"), ("s3", "cat")):
        p.claim(sid, name)
        assert p.join(sid, "r")
    assert not p.join("s1", "r")
    assert p.members("r", 10) == ["amy", "bob", "cat"]
    assert p.members("r", 2) == ["amy", "bob"]
    assert p.leave("s2", "r") and not p.leave("s2", "r")
    assert p.count("r") == 2 and p.room_counts() == {"r": 2}
    p.release("s1")
    p.release("s3")
    assert p.room_counts() == {} and not p.is_online("bob")
    assert p.connection_count() == 1


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies():
    from chat.services import client_address

    direct = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "1.2.3.4"}
    assert client_address(direct, ["127.0.0.1"]) == "203.0.113.9"
    proxied = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7, 127.0.0.1"}
    assert client_address(proxied, ["127.0.0.1"]) == "198.51.100.7"
    assert client_address({"REMOTE_ADDR": "127.0.0.1"}, ["127.0.0.1"]) == "127.0.0.1"
