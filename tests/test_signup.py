"""The account pages (chat/accounts.py) against real servers: sign up, the limits on sign-ups
and failed logins per address (in one process, and shared through Redis), password change,
and the home page without guests."""
import json

import pytest
import requests

from tests.chatclient import unique
from tests.needs import missing
from tests.serverproc import ServerProcess, manage
from tests.test_accounts_admin import CSRF_FIELD, cookie_header, create_user, login
from tests.test_server import refusal_code

PASSWORD = "correct-horse-battery-9"
WRONG_LOGIN = "Please enter a correct username and password"
REDIS_URL = "redis://127.0.0.1:6379/7"  # a database of its own, flushed before and after


@pytest.fixture(scope="module")
def accounts_server(sqlite_template):
    """Every test comes from 127.0.0.1: limits high enough for the whole module. The limits
    themselves are tested on servers of their own."""
    server = ServerProcess(sqlite_template.fresh_url(), CHAT_SIGNUP_LIMIT="1000/3600",
                           CHAT_LOGIN_LIMIT="1000/300").start()
    yield server
    server.stop()


def post_form(browser, server, path, data, headers=None):
    """GET the page for its CSRF token, then POST the form to it; the POST's response."""
    page = browser.get(server.url + path, timeout=5, headers=headers)
    token = CSRF_FIELD.search(page.text).group(1)
    return browser.post(server.url + path, timeout=5, allow_redirects=False, headers=headers,
                        data={**data, "csrfmiddlewaretoken": token})


def sign_up(server, username, password, password2=None, next_url=None, browser=None, headers=None):
    browser = browser or requests.Session()
    data = {"username": username, "password1": password, "password2": password2 or password}
    if next_url is not None:
        data["next"] = next_url
    return post_form(browser, server, "/accounts/signup/", data, headers)


def try_login(server, username, password, headers=None):
    browser = requests.Session()
    done = post_form(browser, server, "/accounts/login/", {"username": username, "password": password}, headers)
    return done, browser


def usernames(server):
    out = manage(server.database_url, "shell", "-c", "import json; from django.contrib.auth.models import User; "
                 "print(json.dumps(list(User.objects.values_list('username', flat=True))))")
    return set(json.loads(out.strip().splitlines()[-1]))


def test_sign_up_creates_an_account_logs_in_and_chats_under_its_name(accounts_server, clients):
    username = unique("New.User+chat")
    browser = requests.Session()
    done = sign_up(accounts_server, username, PASSWORD, next_url="/r/lobby/", browser=browser)
    assert done.status_code == 302 and done.headers["Location"] == "/r/lobby/"
    home = browser.get(accounts_server.url + "/", timeout=5).text
    assert f'data-user="{username}"' in home and 'id="password-change-link"' in home
    assert 'id="signup-link"' not in home
    member = clients(accounts_server.url).connect(name="guest-name", headers={"Cookie": cookie_header(browser.cookies)})
    assert member.name == username
    room = unique("room")
    member.join(room)
    assert member.send(room, "my first words")["account"] is True
    assert username in usernames(accounts_server)


def test_sign_up_goes_home_for_a_next_on_another_site(accounts_server):
    done = sign_up(accounts_server, unique("nextless"), PASSWORD, next_url="https://evil.example/")
    assert done.status_code == 302 and done.headers["Location"] == "/"


def test_bad_usernames_and_weak_passwords_are_refused_and_create_nothing(accounts_server):
    taken = unique("Taken")
    assert sign_up(accounts_server, taken, PASSWORD).status_code == 302
    refused = {
        taken: "A user with that username already exists.",
        taken.lower(): "A user with that username already exists.",
        taken.upper(): "A user with that username already exists.",
        unique("has space"): "a username is 1-150 letters, digits, @, ., +, - or _",
        unique("semi;colon"): "a username is 1-150 letters, digits, @, ., +, - or _",
        "x" * 151: "at most 150 characters",
    }
    for username, error in refused.items():
        browser = requests.Session()
        page = sign_up(accounts_server, username, PASSWORD, browser=browser)
        assert page.status_code == 200 and error in page.text, (username, page.text[:2000])
        assert 'class="form-error" role="alert"' in page.text
        assert browser.cookies.get("sessionid") is None
    weak = {("short-1", None): "This password is too short",
            ("password", None): "This password is too common",
            (PASSWORD, PASSWORD + "x"): "The two password fields didn’t match."}
    weak_names = []
    for (password, password2), error in weak.items():
        weak_names.append(unique("weak"))
        page = sign_up(accounts_server, weak_names[-1], password, password2)
        assert page.status_code == 200 and error in page.text, (password, page.text[:2000])
    accounts = [name.lower() for name in usernames(accounts_server)]
    assert accounts.count(taken.lower()) == 1
    never_created = {name.lower() for name in [*refused, *weak_names]} - {taken.lower()}
    assert not never_created & set(accounts)


def test_sign_ups_per_address_are_limited(start_server):
    server = start_server(CHAT_SIGNUP_LIMIT="2/3600")
    first, second, third = (unique("early"), unique("early"), unique("late"))
    assert sign_up(server, first, PASSWORD).status_code == 302
    assert sign_up(server, unique("bad name"), PASSWORD).status_code == 200  # refused forms do not count
    assert sign_up(server, second, PASSWORD).status_code == 302
    browser = requests.Session()
    page = browser.get(server.url + "/accounts/signup/", timeout=5)
    assert page.status_code == 429 and "Too many accounts were created from your address" in page.text
    done = browser.post(server.url + "/accounts/signup/", timeout=5, allow_redirects=False,
                        data={"username": third, "password1": PASSWORD, "password2": PASSWORD,
                              "csrfmiddlewaretoken": CSRF_FIELD.search(page.text).group(1)})
    assert done.status_code == 429 and 'id="limit-error"' in done.text
    assert 0 < int(done.headers["Retry-After"]) <= 3601
    assert browser.cookies.get("sessionid") is None
    assert usernames(server) == {first, second}


def assert_refused_by_limit(response, browser):
    assert response.status_code == 429, response.text[:1000]
    assert "Too many failed logins from your address" in response.text and 'role="alert"' in response.text
    assert WRONG_LOGIN not in response.text  # the password was not even checked
    assert browser.cookies.get("sessionid") is None


def fail_logins(server, username, times, headers=None):
    for _ in range(times):
        page, _ = try_login(server, username, "not-the-password", headers)
        assert page.status_code == 200 and WRONG_LOGIN in page.text


def test_failed_logins_per_address_are_limited(start_server):
    server = start_server(CHAT_LOGIN_LIMIT="3/300", CHAT_TRUSTED_PROXIES="127.0.0.1")
    username = unique("target")
    create_user(server, username, PASSWORD)
    attacker, neighbour = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    assert try_login(server, username, PASSWORD, attacker)[0].status_code == 302  # successes do not count
    fail_logins(server, username, 3, attacker)
    assert_refused_by_limit(*try_login(server, username, PASSWORD, attacker))
    assert_refused_by_limit(*try_login(server, unique("other"), "anything", attacker))
    assert try_login(server, username, PASSWORD, neighbour)[0].status_code == 302
    login(server, "/accounts/login/", username, PASSWORD)  # the proxy's own address


@pytest.fixture
def shared_redis():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        missing("no Redis on 127.0.0.1:6379")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_nodes_with_a_shared_redis_cache_share_the_login_limit(start_server, shared_redis):
    settings = dict(CHAT_CACHE_URL=REDIS_URL, CHAT_LOGIN_LIMIT="3/300")
    node_a, node_b = start_server(**settings), start_server(**settings)
    username = unique("shared")
    create_user(node_b, username, PASSWORD)
    fail_logins(node_a, username, 3)
    assert shared_redis.keys("*failed-logins*")
    assert_refused_by_limit(*try_login(node_b, username, PASSWORD))


def change_password(browser, server, old, new, new2=None):
    return post_form(browser, server, "/accounts/password_change/",
                     {"old_password": old, "new_password1": new, "new_password2": new2 or new})


def test_password_change_keeps_the_session_and_ends_old_passwords_and_tokens(accounts_server, clients):
    username, new_password = unique("changer"), "a-brand-new-secret-7"
    browser = requests.Session()
    assert sign_up(accounts_server, username, PASSWORD, browser=browser).status_code == 302
    member = clients(accounts_server.url).connect(headers={"Cookie": cookie_header(browser.cookies)})
    token = member.welcome["token"]
    member.close()
    assert "This password is too short" in change_password(browser, accounts_server, PASSWORD, "short-2").text
    assert "Your old password was entered incorrectly" in change_password(browser, accounts_server, "wrong",
                                                                           new_password).text
    done = change_password(browser, accounts_server, PASSWORD, new_password)
    assert done.status_code == 302 and done.headers["Location"] == "/accounts/password_change/done/"
    page = browser.get(accounts_server.url + done.headers["Location"], timeout=5)
    assert page.status_code == 200 and 'id="password-changed"' in page.text and f'data-user="{username}"' in page.text
    assert refusal_code(accounts_server.url, "websocket", token=token) == "invalid_token"
    again = clients(accounts_server.url).connect(headers={"Cookie": cookie_header(browser.cookies)})
    assert again.name == username  # this browser's session still works on the socket
    old, _ = try_login(accounts_server, username, PASSWORD)
    assert old.status_code == 200 and WRONG_LOGIN in old.text
    login(accounts_server, "/accounts/login/", username, new_password)


def test_password_change_needs_a_login(accounts_server):
    for path in ("/accounts/password_change/", "/accounts/password_change/done/"):
        page = requests.get(accounts_server.url + path, timeout=5, allow_redirects=False)
        assert page.status_code == 302 and page.headers["Location"].startswith("/accounts/login/?next=")


def test_without_guests_the_home_page_offers_only_accounts(start_server, accounts_server):
    with_guests = requests.get(accounts_server.url + "/", timeout=5).text
    assert 'id="name-form"' in with_guests and 'id="signup-link"' in with_guests
    server = start_server(CHAT_GUESTS="false")
    home = requests.get(server.url + "/", timeout=5).text
    assert 'id="name-form"' not in home and 'data-page="accounts-only"' in home
    assert 'href="/accounts/signup/"' in home and 'href="/accounts/login/"' in home
    assert "Continue as guest" not in requests.get(server.url + "/accounts/login/", timeout=5).text
    browser = requests.Session()
    assert sign_up(server, unique("member"), PASSWORD, browser=browser).status_code == 302
    assert 'id="name-form"' in browser.get(server.url + "/", timeout=5).text  # accounts join rooms as before
