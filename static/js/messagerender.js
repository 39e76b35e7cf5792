/*
 * How the room page draws messages (static/js/messageview.js owns the interaction): one
 * message's li (author, time, "(edited)", reply quote, text through renderText, reaction
 * chips, reply count), and the layout of the list: day dividers ("Today", "Yesterday" or the
 * date) and author grouping. User text is only ever set as textContent or through
 * options.renderText (static/js/richtext.js); static markup comes from the <template>
 * elements of templates/chat/room.html.
 *
 * Exposes window.ChatMessageRender.create(options) -> {renderMessage, fill, relayout, excerpt}.
 */
(function () {
  'use strict';

  var GROUP_WINDOW_MS = 5 * 60 * 1000;   // same author within this long: no repeated name line
  var DAY_MS = 24 * 60 * 60 * 1000;
  var EXCERPT_CHARS = 80;

  function clone(templateId) {
    return document.getElementById(templateId).content.firstElementChild.cloneNode(true);
  }

  function excerpt(text) {
    var flat = String(text || '').replace(/\s+/g, ' ').trim();
    return flat.length > EXCERPT_CHARS ? flat.slice(0, EXCERPT_CHARS - 1) + '…' : flat;
  }

  function plural(n, one, many) { return n + ' ' + (n === 1 ? one : many); }

  function create(o) {
    var list = o.list, state = o.state;
    var shownText = new WeakMap();  // .message-text -> the text it was rendered from
    // Without hover (touch screens) a message's actions show while it has focus: a tap gives it.
    var tapToFocus = window.matchMedia('(hover: none)').matches;

    // ---- dates --------------------------------------------------------------

    var times = new WeakMap();    // message -> {ms, day}: relayout asks for every message

    function timeOf(m) {
      var t = times.get(m);
      if (!t) {
        var d = o.parseTs(m.ts), ms = d.getTime();
        t = { ms: ms, day: isNaN(ms) ? '' : d.toDateString() };
        times.set(m, t);
      }
      return t;
    }

    function dayOf(m) { return timeOf(m).day; }

    function dayLabel(m) {
      var d = new Date(timeOf(m).ms), now = new Date();
      if (isNaN(d.getTime())) return '';
      if (d.toDateString() === now.toDateString()) return 'Today';
      if (d.toDateString() === new Date(now.getTime() - DAY_MS).toDateString()) return 'Yesterday';
      var opts = { weekday: 'long', month: 'long', day: 'numeric' };
      if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
      return d.toLocaleDateString([], opts);
    }

    // ---- one message --------------------------------------------------------

    function renderMessage(m) {
      var li = clone('message-template');
      li.dataset.id = String(m.id);
      li.dataset.user = m.user;
      li.classList.toggle('mine', !!m.user && m.user === o.myName());
      li.classList.toggle('mentions-me', !!o.mentionsMe && o.mentionsMe(m));
      if (tapToFocus) li.tabIndex = -1;
      li.querySelector('.message-user').textContent = m.user;
      // a guest `amy` is not the account `amy` (docs/PROTOCOL.md): only accounts have a badge
      if (m.account) li.classList.add('by-account');
      else li.querySelector('.message-account').remove();
      var t = o.formatTime(m.ts), time = li.querySelector('.message-time');
      time.textContent = t.short;
      if (m.ts) time.dateTime = m.ts;
      if (t.full) time.title = t.full;
      fill(li, m);
      return li;
    }

    // Brings a message's li up to date, leaving any open menu, picker or editor alone.
    function fill(li, m) {
      var quote = li.querySelector('.reply-quote');
      quote.hidden = !m.reply_to;
      if (m.reply_to) {
        quote.textContent = '↪ ' + (m.reply_to.excerpt === null ? 'a deleted message'
          : m.reply_to.user + ': ' + excerpt(m.reply_to.excerpt));
      }
      var edited = li.querySelector('.message-edited');
      edited.hidden = !m.edited_at;
      edited.title = m.edited_at ? 'edited ' + o.formatTime(m.edited_at).full : '';
      var text = li.querySelector('.message-text');
      if (shownText.get(text) !== m.text) {
        text.replaceChildren(o.renderText(m.text));
        shownText.set(text, m.text);
      }
      fillReactions(li.querySelector('.reactions'), m);
      var count = li.querySelector('.reply-count');
      count.hidden = !m.replies;
      count.textContent = m.replies ? plural(m.replies, 'reply', 'replies') : '';
    }

    function fillReactions(box, m) {
      var focused = box.contains(document.activeElement) ? document.activeElement.dataset.emoji : null;
      box.replaceChildren.apply(box, m.reactions.map(renderChip));
      box.hidden = !m.reactions.length;
      var again = focused && box.querySelector('[data-emoji="' + CSS.escape(focused) + '"]');
      if (again) again.focus();   // a click on a chip keeps the focus on it
    }

    function renderChip(r) {
      var chip = document.createElement('button');
      chip.type = 'button';
      chip.className = 'reaction-chip' + (r.me ? ' me' : '');
      chip.dataset.action = 'chip';
      chip.dataset.emoji = r.emoji;
      chip.setAttribute('aria-pressed', String(r.me));
      chip.setAttribute('aria-label', r.emoji + ' ' + r.count + (r.me ? ', remove your reaction' : ', react'));
      var others = r.count - r.users.length;
      chip.title = r.users.join(', ') + (others > 0 ? ' and ' + plural(others, 'other', 'others') : '');
      chip.append(r.emoji);
      chip.appendChild(document.createElement('span')).textContent = String(r.count);
      chip.lastChild.className = 'chip-count';
      return chip;
    }

    // ---- the list: day dividers, grouping -------------------------------------

    function isDivider(node) { return node.classList.contains('day-divider'); }

    function messageOf(node) { return node && !isDivider(node) ? state.get(node.dataset.id) : null; }

    // A divider wherever the day changes and nowhere else; `grouped` on an author's follow-ups.
    function relayout() {
      var prev = null;
      Array.prototype.slice.call(list.children).forEach(function (node) {
        if (!isDivider(node)) { prev = node; return; }
        var next = messageOf(node.nextElementSibling), before = messageOf(prev);
        if (!next || dayOf(next) !== node.dataset.day || (before && dayOf(before) === node.dataset.day)) node.remove();
      });
      prev = null;
      var cut = false;   // the "new messages" line (static/js/unread.js) starts a new group
      Array.prototype.slice.call(list.children).forEach(function (li) {
        var m = messageOf(li), p = messageOf(prev);
        if (!m) { cut = cut || li.classList.contains('unread-divider'); return; }
        if (!p || dayOf(p) !== dayOf(m)) {
          var before = li.previousElementSibling;
          if (before && isDivider(before)) before.textContent = dayLabel(m);   // "Today" after midnight
          else list.insertBefore(renderDivider(m), li);
        }
        li.classList.toggle('grouped', !cut && !!p && sameGroup(p, m));
        cut = false;
        prev = li;
      });
    }

    function renderDivider(m) {
      var li = document.createElement('li');
      li.className = 'day-divider';
      li.textContent = dayLabel(m);
      li.dataset.day = dayOf(m);
      li.setAttribute('role', 'separator');
      return li;
    }

    function sameGroup(p, m) {
      var gap = timeOf(m).ms - timeOf(p).ms;
      return p.user === m.user && p.account === m.account && dayOf(p) === dayOf(m) &&
        gap >= 0 && gap < GROUP_WINDOW_MS;
    }

    return { renderMessage: renderMessage, fill: fill, relayout: relayout, excerpt: excerpt };
  }

  window.ChatMessageRender = { create: create, clone: clone };
})();
