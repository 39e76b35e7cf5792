/*
 * Entry point of every page; <body data-page="..."> selects what runs:
 * - "index" (guests' home page): the name, the room chooser and the live public room list;
 * - "room" (the app: every conversation of a person on one page, static/js/app.js);
 * - anything else ("accounts-only", the account pages): only the session hygiene below.
 *
 * All user-supplied content is rendered with textContent / text nodes only. The pages are
 * served with a strict CSP: no inline scripts, handlers or styles.
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var $ = U.$, el = U.el;

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
    var loggedInUser = U.loggedInUser();

    if (loggedInUser) {
      nameInput.value = loggedInUser;
      nameInput.readOnly = true;
    } else {
      nameInput.value = U.storedName();
    }

    // Saves the typed name (guests); returns false if it is invalid.
    // An empty name is allowed: the room page will ask for one.
    function commitName() {
      if (loggedInUser) return true;
      var name = nameInput.value.trim();
      nameInput.value = name;
      if (!name) {
        U.forgetName();
        U.clearError('name');
        return true;
      }
      var problem = U.nameProblem(name);
      if (problem) {
        U.setError(problem, 'name');
        nameInput.setAttribute('aria-invalid', 'true');
        nameInput.focus();
        return false;
      }
      nameInput.removeAttribute('aria-invalid');
      U.rememberName(name);
      U.clearError('name');
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
      if (!loggedInUser && U.NAME_RE.test(name)) U.rememberName(name);
    });

    roomForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var room = roomInput.value.trim().toLowerCase();
      roomInput.value = room;
      if (!U.ROOM_RE.test(room)) {
        U.setError('Room names are 1–64 characters: a–z, 0–9, "_" or "-".', 'room');
        roomInput.setAttribute('aria-invalid', 'true');
        roomInput.focus();
        return;
      }
      roomInput.removeAttribute('aria-invalid');
      U.clearError('room');
      if (!commitName()) return;
      window.location.assign(U.roomUrl(room));
    });

    roomsList.addEventListener('click', function (e) {
      var link = e.target.closest('a.room-link');
      if (link && !commitName()) e.preventDefault();
    });

    var lastRendered = null;
    function renderRooms(rooms) {
      var clean = [];
      (Array.isArray(rooms) ? rooms : []).forEach(function (r) {
        if (r && typeof r.name === 'string' && U.ROOM_RE.test(r.name)) {
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
        a.href = U.roomUrl(r.name);
        a.dataset.room = r.name;
        a.appendChild(el('span', 'room-name', '#' + r.name));
        a.appendChild(el('span', 'room-count' + (r.members ? ' live' : ''), r.members + ' online'));
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
          if (!r.ok || !data || !data.ok) throw new Error(U.errorText(data, 'HTTP ' + r.status));
          renderRooms(data.rooms);
          U.clearError('rooms');
        });
      }).catch(function (err) {
        U.setError('Could not load the room list: ' + (err && err.message ? err.message : err), 'rooms');
      }).then(function () { inflight = false; });
    }

    refreshRooms();
    window.setInterval(refreshRooms, 5000);
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden) refreshRooms();
    });
  }

  // ---------------------------------------------------------------------------

  // A reconnect token issued to a signed-in account must not outlive the login.
  function initSessionHygiene() {
    var s = U.loadSession(), user = U.loggedInUser();
    if (s && ((s.account && s.name !== user) || (!s.account && user))) U.clearSession();
    Array.prototype.forEach.call(document.querySelectorAll('form.logout-form'), function (form) {
      form.addEventListener('submit', U.clearSession);
    });
  }

  function init() {
    var page = document.body.dataset.page || '';
    try {
      initSessionHygiene();
      if (page === 'index') initIndex();
      else if (page === 'room') {
        if (!window.ChatApp) throw new Error('the chat client could not be loaded; please reload the page');
        window.ChatApp.start();
      }
    } catch (err) {
      U.setError('Something went wrong: ' + (err && err.message ? err.message : err));
      throw err;
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
