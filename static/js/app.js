/*
 * The chat app: one page for every conversation of a person, over one socket. It wires the
 * modules together and owns the routing: which room is shown, the URL that follows it
 * (/r/<room>/, or / for an account's home with no room shown; history.pushState, and
 * back/forward through popstate), the page title, and what the account's own channel says
 * (`room_added`, `room_removed`, `read_state`, `mention`) and `banned`.
 *
 *   connection.js  the socket, the name, the status       rooms.js     records, joins, live events
 *   roompane.js    the room shown                         composer.js  typing, sending, outbox
 *   sidebar.js     the conversation list                  unread.js    counts, markers, title
 *   notify.js      notifications and sound                roomactions.js  panels, room actions
 *   messageview.js / messagerender.js / messagestate.js   the messages of the room shown
 *   search.js      message search: the panel, results, a result opened in context
 *
 * Exposes window.ChatApp.start(); once started, window.chatApp is a small read-only handle
 * for debugging and tests: {room, socket, name, open(room)}.
 */
(function () {
  'use strict';

  var U = window.ChatUtil;

  function start() {
    var account = !!U.loggedInUser();
    var current = null;             // the record shown, or null
    var conn, rooms, unread, notify, sidebar, actions, composer, pane, view;

    function label(rec) { return window.ChatSidebar.label(rec, conn.name); }
    function isShown(rec) { return !!rec && rec === current; }
    function title() { return current && !current.refused ? label(current) + ' · Chat' : 'Chat'; }
    function inserted(changes) { return window.ChatMessageState.inserted(changes); }

    // messageview.js draws "the" room: this state answers for whichever is shown.
    var shownState = {
      get: function (id) { return current ? current.state.get(id) : null; },
      ids: function () { return current ? current.state.ids() : []; },
      size: function () { return current ? current.state.size() : 0; },
      minId: function () { return current ? current.state.minId() : null; },
      lastMineId: function () { return current ? current.state.lastMineId() : null; },
      applyAck: function (item) {
        var rec = item && rooms.get(item.room);
        if (!rec) return [];
        var changes = rec.state.applyAck(item);
        return rec === current ? changes : [];
      },
      get topic() { return current ? current.state.topic : ''; }
    };

    // An edit, delete, react, unreact or set_topic in the room shown: errors go to the banner.
    function request(event, payload, done) {
      var rec = current;
      if (!rec || !rec.joined || !conn.connected()) {
        U.setError('You are not connected; please try again in a moment.', 'action');
        done(null);
        return;
      }
      conn.call(event, Object.assign({ room: rec.name }, payload), function (res) {
        if (!res.ok) { U.setError(U.errorText(res, 'That did not work.'), 'action'); done(null); return; }
        U.clearError('action');
        done(res);
      });
    }

    // ---- routing ---------------------------------------------------------------------

    function open(name, how, note) {
      name = name || '';
      if (!name && !account) { window.location.assign('/'); return; }   // a guest's home is the index page
      actions.showPanel(null);
      var same = current ? current.name === name && !current.refused : !name;
      if (same && how !== 'none') return;
      if (how === 'push') window.history.pushState({ room: name }, '', name ? U.roomUrl(name) : '/');
      else if (how === 'replace') window.history.replaceState({ room: name }, '', name ? U.roomUrl(name) : '/');
      var old = current, rec = name ? rooms.get(name, true) : null;
      current = rec;
      if (old && old !== rec && !old.listed) rooms.forget(old);   // shown but not kept: refused, archived, left
      if (rec && rec.refused && !rec.listed) { rooms.forget(rec); rec = current = rooms.get(name, true); }
      composer.show(rec);
      pane.show(rec, note);
      actions.render();
      if (rec) {
        if (!rec.joined) rooms.want(rec, true);
        else unread.check(rec);
      }
      sidebar.render();
      unread.updateTitle();
      if (rec && how === 'push' && window.matchMedia('(pointer: fine)').matches) U.$('text').focus();
    }

    window.addEventListener('popstate', function () {
      var name = U.roomOfPath(window.location.pathname);
      if (name === null) window.location.reload();
      else open(name, 'pop');
    });

    // ---- what happens to rooms ------------------------------------------------------------

    function joined(rec, res, changes, final, withSince) {
      if (res.member) unread.setEntry(res.member);
      if (withSince) unread.caughtUp(rec, changes);
      if (final) {
        if (!rec.joinedOnce) {
          rec.joinedOnce = true;
          if (!account) rec.readUpTo = Math.max(rec.readUpTo, rec.state.resume);   // a guest's history is seen
        }
        if (res.member || !account) rec.listed = rec.listed || !rec.state.archived;
        if (rec.listed && !rec.order) rooms.touch(rec);   // newly opened: first in the list
        if (!rec.kind) rec.kind = 'public';
      }
      pane.joined(rec, res, changes, final);
      if (final) {
        composer.flush(rec);
        if (rec === current) {
          composer.setReadOnly(rec.state.archived);
          actions.render();
          unread.check(rec);
        }
      }
      sidebar.render();
      unread.updateTitle();
    }

    function live(rec, name, data, changes) {
      pane.live(rec, name, data, changes);
      if (name === 'message' && inserted(changes)) {
        rooms.touch(rec);
        notify.consider(rec, data, unread.onMessage(rec, data));
      } else if (name === 'room_archived') {
        archived(rec);
      } else if (name === 'member' && String(data.user) === conn.name && (data.action === 'removed' || data.action === 'left')) {
        removed(rec, data.action === 'left' ? 'You left ' + label(rec) + '.'   // (room_removed says it too)
          : 'You were removed from ' + label(rec) + (data.by ? ' by ' + data.by : '') + '.');
        return;
      }
      sidebar.render();
    }

    // Archived rooms are read-only and leave the lists (an owner may restore one it shows).
    function archived(rec) {
      var is = rec.state.archived;
      rec.listed = !is && (!!rec.entry || !account);
      if (rec === current) {
        composer.setReadOnly(is);
        actions.render();
      } else if (is) {
        rooms.forget(rec);
      }
    }

    // I left the room (or was removed): it goes from the list; if shown, the page says so.
    function removed(rec, note) {
      if (rooms.get(rec.name) !== rec) return;
      if (account) rooms.dropped(rec);   // the server took every tab of the account out already
      else rooms.leave(rec);
      rec.listed = false;
      rec.entry = null;
      if (rec === current) {
        if (account) open('', 'replace', note);
        else {
          var next = rooms.all().filter(function (r) { return r.listed; }).sort(function (a, b) { return b.order - a.order; })[0];
          if (next) open(next.name, 'replace'); else window.location.assign('/');
        }
      }
      rooms.forget(rec);
      sidebar.render();
      unread.updateTitle();
    }

    function listen(socket) {
      rooms.listen(socket);
      socket.on('room_added', function (entry) {
        var rec = unread.setEntry(entry);
        if (!rec) return;
        rec.listed = true;
        if (rec.refused) {
          rec.refused = null;
          if (rec === current) pane.show(rec);
        }
        if (!rec.joined) rooms.want(rec, rec === current);
        sidebar.render();
      });
      socket.on('room_removed', function (data) {
        var rec = data && rooms.get(data.room);
        if (!rec) return;
        var by = data.action === 'removed' && data.by ? ' by ' + data.by : '';
        removed(rec, data.action === 'removed' ? 'You were removed from ' + label(rec) + by + '.'
          : 'You left ' + label(rec) + '.');
      });
      socket.on('read_state', function (entry) {
        var rec = unread.setEntry(entry);
        if (rec === current) actions.render();
      });
      socket.on('mention', function (note) {
        var rec = note && rooms.get(note.room);
        if (!rec) return;
        unread.onMention(rec, note);
        notify.consider(rec, note, true);
      });
      socket.on('banned', function (data) {
        var rec = data && rooms.get(data.room);
        if (!rec) return;
        rooms.dropped(rec);
        rec.listed = false;
        rec.refused = { code: 'banned', message: data.message ? String(data.message) : 'You were banned.' };
        if (rec === current) { pane.refused(rec); actions.render(); }
        sidebar.render();
      });
    }

    // The account's rooms, after every (re)connect: what changed meanwhile is in here.
    function loadMyRooms() {
      conn.call('my_rooms', {}, function (res) {
        if (!res.ok) {
          var after = U.errorCode(res) === 'rate_limited' ? Number(res.error.retry_after) : 0;
          if (after > 0 || U.errorCode(res) === 'busy') window.setTimeout(loadMyRooms, (after || 2) * 1000);
          else U.setError(U.errorText(res, 'Could not load your rooms.'), 'my_rooms');
          return;
        }
        U.clearError('my_rooms');
        var names = new Set();
        (Array.isArray(res.rooms) ? res.rooms : []).forEach(function (entry, i) {
          var rec = rooms.applyEntry(entry, i);
          if (!rec) return;
          unread.setEntry(entry);
          names.add(rec.name);
          rec.listed = true;
          if (!rec.joined) rooms.want(rec);
        });
        rooms.all().forEach(function (rec) {   // left, removed or archived while we were away
          if (rec.listed && !names.has(rec.name)) {
            rec.listed = false;
            if (rec !== current) rooms.forget(rec);
          }
        });
        sidebar.render();
        unread.updateTitle();
      });
    }

    // ---- the modules ----------------------------------------------------------------------------

    conn = window.ChatConnection.create({
      onConnect: function () {
        rooms.onConnect();
        if (account) loadMyRooms();
      },
      onDisconnect: function () {
        rooms.onDisconnect();
        composer.onDisconnect();
        pane.typing(current);
        sidebar.render();
      },
      onName: function () {
        view.setMine();
        pane.renderMembers();
      },
      on: listen
    });

    rooms = window.ChatRooms.create({
      conn: conn,
      hooks: {
        isShown: isShown,
        joined: joined,
        refused: function (rec) {
          if (rec === current) { pane.refused(rec); actions.render(); unread.updateTitle(); }
          sidebar.render();
        },
        live: live,
        presence: function (rec) { pane.presence(rec); },
        typing: function (rec) { pane.typing(rec); },
        changed: function () { sidebar.render(); }
      }
    });

    unread = window.ChatUnread.create({
      conn: conn, rooms: rooms, isShown: isShown, title: title,
      changed: function () { if (sidebar) sidebar.render(); }
    });

    view = window.ChatMessageView.create({
      list: U.$('messages'),
      state: shownState,
      composer: U.$('text'),
      topicEl: U.$('topic'),
      topicEdit: U.$('topic-edit'),
      topicForm: U.$('topic-form'),
      topicInput: U.$('topic-input'),
      replyBar: U.$('reply-bar'),
      replyText: U.$('reply-text'),
      replyCancel: U.$('reply-cancel'),
      myName: function () { return conn.name; },
      mentionsMe: function (m) { return unread.mentionsMe(m); },
      renderText: U.renderText,
      formatTime: U.formatTime,
      parseTs: U.parseTs,
      request: request
    });

    pane = window.ChatRoomPane.create({ conn: conn, view: view, unread: unread, label: label });

    composer = window.ChatComposer.create({
      conn: conn,
      view: view,
      acked: function (rec, message) { pane.acked(rec, rec.state.applyAck(message)); },
      isNearBottom: function () { return pane.isNearBottom(); },
      scrollToBottom: function () { pane.scrollToBottom(); }
    });

    sidebar = window.ChatSidebar.create({
      account: account,
      rooms: rooms,
      counts: unread.counts,
      muted: unread.muted,
      isShown: isShown,
      myName: function () { return conn.name; },
      open: function (name) { open(name, 'push'); },
      close: function (rec) { removed(rec); }
    });

    notify = window.ChatNotify.create({
      label: label,
      muted: unread.muted,
      myName: function () { return conn.name; },
      open: function (name) { open(name, 'push'); }
    });

    actions = window.ChatRoomActions.create({
      conn: conn,
      shown: function () { return current; },
      entry: function (entry) {
        var rec = unread.setEntry(entry);
        if (rec) rec.listed = true;
        sidebar.render();
      },
      open: function (name) { open(name, 'push'); },
      left: function (rec) { removed(rec, 'You left ' + label(rec) + '.'); }
    });

    window.ChatSearch.create({
      conn: conn,
      showPanel: function (id) { actions.showPanel(id); },
      isOpen: function () { return actions.panel === 'search'; },
      label: function (r) { return r.kind === 'direct' && r.title ? String(r.title) : '#' + r.room; },
      reveal: function (name, id) {
        open(name, 'push');
        var rec = rooms.get(name);
        if (rec && !rec.refused) pane.reveal(rec, id);
      }
    });

    U.$('mark-all-read').addEventListener('click', unread.markAll);

    document.addEventListener('visibilitychange', function () {
      if (!U.pageHidden()) unread.check(current);
      unread.updateTitle();
    });

    // ---- start ---------------------------------------------------------------------------------

    if (typeof window.io !== 'function') {
      conn.setStatus('disconnected');
      U.setError('The chat client could not be loaded. Please reload the page.', 'conn');
      return;
    }

    if (!account) {
      sidebar.guestRooms().forEach(function (name, i) {
        var rec = rooms.get(name, true);
        rec.kind = 'public';
        rec.listed = true;
        rec.order = 1000 - i;
        rooms.want(rec);
      });
    }
    open(document.body.dataset.room || '', 'none');

    window.chatApp = {
      get room() { return current ? current.name : ''; },
      get socket() { return conn.socket; },
      get name() { return conn.name; },
      open: function (name) { open(name, 'push'); }
    };

    conn.start();
  }

  window.ChatApp = { start: start };
})();
