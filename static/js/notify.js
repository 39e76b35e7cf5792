/*
 * Browser notifications and the sound, for direct messages and for messages that mention
 * me, only while the tab is hidden, never for muted rooms and never for my own messages.
 *
 * Notifications use the Notification API only after the person asks for them with the
 * #notify-toggle button (which requests the permission); the choice is kept in
 * localStorage ("chat.notify"). The sound (#sound-toggle, "chat.sound") is off by default:
 * a short WebAudio beep. The same message is announced once, whether it came as a live
 * `message` or as a `mention` event.
 *
 * Exposes window.ChatNotify.create(options) -> notify. options: label(rec) (how the room
 * is called), open(name) (show a room when a notification is clicked), muted(rec).
 */
(function () {
  'use strict';

  var U = window.ChatUtil;
  var NOTIFY_KEY = 'chat.notify';
  var SOUND_KEY = 'chat.sound';
  var BODY_CHARS = 200;
  var SEEN_MAX = 500;
  var BEEP_HZ = 880;
  var BEEP_SECS = 0.15;

  function create(o) {
    var notifyButton = U.$('notify-toggle'), soundButton = U.$('sound-toggle');
    var seen = [];                  // "room:id" announced already
    var audio = null;

    function supported() { return typeof window.Notification === 'function'; }

    function enabled() {
      return supported() && window.Notification.permission === 'granted' &&
        U.storage.get('localStorage', NOTIFY_KEY) === 'on';
    }

    function soundOn() { return U.storage.get('localStorage', SOUND_KEY) === 'on'; }

    function render() {
      var on = enabled();
      notifyButton.setAttribute('aria-pressed', String(on));
      notifyButton.textContent = on ? 'Notifications: on' : 'Notifications: off';
      notifyButton.disabled = !supported();
      if (!supported()) notifyButton.title = 'This browser has no notifications';
      else if (window.Notification.permission === 'denied') notifyButton.title = 'Blocked in the browser settings';
      else notifyButton.title = '';
      var sound = soundOn();
      soundButton.setAttribute('aria-pressed', String(sound));
      soundButton.textContent = sound ? 'Sound: on' : 'Sound: off';
    }

    notifyButton.addEventListener('click', function () {
      if (enabled()) {
        U.storage.set('localStorage', NOTIFY_KEY, 'off');
        render();
        return;
      }
      if (window.Notification.permission === 'denied') {
        U.setError('Notifications are blocked for this site in the browser settings.', 'notify');
        return;
      }
      var asked = window.Notification.requestPermission();
      Promise.resolve(asked).then(function (permission) {
        permission = permission || window.Notification.permission;
        if (permission === 'granted') {
          U.storage.set('localStorage', NOTIFY_KEY, 'on');
          U.clearError('notify');
        } else {
          U.setError('Notifications were not allowed.', 'notify');
        }
        render();
      });
    });

    soundButton.addEventListener('click', function () {
      U.storage.set('localStorage', SOUND_KEY, soundOn() ? 'off' : 'on');
      render();
      if (soundOn()) beep();   // a click is the user gesture WebAudio needs to start
    });

    function beep() {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      try {
        audio = audio || new Ctx();
        var osc = audio.createOscillator(), gain = audio.createGain(), t = audio.currentTime;
        osc.frequency.value = BEEP_HZ;
        gain.gain.setValueAtTime(0.15, t);
        gain.gain.exponentialRampToValueAtTime(0.001, t + BEEP_SECS);
        osc.connect(gain);
        gain.connect(audio.destination);
        osc.start(t);
        osc.stop(t + BEEP_SECS);
      } catch (e) { /* no audio: stay silent */ }
    }

    function firstTime(key) {
      if (seen.indexOf(key) >= 0) return false;
      seen.push(key);
      if (seen.length > SEEN_MAX) seen.shift();
      return true;
    }

    // A message for me (rec.kind 'direct', or it mentions me): {id, user, text}.
    function consider(rec, m, mentionsMe) {
      if (!rec || !m || String(m.user) === o.myName()) return;
      var direct = rec.kind === 'direct';
      if (!direct && !mentionsMe) return;
      if (!firstTime(rec.name + ':' + m.id)) return;
      if (!U.pageHidden() || o.muted(rec)) return;
      if (soundOn()) beep();
      if (!enabled()) return;
      var title = direct ? 'New message from ' + m.user : m.user + ' mentioned you in ' + o.label(rec);
      var text = String(m.text || '');
      try {
        var note = new window.Notification(title, {
          body: text.length > BODY_CHARS ? text.slice(0, BODY_CHARS - 1) + '…' : text,
          tag: rec.name + ':' + m.id
        });
        note.onclick = function () {
          window.focus();
          o.open(rec.name);
          note.close();
        };
      } catch (e) { /* e.g. a browser that only notifies from a service worker */ }
    }

    render();
    return { consider: consider, render: render };
  }

  window.ChatNotify = { create: create };
})();
