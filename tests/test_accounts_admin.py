"""Django accounts on the socket, and moderation in the Django admin, against a real server."""
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
import socketio

from tests.chatclient import ChatClient, unique
from tests.serverproc import LISTENING, ROOT, base_env, manage

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def create_user(server, username, password, staff=False):
    manage(server.database_url, "shell", "-c",
           "from django.contrib.auth.models import User; "
           f"u = User.objects.create_user({username!r}, password={password!r}); "
           f"u.is_staff = u.is_superuser = {staff}; u.save()")


def login(server, path, username, password):
    browser = requests.Session()
    form = browser.get(server.url + path, timeout=5)
    token = CSRF_FIELD.search(form.text).group(1)
    done = browser.post(server.url + path, timeout=5, allow_redirects=False,
                        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                        headers={"Referer": server.url + path})
    assert done.status_code == 302, done.text[:500]
    cookie = browser.cookies.get("sessionid")
    assert cookie
    jar = browser.cookies
    assert "HttpOnly" in done.headers["Set-Cookie"] and "SameSite=Lax" in done.headers["Set-Cookie"]
    return browser, jar


def cookie_header(jar):
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_logged_in_user_chats_under_their_username_and_name_is_reserved(chat_server, clients):
    username = unique("user")
    create_user(chat_server, username, "a-long-password-1")
    _, jar = login(chat_server, "/accounts/login/", username, "a-long-password-1")
    member = clients(chat_server.url).connect(name="ignored-guest-name", headers={"Cookie": cookie_header(jar)})
    assert member.name == username
    room = unique("room")
    member.join(room)
    assert member.send(room, "signed in")["user"] == username
    member.close()
    guest = ChatClient(chat_server.url)
    with pytest.raises(socketio.exceptions.ConnectionError):
        guest.connect(name=username.upper())
    assert guest.connect_error["data"]["code"] == "name_reserved"


def admin_of(server, room, message_id):
    """A new staff member's logged-in admin session on `server`, and the admin key of a message."""
    admin_name = unique("admin")
    create_user(server, admin_name, "admin-password-9", staff=True)
    pk = manage(server.database_url, "shell", "-c",
                f"from chat.models import Message; print(Message.objects.get(room__name={room!r}, seq={message_id}).pk)"
                ).split()[-1]
    admin, _ = login(server, "/admin/login/?next=/admin/", admin_name, "admin-password-9")
    return admin, pk


def delete_in_admin(server, room, message_id):
    """A staff member deletes one message through the Django admin of `server`."""
    admin, pk = admin_of(server, room, message_id)
    page = admin.get(f"{server.url}/admin/chat/message/{pk}/delete/", timeout=5)
    token = CSRF_FIELD.search(page.text).group(1)
    done = admin.post(f"{server.url}/admin/chat/message/{pk}/delete/", timeout=5, allow_redirects=False,
                      data={"post": "yes", "csrfmiddlewaretoken": token},
                      headers={"Referer": f"{server.url}/admin/"})
    assert done.status_code == 302


def test_admin_deletion_removes_the_message_live(chat_server, clients):
    room = unique("room")
    a = clients(chat_server.url).connect(name=unique("a"))
    b = clients(chat_server.url, "polling").connect(name=unique("b"))
    a.join(room)
    b.join(room)
    doomed = a.send(room, "rude words")
    kept = a.send(room, "kind words")
    delete_in_admin(chat_server, room, doomed["id"])
    for member in (a, b):
        event = member.wait_for("message_deleted")
        assert event == {"room": room, "seq": kept["id"] + 1, "kind": "delete", "id": doomed["id"]}
    assert [m["id"] for m in a.call("history", {"room": room})["messages"]] == [kept["id"]]
    # the same room event as a client's delete: a client that was away gets it replayed
    late = clients(chat_server.url).connect(name=unique("late"))
    assert late.join(room, since=kept["id"])["events"] == [event]


def test_admin_shows_every_version_of_an_edited_message(chat_server, clients):
    room = unique("room")
    author = clients(chat_server.url).connect(name=unique("a"))
    author.join(room)
    message = author.send(room, "first draft")
    for text in ("second draft", "final text"):
        assert author.call("edit", {"room": room, "id": message["id"], "text": text})["ok"]
    admin, pk = admin_of(chat_server, room, message["id"])
    page = admin.get(f"{chat_server.url}/admin/chat/message/{pk}/change/", timeout=5).text
    versions = re.findall(r"edit by [^:]+: replaced <q>([^<]*)</q>", page)
    assert versions == ["first draft", "second draft"] and "final text" in page


def test_manage_py_chatserver_serves_the_same_app(sqlite_template):
    proc = subprocess.Popen([sys.executable, "manage.py", "chatserver", "--port", "0"], cwd=ROOT,
                            env=base_env(DATABASE_URL=sqlite_template.fresh_url()),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            match = LISTENING.search(line)
            if match:
                break
        url = f"http://127.0.0.1:{match.group(2)}"
        client = ChatClient(url).connect(name="via-manage")
        assert client.join("r")["members"] == ["via-manage"]
        client.close()
        assert requests.get(url + "/healthz", timeout=5).json()["ok"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def set_user(server, username, statement):
    """Run `statement` on the User `u` named `username` in the server's database, then save it."""
    manage(server.database_url, "shell", "-c",
           f"from django.contrib.auth.models import User; u = User.objects.get(username={username!r}); {statement}; u.save()")


def account_client(clients, server, username, password):
    _, jar = login(server, "/accounts/login/", username, password)
    return clients(server.url).connect(headers={"Cookie": cookie_header(jar)})


def test_tokens_of_deactivated_accounts_and_unusable_usernames_are_refused(chat_server, clients):
    from tests.test_server import refusal_code

    username = unique("acct")
    create_user(chat_server, username, "a-long-password-2")
    member = account_client(clients, chat_server, username, "a-long-password-2")
    token = member.welcome["token"]
    member.close()
    set_user(chat_server, username, "u.is_active = False")
    assert refusal_code(chat_server.url, "websocket", token=token) == "invalid_token"
    odd = unique("has space")  # create_user takes it, but it breaks Django's username rule
    create_user(chat_server, odd, "a-long-password-3")
    _, jar = login(chat_server, "/accounts/login/", odd, "a-long-password-3")
    assert refusal_code(chat_server.url, "websocket", headers={"Cookie": cookie_header(jar)}) == "invalid_name"


def test_account_token_is_refused_after_a_password_change_or_a_rename(chat_server, clients):
    from tests.test_server import refusal_code

    username = unique("pw")
    create_user(chat_server, username, "first-password-1")
    member = account_client(clients, chat_server, username, "first-password-1")
    token = member.welcome["token"]
    member.close()
    again = clients(chat_server.url).connect(token=token)  # the token works until something changes
    assert again.name == username
    token = again.welcome["token"]
    again.close()
    set_user(chat_server, username, "u.set_password('second-password-2')")
    assert refusal_code(chat_server.url, "websocket", token=token) == "invalid_token"
    member = account_client(clients, chat_server, username, "second-password-2")
    token = member.welcome["token"]
    member.close()
    set_user(chat_server, username, f"u.username = {username + '-renamed'!r}")
    assert refusal_code(chat_server.url, "websocket", token=token) == "invalid_token"


def test_guest_token_cannot_take_a_name_an_account_now_has(chat_server, clients):
    from tests.test_server import refusal_code

    name = unique("squat")
    squatter = clients(chat_server.url).connect(name=name)
    token = squatter.welcome["token"]
    squatter.close()
    create_user(chat_server, name, "owner-password-1")
    owner = account_client(clients, chat_server, name, "owner-password-1")
    room = unique("room")
    owner.join(room)
    assert refusal_code(chat_server.url, "websocket", token=token) == "name_reserved"
    assert owner.sio.connected and owner.received("kicked") == []
    assert owner.send(room, "still mine")["user"] == name


def test_guest_token_does_not_replace_an_account_renamed_while_online(chat_server, clients):
    from tests.test_server import refusal_code

    name = unique("early")
    token = clients(chat_server.url).connect(name=name).welcome["token"]
    create_user(chat_server, name, "owner-password-2")
    owner = account_client(clients, chat_server, name, "owner-password-2")  # takes over the guest
    set_user(chat_server, name, f"u.username = {name + '-new'!r}")  # online under the old name
    assert refusal_code(chat_server.url, "websocket", token=token) == "name_taken"
    assert owner.sio.connected and owner.received("kicked") == []


def test_guest_token_is_not_renewed_past_max_age(start_server, clients):
    """Every reconnect mints a new token, but the name is held by tokens for at most the max
    age after the guest took it; then the guest connects with the name again."""
    from tests.test_server import refusal_code

    server = start_server(CHAT_TOKEN_MAX_AGE_SECS=4)
    guest = clients(server.url).connect(name="wanderer")
    token = guest.welcome["token"]
    guest.close()
    time.sleep(2.5)
    renewed = clients(server.url).connect(token=token)  # 2.5 s after taking the name: fine
    token = renewed.welcome["token"]
    renewed.close()
    time.sleep(2.5)  # the new token is 2.5 s old, but the name was taken 5 s ago
    assert refusal_code(server.url, "websocket", token=token) == "token_expired"
    assert clients(server.url).connect(name="wanderer").name == "wanderer"


def test_message_says_whether_its_author_is_an_account(chat_server, clients):
    name, room = unique("alice"), unique("room")
    watcher = clients(chat_server.url, "polling").connect(name=unique("watch"))
    watcher.join(room)
    guest = clients(chat_server.url).connect(name=name)
    guest.join(room)
    as_guest = guest.send(room, "before the account existed")
    guest.close()
    create_user(chat_server, name, "alice-password-1")
    owner = account_client(clients, chat_server, name, "alice-password-1")
    owner.join(room)
    as_account = owner.send(room, "the real one")
    assert (as_guest["user"], as_guest["account"]) == (name, False)
    assert (as_account["user"], as_account["account"]) == (name, True)
    assert watcher.wait_messages(room, 2) == [as_guest, as_account]
    assert watcher.call("history", {"room": room})["messages"] == [as_guest, as_account]
    assert owner.join(room)["history"] == [as_guest, as_account]
    api = requests.get(f"{chat_server.url}/api/rooms/{room}/messages", timeout=5).json()
    assert api["messages"] == [as_guest, as_account]


def register_in_admin(server, username, password):
    """A staff member adds an account through the Django admin's user form."""
    admin_name = unique("admin")
    create_user(server, admin_name, "admin-password-9", staff=True)
    admin, _ = login(server, "/admin/login/?next=/admin/", admin_name, "admin-password-9")
    form = admin.get(f"{server.url}/admin/auth/user/add/", timeout=5)
    done = admin.post(f"{server.url}/admin/auth/user/add/", timeout=5, allow_redirects=False,
                      data={"username": username, "password1": password, "password2": password,
                            "usable_password": "true", "_save": "Save",
                            "csrfmiddlewaretoken": CSRF_FIELD.search(form.text).group(1)},
                      headers={"Referer": f"{server.url}/admin/"})
    assert done.status_code == 302, done.text[:800]


def chat_under_django_usernames(server, clients):
    suffix = unique("")[1:]
    usernames = [f"a.b+c@d{suffix}", ("x" * 40)[: 40 - len(suffix)] + suffix]
    staff_name = unique("staff")
    create_user(server, staff_name, "staff-password-7", staff=True)
    moderator = account_client(clients, server, staff_name, "staff-password-7")
    room = unique("room")
    moderator.join(room)
    for username in usernames:
        register_in_admin(server, username, "a-long-password-5")
        member = account_client(clients, server, username, "a-long-password-5")
        assert member.name == username
        assert username in member.join(room)["members"]
        assert member.send(room, "hello")["user"] == username
        token = member.welcome["token"]
        member.close()
        back = clients(server.url, "polling").connect(token=token)
        assert back.name == username and back.join(room)["ok"]
        assert moderator.call("ban", {"room": room, "user": username}) == {"ok": True}
        assert back.wait_for("banned")["room"] == room
    assert [m["user"] for m in moderator.call("history", {"room": room})["messages"]] == usernames


def test_django_usernames_register_and_chat(chat_server, clients):
    chat_under_django_usernames(chat_server, clients)


def test_django_usernames_chat_on_postgresql(clients):
    from tests.cluster import PostgresDatabase, require_postgres
    from tests.serverproc import ServerProcess

    require_postgres()
    with PostgresDatabase() as db:
        server = ServerProcess(db.url).start()
        try:
            chat_under_django_usernames(server, clients)
        finally:
            server.stop()


@pytest.mark.django_db
def test_rooms_cannot_be_deleted_in_the_admin(admin_client):
    from chat.models import Room

    room = Room.objects.create(name="permanent")
    assert admin_client.get(f"/admin/chat/room/{room.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/chat/room/{room.pk}/change/").status_code == 200


def test_staff_ban_removes_at_once_and_blocks_rejoin_until_unbanned(chat_server, clients):
    staff_name = unique("staff")
    create_user(chat_server, staff_name, "staff-password-7", staff=True)
    _, jar = login(chat_server, "/accounts/login/", staff_name, "staff-password-7")
    moderator = clients(chat_server.url).connect(headers={"Cookie": cookie_header(jar)})
    room = unique("room")
    troll = clients(chat_server.url).connect(name=unique("troll"))
    bystander = clients(chat_server.url).connect(name=unique("by"))
    for member in (moderator, troll, bystander):
        member.join(room)
    assert bystander.call("ban", {"room": room, "user": troll.name})["error"]["code"] == "forbidden"
    assert moderator.call("ban", {"room": room, "user": troll.name.upper(), "reason": "spam"}) == {"ok": True}
    assert troll.wait_for("banned")["room"] == room
    bystander.wait_for("presence", lambda d: d["user"] == troll.name and d["action"] == "leave")
    assert troll.call("send", {"room": room, "text": "still here?"})["error"]["code"] == "not_member"
    assert troll.call("join", {"room": room})["error"]["code"] == "banned"
    assert troll.sio.connected  # only the room is closed to them
    assert moderator.call("unban", {"room": room, "user": troll.name}) == {"ok": True, "removed": True}
    assert troll.call("join", {"room": room})["ok"]


def test_ban_saved_in_the_admin_is_enforced_live(chat_server, clients):
    admin_name = unique("admin")
    create_user(chat_server, admin_name, "admin-password-9", staff=True)
    room = unique("room")
    troll, bystander = (clients(chat_server.url).connect(name=unique(p)) for p in ("troll", "by"))
    troll.join(room)
    bystander.join(room)
    admin, _ = login(chat_server, "/admin/login/?next=/admin/", admin_name, "admin-password-9")
    form = admin.get(f"{chat_server.url}/admin/chat/ban/add/", timeout=5)
    done = admin.post(f"{chat_server.url}/admin/chat/ban/add/", timeout=5, allow_redirects=False,
                      data={"room": room, "name": troll.name, "reason": "", "_save": "Save",
                            "csrfmiddlewaretoken": CSRF_FIELD.search(form.text).group(1)},
                      headers={"Referer": f"{chat_server.url}/admin/"})
    assert done.status_code == 302, done.text[:400]
    assert troll.wait_for("banned")["room"] == room
    assert troll.call("join", {"room": room})["error"]["code"] == "banned"


def test_staff_edit_and_delete_any_message_at_any_time_and_accounts_own_theirs(start_server, clients):
    server = start_server(CHAT_EDIT_WINDOW_SECS="1")
    room = unique("room")
    guest = clients(server.url).connect(name=unique("g"))
    guest.join(room)
    old = guest.send(room, "an old guest message")
    staff_name, author_name = unique("staff"), unique("acct")
    create_user(server, staff_name, "staff-password-9", staff=True)
    create_user(server, author_name, "author-password-9")
    staff = account_client(clients, server, staff_name, "staff-password-9")
    author = account_client(clients, server, author_name, "author-password-9")
    staff.join(room)
    author.join(room)
    own = author.send(room, "mine")
    assert author.call("edit", {"room": room, "id": own["id"], "text": "mine, fixed"})["ok"]
    time.sleep(1.5)  # past the window for everyone but staff
    assert author.call("edit", {"room": room, "id": own["id"], "text": "late"})["error"]["code"] == "edit_window_closed"
    edited = staff.call("edit", {"room": room, "id": old["id"], "text": "[removed by staff]"})["event"]
    assert edited["user"] == staff_name
    assert staff.call("delete", {"room": room, "id": own["id"]})["ok"]
    assert [(m["id"], m["text"]) for m in guest.call("history", {"room": room})["messages"]] == [
        (old["id"], "[removed by staff]")]
