/*
 * The pane of the room shown: its title, the message list (drawn by messageview.js from
 * the room's state), scrolling (stay at the bottom, "New messages ↓", older history when
 * scrolled to the top), the "new messages" line at the read marker, who is online
 * (#members, collapsible on phones) and who is typing. When no room is shown it shows
 * #no-room; when the server refused the room (`forbidden`, `banned`) it shows #refused and
 * nothing of the room.
 *
 * Data lives in the room records (static/js/rooms.js); this module only draws the one
 * shown, and redraws everything when another is shown.
 *
 * A search result is shown in context by `reveal(rec, id)`: `history {around}` once the room
 * is joined, then the message is scrolled to and highlighted.
 *
 * Exposes window.ChatRoomPane.create(options) -> pane. options: conn, view, unread,
 * label(rec).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var el = U.el;
  var HISTORY_LIMIT = 50;
  var NEAR_BOTTOM_PX = 80;
  var REFUSALS = {
    forbidden: 'This conversation is private: only its members can open it.',
    banned: 'You are banned from this room.'
  };

  function create(o) {
    var conn = o.conn, view = o.view;
    var els = {
      title: U.$('room-title'),
      chat: U.$('chat'),
      noRoom: U.$('no-room'),
      noRoomNote: U.$('no-room-note'),
      refused: U.$('refused'),
      refusedText: U.$('refused-text'),
      refusedDetail: U.$('refused-detail'),
      scroller: U.$('scroller'),
      historyState: U.$('history-state'),
      messages: U.$('messages'),
      jump: U.$('jump'),
      aside: U.$('sidebar'),
      membersToggle: U.$('members-toggle'),
      members: U.$('members'),
      memberCount: U.$('member-count'),
      typing: U.$('typing'),
      topicEdit: U.$('topic-edit'),
      topicForm: U.$('topic-form')
    };
    var shown = null;
    var dividerAfter = null;        // the read marker the "new messages" line follows

    // ---- which room -----------------------------------------------------------------

    function show(rec, note) {
      if (shown && shown !== rec) shown.scroll = { bottom: isNearBottom(), top: els.scroller.scrollTop };
      shown = rec;
      els.jump.hidden = true;
      els.topicForm.hidden = true;   // a topic being edited belonged to the room before
      view.redraw();
      if (!rec) {
        els.chat.hidden = true;
        els.refused.hidden = true;
        els.noRoom.hidden = false;
        els.noRoomNote.textContent = note || '';
        els.noRoomNote.hidden = !note;
        setTitle('Conversations', 'no-room');
        return;
      }
      els.noRoom.hidden = true;
      if (rec.refused) { refused(rec); return; }
      els.refused.hidden = true;
      els.chat.hidden = false;
      setTitle(o.label(rec), rec.kind || 'public');
      dividerAfter = o.unread.markerOf(rec);
      placeDivider();
      renderMembers();
      renderTyping();
      updateHistoryState();
      restoreScroll(rec);
      if (rec.joined) fillViewport();
    }

    function setTitle(text, kind) {
      els.title.textContent = text;
      els.title.title = text;
      els.title.dataset.kind = kind;
      els.topicEdit.hidden = kind === 'no-room';
    }

    function refused(rec) {
      if (rec !== shown) return;
      view.redraw();
      els.chat.hidden = true;
      els.refused.hidden = false;
      els.refusedText.textContent = REFUSALS[rec.refused.code] || 'This room cannot be opened.';
      els.refusedDetail.textContent = rec.refused.message;
      setTitle('#' + rec.name, 'refused');
      els.topicEdit.hidden = true;
    }

    function restoreScroll(rec) {
      var line = els.messages.querySelector('.unread-divider');
      if (line) {
        var top = line.getBoundingClientRect().top - els.scroller.getBoundingClientRect().top;
        els.scroller.scrollTop += top - 8;
        els.jump.hidden = isNearBottom();
      } else if (rec.scroll && !rec.scroll.bottom) {
        els.scroller.scrollTop = rec.scroll.top;
      } else {
        scrollToBottom();
      }
    }

    // ---- the "new messages" line -------------------------------------------------------

    function placeDivider() {
      var old = els.messages.querySelector('.unread-divider');
      if (old) old.remove();
      if (dividerAfter === null || !shown) return;
      var first = Array.prototype.find.call(els.messages.querySelectorAll('li.message'), function (li) {
        return Number(li.dataset.id) > dividerAfter && li.dataset.user !== conn.name;
      });
      if (!first) return;
      var line = el('li', 'unread-divider', 'New messages');
      line.setAttribute('role', 'separator');
      els.messages.insertBefore(line, first);
      view.relayout();
    }

    // ---- the shown room's traffic ---------------------------------------------------------

    function joined(rec, res, changes, final) {
      if (rec !== shown) return;
      var wasEmpty = !els.messages.querySelector('li.message');
      var near = isNearBottom();
      view.apply(changes);
      var added = window.ChatMessageState.inserted(changes);
      if (!rec.state.size()) rec.hasMore = false;
      // The line goes where the read marker was when the room is first drawn, or where a
      // catch-up starts while the tab is away; a visible room reads its catch-up at once.
      var line = els.messages.querySelector('.unread-divider');
      if (wasEmpty || (added && U.pageHidden() && !line)) {
        if (dividerAfter === null || !wasEmpty) dividerAfter = o.unread.markerOf(rec);
        placeDivider();
      }
      renderMembers();
      if (!final) return;
      if (wasEmpty) restoreScroll(rec);
      else if (near) scrollToBottom();
      else if (added) els.jump.hidden = false;
      updateHistoryState();
      if (rec.revealing != null) showAround(rec);
      else fillViewport();
      if (window.matchMedia('(pointer: fine)').matches && document.activeElement === document.body) {
        U.$('text').focus();
      }
    }

    function live(rec, name, data, changes) {
      if (rec !== shown) return;
      var near = isNearBottom();
      view.apply(changes);
      updateHistoryState();
      if (name !== 'message') { if (near && changes.length) scrollToBottom(); return; }
      if (!window.ChatMessageState.inserted(changes)) return;
      renderTyping();
      var mine = String(data.user) === conn.name;
      if (!mine && U.pageHidden() && !els.messages.querySelector('.unread-divider')) {
        dividerAfter = Number(data.id) - 1;   // the tab is away: new messages start here
        placeDivider();
      }
      if (near || mine) scrollToBottom();
      else els.jump.hidden = false;
    }

    function acked(rec, changes) {
      if (rec === shown) view.apply(changes);
    }

    // ---- a search result: the message in context, scrolled to and highlighted --------------

    function reveal(rec, id) {
      rec.revealing = id;
      if (rec.joined) showAround(rec);   // else joined() calls it once the room is in
    }

    function showAround(rec) {
      var id = rec.revealing;
      if (id == null || !conn.connected()) return;
      rec.revealing = null;
      conn.call('history', { room: rec.name, around: id, limit: HISTORY_LIMIT }, function (res) {
        if (!res.ok) { U.setError(U.errorText(res, 'Could not open that message.'), 'history'); return; }
        U.clearError('history');
        var msgs = Array.isArray(res.messages) ? res.messages : [];
        var changes = [].concat.apply([], msgs.map(rec.state.insertCurrent));
        if (rec !== shown) return;
        view.apply(changes);
        updateHistoryState();
        var li = els.messages.querySelector('li.message[data-id="' + Number(id) + '"]');
        if (!li) { U.setError('That message is no longer there.', 'history'); return; }
        Array.prototype.forEach.call(els.messages.querySelectorAll('li.search-hit'), function (old) {
          old.classList.remove('search-hit');
        });
        li.classList.add('search-hit');
        li.scrollIntoView({ block: 'center' });
        els.jump.hidden = isNearBottom();
      });
    }

    // ---- scrolling and older history ---------------------------------------------------------

    function isNearBottom() {
      var s = els.scroller;
      return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    }

    function scrollToBottom() {
      els.scroller.scrollTop = els.scroller.scrollHeight;
      els.jump.hidden = true;
    }

    function updateHistoryState() {
      var rec = shown, text = '';
      if (!rec) return;
      if (rec.loadingOlder) text = 'Loading older messages…';
      else if (!rec.state.size() && !rec.hasMore && rec.joined) text = 'No messages yet. Say hello!';
      else if (!rec.hasMore && rec.state.size()) text = 'This is the beginning of ' + o.label(rec) + '.';
      els.historyState.textContent = text;
      els.historyState.hidden = !text;
    }

    function loadOlder() {
      var rec = shown;
      if (!rec || rec.loadingOlder || !rec.hasMore || !rec.joined || !conn.connected()) return;
      var minId = rec.state.minId();
      if (minId === null) { rec.hasMore = false; updateHistoryState(); return; }
      rec.loadingOlder = true;
      updateHistoryState();
      conn.call('history', { room: rec.name, before: minId, limit: HISTORY_LIMIT }, function (res) {
        rec.loadingOlder = false;
        if (U.errorCode(res) === 'timeout') { updateHistoryState(); return; }   // next scroll retries
        if (!res.ok) {
          U.setError(U.errorText(res, 'Could not load older messages.'), 'history');
          updateHistoryState();
          return;
        }
        U.clearError('history');
        var msgs = Array.isArray(res.messages) ? res.messages : [];
        var changes = [].concat.apply([], msgs.map(rec.state.insertCurrent));
        if (msgs.length < HISTORY_LIMIT) rec.hasMore = false;
        if (rec !== shown) return;
        var s = els.scroller, fromBottom = s.scrollHeight - s.scrollTop;
        view.apply(changes);
        updateHistoryState();
        s.scrollTop = s.scrollHeight - fromBottom;   // keep the view where it was
        fillViewport();
      });
    }

    // If the list does not overflow yet, scrolling up is impossible: fetch more.
    function fillViewport() {
      var s = els.scroller;
      if (shown && shown.hasMore && shown.joined && s.scrollHeight <= s.clientHeight + 4) loadOlder();
    }

    els.scroller.addEventListener('scroll', function () {
      if (els.scroller.scrollTop < 60) loadOlder();
      if (isNearBottom()) els.jump.hidden = true;
    }, { passive: true });

    els.jump.addEventListener('click', scrollToBottom);

    // ---- members and typing ---------------------------------------------------------------

    function renderMembers() {
      if (!shown) return;
      var me = conn.name;
      var names = Array.from(shown.members).sort(function (a, b) {
        if (a === me) return -1;
        if (b === me) return 1;
        return a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0;
      });
      els.members.replaceChildren.apply(els.members, names.map(function (n) {
        var li = el('li', 'member');
        li.dataset.user = n;
        li.appendChild(el('span', 'member-name', n));
        if (n === me) {
          li.classList.add('me');
          li.appendChild(el('span', 'member-you', '(you)'));
        }
        return li;
      }));
      els.memberCount.textContent = String(shown.memberCount);
    }

    function renderTyping() {
      var names = shown ? Array.from(shown.typers.keys()) : [];
      var text = '';
      if (names.length === 1) text = names[0] + ' is typing…';
      else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
      else if (names.length > 2) {
        var others = names.length - 2;
        text = names[0] + ', ' + names[1] + ' and ' + others + (others === 1 ? ' other are typing…' : ' others are typing…');
      }
      els.typing.textContent = text;
    }

    els.membersToggle.addEventListener('click', function () {
      var collapsed = els.aside.classList.toggle('collapsed');
      els.membersToggle.setAttribute('aria-expanded', String(!collapsed));
    });

    // On wide screens the member list is a column; on narrow ones it starts collapsed.
    var wide = window.matchMedia('(min-width: 720px)');
    function syncAside() {
      if (!wide.matches) return;
      els.aside.classList.remove('collapsed');
      els.membersToggle.setAttribute('aria-expanded', 'true');
    }
    syncAside();
    if (wide.addEventListener) wide.addEventListener('change', syncAside);

    return {
      show: show,
      joined: joined,
      live: live,
      acked: acked,
      reveal: reveal,
      refused: refused,
      presence: function (rec) { if (rec === shown) renderMembers(); },
      typing: function (rec) { if (rec === shown) renderTyping(); },
      renderMembers: renderMembers,
      isNearBottom: isNearBottom,
      scrollToBottom: scrollToBottom,
      get shown() { return shown; }
    };
  }

  window.ChatRoomPane = { create: create };
})();
