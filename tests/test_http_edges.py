"""The HTTP edges of a node: security headers, ALLOWED_HOSTS, and the JSON API's method handling."""
import pytest
import requests
import websocket

from tests.chatclient import unique

PAGES = ["/", "/r/lobby/", "/accounts/login/", "/api/rooms/", "/healthz"]
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.mark.parametrize("path", PAGES)
def test_pages_and_the_api_send_the_security_headers(chat_server, path):
    answer = requests.get(chat_server.url + path, timeout=5)
    assert answer.status_code == 200, answer.text[:200]
    for header, value in SECURITY_HEADERS.items():
        assert answer.headers.get(header) == value, (header, answer.headers)
    csp = answer.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


@pytest.mark.parametrize("path", ["/", "/api/rooms/", "/healthz", "/accounts/login/"])
def test_a_host_outside_allowed_hosts_gets_400(chat_server, path):
    bad = requests.get(chat_server.url + path, headers={"Host": "evil.example"}, timeout=5)
    assert bad.status_code == 400, (bad.status_code, bad.text[:200])
    assert "Bad Request" in bad.text
    for host in (f"localhost:{chat_server.port}", f"127.0.0.1:{chat_server.port}"):
        assert requests.get(chat_server.url + path, headers={"Host": host}, timeout=5).status_code == 200


def test_allowed_hosts_is_configurable(start_server):
    server = start_server(ALLOWED_HOSTS="chat.example.org")
    assert requests.get(server.url + "/", headers={"Host": "chat.example.org"}, timeout=5).status_code == 200
    assert requests.get(server.url + "/", timeout=5).status_code == 400  # 127.0.0.1 is no longer listed


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_socketio_refuses_a_host_outside_allowed_hosts(chat_server, transport):
    """DNS rebinding: a page on evil.example that resolves here must not open a socket."""
    host = f"evil.example:{chat_server.port}"
    if transport == "polling":
        answer = requests.get(chat_server.url + "/socket.io/?EIO=4&transport=polling",
                              headers={"Host": host, "Origin": f"http://{host}"}, timeout=5)
        assert answer.status_code == 400, answer.text[:200]
        assert answer.json()["error"]["code"] == "invalid_host"
        return
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(chat_server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                    host=host, origin=f"http://{host}", timeout=5)
    assert refused.value.status_code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("path", ["/api/rooms/", "/api/rooms/{room}/messages"])
def test_the_api_answers_a_wrong_method_with_405_and_the_error_shape(chat_server, clients, method, path):
    room = unique("room")
    clients(chat_server.url).connect(name=unique("maker")).join(room)
    url = chat_server.url + path.format(room=room)
    answer = requests.request(method, url, data=None if method == "HEAD" else {"text": "nope"}, timeout=5)
    assert answer.status_code == 405, (answer.status_code, answer.text[:200])
    assert answer.headers["Allow"] == "GET"
    if method == "HEAD":
        assert answer.text == ""  # no body for HEAD, by HTTP
        return
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"ok": False, "error": {"code": "method_not_allowed",
                                                    "message": f"{method} is not allowed here; use GET"}}
    assert requests.get(url, timeout=5).json()["ok"]  # GET still works, and nothing was written
    assert requests.get(chat_server.url + f"/api/rooms/{room}/messages", timeout=5).json()["messages"] == []
