/*
 * The composer of the room shown: typing notices (`typing`, throttled, stopped when idle),
 * sending with a nonce and the outbox of messages not acknowledged yet (kept per room,
 * drawn in #outbox while their room is shown, sent again with the same nonce after `busy`,
 * `unavailable` or `rate_limited`, and after a reconnect once their room is joined again),
 * and a draft per room that survives switching rooms.
 *
 * Exposes window.ChatComposer.create(options) -> composer. options: conn, view (the
 * message view: reply quote), shown() (the record shown), acked(rec, message) (a send ack:
 * draw it), isNearBottom(), scrollToBottom().
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var el = U.el;
  var MAX_TEXT = 4000;
  var RETRY_MAX_MS = 30000;     // longest wait before re-sending a message the server refused for now
  var RETRYABLE = { busy: true, unavailable: true, rate_limited: true };  // nothing stored: send again
  var TYPING_THROTTLE_MS = 2000;  // re-send "typing: true" at most this often
  var TYPING_IDLE_MS = 3000;      // send "typing: false" after this much idle time

  function create(o) {
    var conn = o.conn;
    var els = { form: U.$('composer'), text: U.$('text'), outbox: U.$('outbox'), send: U.$('send') };
    var current = null;             // the record whose composer this is
    var typingRoom = null;          // the room we told we are typing in
    var lastTypingSent = 0;
    var typingIdleTimer = null;

    // ---- typing -------------------------------------------------------------------

    function stopTyping() {
      window.clearTimeout(typingIdleTimer);
      typingIdleTimer = null;
      if (typingRoom) {
        var rec = typingRoom;
        typingRoom = null;
        lastTypingSent = 0;
        if (rec.joined) conn.emit('typing', { room: rec.name, active: false });
      }
    }

    els.text.addEventListener('input', function () {
      if (!els.text.value.trim() || !current) { stopTyping(); return; }
      var now = Date.now();
      if (typingRoom !== current || now - lastTypingSent >= TYPING_THROTTLE_MS) {
        if (typingRoom && typingRoom !== current) stopTyping();
        typingRoom = current;
        lastTypingSent = now;
        if (current.joined) conn.emit('typing', { room: current.name, active: true });
      }
      window.clearTimeout(typingIdleTimer);
      typingIdleTimer = window.setTimeout(stopTyping, TYPING_IDLE_MS);
    });

    els.text.addEventListener('blur', function () {
      if (!els.text.value.trim()) stopTyping();
    });

    // ---- the outbox ---------------------------------------------------------------

    function renderPending(item) {
      var li = el('li', 'pending');
      li.dataset.nonce = item.nonce;
      var meta = el('div', 'message-meta');
      meta.appendChild(el('span', 'message-user', conn.name));
      meta.appendChild(el('span', 'pending-state', 'sending…'));
      li.appendChild(meta);
      li.appendChild(el('div', 'message-text', item.text));
      item.el = li;
      item.stateEl = meta.lastChild;
      if (item.rec === current) els.outbox.appendChild(li);
    }

    function dropPending(item) {
      var list = item.rec.outbox, i = list.indexOf(item);
      if (i >= 0) list.splice(i, 1);
      if (item.el) item.el.remove();
    }

    function markFailed(item) {
      item.failed = true;
      item.el.classList.add('failed');
      item.stateEl.textContent = 'not sent — ';
      var retry = U.button('link-button', 'retry');
      retry.addEventListener('click', function () {
        item.failed = false;
        item.attempts = 0;
        item.el.classList.remove('failed');
        item.stateEl.textContent = 'sending…';
        trySend(item);
      });
      var discard = U.button('link-button', 'discard');
      discard.addEventListener('click', function () { dropPending(item); });
      item.stateEl.appendChild(retry);
      item.stateEl.appendChild(document.createTextNode(' · '));
      item.stateEl.appendChild(discard);
    }

    function trySend(item) {
      var rec = item.rec;
      if (item.sending || item.failed || rec.outbox.indexOf(item) < 0) return;
      if (!conn.connected() || !rec.joined) return;   // flushed after (re)join
      item.sending = true;
      item.attempts += 1;
      // The nonce stays the same across retries so the server can de-duplicate.
      var payload = { room: rec.name, text: item.text, nonce: item.nonce };
      if (item.replyTo !== null) payload.reply_to = item.replyTo;
      conn.socket.timeout(U.ACK_TIMEOUT).emit('send', payload, function (err, res) {
        item.sending = false;
        if (rec.outbox.indexOf(item) < 0) return;
        if (err) {
          if (item.attempts >= 5) { markFailed(item); return; }
          window.setTimeout(function () { trySend(item); }, 1000);
          return;
        }
        if (res && res.ok) {
          var near = rec === current && o.isNearBottom();
          dropPending(item);
          U.clearError('send');
          if (res.message) o.acked(rec, res.message);
          if (near) o.scrollToBottom();
          return;
        }
        var code = U.errorCode(res);
        if (RETRYABLE[code]) { retryLater(item, res.error); return; }
        dropPending(item);
        U.setError(U.errorText(res, 'Your message could not be sent.'), 'send');
        if (rec === current && !els.text.value) {
          els.text.value = item.text;
          if (item.replyTo !== null) o.view.startReply(item.replyTo);
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
        if (item.rec.outbox.indexOf(item) < 0) return;
        item.stateEl.textContent = 'sending…';
        trySend(item);
      }, delay);
    }

    function flush(rec) { rec.outbox.slice().forEach(trySend); }

    function submit() {
      if (!current || els.text.disabled) return;
      var text = els.text.value.replace(/\s+$/, '').replace(/^(?:[ \t]*\r?\n)+/, '');
      if (!text.trim()) return;
      if (text.length > MAX_TEXT) {
        U.setError('Messages can be at most ' + MAX_TEXT + ' characters.', 'send');
        return;
      }
      U.clearError('send');
      stopTyping();
      var item = { rec: current, nonce: U.newNonce(), text: text, attempts: 0, sending: false, failed: false,
        replyTo: o.view.takeReply() };
      current.outbox.push(item);
      renderPending(item);
      els.text.value = '';
      current.draft = '';
      o.scrollToBottom();
      trySend(item);
    }

    els.text.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submit();
      }
    });

    els.form.addEventListener('submit', function (e) {
      e.preventDefault();
      submit();
      els.text.focus();
    });

    // ---- switching rooms ----------------------------------------------------------

    function show(rec) {
      if (current) current.draft = els.text.value;
      stopTyping();
      current = rec;
      els.outbox.replaceChildren.apply(els.outbox, rec ? rec.outbox.map(function (i) { return i.el; }) : []);
      els.text.value = rec ? rec.draft : '';
      setReadOnly(rec && rec.state.archived);
    }

    function setReadOnly(readOnly) {
      var label = current ? window.ChatSidebar.label(current, conn.name) : '';
      els.text.disabled = !!readOnly;
      els.send.disabled = !!readOnly;
      els.text.placeholder = readOnly ? 'This room is archived: read-only'
        : 'Message ' + label + '  (Enter to send, Shift+Enter for a new line)';
    }

    return {
      show: show,
      flush: flush,
      stopTyping: stopTyping,
      setReadOnly: setReadOnly,
      onDisconnect: function () {
        window.clearTimeout(typingIdleTimer);
        typingRoom = null;
        lastTypingSent = 0;
      }
    };
  }

  window.ChatComposer = { create: create };
})();
