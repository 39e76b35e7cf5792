/*
 * Message search: the #search panel (Ctrl+K, or / outside a text field), a result list
 * (room, author, time, the snippet with its matches in <mark>), more results as the list
 * is scrolled to its end (the server's `cursor`), and a result opened in its room, scrolled
 * to and highlighted (the app calls roompane's reveal: `history {around}`).
 *
 * The snippet arrives as parts, matches at odd positions (docs/PROTOCOL.md, `search`): every
 * part becomes a text node, matches inside a <mark>; no user text is ever parsed as HTML.
 *
 * Exposes window.ChatSearch.create(options) -> {focus}. options: conn, showPanel(id|null),
 * isOpen(), reveal(room, id), label(room result) -> text.
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var el = U.el, $ = U.$;
  var TYPE_DELAY_MS = 350;
  var NEAR_END_PX = 120;

  function create(o) {
    var conn = o.conn;
    var els = { form: $('search-form'), input: $('search-query'), results: $('search-results'),
      state: $('search-state'), panel: $('search') };
    var query = '', cursor = null, loading = false, seq = 0, timer = null;

    function setState(text) {
      els.state.textContent = text;
      els.state.hidden = !text;
    }

    function snippet(parts) {
      var p = el('p', 'search-snippet');
      (Array.isArray(parts) ? parts : []).forEach(function (part, i) {
        var text = String(part);
        if (!text) return;
        if (i % 2 === 1) p.appendChild(el('mark', null, text));
        else p.appendChild(document.createTextNode(text));
      });
      return p;
    }

    function item(r) {
      var li = el('li', 'search-result');
      var a = el('a', 'search-link');
      a.href = U.roomUrl(r.room);
      a.dataset.room = r.room;
      a.dataset.id = String(r.id);
      var meta = el('div', 'search-meta');
      meta.appendChild(el('span', 'search-room', o.label(r)));
      meta.appendChild(el('span', 'search-user', String(r.user)));
      var time = el('time', 'search-time', U.formatTime(r.ts));
      time.dateTime = String(r.ts);
      meta.appendChild(time);
      a.appendChild(meta);
      a.appendChild(snippet(r.snippet));
      li.appendChild(a);
      return li;
    }

    function valid(r) {
      return r && typeof r.room === 'string' && U.ROOM_RE.test(r.room) && Number.isInteger(r.id);
    }

    // One page: the first for a new query (replacing the list), or the next (appended).
    function fetch(fresh) {
      if (!query || (!fresh && (!cursor || loading))) return;
      var mine = ++seq;
      loading = true;
      var payload = { q: query };
      if (!fresh) payload.cursor = cursor;
      if (fresh) setState('Searching…');
      conn.call('search', payload, function (res) {
        if (mine !== seq) return;   // a newer search is on its way
        loading = false;
        if (!res.ok) {
          var after = U.errorCode(res) === 'rate_limited' ? Number(res.error.retry_after) : 0;
          if (after > 0) { timer = window.setTimeout(function () { fetch(fresh); }, after * 1000); return; }
          setState(U.errorText(res, 'The search did not work.'));
          return;
        }
        var found = (Array.isArray(res.results) ? res.results : []).filter(valid).map(item);
        if (fresh) els.results.replaceChildren.apply(els.results, found);
        else found.forEach(function (li) { els.results.appendChild(li); });
        cursor = typeof res.cursor === 'string' ? res.cursor : null;
        var count = els.results.children.length;
        setState(!count ? 'Nothing found.' : cursor ? '' : count === 1 ? '1 message.' : count + ' messages.');
        fillPanel();
      });
    }

    function start() {
      window.clearTimeout(timer);
      query = els.input.value.trim();
      cursor = null;
      if (!query) { seq++; els.results.replaceChildren(); setState(''); return; }
      fetch(true);
    }

    // Infinite scroll: the next page when the end of the list comes into view.
    function nearEnd() {
      var p = els.panel;
      return p.scrollHeight - p.scrollTop - p.clientHeight < NEAR_END_PX;
    }
    function fillPanel() { if (cursor && nearEnd()) fetch(false); }
    els.panel.addEventListener('scroll', fillPanel, { passive: true });

    els.input.addEventListener('input', function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(start, TYPE_DELAY_MS);
    });
    els.form.addEventListener('submit', function (e) { e.preventDefault(); start(); });

    els.results.addEventListener('click', function (e) {
      var link = e.target.closest('a.search-link');
      if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      o.showPanel(null);
      o.reveal(link.dataset.room, Number(link.dataset.id));
    });

    // A field being typed in (one just hidden, e.g. by Esc, may still hold the focus: not that).
    function typing(target) {
      var tag = target && target.tagName;
      var field = tag === 'INPUT' || tag === 'TEXTAREA' || (target && target.isContentEditable);
      return !!field && target.getClientRects().length > 0;
    }

    function focus() {
      if (!o.isOpen()) o.showPanel('search');
      els.input.focus();
      els.input.select();
    }

    document.addEventListener('keydown', function (e) {
      var ctrlK = (e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'k' || e.key === 'K');
      var slash = e.key === '/' && !e.ctrlKey && !e.metaKey && !e.altKey && !typing(e.target);
      if (!ctrlK && !slash) return;
      e.preventDefault();
      focus();
    });

    return { focus: focus };
  }

  window.ChatSearch = { create: create };
})();
