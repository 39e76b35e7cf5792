"""Room events in the browser (issue 15): edits, deletions, reactions, replies and the topic,
live in every tab and caught up after being offline (join with `since`), plus the keyboard
(Up arrow edits my last message, Esc cancels an edit or a reply quote, the message menu).

Real Chromium (Playwright) against a real server process, with the page checks of
tests/test_browser.py (CSP violations, JS exceptions, dialogs: a confirmation must be
in-page UI, never window.confirm).
"""
import re

import pytest

from tests.test_browser import (  # noqa: F401  (chromium, open_page: fixtures used here)
    chromium, enter_directly, expect, messages_with_text, open_page, send, two_in_room, uid)

pytestmark = [pytest.mark.browser]

# The message list as a user sees it: day dividers, and for each message what it shows.
SNAPSHOT = """() => Array.from(document.querySelectorAll('#messages > li')).map(li => {
    if (li.classList.contains('day-divider')) return {divider: li.textContent};
    const shown = sel => { const n = li.querySelector(sel); return n && !n.hidden ? n.textContent : null; };
    return {id: Number(li.dataset.id), user: li.dataset.user, grouped: li.classList.contains('grouped'),
            text: li.querySelector('.message-text').textContent, edited: shown('.message-edited'),
            quote: shown('.reply-quote'), replies: shown('.reply-count'),
            chips: Array.from(li.querySelectorAll('.reaction-chip')).map(c => c.textContent + ' | ' + c.title)};
})"""

EDITED_TITLE = re.compile(r"^edited \S.*\d")  # "(edited)" says when on hover

# Records every join's payload and what its ack said about the next page.
RECORD_JOINS = """() => {
    const socket = window.chatApp.socket, emit = socket.emit.bind(socket);
    window.joins = [];
    socket.emit = (event, payload, ...rest) => {
        if (event !== 'join') return emit(event, payload, ...rest);
        const record = {since: payload.since};
        window.joins.push(record);
        const done = rest.pop();
        return emit(event, payload, ...rest, (err, res) => {
            if (res) { record.truncated = !!res.truncated; record.next = res.next; }
            done(err, res);
        });
    };
}"""


def message_id(w, text):
    located = messages_with_text(w, text)
    expect(located).to_have_count(1)
    return located.get_attribute("data-id")


def by_id(w, mid):
    return w.page.locator(f'#messages .message[data-id="{mid}"]')


def chip(w, mid, emoji):
    return by_id(w, mid).locator(".reaction-chip", has_text=emoji)


def menu_item(w, mid, item):
    by_id(w, mid).get_by_role("button", name="More actions").click()
    by_id(w, mid).get_by_role("menuitem", name=item).click()


def edit_via_menu(w, mid, text):
    menu_item(w, mid, "Edit")
    editor = by_id(w, mid).locator("textarea.edit-input")
    expect(editor).to_be_focused()
    editor.fill(text)
    editor.press("Enter")
    expect(by_id(w, mid).locator("textarea")).to_have_count(0)


def delete_via_menu(w, mid):
    menu_item(w, mid, "Delete…")
    confirm = by_id(w, mid).get_by_role("group", name="Confirm deletion")
    expect(confirm).to_be_visible()
    confirm.get_by_role("button", name="Delete", exact=True).click()


def react_via_picker(w, mid, emoji=None, typed=None):
    by_id(w, mid).get_by_role("button", name="Add reaction").click()
    picker = by_id(w, mid).get_by_role("dialog", name="Add a reaction")
    expect(picker).to_be_visible()
    if typed is None:
        picker.get_by_role("button", name=f"React with {emoji}").click()
    else:
        picker.get_by_role("textbox", name="Any emoji").fill(typed)
        picker.get_by_role("textbox", name="Any emoji").press("Enter")
    expect(picker).to_have_count(0)


def reply(w, mid, text):
    by_id(w, mid).get_by_role("button", name="Reply").click()
    expect(w.page.locator("#reply-bar")).to_be_visible()
    expect(w.page.locator("#text")).to_be_focused()
    send(w, text)
    expect(w.page.locator("#reply-bar")).to_be_hidden()


def test_edit_delete_react_reply_live_in_every_tab_and_caught_up_after_offline(chat_server, open_page):
    base, room = chat_server.url, f"ui-ev-{uid()}"
    amy, bob, cat = f"amy_{uid()[:6]}", f"bob_{uid()[:6]}", f"cat_{uid()[:6]}"
    a, b, c = open_page(), open_page(), open_page()
    for w, name in ((a, amy), (b, bob), (c, cat)):
        enter_directly(w, base, name, room)
    for text in ("hello from amy", "typo mesage", "delete me"):
        send(a, text)
    expect(c.page.locator("#messages .message")).to_have_count(3)
    hello, typo, doomed = (message_id(a, t) for t in ("hello from amy", "typo mesage", "delete me"))
    # One day, one author within minutes: one divider, the name line only on the first.
    for w in (a, b, c):
        expect(w.page.locator("#messages .day-divider")).to_have_text(["Today"])
        expect(w.page.locator("#messages .message.grouped")).to_have_count(2)
    # Only my own messages have the menu.
    expect(by_id(b, hello).get_by_role("button", name="More actions")).to_be_hidden()

    # Cat goes offline before the four actions.
    c.page.evaluate(RECORD_JOINS)
    c.page.evaluate("window.chatApp.socket.disconnect()")
    expect(c.page.locator("#status")).to_have_text("disconnected")
    expect(a.page.locator("#member-count")).to_have_text("2")

    # Edit in place: the other tab sees the new text and "(edited)" with the time on hover.
    edit_via_menu(a, typo, "typo message, fixed")
    for w in (a, b):
        expect(by_id(w, typo).locator(".message-text")).to_have_text("typo message, fixed")
        expect(by_id(w, typo).locator(".message-edited")).to_be_visible()
        expect(by_id(w, typo).locator(".message-edited")).to_have_attribute("title", EDITED_TITLE)

    # A reply to a message that is then deleted: the quote says so, in both tabs.
    reply(b, doomed, "answer to a doomed message")
    answer = message_id(a, "answer to a doomed message")
    expect(by_id(a, answer).locator(".reply-quote")).to_have_text(f"↪ {amy}: delete me")
    expect(by_id(a, doomed).locator(".reply-count")).to_have_text("1 reply")
    delete_via_menu(a, doomed)
    for w in (a, b):
        expect(by_id(w, doomed)).to_have_count(0)
        expect(by_id(w, answer).locator(".reply-quote")).to_have_text("↪ a deleted message")

    # Reactions: a chip with its count, toggled by clicking it, seen in the other tab.
    react_via_picker(b, hello, "👍")
    for w in (a, b):
        expect(chip(w, hello, "👍")).to_have_text("👍1")
        expect(chip(w, hello, "👍")).to_have_attribute("title", bob)
    expect(chip(b, hello, "👍")).to_have_attribute("aria-pressed", "true")
    expect(chip(a, hello, "👍")).to_have_attribute("aria-pressed", "false")
    chip(b, hello, "👍").click()
    for w in (a, b):
        expect(chip(w, hello, "👍")).to_have_count(0)
    react_via_picker(b, hello, typed="🎉")
    expect(chip(a, hello, "🎉")).to_have_text("🎉1")
    chip(a, hello, "🎉").click()
    for w in (a, b):
        expect(chip(w, hello, "🎉")).to_have_text("🎉2")
        expect(chip(w, hello, "🎉")).to_have_attribute("aria-pressed", "true")
    # A refused action shows its error in the page's banner, which the next success clears.
    react_via_picker(b, hello, typed="not an emoji")
    expect(b.page.locator("#error")).to_be_visible()
    expect(b.page.locator("#error")).not_to_have_text("")
    react_via_picker(b, hello, "😮")
    expect(b.page.locator("#error")).to_be_hidden()
    expect(chip(a, hello, "😮")).to_have_text("😮1")

    # Reply: the quote on the reply, "1 reply" on the parent.
    reply(b, hello, "welcome, amy")
    welcome = message_id(a, "welcome, amy")
    for w in (a, b):
        expect(by_id(w, welcome).locator(".reply-quote")).to_have_text(f"↪ {amy}: hello from amy")
        expect(by_id(w, hello).locator(".reply-count")).to_have_text("1 reply")

    # The topic, set in place in the header (Esc cancels, Enter saves), shows in every tab.
    a.page.click("#topic-edit")
    a.page.fill("#topic-input", "never saved")
    a.page.keyboard.press("Escape")
    expect(a.page.locator("#topic-form")).to_be_hidden()
    expect(a.page.locator("#topic-edit")).to_be_focused()
    a.page.click("#topic-edit")
    a.page.fill("#topic-input", "  Release planning ")
    a.page.keyboard.press("Enter")
    for w in (a, b):
        expect(w.page.locator("#topic")).to_have_text("Release planning")
    expect(a.page.locator("#topic-form")).to_be_hidden()

    # Cat comes back in the same page: it joins with `since` and catches up with all of it.
    expect(c.page.locator("#topic")).to_be_hidden()
    c.page.click("#reconnect")
    expect(c.page.locator("#status")).to_have_text("connected")
    expect(messages_with_text(c, "welcome, amy")).to_have_count(1)
    expect(by_id(c, doomed)).to_have_count(0)
    expect(by_id(c, typo).locator(".message-text")).to_have_text("typo message, fixed")
    expect(c.page.locator("#topic")).to_have_text("Release planning")
    joins = c.page.evaluate("window.joins")
    assert joins and all(j.get("since", 0) > 0 for j in joins), joins
    snapshot = b.page.evaluate(SNAPSHOT)
    assert c.page.evaluate(SNAPSHOT) == snapshot == a.page.evaluate(SNAPSHOT)
    assert [m.get("text") for m in snapshot if "id" in m] == [
        "hello from amy", "typo message, fixed", "answer to a doomed message", "welcome, amy"]
    expect(c.page.locator("#messages .reaction-chip[aria-pressed=true]")).to_have_count(0)  # cat never reacted
    expect(by_id(c, hello).locator(".reply-count")).to_have_text("1 reply")

    for w in (a, b, c):
        w.assert_clean()


def test_keyboard_up_arrow_edits_escape_cancels_and_the_menu(chat_server, open_page):
    a, b, room, (amy, bob) = two_in_room(open_page, chat_server.url, "ui-kb", ("amy", "bob"))
    send(a, "first")
    send(b, "from bob")
    send(a, "last one")
    last = message_id(b, "last one")
    first = message_id(a, "first")

    # Up arrow in the empty composer edits my last message; Esc cancels, back to the composer.
    a.page.focus("#text")
    a.page.keyboard.press("ArrowUp")
    editor = by_id(a, last).locator("textarea.edit-input")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("last one")
    a.page.keyboard.press("Escape")
    expect(a.page.locator("#messages textarea")).to_have_count(0)
    expect(a.page.locator("#text")).to_be_focused()
    expect(by_id(a, last).locator(".message-text")).to_have_text("last one")
    expect(by_id(a, last).locator(".message-edited")).to_be_hidden()

    # Again, and Enter saves: the other tab sees it.
    a.page.keyboard.press("ArrowUp")
    expect(editor).to_be_focused()
    editor.fill("last one, edited")
    a.page.keyboard.press("Enter")
    for w in (a, b):
        expect(by_id(w, last).locator(".message-text")).to_have_text("last one, edited")
        expect(by_id(w, last).locator(".message-edited")).to_be_visible()
    expect(a.page.locator("#text")).to_be_focused()

    # A composer with text keeps Up for itself.
    a.page.fill("#text", "draft")
    a.page.keyboard.press("ArrowUp")
    expect(a.page.locator("#messages textarea")).to_have_count(0)
    a.page.fill("#text", "")

    # Esc cancels a reply quote; the next message is then no reply.
    by_id(b, first).get_by_role("button", name="Reply").click()
    expect(b.page.locator("#reply-bar")).to_contain_text(f"{amy}: first")
    b.page.keyboard.press("Escape")
    expect(b.page.locator("#reply-bar")).to_be_hidden()
    send(b, "not a reply")
    expect(messages_with_text(a, "not a reply").locator(".reply-quote")).to_be_hidden()
    # ... and so does its × button.
    by_id(b, first).get_by_role("button", name="Reply").click()
    b.page.get_by_role("button", name="Cancel reply").click()
    expect(b.page.locator("#reply-bar")).to_be_hidden()

    # The menu by keyboard: Enter opens it on its first item, arrows move, Esc closes it.
    more = by_id(a, first).get_by_role("button", name="More actions")
    more.focus()
    a.page.keyboard.press("Enter")
    expect(by_id(a, first).get_by_role("menuitem", name="Edit")).to_be_focused()
    expect(more).to_have_attribute("aria-expanded", "true")
    a.page.keyboard.press("ArrowDown")
    expect(by_id(a, first).get_by_role("menuitem", name="Delete…")).to_be_focused()
    a.page.keyboard.press("Escape")
    expect(by_id(a, first).get_by_role("menu")).to_have_count(0)
    expect(more).to_be_focused()
    expect(more).to_have_attribute("aria-expanded", "false")
    # Delete asks in the page; Esc (or Cancel) keeps the message.
    a.page.keyboard.press("Enter")
    a.page.keyboard.press("ArrowDown")
    a.page.keyboard.press("Enter")
    confirm = by_id(a, first).get_by_role("group", name="Confirm deletion")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    a.page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(by_id(b, first)).to_have_count(1)

    for w in (a, b):
        w.assert_clean()


def test_a_long_absence_is_caught_up_page_by_page(start_server, open_page):
    """A catch-up larger than CHAT_SINCE_MAX comes `truncated`: the page joins again from
    `next` until it has everything, then equals a page that never left."""
    base = start_server(CHAT_SINCE_MAX="3", CHAT_RATE_LIMITS="off").url  # the changes go out in one burst
    room = f"ui-pages-{uid()}"
    a, c = open_page(), open_page()
    enter_directly(a, base, f"amy_{uid()[:6]}", room)
    enter_directly(c, base, f"cat_{uid()[:6]}", room)
    send(a, "one")
    send(a, "two")
    expect(c.page.locator("#messages .message")).to_have_count(2)
    c.page.evaluate(RECORD_JOINS)
    c.page.evaluate("window.chatApp.socket.disconnect()")
    expect(c.page.locator("#status")).to_have_text("disconnected")

    a.page.evaluate("""async (room) => {
        const s = window.chatApp.socket;
        const call = async (event, payload) => {
            const res = await s.timeout(10000).emitWithAck(event, Object.assign({room}, payload));
            if (!res.ok) throw new Error(event + ' ' + JSON.stringify(res));
            return res;
        };
        const ids = Array.from(document.querySelectorAll('#messages .message')).map(li => Number(li.dataset.id));
        // Changes to a message deleted later are left out of the catch-up: a page can hold
        // nothing at all, and only its `next` says where to go on.
        for (const text of ['two, 1', 'two, 2', 'two, 3']) await call('edit', {id: ids[1], text});
        const gone = (await call('send', {text: 'gone soon'})).message.id;
        await call('react', {id: ids[0], emoji: '👍'});
        await call('delete', {id: gone});
        await call('edit', {id: ids[0], text: 'one, edited'});
        await call('send', {text: 'a reply', reply_to: ids[0]});
        await call('send', {text: 'three'});
        await call('delete', {id: ids[1]});
        await call('set_topic', {topic: 'paged'});
        await call('react', {id: ids[0], emoji: '🎉'});
    }""", room)
    expect(a.page.locator("#messages .reaction-chip", has_text="🎉")).to_have_count(1)

    c.page.click("#reconnect")
    expect(c.page.locator("#messages .reaction-chip", has_text="🎉")).to_have_count(1)  # the last change
    expect(c.page.locator("#status")).to_have_text("connected")
    assert c.page.evaluate(SNAPSHOT) == a.page.evaluate(SNAPSHOT)
    assert [t.strip() for t in c.page.locator("#messages .message-text").all_text_contents()] == [
        "one, edited", "a reply", "three"]
    expect(c.page.locator("#topic")).to_have_text("paged")
    joins = c.page.evaluate("window.joins")
    assert len(joins) >= 3 and joins[0]["since"] > 0 and not joins[-1]["truncated"], joins
    for page, following in zip(joins, joins[1:]):  # each page asks again from where the last ended
        assert page["truncated"] and following["since"] == page["next"], joins
    for w in (a, c):
        w.assert_clean()
