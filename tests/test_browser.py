"""The browser UI end to end: real Chromium (Playwright) against a real server process.

Covers: picking a name and joining a room through the pages, live delivery between two
browsers (exactly once for the sender), presence and typing indicators, that user content is
rendered as text (no XSS), reconnect catch-up, loading older history by scrolling up,
refused names, the room list, the login page, and a 360 px wide phone layout.
Every page is also checked for CSP violations, JS exceptions and dialogs.
"""
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from tests.needs import missing

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.browser]

if not os.path.exists(CHROMIUM):
    missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
try:
    import playwright.sync_api as playwright_sync
except ImportError:
    missing("playwright is not installed (pip_requirements.txt)", allow_module_level=True)
expect = playwright_sync.expect

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Runs before any page script (injected by DevTools, so the page's CSP does not block it):
# records CSP violations reported by the browser.
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sample || ''));
});
"""

CSP_CONSOLE = re.compile(r"content security policy|refused to (execute|load|apply|connect|frame)", re.I)

TIMEOUT_MS = 10_000


def uid():
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def chromium():
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watched:
    """A page plus everything suspicious it reported."""

    def __init__(self, page):
        self.page = page
        self.console_errors = []
        self.page_errors = []
        self.dialogs = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._on_dialog)

    def _on_console(self, msg):
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _on_dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def assert_clean(self):
        assert self.dialogs == [], f"unexpected dialogs (script executed?): {self.dialogs}"
        assert self.page_errors == [], f"JavaScript exceptions: {self.page_errors}"
        csp_console = [t for t in self.console_errors if CSP_CONSOLE.search(t)]
        assert csp_console == [], f"CSP violations in console: {csp_console}"
        uncaught = [t for t in self.console_errors if "uncaught" in t.lower()]
        assert uncaught == [], f"uncaught errors in console: {uncaught}"
        if not self.page.is_closed():
            violations = self.page.evaluate("window.__cspViolations || []")
            assert violations == [], f"CSP violations: {violations}"


@pytest.fixture
def open_page(chromium):
    """Factory: a fresh browser context (own storage) with one watched page."""
    contexts = []

    def make(**context_options):
        context = chromium.new_context(**context_options)
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(WATCH_CSP)
        return Watched(context.new_page())

    yield make
    for context in contexts:
        context.close()


# -- helpers ---------------------------------------------------------------------------------

def enter_via_index(w, base, name, room, typed_room=None):
    page = w.page
    page.goto(base + "/")
    page.fill("#name", name)
    page.fill("#room-input", typed_room or room)
    page.press("#room-input", "Enter")
    page.wait_for_url(f"{base}/r/{room}/")
    wait_joined(w, name)


def enter_directly(w, base, name, room):
    page = w.page
    page.goto(f"{base}/r/{room}/")
    expect(page.locator("#name-form")).to_be_visible()
    page.fill("#name", name)
    page.press("#name", "Enter")
    wait_joined(w, name)


def two_in_room(open_page, base, prefix, names=("alice", "bob")):
    """Two pages under fresh names in a fresh room `<prefix>-...`: (a, b, room, (name_a, name_b))."""
    room = f"{prefix}-{uid()}"
    first, second = (f"{name}_{uid()[:6]}" for name in names)
    a, b = open_page(), open_page()
    enter_directly(a, base, first, room)
    enter_directly(b, base, second, room)
    return a, b, room, (first, second)


def wait_joined(w, name):
    """Connected and the join ack rendered (the member list holds our own name)."""
    expect(w.page.locator("#status")).to_have_text("connected")
    expect(w.page.locator("#members .member", has_text=name)).to_have_count(1)


def send(w, text):
    w.page.fill("#text", text)
    w.page.press("#text", "Enter")


def messages_with_text(w, text):
    """`.message` elements whose `.message-text` is exactly `text`."""
    return w.page.locator("#messages .message").filter(
        has=w.page.locator(".message-text", has_text=re.compile("^" + re.escape(text) + "$")))


def message_texts(w):
    return w.page.eval_on_selector_all("#messages .message .message-text", "els => els.map(e => e.textContent)")


def message_ids(w):
    return w.page.eval_on_selector_all("#messages .message", "els => els.map(e => Number(e.dataset.id))")


def create_user(server, username, password):
    """Create a Django account in the database of the running test server."""
    database_url = getattr(server, "database_url", None)
    if not database_url:
        pytest.skip("chat_server does not expose database_url; cannot create an account")
    from tests.serverproc import ROOT, base_env
    code = ("import sys; from django.contrib.auth import get_user_model; "
            "get_user_model().objects.create_user(sys.argv[1], password=sys.argv[2])")
    subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}", username, password],
                   cwd=ROOT, env=base_env(DATABASE_URL=database_url), check=True, timeout=60)


def session_token(w):
    raw = w.page.evaluate("sessionStorage.getItem('chat.session')")
    return json.loads(raw)["token"] if raw else None


def no_horizontal_scroll(page, width):
    sizes = page.evaluate("""() => ({doc: document.documentElement.scrollWidth,
                                     body: document.body.scrollWidth})""")
    assert sizes["doc"] <= width and sizes["body"] <= width, sizes


# -- tests -----------------------------------------------------------------------------------

def test_two_users_chat_typing_and_xss(chat_server, open_page):
    base, room = chat_server.url, f"ui-{uid()}"
    alice, bob = f"alice_{uid()[:6]}", f"bob.{uid()[:6]}"
    a, b = open_page(), open_page()

    # A goes through the index page (typed room name is lower-cased); B opens the room URL.
    enter_via_index(a, base, alice, room, typed_room=room.upper())
    enter_directly(b, base, bob, room)

    # Presence: both see both, and A's count follows B's arrival.
    expect(b.page.locator("#members .member", has_text=alice)).to_have_count(1)
    expect(b.page.locator("#member-count")).to_have_text("2")
    expect(a.page.locator("#members .member", has_text=bob)).to_have_count(1)
    expect(a.page.locator("#member-count")).to_have_text("2")

    # Typing indicator.
    a.page.locator("#text").press_sequentially("Hel")
    expect(b.page.locator("#typing")).to_contain_text(f"{alice} is typing")
    expect(a.page.locator("#typing")).to_have_text("")  # never shows oneself

    # Message delivery: in B, and exactly once in A (ack + broadcast are de-duplicated).
    a.page.locator("#text").press_sequentially("lo from A")
    a.page.press("#text", "Enter")
    in_b = messages_with_text(b, "Hello from A")
    expect(in_b).to_have_count(1)
    expect(in_b.locator(".message-user")).to_have_text(alice)
    expect(in_b.locator(".message-time")).not_to_have_text("")
    in_a = messages_with_text(a, "Hello from A")
    expect(in_a).to_have_count(1)
    expect(a.page.locator("#text")).to_have_value("")
    expect(a.page.locator("#outbox > *")).to_have_count(0)
    assert in_a.get_attribute("data-id") == in_b.get_attribute("data-id")
    assert "mine" in (in_a.get_attribute("class") or "")
    # Sending ends the typing state.
    expect(b.page.locator("#typing")).to_have_text("")

    # Shift+Enter is a newline, Enter sends.
    a.page.locator("#text").press_sequentially("line one")
    a.page.press("#text", "Shift+Enter")
    a.page.locator("#text").press_sequentially("line two")
    a.page.press("#text", "Enter")
    expect(messages_with_text(b, "line one\nline two")).to_have_count(1)

    # Hostile content is shown as text and never executed.
    payloads = ["<img src=x onerror=alert(1)>", "<script>window.__xss=1</script>",
                '<b onmouseover="alert(2)">bold</b> & &amp; "quotes"']
    for text in payloads:
        send(a, text)
    for text in payloads:
        expect(messages_with_text(b, text)).to_have_count(1)
        expect(messages_with_text(a, text)).to_have_count(1)
    b.page.wait_for_timeout(300)  # give any injected handler a chance to fire
    for w in (a, b):
        assert w.page.locator("#messages img, #messages script, #messages b").count() == 0
        assert w.page.evaluate("typeof window.__xss") == "undefined"

    # B answers; A receives it once.
    send(b, "Hi alice")
    expect(messages_with_text(a, "Hi alice")).to_have_count(1)
    expect(messages_with_text(b, "Hi alice")).to_have_count(1)

    # Everything arrived once and in id order on both sides.
    for w in (a, b):
        ids = message_ids(w)
        assert ids == sorted(ids) and len(ids) == len(set(ids)) == 2 + len(payloads) + 1
    assert message_texts(a) == message_texts(b)

    # B leaves (navigates away): A's member list and count follow.
    b.page.goto("about:blank")
    expect(a.page.locator("#members .member", has_text=bob)).to_have_count(0)
    expect(a.page.locator("#member-count")).to_have_text("1")

    a.assert_clean()
    b.assert_clean()


def test_reconnect_catches_up_missed_messages(chat_server, open_page):
    base = chat_server.url
    a, b, room, (alice, bob) = two_in_room(open_page, base, "ui-re")
    send(a, "before the drop")
    expect(messages_with_text(b, "before the drop")).to_have_count(1)

    # Drop A's transport; the client waits 2.5 s before reconnecting (with its token).
    a.page.evaluate("""() => {
        const m = window.chatApp.socket.io;
        m.reconnectionDelay(2500); m.reconnectionDelayMax(2500); m.randomizationFactor(0);
        m.engine.close();
    }""")
    expect(a.page.locator("#status")).to_have_text("reconnecting")

    send(b, "while you were away")
    expect(messages_with_text(b, "while you were away")).to_have_count(1)

    expect(a.page.locator("#status")).to_have_text("connected")
    expect(messages_with_text(a, "while you were away")).to_have_count(1)
    expect(a.page.locator("#members .member", has_text=alice)).to_have_count(1)

    # Still the same identity, still able to talk.
    send(a, "back again")
    expect(messages_with_text(b, "back again")).to_have_count(1)
    expect(messages_with_text(a, "back again")).to_have_count(1)
    ids = message_ids(a)
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 3
    assert message_texts(a) == message_texts(b)

    a.assert_clean()
    b.assert_clean()


def test_long_polling_only_and_prompt_leave(chat_server, open_page):
    """Without WebSockets (e.g. a proxy that blocks them) the chat still works over HTTP
    long-polling, and leaving the page is seen at once, not after the ping timeout."""
    base, room = chat_server.url, f"ui-poll-{uid()}"
    alice, bob = f"alice_{uid()[:6]}", f"bob_{uid()[:6]}"
    a, b = open_page(), open_page()
    b.page.context.route_web_socket(re.compile(r".*/socket\.io/.*"), lambda ws: ws.close())
    enter_directly(a, base, alice, room)
    enter_directly(b, base, bob, room)
    assert b.page.evaluate("window.chatApp.socket.io.engine.transport.name") == "polling"

    send(b, "over polling")
    expect(messages_with_text(a, "over polling")).to_have_count(1)
    send(a, "back to polling")
    expect(messages_with_text(b, "back to polling")).to_have_count(1)
    expect(a.page.locator("#member-count")).to_have_text("2")

    b.page.goto(base + "/")
    expect(a.page.locator("#member-count")).to_have_text("1", timeout=4000)
    expect(a.page.locator("#members .member", has_text=bob)).to_have_count(0)

    a.assert_clean()
    b.assert_clean()


def test_scrolling_up_loads_older_messages(start_server, open_page):
    # 130 sends as fast as acks allow: a private server without rate limits (not under test here)
    base, room = start_server(CHAT_RATE_LIMITS="off").url, f"ui-hist-{uid()}"
    total = 130
    a, b = open_page(), open_page()
    enter_directly(a, base, f"writer_{uid()[:6]}", room)
    a.page.evaluate("""async ([room, total]) => {
        const s = window.chatApp.socket;
        for (let i = 1; i <= total; i++) {
            const res = await s.timeout(10000).emitWithAck(
                'send', {room, text: 'msg ' + i, nonce: crypto.randomUUID()});
            if (!res.ok) throw new Error(JSON.stringify(res));
        }
    }""", [room, total])
    expect(messages_with_text(a, f"msg {total}")).to_have_count(1)

    enter_directly(b, base, f"reader_{uid()[:6]}", room)
    expect(messages_with_text(b, f"msg {total}")).to_have_count(1)
    initial = b.page.locator("#messages .message").count()
    assert 0 < initial < total, "join should send only the most recent messages"
    # Opening the room shows the newest messages (scrolled to the bottom).
    assert b.page.evaluate("""() => { const s = document.getElementById('scroller');
                                      return s.scrollHeight - s.scrollTop - s.clientHeight < 80; }""")

    scroller = b.page.locator("#scroller")
    for _ in range(20):
        if b.page.locator("#messages .message").count() >= total:
            break
        before = b.page.locator("#messages .message").count()
        first_id = b.page.locator("#messages .message").first.get_attribute("data-id")
        scroller.evaluate("s => { s.scrollTop = 0; }")
        b.page.wait_for_function(
            "n => document.querySelectorAll('#messages .message').length > n", arg=before)
        # The view stays on the message that was at the top, not jumping to the new top.
        top = scroller.evaluate("s => s.scrollTop")
        assert top > 0, "scroll position should be kept after prepending older messages"
        assert b.page.locator(f'#messages .message[data-id="{first_id}"]').count() == 1
    assert message_texts(b) == [f"msg {i}" for i in range(1, total + 1)]
    ids = message_ids(b)
    assert ids == sorted(ids) and len(set(ids)) == total
    expect(b.page.locator("#history-state")).to_contain_text("beginning")

    a.assert_clean()
    b.assert_clean()


def test_taken_name_is_refused_and_another_can_be_picked(chat_server, open_page):
    base, room = chat_server.url, f"ui-name-{uid()}"
    name = f"carol_{uid()[:6]}"
    a, b = open_page(), open_page()
    enter_directly(a, base, name, room)

    b.page.goto(f"{base}/r/{room}/")
    b.page.fill("#name", name.upper())  # names are case-insensitive on the server
    b.page.press("#name", "Enter")
    expect(b.page.locator("#error")).to_be_visible()
    expect(b.page.locator("#error")).not_to_have_text("")
    expect(b.page.locator("#name-form")).to_be_visible()
    expect(b.page.locator("#status")).to_have_text("disconnected")

    # A client-side invalid name never reaches the server.
    b.page.fill("#name", "no spaces allowed")
    b.page.press("#name", "Enter")
    expect(b.page.locator("#error")).to_contain_text("1–32")

    other = f"dave_{uid()[:6]}"
    b.page.fill("#name", other)
    b.page.press("#name", "Enter")
    wait_joined(b, other)
    expect(b.page.locator("#error")).to_be_hidden()
    expect(a.page.locator("#members .member", has_text=other)).to_have_count(1)

    a.assert_clean()
    b.assert_clean()


def test_index_lists_rooms_and_validates(chat_server, open_page):
    base, room = chat_server.url, f"ui-list-{uid()}"
    a, b = open_page(), open_page()
    enter_directly(a, base, f"erin_{uid()[:6]}", room)

    b.page.goto(base + "/")
    link = b.page.locator(f'#rooms a[href="/r/{room}/"]')
    expect(link).to_contain_text(room)
    expect(link).to_contain_text("1 online")

    # Invalid room and name are refused on the page.
    b.page.fill("#room-input", "not a room!")
    b.page.press("#room-input", "Enter")
    expect(b.page.locator("#error")).to_be_visible()
    assert b.page.url == base + "/"
    b.page.fill("#room-input", room)
    b.page.fill("#name", "bad name")
    b.page.press("#room-input", "Enter")
    expect(b.page.locator("#error")).to_contain_text("1–32")
    assert b.page.url == base + "/"

    # The name is remembered: after clicking the room, no name form is needed.
    name = f"frank_{uid()[:6]}"
    b.page.fill("#name", name)
    link.click()
    b.page.wait_for_url(f"{base}/r/{room}/")
    wait_joined(b, name)
    expect(b.page.locator("#name-panel")).to_be_hidden()
    b.page.goto(base + "/")
    expect(b.page.locator("#name")).to_have_value(name)
    expect(b.page.locator(f'#rooms a[href="/r/{room}/"]')).to_contain_text("1 online")

    expect(b.page.locator("#login-link")).to_be_visible()

    a.assert_clean()
    b.assert_clean()


def test_replaced_connection_and_bad_token(chat_server, open_page):
    base, room = chat_server.url, f"ui-kick-{uid()}"
    name = f"gina_{uid()[:6]}"
    a, b, c = open_page(), open_page(), open_page()
    enter_directly(a, base, name, room)
    token = session_token(a)
    assert token

    # The same identity (its reconnect token) connects from another browser: A is kicked,
    # shows why, and does not reconnect by itself.
    b.page.goto(base + "/")
    b.page.evaluate("""([name, token]) => {
        localStorage.setItem('chat.name', name);
        sessionStorage.setItem('chat.session', JSON.stringify({name, token}));
    }""", [name, token])
    b.page.goto(f"{base}/r/{room}/")
    wait_joined(b, name)
    expect(a.page.locator("#status")).to_have_text("disconnected")
    expect(a.page.locator("#error")).to_be_visible()
    expect(a.page.locator("#error")).not_to_have_text("")
    expect(a.page.locator("#reconnect")).to_be_visible()
    a.page.wait_for_timeout(2000)
    expect(a.page.locator("#status")).to_have_text("disconnected")
    expect(b.page.locator("#status")).to_have_text("connected")
    expect(b.page.locator("#members .member", has_text=name)).to_have_count(1)

    # A stale / forged token falls back to the remembered name.
    other = f"hank_{uid()[:6]}"
    c.page.goto(base + "/")
    c.page.evaluate("""(name) => {
        localStorage.setItem('chat.name', name);
        sessionStorage.setItem('chat.session', JSON.stringify({name, token: 'not-a-valid-token'}));
    }""", other)
    c.page.goto(f"{base}/r/{room}/")
    wait_joined(c, other)
    assert session_token(c) not in (None, "not-a-valid-token")
    send(c, "made it")
    expect(messages_with_text(b, "made it")).to_have_count(1)

    for w in (a, b, c):
        w.assert_clean()


def test_a_guest_keeps_the_rooms_of_this_session_in_the_list(chat_server, open_page, clients):
    """Issue 16: a guest's list holds the public rooms opened in this tab's session, switches
    between them in the page, counts unread messages of the room not shown, and closes them."""
    base, first, second = chat_server.url, f"ui-g1-{uid()}", f"ui-g2-{uid()}"
    name = f"gus_{uid()[:6]}"
    g = open_page()
    enter_directly(g, base, name, first)
    expect(g.page.locator("#nav-dms-group")).to_be_hidden()  # no direct messages for guests
    g.page.click("#browse-open")
    g.page.fill("#browse-query", second)
    g.page.press("#browse-query", "Enter")
    g.page.wait_for_url(f"{base}/r/{second}/")
    wait_joined(g, name)
    expect(g.page.locator("#nav-rooms .nav-item .nav-label")).to_have_text([f"#{second}", f"#{first}"])

    other = clients(base).connect(name=f"oth_{uid()[:6]}")
    other.join(first)
    other.send(first, "for the guest")
    badge = g.page.locator(f'#nav-rooms .nav-item[data-room="{first}"] .nav-unread')
    expect(badge).to_have_text("1")
    g.page.locator(f'#nav-rooms .nav-item[data-room="{first}"] a').click()
    expect(messages_with_text(g, "for the guest")).to_have_count(1)
    expect(badge).to_be_hidden()

    g.page.reload()  # the list is the session's
    wait_joined(g, name)
    expect(g.page.locator("#nav-rooms .nav-item")).to_have_count(2)
    g.page.get_by_role("button", name=f"Close #{second}").click()
    expect(g.page.locator("#nav-rooms .nav-item .nav-label")).to_have_text([f"#{first}"])
    other.join(second)
    assert name not in other.join(second)["members"]  # closing left the room on the server
    g.assert_clean()


def test_logged_in_user(chat_server, open_page):
    base, room = chat_server.url, f"ui-user-{uid()}"
    username, password = f"ivy_{uid()[:6]}", "correct horse battery " + uid()
    create_user(chat_server, username, password)
    w, guest = open_page(), open_page()

    w.page.goto(f"{base}/accounts/login/?next=/")
    w.page.fill("input[name=username]", username)
    w.page.fill("input[name=password]", "wrong password")
    w.page.click("#login-form button[type=submit]")
    expect(w.page.locator(".form-error")).to_be_visible()
    w.page.fill("input[name=password]", password)
    w.page.click("#login-form button[type=submit]")
    w.page.wait_for_url(base + "/")

    # An account's home is the app (issue 16): its conversations, no name to pick. A room is
    # opened from "Browse rooms" (a name nobody uses creates it), in the same page.
    expect(w.page.locator("#nav")).to_be_visible()
    expect(w.page.locator(".account-name")).to_have_text(username)
    expect(w.page.locator("#name-panel")).to_be_hidden()
    w.page.evaluate("window.stillThisPage = true")
    w.page.click("#browse-open")
    w.page.fill("#browse-query", room)
    w.page.press("#browse-query", "Enter")
    w.page.wait_for_url(f"{base}/r/{room}/")
    wait_joined(w, username)
    assert w.page.evaluate("window.stillThisPage") is True  # no page load

    # Guests cannot take a registered name.
    guest.page.goto(f"{base}/r/{room}/")
    guest.page.fill("#name", username.upper())
    guest.page.press("#name", "Enter")
    expect(guest.page.locator("#error")).not_to_have_text("")
    expect(guest.page.locator("#name-form")).to_be_visible()

    send(w, "signed in hello")
    expect(messages_with_text(w, "signed in hello").locator(".message-user")).to_have_text(username)
    expect(messages_with_text(w, "signed in hello").locator(".message-account")).to_have_count(1)  # an account's

    # Logging out is a POST with the CSRF token; the reconnect token is dropped with it.
    w.page.click("#logout")
    w.page.wait_for_url(base + "/")
    expect(w.page.locator("#login-link")).to_be_visible()
    expect(w.page.locator("#name")).not_to_have_attribute("readonly", "")
    assert w.page.evaluate("sessionStorage.getItem('chat.session')") is None

    w.assert_clean()
    guest.assert_clean()


def test_login_page_renders(chat_server, open_page):
    w = open_page()
    w.page.goto(chat_server.url + "/accounts/login/?next=/r/lobby/")
    expect(w.page.locator("input[name=username]")).to_be_visible()
    expect(w.page.locator("input[name=password]")).to_be_visible()
    expect(w.page.locator("input[name=next]")).to_have_value("/r/lobby/")
    expect(w.page.locator("input[name=csrfmiddlewaretoken]")).to_have_count(1)
    w.assert_clean()


def test_phone_layout_360px(chat_server, open_page):
    base = chat_server.url
    room = ("phone-" + uuid.uuid4().hex + uuid.uuid4().hex)[:64]   # longest allowed name
    name = ("p" + uuid.uuid4().hex)[:32]                              # longest allowed name
    phone = dict(viewport={"width": 360, "height": 640}, device_scale_factor=2,
                 is_mobile=True, has_touch=True)
    w = open_page(**phone)

    w.page.goto(base + "/")
    no_horizontal_scroll(w.page, 360)

    enter_directly(w, base, name, room)
    expect(w.page.locator("#composer")).to_be_in_viewport()
    expect(w.page.locator("#text")).to_be_in_viewport()
    expect(w.page.locator("#status")).to_be_in_viewport()
    no_horizontal_scroll(w.page, 360)

    # Long unbroken content wraps instead of widening the page.
    send(w, "x" * 600)
    send(w, "https://example.com/" + "a/" * 200)
    expect(w.page.locator("#messages .message")).to_have_count(2)
    no_horizontal_scroll(w.page, 360)
    expect(w.page.locator("#composer")).to_be_in_viewport()
    box = w.page.locator("#messages .message").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360

    # The member list sits collapsed under the messages and opens on demand.
    expect(w.page.locator("#members")).to_be_hidden()
    w.page.click("#members-toggle")
    expect(w.page.locator("#members .member", has_text=name)).to_be_visible()
    messages_box = w.page.locator("#scroller").bounding_box()
    members_box = w.page.locator("#members").bounding_box()
    assert members_box["y"] >= messages_box["y"] + messages_box["height"] - 1
    no_horizontal_scroll(w.page, 360)
    expect(w.page.locator("#composer")).to_be_in_viewport()

    w.assert_clean()


MARKDOWN_SAMPLE = ("**bold** and *italic* and `a < b`\n"
                   "see https://example.com/docs?x=1 or javascript:alert(1)\n\n"
                   "> quoted line\n\n"
                   "```\nfor i in range(3):\n    print('<b>', i)\n```\n\n"
                   "# not a heading, <b>not bold</b>, [label](https://example.org/) &amp; - item")


def test_message_text_renders_a_markdown_subset_built_from_text_nodes(chat_server, open_page):
    """Issue 15, message text: bold, italic, inline code, code blocks, quotes and links show
    as such; raw HTML, entities and markup outside the subset show as typed; links are
    http(s) only and open with rel="noopener noreferrer nofollow"; the stored text is what
    was typed."""
    from tests.test_limits_paths import stored_texts

    a, b, room, _ = two_in_room(open_page, chat_server.url, "ui-md", ("writer", "reader"))
    a.page.evaluate("""([room, text]) => window.chatApp.socket.timeout(10000).emitWithAck('send', {room, text})""",
                    [room, MARKDOWN_SAMPLE])
    message = b.page.locator("#messages .message .message-text")
    expect(message).to_have_count(1)
    assert message.locator("strong").all_text_contents() == ["bold"]
    assert message.locator("em").all_text_contents() == ["italic"]
    assert message.locator("p > code").all_text_contents() == ["a < b"]
    assert message.locator("blockquote").all_text_contents() == ["quoted line"]
    assert message.locator("pre > code").all_text_contents() == ["for i in range(3):\n    print('<b>', i)"]
    links = message.locator("a")
    assert links.all_text_contents() == ["https://example.com/docs?x=1", "https://example.org/"]
    for index in range(links.count()):
        assert links.nth(index).get_attribute("rel") == "noopener noreferrer nofollow"
        assert links.nth(index).get_attribute("target") == "_blank"
        assert links.nth(index).get_attribute("href").startswith("https://")
    last = message.locator("p").last.text_content()
    assert last == "# not a heading, <b>not bold</b>, [label](https://example.org/) &amp; - item"
    assert "javascript:alert(1)" in message.text_content()
    tags = set(b.page.eval_on_selector_all("#messages .message-text *", "els => els.map(e => e.tagName.toLowerCase())"))
    assert tags == {"p", "strong", "em", "code", "a", "blockquote", "pre"}, tags
    assert [text for _, _, text in stored_texts(chat_server, room)] == [MARKDOWN_SAMPLE]
    b.assert_clean()


XSS_CORPUS = [
    "<img src=x onerror=alert(1)>",
    "<script>window.__xss=1</script>",
    "<svg onload=alert(2)>",
    "<iframe src=\"javascript:alert(3)\"></iframe>",
    "<a href=\"javascript:window.__xss=4\">click</a>",
    "\"><script>window.__xss=5</script>",
    "'><img src=x onerror=window.__xss=6>",
    "<body onload=alert(7)>",
    "<details open ontoggle=alert(8)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(9)>",
    "javascript:alert(10)",
    "<style>*{display:none}</style>",
    "<object data=\"data:text/html,<script>alert(11)</script>\"></object>",
    "{{constructor.constructor('alert(12)')()}}",
    "<input autofocus onfocus=alert(13)>",
    "&lt;script&gt;alert(14)&lt;/script&gt;",
    "<scr<script>ipt>alert(15)</scr</script>ipt>",
    "<video><source onerror=alert(16)></video>",
]


def test_xss_corpus_in_messages_names_and_rooms_executes_nothing(start_server, open_page):
    base = start_server(CHAT_RATE_LIMITS="off").url  # the corpus goes out in one burst
    a, b, room, _ = two_in_room(open_page, base, "ui-xss", ("writer", "reader"))
    a.page.evaluate("""async ([room, corpus]) => {
        for (const text of corpus) {
            const res = await window.chatApp.socket.timeout(10000).emitWithAck('send', {room, text});
            if (!res.ok) throw new Error(JSON.stringify(res));
        }
    }""", [room, XSS_CORPUS])
    expect(b.page.locator("#messages .message")).to_have_count(len(XSS_CORPUS))
    b.page.wait_for_timeout(500)  # give any injected handler (onerror, onload, ontoggle) a chance
    assert message_texts(b) == [text.strip() for text in XSS_CORPUS]
    for w in (a, b):
        inside = w.page.eval_on_selector_all(
            "#messages *", "els => els.map(e => e.tagName.toLowerCase())")
        assert not set(inside) & {"img", "script", "svg", "iframe", "a", "object", "input", "video",
                                  "style", "details", "math", "body"}, set(inside)
        assert w.page.evaluate("window.__xss") is None
        w.assert_clean()
    c = open_page()
    for payload in ("<img src=x onerror=alert(1)>", "\"><script>alert(2)</script>"):
        c.page.goto(f"{base}/r/{room}/")
        c.page.fill("#name", payload)
        c.page.press("#name", "Enter")
        expect(c.page.locator("#error")).not_to_be_empty()
        assert c.page.locator("#error img, #error script").count() == 0
    for payload in ("<script>alert(3)</script>", "%3Cimg%20src=x%20onerror=alert(4)%3E"):
        response = c.page.goto(f"{base}/r/{payload}/")
        assert response.status == 404
        assert c.page.evaluate("window.__xss") is None
    c.page.goto(base + "/")
    c.page.fill("#name", f"n{uid()[:6]}")
    c.page.fill("#room-input", "<svg onload=alert(5)>")
    c.page.press("#room-input", "Enter")
    expect(c.page.locator("#error")).not_to_be_empty()
    c.assert_clean()


def test_a_send_refused_for_now_is_kept_and_sent_again_with_its_nonce(start_server, open_page):
    """Issue 14, point 11: `rate_limited` (like `busy` and `unavailable`) stored nothing; the
    page keeps the message and sends it again after `retry_after`, once."""
    server = start_server(CHAT_RATE_LIMITS="send=0.5/1,join=5/30")
    room, name = f"ui-retry-{uid()}", f"amy_{uid()[:6]}"
    a = open_page()
    enter_directly(a, server.url, name, room)
    send(a, "first")
    expect(messages_with_text(a, "first")).to_have_count(1)
    a.page.evaluate(RECORD_SEND_NONCES)
    send(a, "second, refused at first")
    expect(a.page.locator("#outbox li[data-retry='rate_limited']")).to_have_count(1)
    expect(messages_with_text(a, "second, refused at first")).to_have_count(1)
    expect(a.page.locator("#outbox li")).to_have_count(0)
    nonces = a.page.evaluate("window.sentNonces")
    assert len(nonces) >= 2 and len(set(nonces)) == 1, nonces
    assert message_texts(a) == ["first", "second, refused at first"]
    assert a.page.input_value("#text") == ""
    a.assert_clean()


RECORD_SEND_NONCES = """() => {
    const socket = window.chatApp.socket, emit = socket.emit.bind(socket);
    window.sentNonces = [];
    socket.emit = (event, payload, ...rest) => {
        if (event === 'send') window.sentNonces.push(payload.nonce);
        return emit(event, payload, ...rest);
    };
}"""


def test_a_send_refused_as_unavailable_is_sent_again_with_the_same_nonce_once_the_database_is_back(
        start_server, open_page):
    """Issue 14, point 11: while the SQLite file is locked the send answers `unavailable`
    (nothing stored); the page keeps the message, retries with the same nonce, and once the
    lock is gone the message is stored exactly once."""
    import sqlite3

    from tests.test_limits_paths import stored_texts
    from tests.test_sqlite_failures import sqlite_path

    server = start_server()
    room, name = f"ui-unavail-{uid()}", f"amy_{uid()[:6]}"
    a = open_page()
    enter_directly(a, server.url, name, room)
    a.page.evaluate(RECORD_SEND_NONCES)
    holder = sqlite3.connect(sqlite_path(server), isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        send(a, "sent while the database is locked")
        expect(a.page.locator("#outbox li[data-retry='unavailable']")).to_have_count(1, timeout=30_000)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    expect(messages_with_text(a, "sent while the database is locked")).to_have_count(1, timeout=30_000)
    expect(a.page.locator("#outbox li")).to_have_count(0)
    nonces = a.page.evaluate("window.sentNonces")
    assert len(nonces) >= 2 and len(set(nonces)) == 1, nonces  # refused, then sent again: one nonce
    assert [text for _, _, text in stored_texts(server, room)] == ["sent while the database is locked"]
    a.assert_clean()


def test_the_resume_point_is_not_moved_by_an_ack_ahead_of_the_stream(open_page):
    """Issue 14, point 2: node B commits 2, node A commits 3 and acks it to the page before 2
    reaches A; the page drops its connection right after that ack. Its rejoin must still
    bring 2: `since` is the resume point (1), not the highest id seen (3)."""
    import signal

    from tests.chatclient import ChatClient
    from tests.cluster import BrokerProcess, PostgresDatabase, require_postgres
    from tests.test_cluster import Cluster

    require_postgres()
    with PostgresDatabase() as db:
        cluster = Cluster(db, BrokerProcess().start())
        other = None
        try:
            node_a, node_b = cluster.add_node(), cluster.add_node()
            room, name = f"ui-resume-{uid()}", f"amy_{uid()[:6]}"
            page = open_page()
            enter_directly(page, node_a.url, name, room)
            other = ChatClient(node_b.url).connect(name=f"bob_{uid()[:6]}")
            other.join(room)
            other.send(room, "one, from B")
            expect(messages_with_text(page, "one, from B")).to_have_count(1)
            page.page.evaluate("""() => {
                const m = window.chatApp.socket.io;
                m.reconnectionDelay(3000); m.reconnectionDelayMax(3000); m.randomizationFactor(0);
                const dropAfterAck = (p) => {  // after the socket handled it: gone right after our send's ack
                    if (p.type !== 3) return;  // 3: a Socket.IO ACK
                    m.off('packet', dropAfterAck);
                    m.engine.close();
                };
                m.on('packet', dropAfterAck);
            }""")
            cluster.broker.proc.send_signal(signal.SIGSTOP)  # B's next message waits on the bus
            try:
                other.send(room, "two, from B")
                send(page, "three, from A")
                expect(page.page.locator("#status")).to_have_text("reconnecting")
            finally:
                cluster.broker.proc.send_signal(signal.SIGCONT)
            expect(page.page.locator("#status")).to_have_text("connected")
            expect(messages_with_text(page, "two, from B")).to_have_count(1)
            assert message_texts(page) == ["one, from B", "two, from B", "three, from A"]
            assert message_ids(page) == [1, 2, 3]
            expect(page.page.locator("#messages .message-account")).to_have_count(0)  # guests: no badge
        finally:
            if other is not None:
                other.close()
            cluster.stop()
