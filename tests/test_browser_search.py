"""Message search in the page (static/js/search.js), real Chromium against a real server:
Ctrl+K and / open the search box, results show room, author, time and the snippet with
its matches in <mark> (built from text nodes: markup in a message stays text), more
results load as the list is scrolled, and a click opens the room scrolled to the message,
highlighted, with context loaded on both sides (`history {around}`) even though the room's
latest page does not hold it.

Indexing follows the send (a job worker's `index_search` job), so the test waits (polling the socket's `search`) until the
index has the messages before it types in the page.
"""
import re

import pytest

from tests.accounts import mint_accounts
from tests.chatclient import unique
from tests.serverproc import wait_until
from tests.test_browser import Watched, chromium, expect, open_page  # noqa: F401  (fixtures)
from tests.test_browser_accounts import as_account, home
from tests.test_search import word

pytestmark = [pytest.mark.browser]


def test_search_finds_a_message_and_a_click_opens_it_in_context(start_server, workers, open_page, clients):
    server = start_server(CHAT_RATE_LIMITS="off")
    workers(server.database_url, CHAT_SEARCH_INDEX_SECS="1")  # the index job
    (name, token), = mint_accounts(server, 1, "finder")
    poster = clients(server.url).connect(token=token)
    room, w, many = unique("found"), word(), word()
    poster.join(room)
    for i in range(70):
        poster.send(room, f"filler before {i}")
    target = poster.send(room, f"the {w} is <b>here</b> & there")
    for i in range(70):
        poster.send(room, f"filler after {i}" + (f" {many}" if i < 25 else ""))
    wait_until(lambda: len(poster.call("search", {"q": many, "limit": 20})["results"]) == 20 and
               poster.call("search", {"q": w})["results"], timeout=20, interval=0.3, message="indexed")

    w_page = as_account(open_page, server, name)
    page = w_page.page
    home(w_page, server)
    page.keyboard.press("Control+k")
    expect(page.locator("#search")).to_be_visible()
    expect(page.locator("#search-query")).to_be_focused()
    page.keyboard.type(many)
    results = page.locator("#search-results .search-result")
    expect(results).to_have_count(20)
    page.locator("#search").evaluate("p => { p.scrollTop = p.scrollHeight; }")  # infinite scroll
    expect(results).to_have_count(25)
    expect(page.locator("#search-state")).to_have_text("25 messages.")

    page.keyboard.press("Escape")
    expect(page.locator("#search")).to_be_hidden()
    page.keyboard.press("/")
    expect(page.locator("#search-query")).to_be_focused()
    page.fill("#search-query", w)
    page.press("#search-query", "Enter")
    expect(results).to_have_count(1)
    hit = results.first
    expect(hit.locator(".search-room")).to_have_text("#" + room)
    expect(hit.locator(".search-user")).to_have_text(name)
    expect(hit.locator(".search-snippet mark")).to_have_text(w)
    expect(hit.locator(".search-snippet")).to_have_text(target["text"])  # the markup is text
    assert hit.locator(".search-snippet b").count() == 0

    hit.locator("a").click()
    expect(page).to_have_url(re.compile(rf"/r/{room}/$"))
    shown = page.locator(f'#messages li.message.search-hit[data-id="{target["id"]}"]')
    expect(shown).to_have_count(1)
    expect(shown.locator(".message-text")).to_have_text(target["text"])
    expect(shown).to_be_in_viewport()
    ids = page.eval_on_selector_all("#messages li.message", "els => els.map(e => Number(e.dataset.id))")
    assert target["id"] - 1 in ids and target["id"] + 1 in ids  # context on both sides
    w_page.assert_clean()
