/*
 * What people do with rooms rather than with messages: the panels of the app (#browse:
 * search public rooms by name prefix with `rooms {query}` and open or create one by name;
 * #new-room: `create_room` a private room; #new-dm: `open_dm` with some people) and the
 * actions on the room shown, under its member list (#room-actions): mute it (`mute`),
 * invite an account (`add_member`, owners and moderators), leave it (`remove_member` with
 * myself; guests just close it), archive or restore it (`archive_room`, owners and
 * moderators), with an in-page confirmation for leaving and archiving.
 *
 * Acks that carry a RoomEntry go to options.entry(entry); the app's router opens rooms
 * (options.open(name)) and handles a room I left (options.left(rec)).
 *
 * Exposes window.ChatRoomActions.create(options) -> actions. options: conn, entry(entry),
 * open(name), left(rec), shown() (the record shown).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var el = U.el, $ = U.$;
  var SEARCH_DELAY_MS = 300;
  var MANAGERS = { owner: true, moderator: true };
  var PANELS = ['browse', 'new-room', 'new-dm', 'search'];

  function create(o) {
    var conn = o.conn;
    var els = {
      browseQuery: $('browse-query'), browseForm: $('browse-form'), browseResults: $('browse-results'),
      browseEmpty: $('browse-empty'),
      newRoomForm: $('new-room-form'), newRoomName: $('new-room-name'), newRoomError: $('new-room-error'),
      newDmForm: $('new-dm-form'), newDmUsers: $('new-dm-users'), newDmError: $('new-dm-error'),
      actions: $('room-actions'), mute: $('mute-toggle'),
      inviteForm: $('invite-form'), inviteUser: $('invite-user'), inviteStatus: $('invite-status'),
      leave: $('leave-room'), archive: $('archive-room'),
      confirm: $('confirm-room'), confirmText: $('confirm-room-text'), confirmYes: $('confirm-room-yes'),
      confirmNo: $('confirm-room-no')
    };
    var openPanel = null;
    var searchTimer = null, searchSeq = 0;
    var pendingConfirm = null;

    // ---- panels -----------------------------------------------------------------------

    function showPanel(id) {
      PANELS.forEach(function (p) { $(p).hidden = p !== id; });
      openPanel = id;
      document.body.classList.toggle('panel-open', !!id);
      if (!id) return;
      var first = $(id).querySelector('input');
      if (first) first.focus();
      if (id === 'browse') search();
    }

    function fail(box, res, fallback) {
      box.textContent = U.errorText(res, fallback);
      box.hidden = false;
    }

    Array.prototype.forEach.call(document.querySelectorAll('[data-panel]'), function (b) {
      b.addEventListener('click', function () { showPanel(openPanel === b.dataset.panel ? null : b.dataset.panel); });
    });
    Array.prototype.forEach.call(document.querySelectorAll('.panel-close'), function (b) {
      b.addEventListener('click', function () { showPanel(null); });
    });
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && openPanel && $(openPanel).contains(e.target)) showPanel(null);
    });

    // ---- browse and search public rooms ------------------------------------------------------

    function search() {
      window.clearTimeout(searchTimer);
      var query = els.browseQuery.value.trim().toLowerCase(), seq = ++searchSeq;
      conn.call('rooms', query ? { query: query } : {}, function (res) {
        if (seq !== searchSeq) return;   // a newer search is on its way
        if (!res.ok) {
          var after = U.errorCode(res) === 'rate_limited' ? Number(res.error.retry_after) : 0;
          if (after > 0) searchTimer = window.setTimeout(search, after * 1000);
          else U.setError(U.errorText(res, 'Could not search the rooms.'), 'browse');
          return;
        }
        U.clearError('browse');
        var rooms = (Array.isArray(res.rooms) ? res.rooms : []).filter(function (r) {
          return r && typeof r.name === 'string' && U.ROOM_RE.test(r.name);
        });
        els.browseResults.replaceChildren.apply(els.browseResults, rooms.map(function (r) {
          var li = el('li', 'room'), a = el('a', 'room-link');
          a.href = U.roomUrl(r.name);
          a.dataset.room = r.name;
          a.appendChild(el('span', 'room-name', '#' + r.name));
          var members = Math.max(0, Number(r.members) || 0);
          a.appendChild(el('span', 'room-count' + (members ? ' live' : ''), members + ' online'));
          li.appendChild(a);
          return li;
        }));
        els.browseEmpty.hidden = rooms.length > 0;
      });
    }

    els.browseQuery.addEventListener('input', function () {
      window.clearTimeout(searchTimer);
      searchTimer = window.setTimeout(search, SEARCH_DELAY_MS);
    });

    els.browseForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var room = els.browseQuery.value.trim().toLowerCase();
      if (!U.ROOM_RE.test(room)) {
        U.setError('Room names are 1–64 characters: a–z, 0–9, "_" or "-".', 'browse');
        return;
      }
      U.clearError('browse');
      showPanel(null);
      o.open(room);
    });

    els.browseResults.addEventListener('click', function (e) {
      var link = e.target.closest('a.room-link');
      if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      showPanel(null);
      o.open(link.dataset.room);
    });

    // ---- a new private room, a new direct conversation -----------------------------------------

    els.newRoomForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var room = els.newRoomName.value.trim().toLowerCase();
      els.newRoomError.hidden = true;
      if (!U.ROOM_RE.test(room)) {
        fail(els.newRoomError, null, 'Room names are 1–64 characters: a–z, 0–9, "_" or "-".');
        return;
      }
      conn.call('create_room', { room: room, kind: 'private' }, function (res) {
        if (!res.ok) { fail(els.newRoomError, res, 'Could not create the room.'); return; }
        els.newRoomName.value = '';
        o.entry(res.room);
        showPanel(null);
        o.open(res.room.name);
      });
    });

    els.newDmForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var users = els.newDmUsers.value.split(/[\s,]+/).filter(Boolean);
      els.newDmError.hidden = true;
      if (!users.length) { fail(els.newDmError, null, 'Name at least one person.'); return; }
      conn.call('open_dm', { users: users }, function (res) {
        if (!res.ok) { fail(els.newDmError, res, 'Could not start the conversation.'); return; }
        els.newDmUsers.value = '';
        o.entry(res.room);
        showPanel(null);
        o.open(res.room.name);
      });
    });

    // ---- the room shown: mute, invite, leave, archive ---------------------------------------------

    function render() {
      var rec = o.shown(), entry = rec && rec.entry;
      var manager = !!entry && MANAGERS[entry.role] && rec.kind !== 'direct';
      els.actions.hidden = !rec || !!rec.refused;
      if (!rec) return;
      els.mute.hidden = !entry;
      if (entry) {
        els.mute.setAttribute('aria-pressed', String(!!entry.muted));
        els.mute.textContent = entry.muted ? 'Unmute' : 'Mute';
      }
      els.inviteForm.hidden = !manager || rec.state.archived;
      els.leave.hidden = conn.account ? !entry : !rec.listed;
      els.leave.textContent = conn.account ? 'Leave ' + (rec.kind === 'direct' ? 'conversation' : 'room') : 'Close room';
      els.archive.hidden = !manager;
      els.archive.textContent = rec.state.archived ? 'Restore room' : 'Archive room';
      if (pendingConfirm && pendingConfirm.rec !== rec) closeConfirm();
    }

    els.mute.addEventListener('click', function () {
      var rec = o.shown();
      if (!rec || !rec.entry) return;
      conn.call('mute', { room: rec.name, muted: !rec.entry.muted }, function (res) {
        if (!res.ok) { U.setError(U.errorText(res, 'Could not change the setting.'), 'action'); return; }
        o.entry(res.room);
        render();
      });
    });

    els.inviteForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var rec = o.shown(), user = els.inviteUser.value.trim();
      if (!rec || !user) return;
      els.inviteStatus.textContent = '';
      conn.call('add_member', { room: rec.name, user: user }, function (res) {
        if (!res.ok) { els.inviteStatus.textContent = U.errorText(res, 'Could not add ' + user + '.'); return; }
        els.inviteUser.value = '';
        els.inviteStatus.textContent = res.event ? 'Added ' + res.event.user + '.' : user + ' is a member already.';
      });
    });

    function ask(rec, text, yes, run) {
      pendingConfirm = { rec: rec, run: run };
      els.confirmText.textContent = text;
      els.confirmYes.textContent = yes;
      els.confirm.hidden = false;
      els.confirmNo.focus();
    }

    function closeConfirm() {
      pendingConfirm = null;
      els.confirm.hidden = true;
    }

    els.confirmNo.addEventListener('click', closeConfirm);
    els.confirmYes.addEventListener('click', function () {
      var p = pendingConfirm;
      closeConfirm();
      if (p && p.rec === o.shown()) p.run(p.rec);
    });
    els.confirm.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { e.preventDefault(); closeConfirm(); els.leave.focus(); }
    });

    els.leave.addEventListener('click', function () {
      var rec = o.shown();
      if (!rec) return;
      if (!conn.account) { o.left(rec); return; }
      ask(rec, 'Leave ' + window.ChatSidebar.label(rec, conn.name) + '?', 'Leave', function () {
        conn.call('remove_member', { room: rec.name, user: conn.name }, function (res) {
          if (!res.ok) { U.setError(U.errorText(res, 'Could not leave the room.'), 'action'); return; }
          o.left(rec);
        });
      });
    });

    els.archive.addEventListener('click', function () {
      var rec = o.shown();
      if (!rec) return;
      var archived = !rec.state.archived;
      var run = function () {
        conn.call('archive_room', { room: rec.name, archived: archived }, function (res) {
          if (!res.ok) U.setError(U.errorText(res, 'Could not change the room.'), 'action');
        });
      };
      if (!archived) { run(); return; }
      ask(rec, 'Archive #' + rec.name + '? It becomes read-only and leaves everyone\'s list.', 'Archive', run);
    });

    return { showPanel: showPanel, render: render, get panel() { return openPanel; } };
  }

  window.ChatRoomActions = { create: create };
})();
