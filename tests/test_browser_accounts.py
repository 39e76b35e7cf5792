"""The app as accounts use it (issue 16): one page for every conversation, in real Chromium
(Playwright) against a real server, with three accounts A, B and C.

Direct messages started from the page and shown live in the other person's list; a
conversation that is not yours refused at every door (page, socket, HTTP API); unread
badges and the title count of a hidden tab that fall when another tab of the account reads
the room; a mention in a private room made and shared from the page raising a browser
notification; and room switching over one socket with the URL, back and forward following.

Every page is checked as in tests/test_browser.py (CSP violations, JS exceptions, dialogs).
"""
import re

import pytest
import requests

from tests.accounts import connect_as, make_accounts, ok_reply, session_of
from tests.test_browser import (  # noqa: F401  (chromium, open_page: fixtures used here)
    Watched, chromium, expect, messages_with_text, open_page, send, uid, wait_joined)

pytestmark = [pytest.mark.browser]

# Headless Chromium has every page visible. To test what a hidden tab does, this init script
# overrides document.visibilityState / document.hidden (the page reads nothing else) and lets
# the test flip them with window.__setHidden(true|false), which dispatches `visibilitychange`
# as the browser would.
HIDDEN_TAB = """(() => {
    let hidden = false;
    Object.defineProperty(Document.prototype, 'visibilityState',
                          {configurable: true, get() { return hidden ? 'hidden' : 'visible'; }});
    Object.defineProperty(Document.prototype, 'hidden', {configurable: true, get() { return hidden; }});
    window.__setHidden = (value) => { hidden = value; document.dispatchEvent(new Event('visibilitychange')); };
})();"""

# Records every notification the page makes; the wrapper still constructs the real one.
RECORD_NOTIFICATIONS = """(() => {
    const Real = window.Notification;
    window.__notifications = [];
    if (typeof Real !== 'function') return;
    function Recorded(title, options) {
        window.__notifications.push({title, body: options && options.body});
        return new Real(title, options);
    }
    Recorded.prototype = Real.prototype;
    Object.defineProperty(Recorded, 'permission', {get: () => Real.permission});
    Recorded.requestPermission = (...args) => Real.requestPermission(...args);
    window.Notification = Recorded;
})();"""

# Socket.IO handshakes this page made: the first request of every connection carries no sid.
HANDSHAKES = """() => performance.getEntriesByType('resource').map(e => new URL(e.name))
    .filter(u => u.pathname === '/socket.io/' && !u.searchParams.has('sid')).length"""


def as_account(open_page, server, username, *init_scripts, **context_options):
    """A watched page whose browser context is logged in as `username` (its session cookie)."""
    w = open_page(**context_options)
    for script in init_scripts:
        w.page.context.add_init_script(script)
    session = session_of(server, username)
    w.page.context.add_cookies([{"name": c.name, "value": c.value, "url": server.url} for c in session.cookies])
    return w


def home(w, server):
    w.page.goto(server.url + "/")
    expect(w.page.locator("#status")).to_have_text("connected")
    expect(w.page.locator("#nav")).to_be_visible()


def nav_item(w, room):
    return w.page.locator(f'#nav .nav-item[data-room="{room}"]')


def open_dm_by_socket(clients, server, opener, other):
    """The direct room of two accounts, opened by `opener`'s socket, which then joins it."""
    client = connect_as(clients, server, session_of(server, opener))
    dm = ok_reply(client, "open_dm", {"users": [other]})["room"]["name"]
    client.join(dm)
    return client, dm


def test_a_direct_message_started_in_the_page_shows_live_for_the_other_person(chat_server, open_page):
    amy, bob, _ = make_accounts(chat_server, "amy", "bob", "cat")
    a, b = as_account(open_page, chat_server, amy), as_account(open_page, chat_server, bob)
    home(a, chat_server)
    home(b, chat_server)
    b.page.evaluate("window.stillThisPage = true")

    a.page.click("#new-dm-open")
    a.page.fill("#new-dm-users", bob)
    a.page.press("#new-dm-users", "Enter")
    a.page.wait_for_url(re.compile(r".*/r/dm-[0-9a-f]+/$"))
    dm = a.page.url.rstrip("/").rsplit("/", 1)[1]
    expect(a.page.locator("#room-title")).to_have_text(bob)  # a DM is called by the other people
    expect(nav_item(a, dm)).to_have_class(re.compile(r"\bcurrent\b"))
    wait_joined(a, amy)

    # B's list shows it at once, in the direct messages, named after A; no reload.
    expect(b.page.locator(f'#nav-dms .nav-item[data-room="{dm}"] .nav-label')).to_have_text(amy)
    expect(b.page.locator("#nav-rooms .nav-item")).to_have_count(0)

    send(a, "hello from amy")
    expect(messages_with_text(a, "hello from amy")).to_have_count(1)
    expect(nav_item(b, dm).locator(".nav-unread")).to_have_text("1")  # B is in the DM live

    nav_item(b, dm).locator("a").click()
    b.page.wait_for_url(f"{chat_server.url}/r/{dm}/")
    expect(messages_with_text(b, "hello from amy")).to_have_count(1)
    # The read marker was before A's message: the "new messages" line is there.
    expect(b.page.locator("#messages .unread-divider")).to_have_text("New messages")
    expect(nav_item(b, dm).locator(".nav-unread")).to_be_hidden()
    send(b, "hi amy, bob here")
    expect(messages_with_text(a, "hi amy, bob here")).to_have_count(1)
    expect(messages_with_text(b, "hi amy, bob here")).to_have_count(1)
    assert b.page.evaluate("window.stillThisPage") is True

    a.assert_clean()
    b.assert_clean()


def test_someone_elses_direct_messages_are_refused_by_url_socket_and_api(chat_server, open_page, clients):
    amy, bob, cat = make_accounts(chat_server, "amy", "bob", "cat")
    client, dm = open_dm_by_socket(clients, chat_server, amy, bob)
    client.send(dm, "a secret for bob")

    c = as_account(open_page, chat_server, cat)
    c.page.goto(f"{chat_server.url}/r/{dm}/")
    expect(c.page.locator("#refused")).to_be_visible()
    expect(c.page.locator("#refused-text")).to_contain_text("private")
    expect(c.page.locator("#chat")).to_be_hidden()
    expect(c.page.locator("#messages .message")).to_have_count(0)
    assert "a secret for bob" not in c.page.content()
    expect(nav_item(c, dm)).to_have_count(0)

    cat_session = session_of(chat_server, cat)
    socket = connect_as(clients, chat_server, cat_session)
    reply = socket.call("join", {"room": dm})
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    assert socket.messages(dm) == []

    api = cat_session.get(f"{chat_server.url}/api/rooms/{dm}/messages", timeout=5)
    assert api.status_code == 403, api.text
    assert api.json()["error"]["code"] == "forbidden"
    # ... while the people of the conversation read it there.
    assert [m["text"] for m in session_of(chat_server, bob).get(
        f"{chat_server.url}/api/rooms/{dm}/messages", timeout=5).json()["messages"]] == ["a secret for bob"]
    assert requests.get(f"{chat_server.url}/api/rooms/{dm}/messages", timeout=5).status_code == 403

    c.assert_clean()


def test_unread_badge_and_title_rise_in_a_hidden_tab_and_fall_when_another_tab_reads(
        chat_server, open_page, clients):
    amy, bob, _ = make_accounts(chat_server, "amy", "bob", "cat")
    client, dm = open_dm_by_socket(clients, chat_server, amy, bob)

    b = as_account(open_page, chat_server, bob, HIDDEN_TAB)
    home(b, chat_server)
    badge = nav_item(b, dm).locator(".nav-unread")
    expect(nav_item(b, dm)).to_have_count(1)
    expect(badge).to_be_hidden()
    b.page.evaluate("window.__setHidden(true)")
    expect(b.page).to_have_title("Chat")

    client.send(dm, "one")
    expect(badge).to_have_text("1")
    expect(b.page).to_have_title("(1) Chat")
    client.send(dm, "two")
    expect(badge).to_have_text("2")
    expect(b.page).to_have_title("(2) Chat")

    # A second tab of B reads the conversation: the hidden tab learns it through read_state.
    second = Watched(b.page.context.new_page())
    second.page.goto(f"{chat_server.url}/r/{dm}/")
    expect(messages_with_text(second, "two")).to_have_count(1)
    expect(badge).to_be_hidden()
    expect(b.page).to_have_title("Chat")
    expect(nav_item(second, dm).locator(".nav-unread")).to_be_hidden()

    # Visible again, the first tab stays at zero.
    b.page.evaluate("window.__setHidden(false)")
    client.send(dm, "three")
    expect(messages_with_text(second, "three")).to_have_count(1)
    expect(b.page).to_have_title("Chat")
    b.assert_clean()
    second.assert_clean()


def test_a_mention_in_a_private_room_made_in_the_page_notifies_the_hidden_tab(chat_server, open_page):
    amy, bob, _ = make_accounts(chat_server, "amy", "bob", "cat")
    room = f"priv-{uid()}"
    a = as_account(open_page, chat_server, amy)
    b = as_account(open_page, chat_server, bob, HIDDEN_TAB, RECORD_NOTIFICATIONS)
    b.page.context.grant_permissions(["notifications"], origin=chat_server.url)
    home(a, chat_server)
    home(b, chat_server)

    # A creates the private room in the page and invites B; B's list shows it live.
    a.page.click("#new-room-open")
    a.page.fill("#new-room-name", room)
    a.page.press("#new-room-name", "Enter")
    a.page.wait_for_url(f"{chat_server.url}/r/{room}/")
    wait_joined(a, amy)
    a.page.fill("#invite-user", bob)
    a.page.press("#invite-user", "Enter")
    expect(a.page.locator("#invite-status")).to_have_text(f"Added {bob}.")
    expect(nav_item(b, room).locator(".nav-label")).to_have_text(f"#{room}")
    expect(a.page.locator("#members .member", has_text=bob)).to_have_count(1)  # B's tab joined it

    # B turns notifications on (the permission is granted) and goes away.
    b.page.click("#notify-toggle")
    expect(b.page.locator("#notify-toggle")).to_have_attribute("aria-pressed", "true")
    b.page.evaluate("window.__setHidden(true)")

    send(a, "nothing for anyone")
    expect(nav_item(b, room).locator(".nav-unread")).to_have_text("1")
    send(a, f"@{bob} can you look at this?")
    expect(nav_item(b, room).locator(".nav-unread")).to_have_text("2")
    expect(nav_item(b, room).locator(".nav-mentions")).to_have_text("@1")
    b.page.wait_for_function("window.__notifications.length >= 1")
    b.page.wait_for_timeout(500)  # the `mention` event of the same message must not notify twice
    assert b.page.evaluate("window.__notifications") == [
        {"title": f"{amy} mentioned you in #{room}", "body": f"@{bob} can you look at this?"}]

    # Muted: no more notifications for the room.
    b.page.evaluate("window.__setHidden(false)")
    nav_item(b, room).locator("a").click()
    expect(messages_with_text(b, f"@{bob} can you look at this?")).to_have_class(re.compile(r"\bmentions-me\b"))
    b.page.click("#mute-toggle")
    expect(b.page.locator("#mute-toggle")).to_have_attribute("aria-pressed", "true")
    expect(nav_item(b, room)).to_have_class(re.compile(r"\bmuted\b"))
    b.page.evaluate("window.__setHidden(true)")
    send(a, f"@{bob} again")
    expect(messages_with_text(b, f"@{bob} again")).to_have_count(1)
    b.page.wait_for_timeout(500)
    assert len(b.page.evaluate("window.__notifications")) == 1

    a.assert_clean()
    b.assert_clean()


def test_switching_rooms_keeps_one_socket_and_the_url_and_history_follow(chat_server, open_page, clients):
    (amy,) = make_accounts(chat_server, "amy")
    first, second = f"sw-one-{uid()}", f"sw-two-{uid()}"
    a = as_account(open_page, chat_server, amy)
    a.page.goto(f"{chat_server.url}/r/{first}/")  # opening a URL opens that room in the app
    wait_joined(a, amy)
    a.page.evaluate("window.stillThisPage = true")
    socket_id = a.page.evaluate("window.chatApp.socket.id")
    send(a, "said in one")
    expect(messages_with_text(a, "said in one")).to_have_count(1)

    a.page.click("#browse-open")
    a.page.fill("#browse-query", second)
    a.page.press("#browse-query", "Enter")
    a.page.wait_for_url(f"{chat_server.url}/r/{second}/")
    expect(a.page.locator("#room-title")).to_have_text(f"#{second}")
    expect(a.page).to_have_title(f"#{second} · Chat")
    wait_joined(a, amy)
    expect(a.page.locator("#messages .message")).to_have_count(0)
    send(a, "said in two")
    expect(messages_with_text(a, "said in two")).to_have_count(1)

    # Still joined to the room not shown: its badge rises live.
    guest = clients(chat_server.url).connect(name=f"guest_{uid()[:6]}")
    guest.join(first)
    guest.send(first, "while you were in two")
    expect(nav_item(a, first).locator(".nav-unread")).to_have_text("1")

    nav_item(a, first).locator("a").click()
    a.page.wait_for_url(f"{chat_server.url}/r/{first}/")
    expect(a.page.locator("#room-title")).to_have_text(f"#{first}")
    expect(messages_with_text(a, "while you were in two")).to_have_count(1)
    assert a.page.locator("#messages .message .message-text").all_text_contents() == [
        "said in one", "while you were in two"]
    expect(nav_item(a, first).locator(".nav-unread")).to_be_hidden()

    a.page.go_back()
    a.page.wait_for_url(f"{chat_server.url}/r/{second}/")
    expect(a.page.locator("#room-title")).to_have_text(f"#{second}")
    assert a.page.locator("#messages .message .message-text").all_text_contents() == ["said in two"]
    a.page.go_forward()
    a.page.wait_for_url(f"{chat_server.url}/r/{first}/")
    expect(messages_with_text(a, "said in one")).to_have_count(1)
    send(a, "back in one")
    expect(messages_with_text(a, "back in one")).to_have_count(1)
    guest.wait_for("message", lambda m: m["text"] == "back in one")

    assert a.page.evaluate("window.stillThisPage") is True
    assert a.page.evaluate("window.chatApp.socket.id") == socket_id
    assert a.page.evaluate(HANDSHAKES) == 1
    a.assert_clean()


def test_rooms_past_the_connection_limit_keep_their_counts_and_mark_all_read(start_server, open_page, clients):
    """With CHAT_MAX_ROOMS_PER_CONNECTION=2 the page follows the two most recently active
    rooms live; the third keeps the counts of `my_rooms` (and of `mention` events). Opening
    it leaves the least recently active one. "Mark all read" clears every count, on the server."""
    server = start_server(CHAT_MAX_ROOMS_PER_CONNECTION="2")
    amy, bob = make_accounts(server, "amy", "bob")
    rooms = [f"lim-{n}-{uid()}" for n in ("old", "mid", "new")]
    bob_socket = connect_as(clients, server, session_of(server, bob))
    amy_socket = connect_as(clients, server, session_of(server, amy))

    def post(room, text):  # the sockets are bound by the limit too: in, send, out
        amy_socket.join(room)
        amy_socket.send(room, text)
        ok_reply(amy_socket, "leave", {"room": room})

    for room in rooms:  # bob becomes a member of each (public rooms); amy posts, oldest first
        bob_socket.join(room)
        ok_reply(bob_socket, "leave", {"room": room})
    bob_socket.close()
    for room in rooms:
        post(room, f"first in {room}")
    old, mid, new = rooms

    b = as_account(open_page, server, bob)
    home(b, server)
    for room in rooms:
        expect(nav_item(b, room).locator(".nav-unread")).to_have_text("1")
    expect(nav_item(b, old)).to_have_class(re.compile(r"\bover\b"))
    expect(b.page.locator("#nav .nav-item.over")).to_have_count(1)

    post(new, "live in new")  # followed live
    expect(nav_item(b, new).locator(".nav-unread")).to_have_text("2")
    post(old, f"@{bob} in the old room")  # not followed: the `mention` event counts it
    expect(nav_item(b, old).locator(".nav-mentions")).to_have_text("@1")
    expect(nav_item(b, old).locator(".nav-unread")).to_have_text("2")

    nav_item(b, old).locator("a").click()
    expect(messages_with_text(b, f"@{bob} in the old room")).to_have_count(1)
    expect(nav_item(b, old)).not_to_have_class(re.compile(r"\bover\b"))
    expect(nav_item(b, mid)).to_have_class(re.compile(r"\bover\b"))  # the least recently active left
    expect(nav_item(b, old).locator(".nav-unread")).to_be_hidden()
    post(new, "still live in new")
    expect(nav_item(b, new).locator(".nav-unread")).to_have_text("3")

    b.page.click("#mark-all-read")
    expect(b.page.locator("#nav .nav-unread:visible")).to_have_count(0)
    expect(b.page.locator("#nav .nav-mentions:visible")).to_have_count(0)
    check = connect_as(clients, server, session_of(server, bob))

    def unread_on_server():
        return {r["name"]: (r["unread"], r["mentions"]) for r in ok_reply(check, "my_rooms")["rooms"]}

    from tests.serverproc import wait_until
    wait_until(lambda: set(unread_on_server().values()) == {(0, 0)}, message="all read on the server")
    b.assert_clean()


def test_leaving_and_archiving_a_private_room_from_the_page(chat_server, open_page, clients):
    amy, bob = make_accounts(chat_server, "amy", "bob")
    room = f"arch-{uid()}"
    amy_socket = connect_as(clients, chat_server, session_of(chat_server, amy))
    ok_reply(amy_socket, "create_room", {"room": room, "kind": "private"})
    ok_reply(amy_socket, "add_member", {"room": room, "user": bob})
    a, b = as_account(open_page, chat_server, amy), as_account(open_page, chat_server, bob)
    a.page.goto(f"{chat_server.url}/r/{room}/")
    wait_joined(a, amy)
    b.page.goto(f"{chat_server.url}/r/{room}/")
    wait_joined(b, bob)
    expect(b.page.locator("#archive-room")).to_be_hidden()  # members may leave; owners archive
    expect(b.page.locator("#invite-form")).to_be_hidden()

    # Leaving asks in the page first; then the room leaves the list and cannot be opened again.
    b.page.click("#leave-room")
    b.page.click("#confirm-room-no")
    expect(nav_item(b, room)).to_have_count(1)
    b.page.click("#leave-room")
    b.page.click("#confirm-room-yes")
    b.page.wait_for_url(f"{chat_server.url}/")
    expect(b.page.locator("#no-room-note")).to_have_text(f"You left #{room}.")
    expect(nav_item(b, room)).to_have_count(0)
    expect(a.page.locator("#members .member", has_text=bob)).to_have_count(0)
    b.page.goto(f"{chat_server.url}/r/{room}/")
    expect(b.page.locator("#refused")).to_be_visible()

    # The owner archives it: read-only; once another room is shown it leaves the list.
    send(a, "last words")
    expect(messages_with_text(a, "last words")).to_have_count(1)
    a.page.click("#archive-room")
    a.page.click("#confirm-room-yes")
    expect(a.page.locator("#text")).to_be_disabled()
    expect(a.page.locator("#archive-room")).to_have_text("Restore room")
    a.page.click("#browse-open")
    a.page.fill("#browse-query", f"elsewhere-{uid()}")
    a.page.press("#browse-query", "Enter")
    expect(nav_item(a, room)).to_have_count(0)
    assert room not in [r["name"] for r in ok_reply(amy_socket, "my_rooms")["rooms"]]
    a.assert_clean()
    b.assert_clean()


def test_without_guests_the_app_is_for_accounts(start_server, open_page):
    """CHAT_GUESTS=false: the home page offers log in and sign up (data-page="accounts-only"),
    a room URL asks to log in first, and an account's home is the app."""
    server = start_server(CHAT_GUESTS="false")
    (amy,) = make_accounts(server, "amy")
    anonymous = open_page()
    anonymous.page.goto(server.url + "/")
    expect(anonymous.page.locator("body")).to_have_attribute("data-page", "accounts-only")
    expect(anonymous.page.locator("#accounts-only")).to_be_visible()
    anonymous.page.goto(server.url + "/r/lobby/")
    anonymous.page.wait_for_url(re.compile(r".*/accounts/login/\?next=/r/lobby/$"))
    anonymous.assert_clean()

    a = as_account(open_page, server, amy)
    home(a, server)
    a.page.click("#browse-open")
    a.page.fill("#browse-query", "lobby")
    a.page.press("#browse-query", "Enter")
    a.page.wait_for_url(server.url + "/r/lobby/")
    wait_joined(a, amy)
    a.assert_clean()
