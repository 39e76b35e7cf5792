"""Accounts for tests that need people with identities: created in one `manage.py shell`
run, logged in over HTTP, connected over a socket with their session cookie."""
import re

import requests

from tests.chatclient import unique
from tests.serverproc import manage

PASSWORD = "a-long-password-16"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def make_accounts(server, *prefixes):
    """Fresh accounts (one per prefix, unique names); returns their usernames."""
    names = [unique(prefix) for prefix in prefixes]
    manage(server.database_url, "shell", "-c", _CREATE.format(names=names, password=PASSWORD))
    return names


# One password hash for the lot: hashing is deliberately slow (about a second each here).
_CREATE = """
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
hashed = make_password({password!r})
users = User.objects.bulk_create([User(username=name, password=hashed) for name in {names!r}])
"""


def mint_accounts(server, count, prefix="user"):
    """`count` fresh accounts and a reconnect token for each, from one `manage.py shell` run
    (the server signs with the same SECRET_KEY file): [(username, token)]. Quicker than
    logging each in over HTTP, which hashes a password every time."""
    names = [unique(prefix) for _ in range(count)]
    out = manage(server.database_url, "shell", "-c", _CREATE.format(names=names, password=PASSWORD) +
                 "from chat import identity\n"
                 "for user in User.objects.filter(username__in=[u.username for u in users]):\n"
                 "    print('TOKEN', user.username, identity.make_token(identity.account(user)))\n")
    return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("TOKEN ")]


def session_of(server, username, password=PASSWORD):
    """A logged-in requests.Session (its cookie is the account's session)."""
    browser = requests.Session()
    form = browser.get(server.url + "/accounts/login/", timeout=5)
    token = CSRF_FIELD.search(form.text).group(1)
    done = browser.post(server.url + "/accounts/login/", timeout=5, allow_redirects=False,
                        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                        headers={"Referer": server.url + "/accounts/login/"})
    assert done.status_code == 302, done.text[:300]
    return browser


def cookie_of(session):
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def connect_as(clients, server, session, transport="websocket", url=None):
    """A socket of the account whose session this is (on `url`, default the server's)."""
    return clients(url or server.url, transport).connect(headers={"Cookie": cookie_of(session)})


def ok_reply(client, event, payload=None):
    reply = client.call(event, payload)
    assert reply["ok"], reply
    return reply


def error_code(client, event, payload=None):
    reply = client.call(event, payload)
    assert reply["ok"] is False, reply
    return reply["error"]["code"]
