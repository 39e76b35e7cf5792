/*
 * Unread and mention counts of every room, the read marker, and the page title.
 *
 * A room's counts are its RoomEntry's (`my_rooms`, `read_state`, join acks: the server's
 * counters up to entry.last_seq) plus what arrived live after it (rec.localIds, message ids
 * > entry.last_seq not written by me) minus what this page has seen (rec.readUpTo: a number
 * of the room's stream read here). Guests have no entries: their counts are the live ones.
 *
 * A room is being read while it is shown, joined and the tab is visible
 * (document.visibilityState): then everything up to its resume point is read, and the
 * page sends `mark_read {room, id}` (debounced) so the account's other tabs follow through
 * `read_state`. While the tab is hidden the title carries the total: "(3) #room · Chat".
 * The "new messages" line is drawn where the read marker was when a room is opened.
 *
 * Exposes window.ChatUnread.create(options) -> unread. options: conn, rooms, isShown(rec),
 * title() (the page's title without the count), changed() (counts moved: redraw the sidebar).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var MARK_READ_DELAY_MS = 700;     // mark_read once the messages stop arriving for this long
  var LOCAL_IDS_MAX = 1000;         // live ids kept per room past its entry (older ones stay counted)

  function create(o) {
    var conn = o.conn, rooms = o.rooms;
    var timers = new Map();         // room name -> pending mark_read timer

    function lastSeq(rec) { return rec.entry ? Number(rec.entry.last_seq) || 0 : 0; }

    function counts(rec) {
      var seen = rec.readUpTo;
      var fromEntry = rec.entry && seen < lastSeq(rec);
      var floor = Math.max(lastSeq(rec), seen);
      var later = function (id) { return id > floor; };
      return {
        unread: (fromEntry ? Number(rec.entry.unread) || 0 : 0) + rec.localIds.filter(later).length,
        mentions: (fromEntry ? Number(rec.entry.mentions) || 0 : 0) + rec.mentionIds.filter(later).length
      };
    }

    function muted(rec) { return !!(rec.entry && rec.entry.muted); }

    function reading(rec) { return o.isShown(rec) && rec.joined && !U.pageHidden(); }

    // Where the read marker stands for the "new messages" line (null: no marker known yet).
    function markerOf(rec) {
      if (rec.entry) return Math.max(Number(rec.entry.last_read) || 0, rec.readUpTo);
      return rec.readUpTo || null;
    }

    function mentionsMe(m) {
      var me = (conn.name || '').toLowerCase();
      if (!m || !Array.isArray(m.mentions) || !me || String(m.user).toLowerCase() === me) return false;
      return m.mentions.some(function (n) {
        n = String(n).toLowerCase();
        return n === me || n === '@here' || n === '@room';
      });
    }

    function remember(list, id) {
      if (list.indexOf(id) >= 0) return false;
      list.push(id);
      if (list.length > LOCAL_IDS_MAX) list.shift();
      return true;
    }

    // A server entry of the room: the ids it counts already are dropped from the local lists.
    function setEntry(entry) {
      var rec = rooms.applyEntry(entry);
      if (!rec) return null;
      var floor = lastSeq(rec);
      rec.localIds = rec.localIds.filter(function (id) { return id > floor; });
      rec.mentionIds = rec.mentionIds.filter(function (id) { return id > floor; });
      changed();
      return rec;
    }

    // A live message of a joined room. Returns whether it mentions me.
    function onMessage(rec, m) {
      var id = Number(m.id);
      if (!Number.isFinite(id)) return false;
      if (String(m.user) === conn.name) {   // my own message moves my marker past it (the server's rule)
        rec.readUpTo = Math.max(rec.readUpTo, id);
        changed();
        return false;
      }
      var mine = mentionsMe(m);
      if (reading(rec)) seen(rec);
      else {
        remember(rec.localIds, id);
        if (mine) remember(rec.mentionIds, id);
      }
      changed();
      return mine;
    }

    // What a catch-up (`join` with `since`) brought: unread like live messages, unless read now.
    function caughtUp(rec, changes) {
      if (reading(rec)) return;
      changes.forEach(function (c) {
        var m = c.op === 'insert' && rec.state.get(c.id);
        if (!m || m.id <= rec.readUpTo) return;
        if (m.user === conn.name) rec.readUpTo = Math.max(rec.readUpTo, m.id);
        else {
          remember(rec.localIds, m.id);
          if (mentionsMe(m)) remember(rec.mentionIds, m.id);
        }
      });
      changed();
    }

    // `mention` {room, id}: for a room we are not in (over the limit), also one more unread.
    function onMention(rec, note) {
      var id = Number(note.id);
      if (!Number.isFinite(id) || id <= rec.readUpTo || reading(rec)) return;
      remember(rec.mentionIds, id);
      if (!rec.joined) remember(rec.localIds, id);
      changed();
    }

    // Everything shown of the room is read; tell the server (accounts) after a pause.
    function seen(rec) {
      if (!rec.joined) return;
      var upTo = Math.max(rec.state.resume, rec.readUpTo);
      var before = counts(rec);
      rec.readUpTo = upTo;
      if (before.unread || before.mentions) changed();
      if (conn.account && rec.entry && upTo > (Number(rec.entry.last_read) || 0)) schedule(rec, MARK_READ_DELAY_MS);
    }

    function schedule(rec, delay) {
      if (timers.has(rec.name)) return;
      timers.set(rec.name, window.setTimeout(function () {
        timers.delete(rec.name);
        send(rec);
      }, delay));
    }

    function send(rec) {
      var upTo = Math.max(rec.readUpTo, rec.state.resume);
      if (!rec.entry || upTo <= (Number(rec.entry.last_read) || 0)) return;
      conn.call('mark_read', { room: rec.name, id: upTo }, function (res) {
        if (res.ok) { setEntry(res.room); return; }
        var code = U.errorCode(res);
        if (code === 'rate_limited' || code === 'busy' || code === 'timeout') {
          var after = Number(res.error.retry_after);
          schedule(rec, Number.isFinite(after) && after > 0 ? after * 1000 : 2000);
        }
      });
    }

    // The shown room's state may have moved (shown, joined, tab visible again, new messages).
    function check(rec) {
      if (rec && reading(rec)) seen(rec);
    }

    function markAll() {
      rooms.all().forEach(function (rec) {
        var c = counts(rec);
        if (!c.unread && !c.mentions) return;
        rec.readUpTo = Math.max(rec.readUpTo, rec.state.resume, lastSeq(rec));
        rec.localIds = [];
        rec.mentionIds = [];
        if (conn.account && rec.entry) send(rec);
      });
      changed();
    }

    function total() {
      var n = 0;
      rooms.all().forEach(function (rec) { if (rec.listed && !muted(rec)) n += counts(rec).unread; });
      return n;
    }

    function updateTitle() {
      var n = U.pageHidden() ? total() : 0;
      var title = (n ? '(' + n + ') ' : '') + o.title();
      if (document.title !== title) document.title = title;
    }

    function changed() {
      updateTitle();
      o.changed();
    }

    return {
      counts: counts,
      muted: muted,
      markerOf: markerOf,
      mentionsMe: mentionsMe,
      setEntry: setEntry,
      onMessage: onMessage,
      caughtUp: caughtUp,
      onMention: onMention,
      check: check,
      markAll: markAll,
      total: total,
      updateTitle: updateTitle
    };
  }

  window.ChatUnread = { create: create };
})();
