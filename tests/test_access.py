"""Access and isolation: cross-site sockets, CSRF, oversized frames, what the logs say."""
import pytest
import requests
import websocket

from tests.chatclient import ChatClient, all_join, unique
from tests.rawclient import RawSocket
from tests.serverproc import wait_until


def opens_socket(url, origin, transport):
    """Does the server open an Engine.IO session for a page on `origin`? Only the server's
    refusal counts as no (polling: 400 "Not an accepted origin."; websocket: a refused
    handshake, or a close before the open packet); any other outcome fails the test."""
    if transport == "polling":
        answer = requests.get(url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": origin}, timeout=5)
        if answer.status_code == 400:
            assert "Not an accepted origin" in answer.text, answer.text
            return False
        assert answer.status_code == 200 and answer.text.startswith("0{"), (answer.status_code, answer.text[:200])
        return True
    try:
        ws = websocket.create_connection(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                         origin=origin, timeout=5)
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code in (400, 403), exc  # the handshake was refused; anything else is a failure
        return False
    try:
        opcode, data = ws.recv_data(control_frame=True)
    finally:
        ws.close()
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        return False  # upgraded, then closed before the Engine.IO open packet: refused
    assert opcode == websocket.ABNF.OPCODE_TEXT and data.startswith(b"0{"), (opcode, data[:100])
    return True


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_foreign_origin_cannot_open_a_socket(chat_server, transport):
    assert not opens_socket(chat_server.url, "http://evil.example", transport)
    assert not opens_socket(chat_server.url, chat_server.url.replace("127.0.0.1", "localhost"), transport)
    assert opens_socket(chat_server.url, chat_server.url, transport)  # the site itself may


def test_allowed_origins_are_configurable(start_server):
    server = start_server(CHAT_ALLOWED_ORIGINS="https://chat.example.org")
    for transport in ("websocket", "polling"):
        assert opens_socket(server.url, "https://chat.example.org", transport)
        assert not opens_socket(server.url, server.url, transport)


def test_login_and_logout_need_the_csrf_token(chat_server):
    login = requests.post(chat_server.url + "/accounts/login/", data={"username": "x", "password": "y"}, timeout=5)
    assert login.status_code == 403
    logout = requests.post(chat_server.url + "/accounts/logout/", timeout=5)
    assert logout.status_code == 403
    form = requests.get(chat_server.url + "/accounts/login/", timeout=5)
    assert "csrftoken" in form.cookies and "SameSite=Lax" in form.headers["Set-Cookie"]


def test_an_oversized_frame_closes_only_that_connection(start_server, clients):
    server = start_server(CHAT_MAX_PAYLOAD_BYTES=10_000)
    room = unique("room")
    a, b = all_join(room, clients(server.url).connect(name="a"), clients(server.url).connect(name="b"))
    big = RawSocket(server.url)
    big.connect(name="big")
    big.ws.send('42["send",{"room":"%s","text":"%s"}]' % (room, "x" * 20_000))
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        big.until(lambda frame: False)  # the server closes it
    sent = a.send(room, "we are fine")
    assert b.wait_messages(room, 1) == [sent] and a.sio.connected and b.sio.connected


def test_logs_name_node_address_and_never_the_text_above_debug(start_server, clients):
    server = start_server(CHAT_NODE_ID="node-under-test")
    room = unique("room")
    a = clients(server.url).connect(name="logged")
    a.join(room)
    a.send(room, "a very private sentence")
    a.call("send", {"room": room, "text": ""})
    a.close()
    wait_until(lambda: "disconnect node=node-under-test" in server.output(), message="disconnect logged")
    lines = server.output().splitlines()
    connect = [line for line in lines if "connect node=node-under-test" in line and "name=logged" in line]
    assert len(connect) == 2 and all("addr=127.0.0.1" in line for line in connect)  # connect + disconnect
    assert "a very private sentence" not in server.output()


def test_reconnect_tokens_expire(start_server, clients):
    import time

    from tests.test_server import refusal_code

    server = start_server(CHAT_TOKEN_MAX_AGE_SECS=4)  # the fresh reconnect must happen within it, even on a loaded machine
    first = clients(server.url).connect(name="brief")
    token = first.welcome["token"]
    first.close()
    assert clients(server.url).connect(token=token).name == "brief"  # fresh: works
    time.sleep(5.1)
    assert refusal_code(server.url, "websocket", token=token) == "token_expired"


def test_forwarded_for_counts_only_behind_trusted_proxies(start_server, clients):
    from tests.test_server import refusal_code

    behind = start_server(CHAT_TRUSTED_PROXIES="127.0.0.1", CHAT_MAX_CONNECTIONS_PER_IP=1)
    clients(behind.url).connect(name="one", headers={"X-Forwarded-For": "198.51.100.1"})
    clients(behind.url).connect(name="two", headers={"X-Forwarded-For": "198.51.100.2"})
    assert refusal_code(behind.url, "websocket", name="three",
                        headers={"X-Forwarded-For": "198.51.100.1"}) == "too_many_connections"
    exposed = start_server(CHAT_MAX_CONNECTIONS_PER_IP=1)  # no trusted proxy: the header is ignored
    clients(exposed.url).connect(name="one", headers={"X-Forwarded-For": "198.51.100.1"})
    assert refusal_code(exposed.url, "websocket", name="two",
                        headers={"X-Forwarded-For": "198.51.100.2"}) == "too_many_connections"
