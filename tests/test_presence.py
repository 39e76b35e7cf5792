"""Presence bookkeeping: names of connections (an account's several tabs), membership."""
from chat.presence import Presence


def test_a_name_may_have_several_connections_and_stays_online_until_the_last_goes():
    p = Presence()
    p.claim("s1", "Alice")
    p.claim("s2", "Alice")
    p.join("s1", "r")
    p.join("s2", "r")
    assert p.sids_of("ALICE") == {"s1", "s2"} and p.members("r", 10) == ["Alice"] and p.count("r") == 2
    name, rooms = p.release("s1")
    assert (name, rooms) == ("Alice", ["r"])
    assert p.sids_of("alice") == {"s2"} and p.is_online("alice") and p.count("r") == 1
    p.release("s2")
    assert not p.is_online("alice") and p.sids_of("alice") == set() and p.count("r") == 0


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
