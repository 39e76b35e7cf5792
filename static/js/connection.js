/*
 * The app's one Socket.IO connection and what the page shows about it: who we connect as
 * (reconnect token > session account > guest name), `welcome` (our name and the next
 * token), refusals (a refused guest name asks for another in #name-panel), `kicked`, the
 * status pill (#status) and the "disconnected" notice with its Reconnect button.
 *
 * Every room shares this socket: switching rooms never opens another connection.
 * call(event, payload, done) emits with an ack timeout and always answers done(res) with
 * a protocol-shaped object ({ok: false, error: {code: 'timeout' | 'disconnected'}} when
 * there was no answer).
 *
 * Exposes window.ChatConnection.create(hooks) -> connection; hooks: onConnect(),
 * onDisconnect(), onName(name), on(socket) to add the app's event handlers.
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var $ = U.$;

  function create(hooks) {
    var loggedInUser = U.loggedInUser();
    var els = {
      status: $('status'),
      app: $('app'),
      namePanel: $('name-panel'),
      nameForm: $('name-form'),
      nameInput: $('name'),
      disconnected: $('disconnected-actions'),
      noticeText: $('notice-text'),
      reconnect: $('reconnect'),
      changeName: $('change-name')
    };
    var myName = loggedInUser || U.storedName();
    var socket = null;
    var everConnected = false;
    var tokenRetried = false;
    var kickedNotice = '';

    function setStatus(state) {
      els.status.textContent = state;
      els.status.className = 'status status-' + state;
      document.body.dataset.status = state;
      if (state !== 'disconnected') els.disconnected.hidden = true;
    }

    function showDisconnected(text) {
      setStatus('disconnected');
      els.noticeText.textContent = text || 'You are disconnected.';
      els.changeName.hidden = !!loggedInUser;
      els.disconnected.hidden = false;
    }

    // ---- the guest's name ------------------------------------------------------

    function askName(message) {
      if (!socket || !socket.connected) setStatus('disconnected');
      els.namePanel.hidden = false;
      els.app.hidden = true;
      els.nameInput.value = myName || '';
      if (message) U.setError(message, 'name'); else U.clearError('name');
      els.nameInput.focus();
      els.nameInput.select();
    }

    els.nameForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var name = els.nameInput.value.trim();
      els.nameInput.value = name;
      var problem = U.nameProblem(name);
      if (problem) {
        U.setError(problem, 'name');
        els.nameInput.setAttribute('aria-invalid', 'true');
        els.nameInput.focus();
        return;
      }
      els.nameInput.removeAttribute('aria-invalid');
      U.clearError('name');
      U.clearError('conn');
      if (name !== myName) U.clearSession();
      myName = name;
      U.rememberName(name);
      hooks.onName(myName);
      start();
    });

    els.changeName.addEventListener('click', function () { askName(''); });
    els.reconnect.addEventListener('click', function () {
      U.clearError('conn');
      connect();
    });

    // ---- the socket -------------------------------------------------------------

    function authFor() {
      var s = U.loadSession();
      if (s && s.token && s.name === (loggedInUser || myName)) return { token: s.token };
      return loggedInUser ? {} : { name: myName };
    }

    function createSocket() {
      // closeOnBeforeunload: tell the server right away when the page goes away, even
      // while still on HTTP long-polling (otherwise presence lingers until ping timeout).
      socket = window.io({ auth: authFor(), autoConnect: false, closeOnBeforeunload: true });

      socket.on('connect', function () {
        everConnected = true;
        tokenRetried = false;
        kickedNotice = '';
        U.clearError('conn');
        setStatus('connected');
        hooks.onConnect();
      });

      socket.on('welcome', function (data) {
        if (!data || typeof data !== 'object') return;
        if (typeof data.name === 'string' && data.name) {
          myName = data.name;
          if (!loggedInUser) U.rememberName(myName);
          hooks.onName(myName);
        }
        if (typeof data.token === 'string' && data.token) {
          U.saveSession(myName, data.token);
          socket.auth = { token: data.token };   // used by every later reconnect
        }
      });

      socket.on('connect_error', function (err) {
        if (socket.active) {   // temporary failure; the manager keeps retrying
          setStatus(everConnected ? 'reconnecting' : 'connecting');
          return;
        }
        var data = err && err.data && typeof err.data === 'object' ? err.data : {};
        var code = data.code || '';
        var message = data.message || (err && err.message) || 'Connection refused.';
        if (code === 'invalid_token' || code === 'token_expired') {
          U.clearSession();
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
        if (code === 'guests_disabled') message += ' (log in above)';
        U.setError(message, 'conn');
        showDisconnected(message);
      });

      socket.on('kicked', function (data) {
        kickedNotice = data && data.message ? String(data.message) : 'You were disconnected by the server.';
        U.setError(kickedNotice, 'conn');
      });

      socket.on('disconnect', function (reason) {
        hooks.onDisconnect();
        if (socket.active) setStatus('reconnecting');
        else {
          showDisconnected(kickedNotice ||
            (reason === 'io server disconnect' ? 'The server closed the connection.' : 'Disconnected.'));
        }
      });

      socket.io.on('reconnect_attempt', function () { setStatus('reconnecting'); });
      socket.io.on('reconnect_failed', function () { showDisconnected('Could not reconnect to the server.'); });

      hooks.on(socket);
    }

    function connect() {
      if (!socket) createSocket();
      else socket.auth = authFor();
      tokenRetried = false;
      kickedNotice = '';
      setStatus(everConnected ? 'reconnecting' : 'connecting');
      socket.connect();
    }

    function start() {
      els.namePanel.hidden = true;
      els.app.hidden = false;
      if (socket && socket.connected) return;
      connect();
    }

    function connected() { return !!socket && socket.connected; }

    function call(event, payload, done) {
      if (!connected()) {
        done({ ok: false, error: { code: 'disconnected', message: 'You are not connected; please try again in a moment.' } });
        return;
      }
      socket.timeout(U.ACK_TIMEOUT).emit(event, payload, function (err, res) {
        if (err) done({ ok: false, error: { code: 'timeout', message: 'The server did not answer; please try again.' } });
        else done(res && typeof res === 'object' ? res : { ok: false, error: { code: 'internal', message: 'No answer.' } });
      });
    }

    function emit(event, payload) { if (connected()) socket.emit(event, payload); }

    return {
      start: function () { if (loggedInUser || myName) start(); else askName(''); },
      call: call,
      emit: emit,
      connected: connected,
      setStatus: setStatus,
      get socket() { return socket; },
      get name() { return myName; },
      get account() { return !!loggedInUser; }
    };
  }

  window.ChatConnection = { create: create };
})();
