/*
 * The conversation list (#nav): the rooms of the account and, in their own group, its
 * direct messages, most recently active first, each with its unread badge and a distinct
 * mention badge; the room shown is marked. Guests keep a list of the public rooms they
 * opened in this tab's session (sessionStorage "chat.rooms") and can close them.
 * On narrow screens the list is a drawer opened by #nav-toggle.
 *
 * It only draws: which rooms are listed is the records' `listed` flag (static/js/rooms.js),
 * the counts come from static/js/unread.js, clicks go to options.open(name) (the app's
 * router) and options.close(rec). Names and titles are set as text.
 *
 * Exposes window.ChatSidebar.create(options) -> sidebar, and ChatSidebar.label(rec, me).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var el = U.el;
  var GUEST_ROOMS_KEY = 'chat.rooms';
  var GUEST_ROOMS_MAX = 50;

  // How a room is called: "#name", or a direct conversation's other people.
  function label(rec, me) {
    if (rec.kind !== 'direct') return '#' + rec.name;
    var mine = String(me || '').toLowerCase();
    var others = String(rec.title || '').split(',').map(function (n) { return n.trim(); })
      .filter(function (n) { return n && n.toLowerCase() !== mine; });
    return others.length ? others.join(', ') : (rec.title || 'Direct message');
  }

  function create(o) {
    var els = {
      nav: U.$('nav'),
      toggle: U.$('nav-toggle'),
      rooms: U.$('nav-rooms'),
      dms: U.$('nav-dms'),
      dmsGroup: U.$('nav-dms-group'),
      roomsEmpty: U.$('nav-rooms-empty'),
      dmsEmpty: U.$('nav-dms-empty')
    };
    var items = new Map();          // room name -> li
    var account = o.account;
    els.dmsGroup.hidden = !account;

    // ---- guests' rooms of this session --------------------------------------------

    function guestRooms() {
      var list = U.storage.getJSON('sessionStorage', GUEST_ROOMS_KEY, []);
      return Array.isArray(list) ? list.filter(function (n) { return typeof n === 'string' && U.ROOM_RE.test(n); }) : [];
    }

    function saveGuestRooms() {
      if (account) return;
      var names = o.rooms.all().filter(function (r) { return r.listed; })
        .sort(function (a, b) { return b.order - a.order; })
        .map(function (r) { return r.name; }).slice(0, GUEST_ROOMS_MAX);
      U.storage.setJSON('sessionStorage', GUEST_ROOMS_KEY, names);
    }

    // ---- drawing --------------------------------------------------------------------

    function makeItem(rec) {
      var li = el('li', 'nav-item');
      li.dataset.room = rec.name;
      var a = el('a', 'nav-link');
      a.href = U.roomUrl(rec.name);
      a.dataset.room = rec.name;
      a.appendChild(el('span', 'nav-label'));
      if (rec.kind === 'private') a.appendChild(el('span', 'nav-kind', 'private'));
      var mentions = a.appendChild(el('span', 'badge nav-mentions'));
      mentions.hidden = true;
      var unread = a.appendChild(el('span', 'badge nav-unread'));
      unread.hidden = true;
      li.appendChild(a);
      if (!account) li.appendChild(U.button('icon-button nav-close', '×', 'Close #' + rec.name));
      return li;
    }

    function fill(li, rec) {
      var a = li.firstChild, c = o.counts(rec), name = label(rec, o.myName());
      var current = o.isShown(rec);
      li.querySelector('.nav-label').textContent = name;
      a.title = name + (rec.kind === 'private' ? ' (private)' : '') + (o.muted(rec) ? ' (muted)' : '') +
        (rec.over ? ' (not followed live: too many rooms open)' : '');
      var mentions = li.querySelector('.nav-mentions'), unread = li.querySelector('.nav-unread');
      mentions.hidden = !c.mentions;
      mentions.textContent = c.mentions ? '@' + c.mentions : '';
      unread.hidden = !c.unread;
      unread.textContent = c.unread ? String(c.unread) : '';
      a.setAttribute('aria-label', name + (c.unread ? ', ' + c.unread + ' unread' : '') +
        (c.mentions ? ', ' + c.mentions + (c.mentions === 1 ? ' mention' : ' mentions') : ''));
      li.className = 'nav-item kind-' + (rec.kind || 'public') + (current ? ' current' : '') +
        (c.unread ? ' has-unread' : '') + (o.muted(rec) ? ' muted' : '') + (rec.over ? ' over' : '');
      if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }

    function sync(list, recs) {
      recs.forEach(function (rec, i) {
        var li = items.get(rec.name);
        if (!li) { li = makeItem(rec); items.set(rec.name, li); }
        fill(li, rec);
        if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      });
      while (list.children.length > recs.length) list.lastChild.remove();
    }

    // Every message may change a count: draws once per task, however many came in it.
    var drawing = null;
    function render() {
      if (drawing === null) drawing = window.setTimeout(draw, 0);
    }

    function draw() {
      drawing = null;
      var listed = o.rooms.all().filter(function (r) { return r.listed; }).sort(function (a, b) {
        return (b.order - a.order) || (a.name < b.name ? -1 : 1);
      });
      var rooms = listed.filter(function (r) { return r.kind !== 'direct'; });
      var dms = listed.filter(function (r) { return r.kind === 'direct'; });
      items.forEach(function (li, name) {
        var rec = o.rooms.get(name);
        if (!rec || !rec.listed) { li.remove(); items.delete(name); }
      });
      sync(els.rooms, rooms);
      sync(els.dms, dms);
      els.roomsEmpty.hidden = rooms.length > 0;
      els.dmsEmpty.hidden = dms.length > 0;
      saveGuestRooms();
    }

    // ---- clicks -----------------------------------------------------------------------

    els.nav.addEventListener('click', function (e) {
      var close = e.target.closest('button.nav-close');
      if (close) {
        var rec = o.rooms.get(close.closest('li').dataset.room);
        if (rec) o.close(rec);
        return;
      }
      var link = e.target.closest('a.nav-link');
      if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      setOpen(false);
      o.open(link.dataset.room);
    });

    function setOpen(open) {
      document.body.classList.toggle('nav-open', open);
      els.toggle.setAttribute('aria-expanded', String(open));
    }

    els.toggle.addEventListener('click', function () {
      setOpen(!document.body.classList.contains('nav-open'));
    });
    // The drawer (narrow screens) closes on a click beside it and on Esc.
    document.addEventListener('click', function (e) {
      if (document.body.classList.contains('nav-open') && !els.nav.contains(e.target) &&
          !els.toggle.contains(e.target)) setOpen(false);
    });
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && document.body.classList.contains('nav-open')) {
        setOpen(false);
        els.toggle.focus();
      }
    });

    return { render: render, guestRooms: guestRooms, setOpen: setOpen };
  }

  window.ChatSidebar = { create: create, label: label };
})();
