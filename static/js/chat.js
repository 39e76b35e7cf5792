/*
 * Browser client for the chat server.
 *
 * One script serves every page; <body data-page="..."> selects what runs.
 * All user-supplied content is rendered with textContent / text nodes only (message
 * text through richtext.js, which builds its Markdown subset from text nodes too).
 * The pages are served with a strict CSP: no inline scripts, handlers or styles.
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------
  // Constants and small helpers
  // ---------------------------------------------------------------------------

  var NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;  // same rule as the server
  var ROOM_RE = /^[a-z0-9_-]{1,64}$/;
  var MAX_TEXT = 4000;
  var HISTORY_LIMIT = 50;
  var ACK_TIMEOUT = 10000;
  var RETRY_MAX_MS = 30000;     // longest wait before re-sending a message the server refused for now
  var RETRYABLE = { busy: true, unavailable: true, rate_limited: true };  // nothing stored: send again
  var TYPING_THROTTLE = 2000;   // re-send "typing: true" at most this often
  var TYPING_IDLE = 3000;       // send "typing: false" after this much idle time
  var TYPING_EXPIRE = 5000;     // forget other people's typing state after this
  var NEAR_BOTTOM_PX = 80;
  var NAME_KEY = 'chat.name';
  var SESSION_KEY = 'chat.session';

  var body = document.body;
  var page = body.dataset.page || '';
  var loggedInUser = body.dataset.user || '';

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Message text in the Markdown subset of richtext.js, or as plain text without it.
  function renderText(value) {
    if (window.chatRichText) return window.chatRichText.render(value);
    return document.createTextNode(value === undefined || value === null ? '' : String(value));
  }

  var storage = {
    get: function (area, key) {
      try { return window[area].getItem(key); } catch (e) { return null; }
    },
    set: function (area, key, value) {
      try { window[area].setItem(key, value); } catch (e) { /* storage unavailable */ }
    },
    remove: function (area, key) {
      try { window[area].removeItem(key); } catch (e) { /* storage unavailable */ }
    }
  };

  function storedName() {
    var n = storage.get('localStorage', NAME_KEY) || '';
    return NAME_RE.test(n) ? n : '';
  }

  function loadSession() {
    var raw = storage.get('sessionStorage', SESSION_KEY);
    if (!raw) return null;
    try {
      var s = JSON.parse(raw);
      if (s && typeof s.token === 'string' && typeof s.name === 'string') return s;
    } catch (e) { /* ignore malformed */ }
    return null;
  }

  function saveSession(name, token) {
    storage.set('sessionStorage', SESSION_KEY,
      JSON.stringify({ name: name, token: token, account: !!loggedInUser }));
  }

  function clearSession() { storage.remove('sessionStorage', SESSION_KEY); }

  // Single error banner (#error) shared by several sources; a source only
  // clears the banner if it is the one currently shown.
  var errorSource = null;
  function setError(message, source) {
    var box = $('error');
    if (!box) return;
    errorSource = source || 'general';
    box.textContent = String(message);
    box.hidden = false;
  }
  function clearError(source) {
    var box = $('error');
    if (!box) return;
    if (source && errorSource !== source) return;
    errorSource = null;
    box.textContent = '';
    box.hidden = true;
  }

  function errorText(res, fallback) {
    if (res && res.error && res.error.message) return String(res.error.message);
    return fallback;
  }

  function nameProblem(name) {
    if (!name) return 'Please enter a name.';
    if (!NAME_RE.test(name)) {
      return 'Names are 1–32 characters: letters, digits, "_", "-" or ".".';
    }
    return '';
  }

  function roomUrl(room) { return '/r/' + encodeURIComponent(room) + '/'; }

  function newNonce() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    var bytes = new Uint8Array(16);
    c.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? '0' : '') + b.toString(16);
    }).join('');
  }

  function parseTs(ts) {
    if (typeof ts !== 'string') return new Date(NaN);
    // Trim sub-millisecond digits so every engine parses the value.
    return new Date(ts.replace(/(\.\d{3})\d+/, '$1'));
  }

  function formatTime(ts) {
    var d = parseTs(ts);
    if (isNaN(d.getTime())) return { short: '', full: '' };
    var now = new Date();
    var time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    var short = time;
    if (d.toDateString() !== now.toDateString()) {
      var opts = { month: 'short', day: 'numeric' };
      if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
      short = d.toLocaleDateString([], opts) + ' ' + time;
    }
    return { short: short, full: d.toLocaleString() };
  }

  // ---------------------------------------------------------------------------
  // Index page: name, room chooser, live room list
  // ---------------------------------------------------------------------------

  function initIndex() {
    var nameForm = $('name-form');
    var nameInput = $('name');
    var roomForm = $('room-form');
    var roomInput = $('room-input');
    var roomsList = $('rooms');
    var roomsEmpty = $('rooms-empty');

    if (loggedInUser) {
      nameInput.value = loggedInUser;
      nameInput.readOnly = true;
    } else {
      nameInput.value = storedName();
    }

    // Saves the typed name (guests); returns false if it is invalid.
    // An empty name is allowed: the room page will ask for one.
    function commitName() {
      if (loggedInUser) return true;
      var name = nameInput.value.trim();
      nameInput.value = name;
      if (!name) {
        storage.remove('localStorage', NAME_KEY);
        clearError('name');
        return true;
      }
      var problem = nameProblem(name);
      if (problem) {
        setError(problem, 'name');
        nameInput.setAttribute('aria-invalid', 'true');
        nameInput.focus();
        return false;
      }
      nameInput.removeAttribute('aria-invalid');
      storage.set('localStorage', NAME_KEY, name);
      clearError('name');
      return true;
    }

    nameForm.addEventListener('submit', function (e) {
      e.preventDefault();
      if (commitName()) roomInput.focus();
    });
    // Remember a valid name as soon as it is typed, without touching the error
    // banner (hiding it here would shift the layout under a pending click).
    nameInput.addEventListener('change', function () {
      var name = nameInput.value.trim();
      if (!loggedInUser && NAME_RE.test(name)) storage.set('localStorage', NAME_KEY, name);
    });

    roomForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var room = roomInput.value.trim().toLowerCase();
      roomInput.value = room;
      if (!ROOM_RE.test(room)) {
        setError('Room names are 1–64 characters: a–z, 0–9, "_" or "-".', 'room');
        roomInput.setAttribute('aria-invalid', 'true');
        roomInput.focus();
        return;
      }
      roomInput.removeAttribute('aria-invalid');
      clearError('room');
      if (!commitName()) return;
      window.location.assign(roomUrl(room));
    });

    roomsList.addEventListener('click', function (e) {
      var link = e.target.closest('a.room-link');
      if (link && !commitName()) e.preventDefault();
    });

    var lastRendered = null;
    function renderRooms(rooms) {
      var clean = [];
      (Array.isArray(rooms) ? rooms : []).forEach(function (r) {
        if (r && typeof r.name === 'string' && ROOM_RE.test(r.name)) {
          clean.push({ name: r.name, members: Math.max(0, Number(r.members) || 0) });
        }
      });
      clean.sort(function (a, b) {
        return (b.members - a.members) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      });
      var key = JSON.stringify(clean);
      if (key === lastRendered) return;   // avoid re-rendering (keeps focus)
      lastRendered = key;

      var items = clean.map(function (r) {
        var li = el('li', 'room');
        var a = el('a', 'room-link');
        a.href = roomUrl(r.name);
        a.dataset.room = r.name;
        a.appendChild(el('span', 'room-name', '#' + r.name));
        var count = el('span', 'room-count' + (r.members ? ' live' : ''),
          r.members + ' online');
        a.appendChild(count);
        li.appendChild(a);
        return li;
      });
      roomsList.replaceChildren.apply(roomsList, items);
      roomsEmpty.hidden = items.length > 0;
    }

    var inflight = false;
    function refreshRooms() {
      if (inflight || document.hidden) return;
      inflight = true;
      fetch('/api/rooms/', {
        credentials: 'same-origin',
        cache: 'no-store',
        headers: { Accept: 'application/json' }
      }).then(function (r) {
        return r.json().catch(function () { return null; }).then(function (data) {
          if (!r.ok || !data || !data.ok) {
            throw new Error(errorText(data, 'HTTP ' + r.status));
          }
          renderRooms(data.rooms);
          clearError('rooms');
        });
      }).catch(function (err) {
        setError('Could not load the room list: ' + (err && err.message ? err.message : err), 'rooms');
      }).then(function () { inflight = false; });
    }

    refreshRooms();
    window.setInterval(refreshRooms, 5000);
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden) refreshRooms();
    });
  }

  // ---------------------------------------------------------------------------
  // Room page
  // ---------------------------------------------------------------------------

  function initRoom() {
    var room = body.dataset.room || '';
    var els = {
      status: $('status'),
      namePanel: $('name-panel'),
      nameForm: $('name-form'),
      nameInput: $('name'),
      chat: $('chat'),
      scroller: $('scroller'),
      historyState: $('history-state'),
      messages: $('messages'),
      outbox: $('outbox'),
      jump: $('jump'),
      sidebar: $('sidebar'),
      membersToggle: $('members-toggle'),
      members: $('members'),
      memberCount: $('member-count'),
      typing: $('typing'),
      composer: $('composer'),
      text: $('text'),
      disconnected: $('disconnected-actions'),
      noticeText: $('notice-text'),
      reconnect: $('reconnect'),
      changeName: $('change-name'),
      topic: $('topic'),
      topicEdit: $('topic-edit'),
      topicForm: $('topic-form'),
      topicInput: $('topic-input'),
      replyBar: $('reply-bar'),
      replyText: $('reply-text'),
      replyCancel: $('reply-cancel')
    };

    var myName = loggedInUser || storedName();
    var socket = null;
    var everConnected = false;
    var joined = false;
    var tokenRetried = false;
    var kickedNotice = '';

    if (!window.ChatMessageState || !window.ChatMessageView) {
      setStatus('disconnected');
      setError('The chat client could not be loaded. Please reload the page.', 'conn');
      return;
    }
    // Messages and room events, applied by number (messagestate.js), drawn by messageview.js.
    var msgState = window.ChatMessageState.create({ room: room, myName: function () { return myName; } });
    var view = null;              // created below, once the helpers it is given exist
    var hasMore = true;           // older history may exist
    var loadingOlder = false;

    var members = new Set();
    var memberCount = 0;
    var typers = new Map();       // user -> expiry timer

    var outbox = [];              // unacknowledged sends {nonce, text, el, attempts, sending}

    var typingActive = false;
    var lastTypingSent = 0;
    var typingIdleTimer = null;

    // ---- status -----------------------------------------------------------

    function setStatus(state) {
      els.status.textContent = state;
      els.status.className = 'status status-' + state;
      body.dataset.status = state;
      if (state !== 'disconnected') els.disconnected.hidden = true;
    }

    function showDisconnected(text) {
      setStatus('disconnected');
      els.noticeText.textContent = text || 'You are disconnected.';
      els.changeName.hidden = !!loggedInUser;
      els.disconnected.hidden = false;
    }

    // ---- name handling ------------------------------------------------------

    function askName(message) {
      if (!socket || !socket.connected) setStatus('disconnected');
      els.namePanel.hidden = false;
      els.chat.hidden = true;
      els.nameInput.value = myName || '';
      if (message) setError(message, 'name'); else clearError('name');
      els.nameInput.focus();
      els.nameInput.select();
    }

    els.nameForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var name = els.nameInput.value.trim();
      els.nameInput.value = name;
      var problem = nameProblem(name);
      if (problem) {
        setError(problem, 'name');
        els.nameInput.setAttribute('aria-invalid', 'true');
        els.nameInput.focus();
        return;
      }
      els.nameInput.removeAttribute('aria-invalid');
      clearError('name');
      clearError('conn');
      if (name !== myName) clearSession();
      myName = name;
      storage.set('localStorage', NAME_KEY, name);
      markMine();
      startChat();
    });

    els.changeName.addEventListener('click', function () { askName(''); });

    els.reconnect.addEventListener('click', function () {
      clearError('conn');
      connect();
    });

    // ---- message list -------------------------------------------------------

    function isNearBottom() {
      var s = els.scroller;
      return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
    }

    function scrollToBottom() {
      els.scroller.scrollTop = els.scroller.scrollHeight;
      els.jump.hidden = true;
    }

    // Applies a list of changes from msgState to the page; returns them.
    function show(changes) {
      view.apply(changes);
      return changes;
    }

    // An edit, delete, react or unreact: errors go to the banner, done(ack) or done(null).
    function request(event, payload, done) {
      if (!socket || !socket.connected || !joined) {
        setError('You are not connected; please try again in a moment.', 'action');
        done(null);
        return;
      }
      socket.timeout(ACK_TIMEOUT).emit(event, Object.assign({ room: room }, payload), function (err, res) {
        if (err || !res || !res.ok) {
          setError(err ? 'The server did not answer; please try again.' : errorText(res, 'That did not work.'), 'action');
          done(null);
          return;
        }
        clearError('action');
        done(res);
      });
    }

    function markMine() {
      if (view) view.setMine();
      renderMembers();
    }

    function updateHistoryState() {
      var text = '';
      if (loadingOlder) text = 'Loading older messages…';
      else if (!msgState.size() && !hasMore && joined) text = 'No messages yet. Say hello!';
      else if (!hasMore && msgState.size()) text = 'This is the beginning of #' + room + '.';
      els.historyState.textContent = text;
      els.historyState.hidden = !text;
    }

    function loadOlder() {
      if (loadingOlder || !hasMore || !joined || !socket || !socket.connected) return;
      var minId = msgState.minId();
      if (minId === null) { hasMore = false; updateHistoryState(); return; }
      loadingOlder = true;
      updateHistoryState();
      socket.timeout(ACK_TIMEOUT).emit('history',
        { room: room, before: minId, limit: HISTORY_LIMIT },
        function (err, res) {
          loadingOlder = false;
          if (err) { updateHistoryState(); return; }   // timed out: next scroll retries
          if (!res || !res.ok) {
            setError(errorText(res, 'Could not load older messages.'), 'history');
            updateHistoryState();
            return;
          }
          clearError('history');
          var msgs = Array.isArray(res.messages) ? res.messages : [];
          var s = els.scroller;
          var fromBottom = s.scrollHeight - s.scrollTop;
          show([].concat.apply([], msgs.map(msgState.insertCurrent)));
          if (msgs.length < HISTORY_LIMIT) hasMore = false;
          updateHistoryState();
          s.scrollTop = s.scrollHeight - fromBottom;   // keep the view where it was
          fillViewport();
        });
    }

    // If the list does not overflow yet, scrolling up is impossible: fetch more.
    function fillViewport() {
      var s = els.scroller;
      if (hasMore && joined && s.scrollHeight <= s.clientHeight + 4) loadOlder();
    }

    els.scroller.addEventListener('scroll', function () {
      if (els.scroller.scrollTop < 60) loadOlder();
      if (isNearBottom()) els.jump.hidden = true;
    }, { passive: true });

    els.jump.addEventListener('click', scrollToBottom);

    // ---- members ------------------------------------------------------------

    function renderMembers() {
      var names = Array.from(members).sort(function (a, b) {
        if (a === myName) return -1;
        if (b === myName) return 1;
        return a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0;
      });
      var items = names.map(function (n) {
        var li = el('li', 'member');
        li.dataset.user = n;
        li.appendChild(el('span', 'member-name', n));
        if (n === myName) {
          li.classList.add('me');
          li.appendChild(el('span', 'member-you', '(you)'));
        }
        return li;
      });
      els.members.replaceChildren.apply(els.members, items);
      els.memberCount.textContent = String(memberCount);
    }

    function setMembers(list, count) {
      members.clear();
      list.forEach(function (n) {
        if (n !== undefined && n !== null && n !== '') members.add(String(n));
      });
      // the list is capped (CHAT_MAX_MEMBERS_LISTED); the count is the whole room
      memberCount = typeof count === 'number' && count >= members.size ? count : members.size;
      renderMembers();
    }

    els.membersToggle.addEventListener('click', function () {
      var collapsed = els.sidebar.classList.toggle('collapsed');
      els.membersToggle.setAttribute('aria-expanded', String(!collapsed));
    });

    // ---- typing indicator ---------------------------------------------------

    function renderTyping() {
      var names = Array.from(typers.keys());
      var text = '';
      if (names.length === 1) text = names[0] + ' is typing…';
      else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
      else if (names.length > 2) {
        var others = names.length - 2;
        text = names[0] + ', ' + names[1] + ' and ' + others +
          (others === 1 ? ' other are typing…' : ' others are typing…');
      }
      els.typing.textContent = text;
    }

    function clearTyper(user) {
      if (typers.has(user)) {
        window.clearTimeout(typers.get(user));
        typers.delete(user);
      }
    }

    function clearAllTypers() {
      typers.forEach(function (t) { window.clearTimeout(t); });
      typers.clear();
      renderTyping();
    }

    function emitTyping(active) {
      if (socket && socket.connected && joined) {
        socket.emit('typing', { room: room, active: active });
      }
    }

    function stopTyping() {
      window.clearTimeout(typingIdleTimer);
      typingIdleTimer = null;
      if (typingActive) {
        typingActive = false;
        lastTypingSent = 0;
        emitTyping(false);
      }
    }

    els.text.addEventListener('input', function () {
      if (!els.text.value.trim()) { stopTyping(); return; }
      var now = Date.now();
      if (!typingActive || now - lastTypingSent >= TYPING_THROTTLE) {
        typingActive = true;
        lastTypingSent = now;
        emitTyping(true);
      }
      window.clearTimeout(typingIdleTimer);
      typingIdleTimer = window.setTimeout(stopTyping, TYPING_IDLE);
    });

    els.text.addEventListener('blur', function () {
      if (!els.text.value.trim()) stopTyping();
    });

    // ---- sending --------------------------------------------------------------

    function renderPending(item) {
      var li = el('li', 'pending');
      li.dataset.nonce = item.nonce;
      var meta = el('div', 'message-meta');
      meta.appendChild(el('span', 'message-user', myName));
      meta.appendChild(el('span', 'pending-state', 'sending…'));
      li.appendChild(meta);
      li.appendChild(el('div', 'message-text', item.text));
      item.el = li;
      item.stateEl = meta.lastChild;
      els.outbox.appendChild(li);
    }

    function dropPending(item) {
      var i = outbox.indexOf(item);
      if (i >= 0) outbox.splice(i, 1);
      if (item.el) item.el.remove();
    }

    function markFailed(item) {
      item.failed = true;
      item.el.classList.add('failed');
      item.stateEl.textContent = 'not sent — ';
      var retry = el('button', 'link-button', 'retry');
      retry.type = 'button';
      retry.addEventListener('click', function () {
        item.failed = false;
        item.attempts = 0;
        item.el.classList.remove('failed');
        item.stateEl.textContent = 'sending…';
        trySend(item);
      });
      var discard = el('button', 'link-button', 'discard');
      discard.type = 'button';
      discard.addEventListener('click', function () { dropPending(item); });
      item.stateEl.appendChild(retry);
      item.stateEl.appendChild(document.createTextNode(' · '));
      item.stateEl.appendChild(discard);
    }

    function trySend(item) {
      if (item.sending || item.failed || outbox.indexOf(item) < 0) return;
      if (!socket || !socket.connected || !joined) return;   // flushed after (re)join
      item.sending = true;
      item.attempts += 1;
      // The nonce stays the same across retries so the server can de-duplicate.
      var payload = { room: room, text: item.text, nonce: item.nonce };
      if (item.replyTo !== null) payload.reply_to = item.replyTo;
      socket.timeout(ACK_TIMEOUT).emit('send', payload,
        function (err, res) {
          item.sending = false;
          if (outbox.indexOf(item) < 0) return;
          if (err) {
            if (item.attempts >= 5) { markFailed(item); return; }
            window.setTimeout(function () { trySend(item); }, 1000);
            return;
          }
          if (res && res.ok) {
            var near = isNearBottom();
            dropPending(item);
            clearError('send');
            if (res.message) show(msgState.applyAck(res.message));
            if (near) scrollToBottom();
            return;
          }
          var code = res && res.error && res.error.code;
          if (RETRYABLE[code]) {
            retryLater(item, res.error);
            return;
          }
          dropPending(item);
          setError(errorText(res, 'Your message could not be sent.'), 'send');
          if (!els.text.value) {
            els.text.value = item.text;
            if (item.replyTo !== null) view.startReply(item.replyTo);
          }
        });
    }

    // The server stored nothing: keep the message and send it again, same nonce, after
    // the server's retry_after (or a backoff growing to RETRY_MAX_MS).
    function retryLater(item, error) {
      var after = Number(error.retry_after);
      var delay = Number.isFinite(after) && after > 0 ? after * 1000
        : Math.min(RETRY_MAX_MS, 500 * Math.pow(2, Math.min(item.attempts, 6)));
      item.stateEl.textContent = 'waiting to retry…';
      item.el.dataset.retry = error.code;
      window.setTimeout(function () {
        if (outbox.indexOf(item) < 0) return;
        item.stateEl.textContent = 'sending…';
        trySend(item);
      }, delay);
    }

    function flushOutbox() {
      outbox.slice().forEach(trySend);
    }

    function submitMessage() {
      var text = els.text.value.replace(/\s+$/, '').replace(/^(?:[ \t]*\r?\n)+/, '');
      if (!text.trim()) return;
      if (text.length > MAX_TEXT) {
        setError('Messages can be at most ' + MAX_TEXT + ' characters.', 'send');
        return;
      }
      clearError('send');
      stopTyping();
      var item = { nonce: newNonce(), text: text, attempts: 0, sending: false, failed: false,
        replyTo: view.takeReply() };
      outbox.push(item);
      renderPending(item);
      els.text.value = '';
      scrollToBottom();
      trySend(item);
    }

    els.text.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submitMessage();
      }
    });

    els.composer.addEventListener('submit', function (e) {
      e.preventDefault();
      submitMessage();
      els.text.focus();
    });

    // ---- socket ---------------------------------------------------------------

    function authFor() {
      var expected = loggedInUser || myName;
      var s = loadSession();
      if (s && s.token && s.name === expected) return { token: s.token };
      if (loggedInUser) return {};
      return { name: myName };
    }

    function join() {
      var payload = { room: room };
      if (msgState.resume > 0) payload.since = msgState.resume;
      var sock = socket;
      sock.timeout(ACK_TIMEOUT).emit('join', payload, function (err, res) {
        if (sock !== socket || !sock.connected) return;
        if (err) {
          window.setTimeout(function () { if (sock.connected && !joined) join(); }, 1000);
          return;
        }
        if (!res || !res.ok) {
          setError(errorText(res, 'Could not join the room.'), 'join');
          return;
        }
        clearError('join');
        var wasEmpty = !msgState.size();
        var near = isNearBottom();
        var before = msgState.resume;
        var added = window.ChatMessageState.inserted(show(msgState.applyJoin(res, 'since' in payload)));
        if (Array.isArray(res.members)) setMembers(res.members, res.count);
        if (!msgState.size()) hasMore = false;
        if (res.truncated) {
          // More is waiting after this page: ask again from the highest number it covers.
          msgState.noteResume(res.next);
          if (msgState.resume > before) { join(); return; }
        }
        joined = true;
        if (wasEmpty || near) scrollToBottom();
        else if (added) els.jump.hidden = false;
        updateHistoryState();
        flushOutbox();
        fillViewport();
        if (window.matchMedia('(pointer: fine)').matches && document.activeElement === body) {
          els.text.focus();
        }
      });
    }

    function forThisRoom(data) {
      return !!data && typeof data === 'object' && (data.room === undefined || data.room === room);
    }

    function createSocket() {
      // closeOnBeforeunload: tell the server right away when the page goes away, even
      // while still on HTTP long-polling (otherwise presence lingers until ping timeout).
      socket = window.io({ auth: authFor(), autoConnect: false, closeOnBeforeunload: true });

      socket.on('connect', function () {
        everConnected = true;
        tokenRetried = false;
        kickedNotice = '';
        joined = false;
        clearError('conn');
        setStatus('connected');
        join();
      });

      socket.on('welcome', function (data) {
        if (!data || typeof data !== 'object') return;
        if (typeof data.name === 'string' && data.name) {
          myName = data.name;
          if (!loggedInUser) storage.set('localStorage', NAME_KEY, myName);
          markMine();
        }
        if (typeof data.token === 'string' && data.token) {
          saveSession(myName, data.token);
          socket.auth = { token: data.token };   // used by every later reconnect
        }
      });

      socket.on('connect_error', function (err) {
        if (socket.active) {
          // Temporary failure; the manager keeps retrying.
          setStatus(everConnected ? 'reconnecting' : 'connecting');
          return;
        }
        var data = err && err.data && typeof err.data === 'object' ? err.data : {};
        var code = data.code || '';
        var message = data.message || (err && err.message) || 'Connection refused.';
        if (code === 'invalid_token' || code === 'token_expired') {
          clearSession();
          if (!tokenRetried && (loggedInUser || myName)) {
            tokenRetried = true;
            socket.auth = loggedInUser ? {} : { name: myName };
            setStatus(everConnected ? 'reconnecting' : 'connecting');
            socket.connect();
            return;
          }
        }
        setStatus('disconnected');
        if (!loggedInUser && (code === 'invalid_name' || code === 'name_taken' ||
            code === 'name_reserved' || code === 'invalid_token' || code === 'token_expired')) {
          askName(message);
          return;
        }
        setError(message, 'conn');
        showDisconnected(message);
      });

      socket.on('kicked', function (data) {
        kickedNotice = (data && data.message) ? String(data.message) : 'You were disconnected by the server.';
        setError(kickedNotice, 'conn');
      });

      socket.on('disconnect', function (reason) {
        joined = false;
        clearAllTypers();
        window.clearTimeout(typingIdleTimer);
        typingActive = false;
        if (socket.active) {
          setStatus('reconnecting');
        } else {
          showDisconnected(kickedNotice ||
            (reason === 'io server disconnect' ? 'The server closed the connection.' : 'Disconnected.'));
        }
      });

      socket.io.on('reconnect_attempt', function () {
        setStatus('reconnecting');
      });
      socket.io.on('reconnect_failed', function () {
        showDisconnected('Could not reconnect to the server.');
      });

      window.ChatMessageState.LIVE_EVENTS.forEach(function (name) {
        socket.on(name, function (data) {
          if (!forThisRoom(data)) return;
          var near = isNearBottom();
          var changes = show(msgState.applyLive(name, data));
          updateHistoryState();
          if (name !== 'message') { if (near && changes.length) scrollToBottom(); return; }
          if (!window.ChatMessageState.inserted(changes)) return;
          clearTyper(String(data.user));
          renderTyping();
          if (near || data.user === myName) scrollToBottom();
          else els.jump.hidden = false;
        });
      });

      socket.on('presence', function (p) {
        if (!forThisRoom(p)) return;
        if (p.action === 'count') {
          // large rooms: the server sends throttled counts instead of each join/leave
          if (typeof p.count === 'number' && p.count >= 0) memberCount = p.count;
          renderMembers();
          return;
        }
        if (p.user === undefined || p.user === null) return;
        var user = String(p.user);
        if (p.action === 'join') members.add(user);
        else if (p.action === 'leave') {
          members.delete(user);
          clearTyper(user);
          renderTyping();
        }
        memberCount = typeof p.count === 'number' && p.count >= 0 ? p.count : members.size;
        renderMembers();
      });

      socket.on('typing', function (t) {
        if (!forThisRoom(t) || t.user === undefined || t.user === null) return;
        var user = String(t.user);
        if (user === myName) return;
        clearTyper(user);
        if (t.active) {
          typers.set(user, window.setTimeout(function () {
            typers.delete(user);
            renderTyping();
          }, TYPING_EXPIRE));
        }
        renderTyping();
      });
    }

    function connect() {
      if (!socket) createSocket();
      else socket.auth = authFor();
      tokenRetried = false;
      kickedNotice = '';
      setStatus(everConnected ? 'reconnecting' : 'connecting');
      socket.connect();
    }

    function startChat() {
      els.namePanel.hidden = true;
      els.chat.hidden = false;
      if (socket && socket.connected) return;
      connect();
    }

    view = window.ChatMessageView.create({
      list: els.messages,
      state: msgState,
      composer: els.text,
      topicEl: els.topic,
      topicEdit: els.topicEdit,
      topicForm: els.topicForm,
      topicInput: els.topicInput,
      replyBar: els.replyBar,
      replyText: els.replyText,
      replyCancel: els.replyCancel,
      myName: function () { return myName; },
      renderText: renderText,
      formatTime: formatTime,
      parseTs: parseTs,
      request: request
    });

    // ---- start --------------------------------------------------------------

    if (!ROOM_RE.test(room)) {
      setStatus('disconnected');
      setError('Invalid room name.', 'room');
      return;
    }
    if (typeof window.io !== 'function') {
      setStatus('disconnected');
      setError('The chat client could not be loaded. Please reload the page.', 'conn');
      return;
    }

    // On wide screens the member list is a sidebar; on narrow ones it starts collapsed.
    var wide = window.matchMedia('(min-width: 720px)');
    function syncSidebar() {
      if (wide.matches) {
        els.sidebar.classList.remove('collapsed');
        els.membersToggle.setAttribute('aria-expanded', 'true');
      }
    }
    syncSidebar();
    if (wide.addEventListener) wide.addEventListener('change', syncSidebar);

    // Small, read-only handle for debugging and automated tests.
    window.chatApp = {
      room: room,
      get socket() { return socket; },
      get name() { return myName; }
    };

    if (loggedInUser || myName) startChat();
    else askName('');
  }

  // ---------------------------------------------------------------------------

  // A reconnect token issued to a signed-in account must not outlive the login.
  function initSessionHygiene() {
    var s = loadSession();
    if (s && ((s.account && s.name !== loggedInUser) || (!s.account && loggedInUser))) clearSession();
    Array.prototype.forEach.call(document.querySelectorAll('form.logout-form'), function (form) {
      form.addEventListener('submit', clearSession);
    });
  }

  function init() {
    try {
      initSessionHygiene();
      if (page === 'index') initIndex();
      else if (page === 'room') initRoom();
    } catch (err) {
      setError('Something went wrong: ' + (err && err.message ? err.message : err));
      throw err;
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
