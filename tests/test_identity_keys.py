"""Identity is a stable key, not a name (chat.identity): a guest is its server-issued guest
id, kept by its token, so the next guest to take a free name neither owns the previous one's
messages, nor shares its nonces, nor inherits its ban."""
import pytest
import socketio

from tests.accounts import error_code, mint_accounts, ok_reply
from tests.chatclient import unique
from tests.serverproc import manage, wait_until


def take_free_name(clients, url, transport, name):
    """Connect as a guest called `name` once the previous holder's release is recorded."""
    def attempt():
        try:
            return clients(url, transport).connect(name=name)
        except socketio.exceptions.ConnectionError:
            return None
    return wait_until(attempt, timeout=10, message=f"{name} free again")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_the_next_guest_of_a_name_is_someone_else(chat_server, clients, transport):
    room, name = unique("ids"), unique("amy")
    first = clients(chat_server.url, transport).connect(name=name)
    first.join(room)
    sent = first.send(room, "mine", nonce="n-1")
    ok_reply(first, "react", {"room": room, "id": sent["id"], "emoji": "👍"})
    token = first.welcome["token"]
    first.close()

    back = clients(chat_server.url, transport).connect(token=token)  # the same person, by token
    back.join(room)
    assert back.send(room, "mine", nonce="n-1")["id"] == sent["id"]  # its nonce, its message
    assert ok_reply(back, "edit", {"room": room, "id": sent["id"], "text": "still mine"})["event"]
    assert back.join(room)["history"][-1]["reactions"][0]["me"] is True
    back.close()

    other = take_free_name(clients, chat_server.url, transport, name)
    other.join(room)
    assert error_code(other, "edit", {"room": room, "id": sent["id"], "text": "now mine?"}) == "forbidden"
    assert error_code(other, "delete", {"room": room, "id": sent["id"]}) == "forbidden"
    theirs = other.send(room, "theirs", nonce="n-1")  # the same nonce is another person's
    assert theirs["id"] != sent["id"] and theirs["text"] == "theirs"
    history = other.join(room)["history"]
    assert history[-2]["reactions"][0]["me"] is False  # the first guest's reaction is not theirs


def test_a_ban_bars_the_guest_not_the_name(chat_server, clients):
    (staff_name, staff_token), = mint_accounts(chat_server, 1, "mod")
    manage(chat_server.database_url, "shell", "-c",
           f"from django.contrib.auth.models import User; User.objects.filter(username={staff_name!r})"
           ".update(is_staff=True)")
    room, name = unique("banned"), unique("troll")
    staff = clients(chat_server.url).connect(token=staff_token)
    troll = clients(chat_server.url).connect(name=name)
    staff.join(room)
    troll.join(room)
    assert ok_reply(staff, "ban", {"room": room, "user": name})["ok"]
    troll.wait_for("banned", lambda d: d["room"] == room)
    token = troll.welcome["token"]
    troll.close()
    again = clients(chat_server.url).connect(token=token)
    assert error_code(again, "join", {"room": room}) == "banned"  # the same guest, reconnected
    again.close()
    newcomer = take_free_name(clients, chat_server.url, "websocket", name)
    assert newcomer.join(room)["room"] == room  # someone else who took the name later
    ok_reply(staff, "unban", {"room": room, "user": name})
