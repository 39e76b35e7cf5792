"""The chat server itself speaks Engine.IO v4 / Socket.IO v5 as the specification and Node's
servers do (issue 17). tests/test_protocol_suites.py runs the official suites against the
conformance app; these tests check the same corrections on the chat, with its own handlers,
over raw websocket and long-polling clients. Each failed on the code before the corrections."""
import json
import subprocess
import sys
import time

import pytest
import requests
import websocket

from tests.rawclient import RawPolling, RawSocket
from tests.serverproc import ROOT, base_env

SEPARATOR = RawPolling.SEPARATOR


def raw_websocket(url):
    ws = websocket.create_connection(url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    return ws, json.loads(ws.recv()[1:])


def closed(ws, within=10):
    """True once the server ends the websocket (pings answered meanwhile); False if it is
    still open after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            frame = ws.recv()
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        except websocket.WebSocketTimeoutException:
            continue
        if not frame:
            return True
        if frame == "2":
            ws.send("3")
    return False


def test_the_connect_reply_comes_before_welcome(chat_server):
    ws, _ = raw_websocket(chat_server.url)
    ws.send('40{"name":"firstconnect"}')
    first, second = ws.recv(), ws.recv()
    assert first.startswith('40{"sid":')
    assert second.startswith('42["welcome",{"name":"firstconnect"')
    ws.close()


def test_an_unknown_namespace_is_refused_with_an_object(chat_server):
    ws, _ = raw_websocket(chat_server.url)
    ws.send("40/admin,")
    assert ws.recv() == '44/admin,{"message":"Invalid namespace"}'
    ws.close()


@pytest.mark.parametrize("packet", ["42{}", "42[]", '42[{"room":"x"}]', '431{"not":"an array"}', "40[]"])
def test_an_invalid_packet_closes_the_connection(chat_server, packet):
    client = RawSocket(chat_server.url)
    client.connect(name=f"invalid{abs(hash(packet)) % 10000}")
    client.ws.send(packet)
    assert closed(client.ws)


def test_an_event_before_connect_closes_the_connection(chat_server):
    ws, _ = raw_websocket(chat_server.url)
    ws.send('421["rooms",{}]')
    assert closed(ws)


def test_a_connection_that_never_connects_is_closed_after_the_connect_timeout(start_server):
    server = start_server(CHAT_CONNECT_TIMEOUT_MS=500)
    ws, _ = raw_websocket(server.url)
    assert closed(ws, within=5)
    connected = RawSocket(server.url)  # one that connects in time stays
    connected.connect(name="intime")
    time.sleep(1)
    assert connected.call("rooms", {})["ok"]
    connected.close()


def chunked(text):
    """A request body without Content-Length, sent with Transfer-Encoding: chunked."""
    data = text.encode()
    return (data[i:i + 7] for i in range(0, len(data), 7))


def test_a_chunked_polling_post_is_read_whole(chat_server):
    polling = RawPolling(chat_server.url)
    url = f"{polling.base}&sid={polling.sid}"
    reply = polling.http.post(url, data=chunked('40{"name":"chunky"}'), timeout=10)
    assert (reply.status_code, reply.text) == (200, "ok")
    assert polling.until(lambda p: p.startswith('42["welcome"')).startswith('42["welcome",{"name":"chunky"')
    reply = polling.http.post(url, data=chunked(SEPARATOR.join(['421["rooms",{}]', '422["rooms",{}]'])), timeout=10)
    assert reply.text == "ok"
    assert polling.until(lambda p: p.startswith("432"))


def test_a_chunked_polling_post_over_the_limit_gets_413_and_ends_the_session(start_server):
    server = start_server(CHAT_MAX_PAYLOAD_BYTES=4096)
    polling = RawPolling(server.url)
    url = f"{polling.base}&sid={polling.sid}"
    reply = polling.http.post(url, data=chunked("4" + "x" * 5000), timeout=10)
    assert (reply.status_code, reply.text) == (413, "packet too large: over 4096 bytes")
    assert polling.http.get(url, timeout=10).status_code == 400


def test_an_undecodable_polling_post_ends_the_session(chat_server):
    polling = RawPolling(chat_server.url)
    url = f"{polling.base}&sid={polling.sid}"
    assert polling.http.post(url, data="abc", timeout=10).status_code == 400
    reply = polling.http.get(url, timeout=10)
    assert (reply.status_code, reply.json()) == (400, {"code": 1, "message": "Session ID unknown"})


@pytest.mark.parametrize("query, code", [("EIO=4", 0), ("EIO=4&transport=carrier-pigeon", 0),
                                         ("EIO=3&transport=polling", 5), ("EIO=4&transport=polling&sid=nope", 1)])
def test_refused_requests_get_nodes_error_body(chat_server, query, code):
    reply = requests.get(f"{chat_server.url}/socket.io/?{query}", timeout=10)
    assert reply.status_code == 400
    assert reply.json()["code"] == code


def test_a_handshake_that_is_not_a_get_is_refused(chat_server):
    for method in ("post", "put"):
        reply = requests.request(method, f"{chat_server.url}/socket.io/?EIO=4&transport=polling", timeout=10)
        assert (reply.status_code, reply.json()) == (400, {"code": 2, "message": "Bad handshake method"})


def test_heartbeat_in_milliseconds_is_announced_exactly(start_server):
    server = start_server(CHAT_PING_INTERVAL_MS=700, CHAT_PING_TIMEOUT_MS=400)
    ws, opened = raw_websocket(server.url)
    assert (opened["pingInterval"], opened["pingTimeout"]) == (700, 400)
    started = time.monotonic()
    assert ws.recv() == "2"  # the first ping, after the interval
    assert time.monotonic() - started < 5
    ws.close()


def settings_value(name, **env):
    code = f"import settings; print(settings.{name})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base_env(**env), capture_output=True,
                          text=True, timeout=60)


def test_heartbeat_seconds_settings_keep_working_and_conflicts_are_refused():
    assert settings_value("CHAT_PING_INTERVAL_MS", CHAT_PING_INTERVAL_SECS="3").stdout.strip() == "3000"
    assert settings_value("CHAT_PING_INTERVAL_MS").stdout.strip() == "25000"
    conflict = settings_value("CHAT_PING_INTERVAL_MS", CHAT_PING_INTERVAL_SECS="3", CHAT_PING_INTERVAL_MS="300")
    assert conflict.returncode != 0
    assert "CHAT_PING_INTERVAL_MS=300 and CHAT_PING_INTERVAL_SECS=3 disagree" in conflict.stderr
