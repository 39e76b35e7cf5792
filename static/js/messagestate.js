/*
 * Room state of the chat page: the loaded messages and the room topic, kept by applying
 * messages and room events by number (the room's one sequence: a message's id, an event's
 * seq), by the apply rules of docs/PROTOCOL.md ("Room events"). Pure data: no DOM, no socket.
 *
 * Every apply function returns a list of changes for the view to draw:
 *   {op: 'insert' | 'update' | 'remove', id}, {op: 'topic'}, {op: 'member', event} (someone
 *   joined, was added, left or was removed) and {op: 'archived'} (read-only or restored).
 *
 * Three ways in, because they differ in what they may touch:
 * - applyStream(item): a live `message` / `message_edited` / `message_deleted` /
 *   `reaction` / `topic`, or one item of a join ack. Each number is applied once and moves
 *   the resume point (the `since` of the next join).
 * - applyAck(item): a send ack's message or an edit/delete/react ack's event. Shown at
 *   once, but it may be ahead of the stream (a cluster), so it neither moves the resume
 *   point nor counts as applied: the same item arriving in the stream is applied again.
 *   Every event rule sets absolute state, so applying it twice is harmless.
 * - insertCurrent(m): a message in its current state (join without `since`, older pages of
 *   `history`): inserted as is; its reply_to.replies is not applied to the parent, which
 *   is current already.
 *
 * Exposes window.ChatMessageState.create(options) -> state.
 */
(function () {
  'use strict';

  var GONE_REMEMBERED = 1000;
  // Membership (`member`: join, invite, remove) and `archive` events are numbered in the same
  // stream: they change no message, but they move the resume point like every other number.
  var EVENT_KINDS = { edit: true, 'delete': true, react: true, unreact: true, topic: true,
    join: true, invite: true, remove: true, archive: true };
  var MEMBER_KINDS = { join: true, invite: true, remove: true };
  // Socket.IO event name -> the kind its payload stands for (older servers sent
  // message_deleted {room, id} without a kind or seq).
  var LIVE_KINDS = { message_edited: 'edit', message_deleted: 'delete', topic: 'topic', room_archived: 'archive' };

  function toNumber(value) {
    var n = Number(value);
    return Number.isFinite(n) && n >= 0 ? n : null;
  }

  // The number of an item of the room's stream: an event's seq, otherwise a message's id.
  function numberOf(item) {
    if (!item || typeof item !== 'object') return null;
    if (isEvent(item)) return toNumber(item.seq);
    return toNumber(item.id);
  }

  function isEvent(item) {
    return !!item && typeof item === 'object' && typeof item.kind === 'string' &&
      Object.prototype.hasOwnProperty.call(EVENT_KINDS, item.kind);
  }

  function cleanReactions(list) {
    if (!Array.isArray(list)) return [];
    return list.filter(function (r) {
      return r && typeof r.emoji === 'string' && r.emoji && Number(r.count) > 0;
    }).map(function (r) {
      return {
        emoji: r.emoji,
        count: Number(r.count),
        users: Array.isArray(r.users) ? r.users.map(String) : [],
        me: r.me === true
      };
    });
  }

  function cleanReplyTo(r) {
    if (!r || typeof r !== 'object' || toNumber(r.id) === null) return null;
    return {
      id: toNumber(r.id),
      user: r.user === undefined || r.user === null ? '' : String(r.user),
      excerpt: typeof r.excerpt === 'string' ? r.excerpt : null,
      replies: toNumber(r.replies)
    };
  }

  // A private copy of a wire Message object, with every optional field in a known shape.
  function cleanMessage(m) {
    return {
      id: toNumber(m.id),
      user: m.user === undefined || m.user === null ? '' : String(m.user),
      account: m.account === true,
      text: m.text === undefined || m.text === null ? '' : String(m.text),
      ts: typeof m.ts === 'string' ? m.ts : '',
      edited_at: typeof m.edited_at === 'string' ? m.edited_at : null,
      reactions: cleanReactions(m.reactions),
      reply_to: cleanReplyTo(m.reply_to),
      replies: toNumber(m.replies) || 0,
      mentions: Array.isArray(m.mentions) ? m.mentions.map(String) : []
    };
  }

  // Join ack items (history messages and events) merged by number, oldest first.
  function mergeByNumber(history, events) {
    var items = [];
    (Array.isArray(history) ? history : []).forEach(function (m) { items.push(m); });
    (Array.isArray(events) ? events : []).forEach(function (e) { items.push(e); });
    return items.filter(function (item) { return numberOf(item) !== null; })
      .sort(function (a, b) { return numberOf(a) - numberOf(b); });
  }

  function create(options) {
    var room = options.room;
    var myName = options.myName;      // function () -> my current name
    var byId = new Map();             // id -> message (cleanMessage shape)
    var order = [];                   // loaded ids, ascending
    // Deleted ids, never shown again even from a stale copy (a send ack overtaken by its
    // deletion); only the latest GONE_REMEMBERED: older stale copies cannot arrive any more.
    var gone = new Set();
    // The resume point: the stream comes in number order, so every number up to it has been
    // applied (no set of applied numbers that would grow all day).
    var resume = 0;
    var topic = '';
    var archived = false;

    function forRoom(item) {
      return !!item && typeof item === 'object' && (item.room === undefined || item.room === room);
    }

    function noteNumber(n) {
      if (n !== null && n > resume) resume = n;
    }

    function insertSorted(id) {
      var i = order.length;
      while (i > 0 && order[i - 1] > id) i -= 1;
      order.splice(i, 0, id);
    }

    function insert(m, changes) {
      var id = toNumber(m.id);
      if (id === null || byId.has(id) || gone.has(id)) return false;
      byId.set(id, cleanMessage(m));
      insertSorted(id);
      changes.push({ op: 'insert', id: id });
      return true;
    }

    function setReplies(parentId, replies, changes) {
      var parent = byId.get(parentId);
      if (!parent || replies === null || parent.replies === replies) return;
      parent.replies = replies;
      changes.push({ op: 'update', id: parentId });
    }

    // message: insert by id (if new); a reply tells its loaded parent its reply count.
    function applyMessage(m, changes, withParent) {
      insert(m, changes);
      var reply = cleanReplyTo(m.reply_to);
      if (withParent && reply) setReplies(reply.id, reply.replies, changes);
    }

    function applyEdit(e, changes) {
      var target = byId.get(toNumber(e.id));
      if (!target) return;
      target.text = e.text === undefined || e.text === null ? '' : String(e.text);
      target.edited_at = typeof e.edited_at === 'string' ? e.edited_at : target.edited_at;
      changes.push({ op: 'update', id: target.id });
    }

    function applyDelete(e, changes) {
      var id = toNumber(e.id);
      if (id === null) return;
      gone.add(id);
      if (gone.size > GONE_REMEMBERED) gone.delete(gone.values().next().value);
      if (byId.has(id)) {
        byId.delete(id);
        order.splice(order.indexOf(id), 1);
        changes.push({ op: 'remove', id: id });
      }
      byId.forEach(function (m) {
        if (m.reply_to && m.reply_to.id === id && m.reply_to.excerpt !== null) {
          m.reply_to.excerpt = null;
          changes.push({ op: 'update', id: m.id });
        }
      });
      var parent = cleanReplyTo(e.reply_to);
      if (parent) setReplies(parent.id, parent.replies, changes);
    }

    // reaction: the chip's new state; `me` follows my own reactions only.
    function applyReaction(e, changes) {
      var target = byId.get(toNumber(e.id));
      if (!target || typeof e.emoji !== 'string' || !e.emoji) return;
      var count = toNumber(e.count) || 0;
      var chips = target.reactions;
      var chip = chips.filter(function (c) { return c.emoji === e.emoji; })[0];
      if (count === 0) {
        if (chip) chips.splice(chips.indexOf(chip), 1);
      } else {
        if (!chip) {
          chip = { emoji: e.emoji, count: 0, users: [], me: false };
          chips.push(chip);
        }
        chip.count = count;
        chip.users = Array.isArray(e.users) ? e.users.map(String) : [];
        if (e.user !== undefined && String(e.user) === myName()) chip.me = e.kind === 'react';
      }
      changes.push({ op: 'update', id: target.id });
    }

    function applyTopic(e, changes) {
      topic = typeof e.topic === 'string' ? e.topic : '';
      changes.push({ op: 'topic' });
    }

    function applyItem(item, changes, withParent) {
      if (!isEvent(item)) return applyMessage(item, changes, withParent);
      if (MEMBER_KINDS[item.kind]) changes.push({ op: 'member', event: item });
      else if (item.kind === 'archive') {
        archived = item.archived !== false;
        changes.push({ op: 'archived' });
      } else if (item.kind === 'edit') applyEdit(item, changes);
      else if (item.kind === 'delete') applyDelete(item, changes);
      else if (item.kind === 'topic') applyTopic(item, changes);
      else applyReaction(item, changes);
    }

    function applyStream(item) {
      var changes = [];
      if (!forRoom(item)) return changes;
      var n = numberOf(item);
      if (n !== null && n <= resume) return changes;   // applied already
      // An older message_deleted (staff, admin) carries no seq: applied, but no number.
      if (n === null && !(isEvent(item) && item.kind === 'delete')) return changes;
      applyItem(item, changes, true);
      noteNumber(n);
      return changes;
    }

    // A live Socket.IO event by name: `message` or one of the room events.
    function applyLive(name, data) {
      if (!data || typeof data !== 'object') return [];
      if (LIVE_KINDS[name] && typeof data.kind !== 'string') {
        data = Object.assign({ kind: LIVE_KINDS[name] }, data);
      }
      if (name === 'message' && isEvent(data)) return [];
      return applyStream(data);
    }

    function applyAck(item) {
      var changes = [];
      if (forRoom(item)) applyItem(item, changes, false);
      return changes;
    }

    function insertCurrent(m) {
      var changes = [];
      if (forRoom(m)) insert(m, changes);
      return changes;
    }

    // A join ack. Without `since` its history is the current state; with `since` history
    // and events are replayed in number order exactly like live events.
    function applyJoin(res, withSince) {
      var changes = [];
      mergeByNumber(res.history, withSince ? res.events : []).forEach(function (item) {
        var n = numberOf(item);
        if (withSince) {
          changes.push.apply(changes, applyStream(item));
          return;
        }
        if (forRoom(item)) insert(item, changes);
        noteNumber(n);
      });
      if (typeof res.topic === 'string' && res.topic !== topic) {
        topic = res.topic;
        changes.push({ op: 'topic' });
      }
      return changes;
    }

    function lastMineId() {
      var me = myName();
      for (var i = order.length - 1; i >= 0; i--) {
        if (byId.get(order[i]).user === me) return order[i];
      }
      return null;
    }

    return {
      applyStream: applyStream,
      applyLive: applyLive,
      applyAck: applyAck,
      applyJoin: applyJoin,
      insertCurrent: insertCurrent,
      noteResume: function (n) { noteNumber(toNumber(n)); },
      get: function (id) { return byId.get(toNumber(id)) || null; },
      ids: function () { return order.slice(); },
      size: function () { return order.length; },
      minId: function () { return order.length ? order[0] : null; },
      lastMineId: lastMineId,
      get resume() { return resume; },
      get topic() { return topic; },
      get archived() { return archived; },
      set archived(value) { archived = !!value; }
    };
  }

  // Whether a list of changes inserted message `id`.
  function inserted(changes, id) {
    return changes.some(function (c) { return c.op === 'insert' && (id === undefined || c.id === id); });
  }

  window.ChatMessageState = {
    create: create,
    numberOf: numberOf,
    inserted: inserted,
    LIVE_EVENTS: ['message', 'message_edited', 'message_deleted', 'reaction', 'topic', 'member', 'room_archived']
  };
})();
