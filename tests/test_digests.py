"""Email digests (chat.digests, chat.emailprefs) end to end: a real server, a real job worker
and a real SMTP server (aiosmtpd) on a free local port, whose received message is read."""
import email
import email.policy
import re
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from tests.accounts import mint_accounts, ok_reply, session_of
from tests.chatclient import unique
from tests.jobworkers import FAST, jobs_of, rows
from tests.serverproc import manage, wait_until

DIGEST = "chat.tasks.send_digest"


class Inbox:
    """aiosmtpd on 127.0.0.1:<free port>; `messages` are the parsed emails it accepted."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content,
                                                                              policy=email.policy.default)))
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox():
    box = Inbox()
    box.controller.start()
    yield box
    box.controller.stop()


def set_email(server, name, address):
    manage(server.database_url, "shell", "-c", "from django.contrib.auth.models import User\n"
                                               f"User.objects.filter(username={name!r}).update(email={address!r})")


def mail_env(inbox, delay_secs):
    return dict(EMAIL_HOST="127.0.0.1", EMAIL_PORT=inbox.port, CHAT_EMAIL_DELAY_SECS=delay_secs, **FAST)


def test_unread_dms_and_a_mention_become_one_digest_with_room_links_and_one_click_unsubscribe(
        start_server, workers, clients, inbox):
    server = start_server(**mail_env(inbox, 2))
    (amy, amy_token), (bob, bob_token) = mint_accounts(server, 2, "mail")
    set_email(server, bob, f"{bob}@example.com")
    room = unique("pub")
    bob_socket = clients(server.url).connect(token=bob_token)
    bob_socket.join(room)  # a member of the room, so @bob there notifies him
    bob_socket.close()
    a = clients(server.url).connect(token=amy_token)
    dm = ok_reply(a, "open_dm", {"users": [bob]})["room"]["name"]
    a.join(dm)
    a.send(dm, "first private word")
    a.send(dm, "second private word")
    a.join(room)
    a.send(room, f"look here @{bob}")
    assert len(jobs_of(server.database_url, DIGEST)) == 1  # one job queued for the three, with them
    workers(server.database_url, **mail_env(inbox, 2))

    wait_until(lambda: inbox.messages, timeout=30, message="the digest email")
    wait_until(lambda: jobs_of(server.database_url, DIGEST) == [("SUCCESSFUL", 1)], timeout=10, message="job done")
    assert len(inbox.messages) == 1
    recipients, mail = inbox.messages[0]
    assert recipients == [f"{bob}@example.com"] and mail["Subject"] == "3 unread messages for you on Chat"
    body = mail.get_content()
    for text in ("first private word", "second private word", f"look here @{bob}", f"/r/{dm}/", f"/r/{room}/"):
        assert text in body, text
    link = re.fullmatch(r"<(.+)>", mail["List-Unsubscribe"].strip()).group(1)  # folded onto its own line
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and link in body

    path = urlsplit(link).path
    assert 'id="unsubscribe-form"' in requests.get(server.url + path, timeout=5).text  # GET changes nothing
    assert rows(server.database_url, "SELECT notify FROM chat_emailsettings")[0][0] == 1
    done = requests.post(server.url + path, data="List-Unsubscribe=One-Click", timeout=5,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # RFC 8058, no cookie
    assert done.status_code == 200 and 'id="unsubscribed"' in done.text
    assert rows(server.database_url, "SELECT notify FROM chat_emailsettings")[0][0] == 0
    forged = path.replace("/unsubscribe/", "/unsubscribe/x")
    assert requests.post(server.url + forged, timeout=5).status_code == 400
    a.send(dm, "after unsubscribing")
    assert len(jobs_of(server.database_url, DIGEST)) == 1  # no new job for an unsubscribed account


def test_messages_read_before_the_delay_send_no_email(start_server, workers, clients, inbox):
    server = start_server(**mail_env(inbox, 1))
    (amy, amy_token), (bob, bob_token) = mint_accounts(server, 2, "read")
    set_email(server, bob, f"{bob}@example.com")
    a = clients(server.url).connect(token=amy_token)
    dm = ok_reply(a, "open_dm", {"users": [bob]})["room"]["name"]
    a.join(dm)
    a.send(dm, "one")
    last = a.send(dm, "two")
    b = clients(server.url).connect(token=bob_token)  # another tab of bob's reads them
    ok_reply(b, "mark_read", {"room": dm, "id": last["id"]})
    workers(server.database_url, **mail_env(inbox, 1))  # the job can only run after the read
    wait_until(lambda: jobs_of(server.database_url, DIGEST) == [("SUCCESSFUL", 0)], timeout=30,
               message="the digest job, finding nothing unread")
    assert inbox.messages == []


def test_a_digest_leaves_out_a_room_the_account_may_no_longer_read(start_server, workers, clients, inbox):
    """The job is a door to room data: a ban between the mention and the digest keeps the
    mention's text out of the email (THE read rule, chat.permissions), the DM still goes."""
    server = start_server(**mail_env(inbox, 1))
    (amy, amy_token), (bob, bob_token) = mint_accounts(server, 2, "ban")
    set_email(server, bob, f"{bob}@example.com")
    room = unique("pub")
    bob_socket = clients(server.url).connect(token=bob_token)
    bob_socket.join(room)
    bob_socket.close()
    a = clients(server.url).connect(token=amy_token)
    dm = ok_reply(a, "open_dm", {"users": [bob]})["room"]["name"]
    a.join(dm)
    a.send(dm, "a private word")
    a.join(room)
    a.send(room, f"secret plans @{bob}")
    manage(server.database_url, "shell", "-c", f"from chat import moderation; moderation.ban({room!r}, {bob!r}, None)")
    workers(server.database_url, **mail_env(inbox, 1))
    wait_until(lambda: inbox.messages, timeout=30, message="the digest email")
    body = inbox.messages[0][1].get_content()
    assert "a private word" in body and f"/r/{dm}/" in body
    assert "secret plans" not in body and f"/r/{room}/" not in body


def test_the_account_page_sets_the_address_and_the_switch(start_server):
    server = start_server()
    [(name, _)] = mint_accounts(server, 1, "page")
    browser = session_of(server, name)
    page = browser.get(server.url + "/accounts/settings/", timeout=5)
    assert page.status_code == 200 and 'id="email-settings-form"' in page.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    form = {"csrfmiddlewaretoken": token, "email": "not an address", "notify": "on"}
    headers = {"Referer": server.url + "/accounts/settings/"}
    refused = browser.post(server.url + "/accounts/settings/", data=form, headers=headers, timeout=5)
    assert "form-error" in refused.text
    saved = browser.post(server.url + "/accounts/settings/", data={**form, "email": f"{name}@example.com",
                                                                  "notify": ""}, headers=headers, timeout=5)
    assert 'id="email-settings-saved"' in saved.text
    assert rows(server.database_url, "SELECT u.email, s.notify FROM auth_user u JOIN chat_emailsettings s "
                                     "ON s.user_id = u.id WHERE u.username = ?", (name,)) == [(f"{name}@example.com", 0)]
    assert requests.get(server.url + "/accounts/settings/", timeout=5, allow_redirects=False).status_code == 302
