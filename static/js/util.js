/*
 * Helpers every page script shares: the name and room rules, building DOM from text (never
 * innerHTML), the page's one error banner (#error), browser storage, the guest's remembered
 * name and the reconnect token of this tab, and time formatting.
 *
 * Exposes window.ChatUtil. No state of its own beyond the banner's current source.
 */
(function () {
  'use strict';

  var NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;   // guest names: the server's rule
  var ROOM_RE = /^[a-z0-9_-]{1,64}$/;
  var NAME_KEY = 'chat.name';
  var SESSION_KEY = 'chat.session';
  var body = document.body;

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(className, text, label) {
    var b = el('button', className, text);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    return b;
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
    },
    getJSON: function (area, key, fallback) {
      try { var v = JSON.parse(this.get(area, key)); return v === null ? fallback : v; } catch (e) { return fallback; }
    },
    setJSON: function (area, key, value) { this.set(area, key, JSON.stringify(value)); }
  };

  function loggedInUser() { return body.dataset.user || ''; }

  function storedName() {
    var n = storage.get('localStorage', NAME_KEY) || '';
    return NAME_RE.test(n) ? n : '';
  }

  function rememberName(name) { storage.set('localStorage', NAME_KEY, name); }
  function forgetName() { storage.remove('localStorage', NAME_KEY); }

  function loadSession() {
    var s = storage.getJSON('sessionStorage', SESSION_KEY, null);
    return s && typeof s.token === 'string' && typeof s.name === 'string' ? s : null;
  }

  function saveSession(name, token) {
    storage.setJSON('sessionStorage', SESSION_KEY, { name: name, token: token, account: !!loggedInUser() });
  }

  function clearSession() { storage.remove('sessionStorage', SESSION_KEY); }

  // One error banner shared by several sources; a source only clears it while it is the
  // one shown.
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
    if (!box || (source && errorSource !== source)) return;
    errorSource = null;
    box.textContent = '';
    box.hidden = true;
  }

  function errorText(res, fallback) {
    if (res && res.error && res.error.message) return String(res.error.message);
    return fallback;
  }

  function errorCode(res) { return res && res.error && res.error.code ? String(res.error.code) : ''; }

  function nameProblem(name) {
    if (!name) return 'Please enter a name.';
    if (!NAME_RE.test(name)) return 'Names are 1–32 characters: letters, digits, "_", "-" or ".".';
    return '';
  }

  function roomUrl(room) { return '/r/' + encodeURIComponent(room) + '/'; }

  // The room of a path (/r/<room>/), '' for the app's home (/), null for anything else.
  function roomOfPath(path) {
    if (path === '/') return '';
    var m = /^\/r\/([^/]+)\/$/.exec(path);
    if (!m) return null;
    var room = decodeURIComponent(m[1]);
    return ROOM_RE.test(room) ? room : null;
  }

  function newNonce() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') return c.randomUUID();
    var bytes = new Uint8Array(16);
    c.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b < 16 ? '0' : '') + b.toString(16); }).join('');
  }

  function parseTs(ts) {
    if (typeof ts !== 'string') return new Date(NaN);
    return new Date(ts.replace(/(\.\d{3})\d+/, '$1'));   // sub-millisecond digits trip some engines
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

  function pageHidden() { return document.visibilityState === 'hidden'; }

  window.ChatUtil = {
    NAME_RE: NAME_RE,
    ROOM_RE: ROOM_RE,
    ACK_TIMEOUT: 10000,
    $: $,
    el: el,
    button: button,
    renderText: renderText,
    storage: storage,
    loggedInUser: loggedInUser,
    storedName: storedName,
    rememberName: rememberName,
    forgetName: forgetName,
    loadSession: loadSession,
    saveSession: saveSession,
    clearSession: clearSession,
    setError: setError,
    clearError: clearError,
    errorText: errorText,
    errorCode: errorCode,
    nameProblem: nameProblem,
    roomUrl: roomUrl,
    roomOfPath: roomOfPath,
    newNonce: newNonce,
    parseTs: parseTs,
    formatTime: formatTime,
    pageHidden: pageHidden
  };
})();
