/*
 * The message list of the room page and what people do with each message: it applies
 * ChatMessageState's changes (static/js/messagestate.js) to the list, drawn by
 * static/js/messagerender.js, and owns the interaction: reaction chips and the picker, the
 * menu of one's own messages (edit in place, delete with an in-page confirmation), the reply
 * quote above the composer, Up arrow (edit my last message) and Esc, and the room topic in
 * the header (shown live, set in place). The view never talks to the socket: actions go through
 * options.request(event, payload, done), which reports errors itself and calls done(ack) on
 * success or done(null). One view serves every room of the app: options.state is the state of
 * the room shown, and redraw() draws the list again when another room is shown.
 *
 * Exposes window.ChatMessageView.create(options) -> view.
 */
(function () {
  'use strict';

  var clone = window.ChatMessageRender.clone;

  function create(o) {
    var list = o.list, state = o.state, composer = o.composer;
    var draw = window.ChatMessageRender.create(o);
    var renderMessage = draw.renderMessage, fill = draw.fill, relayout = draw.relayout, excerpt = draw.excerpt;
    var nodes = new Map();        // id -> li.message
    var popup = null;             // {li, node, opener}: the open menu, picker or confirmation
    var editing = null;           // {id, li, form, input, returnTo}
    var replyTo = null;           // id quoted above the composer
    // ---- the list: changes, day dividers, grouping ---------------------------

    function apply(changes) {
      var layout = false;
      changes.forEach(function (c) {
        if (c.op === 'topic') return showTopic();
        if (c.op !== 'insert' && c.op !== 'update' && c.op !== 'remove') return;   // member, archived
        var m = state.get(c.id), li = nodes.get(c.id);
        if (c.op === 'remove') { if (li) removeNode(c.id, li); layout = true; }
        else if (c.op === 'insert' && m && !li) { insertNode(m); layout = true; }
        else if (m && li) fill(li, m);
      });
      if (layout) relayout();
    }

    // Draws the whole list again from the state (the app showed another room: options.state
    // answers for the room shown); whatever was open on the old list is closed.
    function redraw() {
      closePopup(false);
      cancelEdit(false);
      cancelReply();
      nodes.clear();
      list.replaceChildren();
      state.ids().forEach(function (id) {
        var li = renderMessage(state.get(id));
        list.appendChild(li);
        nodes.set(id, li);
      });
      relayout();
      showTopic();
    }

    function insertNode(m) {
      var li = renderMessage(m), ids = state.ids(), next = null;
      for (var i = ids.indexOf(m.id) + 1; i < ids.length && !next; i++) next = nodes.get(ids[i]) || null;
      list.insertBefore(li, next);
      nodes.set(m.id, li);
    }

    function removeNode(id, li) {
      var hadFocus = li.contains(document.activeElement);
      if (popup && popup.li === li) popup = null;
      if (editing && editing.li === li) editing = null;
      if (replyTo === id) cancelReply();
      nodes.delete(id);
      li.remove();
      if (hadFocus) composer.focus();
    }

    function setMine() {
      nodes.forEach(function (li) {
        li.classList.toggle('mine', !!o.myName() && li.dataset.user === o.myName());
      });
    }

    function showTopic() {
      if (!o.topicEl) return;
      o.topicEl.textContent = state.topic;
      o.topicEl.title = state.topic;
      o.topicEl.hidden = !state.topic;
    }

    // ---- popups: menu, picker, delete confirmation ----------------------------

    function openPopup(li, templateId, opener) {
      closePopup(false);
      var node = li.appendChild(clone(templateId));
      li.classList.add('popup-open');
      if (opener) opener.setAttribute('aria-expanded', 'true');
      popup = { li: li, node: node, opener: opener };
      node.scrollIntoView({ block: 'nearest' });
      var first = node.querySelector('[data-autofocus]') || node.querySelector('button, input');
      if (first) first.focus();
    }

    function closePopup(returnFocus) {
      if (!popup) return;
      var p = popup;
      popup = null;
      p.node.remove();
      p.li.classList.remove('popup-open');
      if (p.opener) p.opener.setAttribute('aria-expanded', 'false');
      if (returnFocus && p.opener && p.opener.isConnected) p.opener.focus();
    }

    function togglePopup(li, templateId, opener) {
      if (popup && popup.opener === opener) closePopup(true);
      else openPopup(li, templateId, opener);
    }

    function moveInMenu(menu, key) {
      var items = Array.prototype.slice.call(menu.querySelectorAll('[role=menuitem]'));
      var i = items.indexOf(document.activeElement);
      if (key === 'ArrowDown') i = (i + 1) % items.length;
      else if (key === 'ArrowUp') i = (i - 1 + items.length) % items.length;
      else if (key === 'Home') i = 0;
      else if (key === 'End') i = items.length - 1;
      else return false;
      items[i].focus();
      return true;
    }

    // ---- actions ---------------------------------------------------------------

    function applyAck(res) {
      if (res && res.event) apply(state.applyAck(res.event));
    }

    // A chip or a picked emoji: adds my reaction, or takes it back if it is there.
    function react(id, emoji) {
      var m = state.get(id);
      if (!m || !emoji) return;
      var mine = m.reactions.some(function (r) { return r.emoji === emoji && r.me; });
      o.request(mine ? 'unreact' : 'react', { id: id, emoji: emoji }, applyAck);
    }

    function remove(id) {
      closePopup(false);
      composer.focus();
      o.request('delete', { id: id }, applyAck);
    }

    // ---- edit in place -----------------------------------------------------------

    function startEdit(id, returnTo) {
      var li = nodes.get(id), m = state.get(id);
      if (!li || !m) return false;
      closePopup(false);
      cancelEdit(false);
      var form = clone('editor-template'), input = form.querySelector('textarea');
      input.value = m.text;
      li.querySelector('.message-text').after(form);
      li.classList.add('editing');
      editing = { id: id, li: li, form: form, input: input, returnTo: returnTo || null };
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
      form.scrollIntoView({ block: 'nearest' });
      return true;
    }

    function cancelEdit(returnFocus) {
      if (!editing) return;
      var e = editing;
      editing = null;
      e.form.remove();
      e.li.classList.remove('editing');
      if (returnFocus) (e.returnTo && e.returnTo.isConnected ? e.returnTo : composer).focus();
    }

    function saveEdit() {
      var e = editing, m = e && state.get(e.id);
      if (!m || e.input.disabled) return;
      var text = e.input.value.replace(/\s+$/, '');
      if (!text.trim() || text === m.text) { cancelEdit(true); return; }
      e.input.disabled = true;
      o.request('edit', { id: e.id, text: text }, function (res) {
        if (editing !== e) return;
        e.input.disabled = false;
        if (!res) { e.input.focus(); return; }   // the error is in the banner; the edit stays open
        applyAck(res);
        cancelEdit(true);
      });
    }

    function editLast() {
      var id = state.lastMineId();
      return id !== null && startEdit(id, composer);
    }

    // ---- reply quote above the composer ---------------------------------------------

    function startReply(id) {
      var m = state.get(id);
      if (!m || !o.replyBar) return;
      replyTo = id;
      o.replyText.textContent = m.user + ': ' + excerpt(m.text);
      o.replyBar.hidden = false;
      closePopup(false);
      composer.focus();
    }

    function cancelReply() {
      replyTo = null;
      if (o.replyBar) o.replyBar.hidden = true;
    }

    function takeReply() {
      var id = replyTo;
      cancelReply();
      return id;
    }

    // ---- event wiring ------------------------------------------------------------------

    var CLICKS = {
      picker: function (id, li, b) { togglePopup(li, 'picker-template', b); },
      menu: function (id, li, b) { togglePopup(li, 'menu-template', b); },
      reply: function (id) { startReply(id); },
      chip: function (id, li, b) { react(id, b.dataset.emoji); },
      pick: function (id, li, b) { closePopup(true); react(id, b.dataset.emoji); },
      edit: function (id) { startEdit(id, null); },
      'ask-delete': function (id, li) { openPopup(li, 'confirm-delete-template', popup && popup.opener); },
      'delete': function (id) { remove(id); },
      close: function () { closePopup(true); },
      'cancel-edit': function () { cancelEdit(true); }
    };

    list.addEventListener('click', function (e) {
      var b = e.target.closest('button[data-action]'), li = b && b.closest('li.message');
      if (li && CLICKS[b.dataset.action]) CLICKS[b.dataset.action](Number(li.dataset.id), li, b);
    });

    list.addEventListener('submit', function (e) {
      var form = e.target, li = form.closest('li.message');
      e.preventDefault();
      if (form.dataset.action === 'save') { saveEdit(); return; }
      var emoji = form.dataset.action === 'pick-typed' && li && form.querySelector('input').value.trim();
      if (!emoji) return;
      closePopup(true);
      react(Number(li.dataset.id), emoji);
    });

    list.addEventListener('keydown', function (e) {
      if (editing && e.target === editing.input) {
        if (e.key === 'Escape') { e.preventDefault(); cancelEdit(true); }
        else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
          e.preventDefault();
          saveEdit();
        }
        return;
      }
      if (!popup || !popup.node.contains(e.target)) return;
      var menu = popup.node.getAttribute('role') === 'menu';
      if (e.key === 'Escape') { e.preventDefault(); closePopup(true); }
      else if (e.key === 'Tab' && menu) closePopup(false);
      else if (menu && moveInMenu(popup.node, e.key)) e.preventDefault();
    });

    document.addEventListener('click', function (e) {
      if (!popup || !e.target.isConnected) return;   // a popup's own button that replaced the popup
      if (!popup.node.contains(e.target) && !(popup.opener && popup.opener.contains(e.target))) closePopup(false);
    });

    composer.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowUp' && !composer.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
        if (editLast()) e.preventDefault();
      } else if (e.key === 'Escape' && replyTo !== null) {
        e.preventDefault();
        cancelReply();
      }
    });

    if (o.replyCancel) o.replyCancel.addEventListener('click', function () { cancelReply(); composer.focus(); });

    // ---- the room topic: set in place in the header --------------------------------------

    function startTopicEdit() {
      o.topicInput.value = state.topic;
      o.topicForm.hidden = false;
      o.topicEdit.hidden = true;
      o.topicInput.focus();
      o.topicInput.select();
    }

    function endTopicEdit(returnFocus) {
      o.topicForm.hidden = true;
      o.topicEdit.hidden = false;
      if (returnFocus) o.topicEdit.focus();
    }

    function saveTopic() {
      var topic = o.topicInput.value.trim();
      if (o.topicInput.disabled) return;
      if (topic === state.topic) { endTopicEdit(true); return; }
      o.topicInput.disabled = true;
      o.request('set_topic', { topic: topic }, function (res) {
        o.topicInput.disabled = false;
        if (!res) { o.topicInput.focus(); return; }   // the error is in the banner; the form stays
        applyAck(res);
        endTopicEdit(true);
      });
    }

    if (o.topicForm) {
      o.topicEdit.addEventListener('click', startTopicEdit);
      o.topicForm.addEventListener('submit', function (e) { e.preventDefault(); saveTopic(); });
      o.topicInput.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') { e.preventDefault(); endTopicEdit(true); }
      });
    }

    return {
      apply: apply,
      redraw: redraw,
      relayout: relayout,
      setMine: setMine,
      takeReply: takeReply,
      startReply: startReply,
      cancelReply: cancelReply,
      editLast: editLast
    };
  }

  window.ChatMessageView = { create: create };
})();
