/*
 * The rooms this page knows, whether shown or not: one record per room with its message
 * state (static/js/messagestate.js), who is online and typing in it, its sidebar entry
 * (RoomEntry of `my_rooms`, or null for guests) and whether the socket is in it.
 *
 * Owns joining over the app's one socket: joins go out one at a time (the shown room
 * first), each with `since` = the room's resume point, continued page by page while
 * `truncated`; within CHAT_MAX_ROOMS_PER_CONNECTION (<body data-max-rooms>): past it a
 * room is `over` (it keeps the counts of its entry) unless it is the shown one, for which
 * the least recently active joined room is left. `rate_limited` waits `retry_after`.
 * After a reconnect every wanted room is joined again from its resume point.
 *
 * Live room events are applied to their room's state here, shown or not, so every joined
 * room stays current; hooks draw what concerns the page.
 *
 * Exposes window.ChatRooms.create(options) -> rooms. Hooks (options.hooks): joined(rec, res,
 * changes, final, withSince), refused(rec, error), live(rec, name, data, changes), presence(rec),
 * typing(rec), changed(rec), isShown(rec).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var TYPING_EXPIRE_MS = 5000;      // forget other people's typing state after this
  var JOIN_RETRY_MS = 1000;         // a join without an answer is asked again after this
  var ORDER_LISTED_BASE = 1000000;  // rooms touched in this page sort above my_rooms' order

  function create(o) {
    var conn = o.conn, hooks = o.hooks;
    var maxRooms = Math.max(1, Number(document.body.dataset.maxRooms) || 50);
    var recs = new Map();           // name -> record
    var queue = [];                 // records waiting for their join
    var busy = false;               // a join (or its wait after rate_limited) is in flight
    var clock = ORDER_LISTED_BASE;

    function get(name, make) {
      var rec = recs.get(name);
      if (!rec && make) {
        rec = {
          name: name, kind: null, title: '', entry: null, listed: false, order: 0,
          state: window.ChatMessageState.create({ room: name, myName: function () { return conn.name; } }),
          joined: false, wanted: false, over: false, refused: null,
          hasMore: true, loadingOlder: false, members: new Set(), memberCount: 0, typers: new Map(),
          outbox: [], draft: '', scroll: null,
          localIds: [], mentionIds: [], readUpTo: 0   // static/js/unread.js
        };
        recs.set(name, rec);
      }
      return rec || null;
    }

    function all() { return Array.from(recs.values()); }

    function forget(rec) {
      if (rec.joined) leave(rec);
      rec.wanted = false;
      clearTypers(rec);
      recs.delete(rec.name);
    }

    function touch(rec) { rec.order = ++clock; }

    // A RoomEntry from my_rooms, room_added, read_state, a join ack or create_room/open_dm.
    function applyEntry(entry, position) {
      if (!entry || typeof entry.name !== 'string' || !U.ROOM_RE.test(entry.name)) return null;
      var rec = get(entry.name, true);
      rec.entry = entry;
      rec.kind = entry.kind || rec.kind;
      rec.title = typeof entry.title === 'string' ? entry.title : rec.title;
      if (!rec.order) rec.order = position === undefined ? ++clock : ORDER_LISTED_BASE - 1 - position;
      return rec;
    }

    function joinedCount() {
      var n = 0;
      recs.forEach(function (rec) { if (rec.joined) n += 1; });
      return n;
    }

    // ---- joining ----------------------------------------------------------------

    function want(rec, first) {
      rec.wanted = true;
      rec.refused = null;
      if (rec.joined) return;
      var i = queue.indexOf(rec);
      if (i >= 0) queue.splice(i, 1);
      if (first) queue.unshift(rec); else queue.push(rec);
      pump();
    }

    // Leaves the least recently active joined room that is not shown: it keeps its counts.
    function makeSpace() {
      var victim = null;
      recs.forEach(function (rec) {
        if (rec.joined && !hooks.isShown(rec) && (!victim || rec.order < victim.order)) victim = rec;
      });
      if (!victim) return false;
      leave(victim);
      victim.over = true;
      victim.wanted = true;
      hooks.changed(victim);
      return true;
    }

    function pump() {
      if (busy || !conn.connected()) return;
      var rec = queue.shift();
      if (!rec) return;
      if (!rec.wanted || rec.joined || recs.get(rec.name) !== rec) { pump(); return; }
      if (joinedCount() >= maxRooms && !(hooks.isShown(rec) && makeSpace())) {
        rec.over = true;   // counts from its entry only, until a slot frees
        hooks.changed(rec);
        pump();
        return;
      }
      busy = true;
      join(rec);
    }

    function done() {
      busy = false;
      pump();
    }

    function join(rec) {
      var payload = { room: rec.name };
      if (rec.state.resume > 0) payload.since = rec.state.resume;
      var sock = conn.socket;
      sock.timeout(U.ACK_TIMEOUT).emit('join', payload, function (err, res) {
        if (sock !== conn.socket || !sock.connected) { busy = false; return; }  // onConnect joins again
        if (recs.get(rec.name) !== rec || !rec.wanted) {
          if (!err && res && res.ok && !res.truncated) conn.emit('leave', { room: rec.name });
          done();
          return;
        }
        if (err) {
          window.setTimeout(function () { busy = false; want(rec, true); }, JOIN_RETRY_MS);
          return;
        }
        if (!res || !res.ok) { refusedJoin(rec, res || {}); return; }
        var withSince = 'since' in payload, before = rec.state.resume;
        var changes = rec.state.applyJoin(res, withSince);
        if (Array.isArray(res.members)) setMembers(rec, res.members, res.count);
        if (res.truncated) {
          // More is waiting after this page: ask again from the highest number it covers.
          rec.state.noteResume(res.next);
          if (rec.state.resume > before) {
            hooks.joined(rec, res, changes, false, withSince);
            join(rec);
            return;
          }
        }
        rec.joined = true;
        rec.over = false;
        hooks.joined(rec, res, changes, true, withSince);
        done();
      });
    }

    function refusedJoin(rec, res) {
      var code = U.errorCode(res);
      if (code === 'rate_limited' || code === 'busy' || code === 'unavailable') {   // nothing refused for good
        var after = Number(res.error.retry_after);
        window.setTimeout(function () { busy = false; want(rec, true); },
          Number.isFinite(after) && after > 0 ? after * 1000 : JOIN_RETRY_MS);
        return;
      }
      if (code === 'too_many_rooms') {
        rec.over = true;
        if (hooks.isShown(rec) && makeSpace()) queue.unshift(rec);
        hooks.changed(rec);
        done();
        return;
      }
      rec.wanted = false;
      rec.refused = { code: code, message: U.errorText(res, 'Could not join the room.') };
      hooks.refused(rec, rec.refused);
      done();
    }

    function leave(rec) {
      if (rec.joined) conn.emit('leave', { room: rec.name });
      rec.joined = false;
      rec.wanted = false;
      var i = queue.indexOf(rec);
      if (i >= 0) queue.splice(i, 1);
    }

    // The server took us out of the room already (room_removed, banned).
    function dropped(rec) {
      rec.joined = false;
      rec.wanted = false;
      clearTypers(rec);
    }

    function onConnect() {
      busy = false;
      queue = all().filter(function (rec) { return rec.wanted || hooks.isShown(rec); });
      queue.sort(function (a, b) { return (hooks.isShown(b) - hooks.isShown(a)) || (b.order - a.order); });
      queue.forEach(function (rec) { rec.wanted = true; rec.over = false; });
      pump();
    }

    function onDisconnect() {
      busy = false;
      queue = [];
      recs.forEach(function (rec) {
        rec.joined = false;
        clearTypers(rec);
      });
    }

    // ---- who is online and typing ------------------------------------------------

    function setMembers(rec, list, count) {
      rec.members.clear();
      list.forEach(function (n) { if (n !== undefined && n !== null && n !== '') rec.members.add(String(n)); });
      // the list is capped (CHAT_MAX_MEMBERS_LISTED); the count is the whole room
      rec.memberCount = typeof count === 'number' && count >= rec.members.size ? count : rec.members.size;
    }

    function onPresence(p) {
      var rec = p && recs.get(p.room);
      if (!rec) return;
      if (p.action === 'count') {   // large rooms: throttled counts instead of each join/leave
        if (typeof p.count === 'number' && p.count >= 0) rec.memberCount = p.count;
      } else if (p.user !== undefined && p.user !== null) {
        var user = String(p.user);
        if (p.action === 'join') rec.members.add(user);
        else if (p.action === 'leave') {
          rec.members.delete(user);
          clearTyper(rec, user);
        }
        rec.memberCount = typeof p.count === 'number' && p.count >= 0 ? p.count : rec.members.size;
      }
      hooks.presence(rec);
    }

    function clearTyper(rec, user) {
      if (!rec.typers.has(user)) return false;
      window.clearTimeout(rec.typers.get(user));
      rec.typers.delete(user);
      return true;
    }

    function clearTypers(rec) {
      rec.typers.forEach(function (t) { window.clearTimeout(t); });
      rec.typers.clear();
    }

    function onTyping(t) {
      var rec = t && recs.get(t.room);
      if (!rec || t.user === undefined || t.user === null) return;
      var user = String(t.user);
      if (user === conn.name) return;
      clearTyper(rec, user);
      if (t.active) {
        rec.typers.set(user, window.setTimeout(function () {
          rec.typers.delete(user);
          hooks.typing(rec);
        }, TYPING_EXPIRE_MS));
      }
      hooks.typing(rec);
    }

    function listen(socket) {
      window.ChatMessageState.LIVE_EVENTS.forEach(function (name) {
        socket.on(name, function (data) {
          var rec = data && typeof data === 'object' && recs.get(data.room);
          if (!rec) return;
          var changes = rec.state.applyLive(name, data);
          if (name === 'message' && window.ChatMessageState.inserted(changes) && clearTyper(rec, String(data.user))) {
            hooks.typing(rec);
          }
          hooks.live(rec, name, data, changes);
        });
      });
      socket.on('presence', onPresence);
      socket.on('typing', onTyping);
    }

    return {
      get: get,
      all: all,
      forget: forget,
      touch: touch,
      applyEntry: applyEntry,
      want: want,
      leave: leave,
      dropped: dropped,
      onConnect: onConnect,
      onDisconnect: onDisconnect,
      listen: listen,
      maxRooms: maxRooms
    };
  }

  window.ChatRooms = { create: create };
})();
