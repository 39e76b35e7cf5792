// Load generator of the chat benchmarks: many Socket.IO clients in one Node process, speaking
// raw Engine.IO v4 / Socket.IO v5 over websocket (the `ws` package), so that it costs far less
// per message than a socket.io-client would and less than the servers it measures.
//
//   node bench/loadgen.mjs '<config JSON>'
//
// Config: {index, urls, prefix, first, count, total, rooms, roomPrefix, connectConcurrency,
//          joinConcurrency, timeoutMs, textPad, maxLifetimeSecs, pairs, tokensFile}
//   This process runs the clients with global indexes first .. first+count-1 (of `total`).
//   Client g is named prefix+g, connects to urls[g % urls.length] and, when rooms > 0, joins
//   roomPrefix+k where the rooms are contiguous blocks of clients (so a room's members are
//   spread over every url).
//   pairs: true (direct messages): clients 2k and 2k+1 are a pair (both in this process:
//   `first` and `count` are even). At `join` client 2k asks `open_dm {users: [name of
//   2k+1]}` and both join the room its ack names (`room.name`); `rooms` is ignored. The
//   latency histogram then holds only the deliveries to the pair's other member (not the
//   sender's own copy, recognised by its `user`), and a pair's two members send half a
//   period apart.
//   tokensFile: a JSON array of reconnect tokens by global index: client g connects with
//   auth {token: tokens[g]} (an account made for the run) instead of {name}.
//
// Commands, one JSON object per line on stdin; one JSON answer per command on stdout:
//   {"cmd":"connect","at":EPOCH_MS}  -> {"event":"connected", ok, failed, errors, first, last}
//   {"cmd":"join"}                   -> {"event":"joined", ok, failed, errors, opened (pairs: rooms opened)}
//   {"cmd":"run","at":EPOCH_MS,"mode":"rate"|"closed","rate":PER_SEC,"duration":SECS,
//    "drainMs":MS,"quietMs":MS,"tag":"w1","mix":{"edit":0.05,"react":0.05}}
//                                    -> {"event":"ran", sent, acked, deliveries, latency, ...}
//   {"cmd":"status"}                 -> {"event":"status", open, connected, rss}
//   {"cmd":"quit"}                   -> {"event":"bye"}, then exits
// The process also exits when stdin closes or after maxLifetimeSecs.
//
// Timing: the text of each message is "t=<send time, ms since the epoch> p=<process index>
// <padding>". A delivery's latency is measured when the sender ran in this same process, so
// sender and receiver read the same clock; every delivery is counted either way.
//
// Room events (`mix`, default none): those shares of each client's requests are an `edit`
// of its own last acked message (a new text of the same shape, so its `message_edited` has
// a latency too) or a reaction toggle with the client's emoji (`unreact` of the message it
// last reacted to, else `react` to the last message it received), all with acks; the rest
// are `send`s. Client g's k-th request is an edit when (k + g) is a multiple of 1/edit; the
// toggles come in pairs, a react and its unreact 3 requests later, one pair every 2/react
// requests. The phases follow g, so every beat of a room has its shares, and every target
// is a few seconds old at most. An edit or toggle with nothing to act on yet is a `send`.
// `message`, `message_edited` and `reaction` deliveries count alike and share the order and
// gap checks: a message's `id` and an event's `seq` are numbers of the room's one sequence.
// An ok ack with `event: null` (nothing changed) is counted in `ackedNull`: it delivers
// nothing.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const config = JSON.parse(process.argv[2] || "{}");
const INDEX = config.index ?? 0;
const URLS = config.urls;
const PREFIX = config.prefix ?? "u";
const FIRST = config.first ?? 0;
const COUNT = config.count ?? 1;
const TOTAL = config.total ?? COUNT;
const ROOMS = config.rooms ?? 0;
const ROOM_PREFIX = config.roomPrefix ?? "room";
const CONNECT_CONCURRENCY = config.connectConcurrency ?? 100;
const JOIN_CONCURRENCY = config.joinConcurrency ?? 100;
const TIMEOUT_MS = config.timeoutMs ?? 15000;
const PAD = "x".repeat(config.textPad ?? 40);
const MAX_PENDING_PER_CLIENT = 64; // open-loop senders skip a beat past this many unanswered sends
const EMOJI = ["👍", "🎉", "😂", "🔥"]; // client g reacts with EMOJI[g % 4]
const PAIRS = Boolean(config.pairs);
const TOKENS = config.tokensFile ? JSON.parse(readFileSync(config.tokensFile, "utf8")) : null;

const ORIGIN = performance.timeOrigin;
const now = () => ORIGIN + performance.now();

setTimeout(() => {
  process.stderr.write("loadgen: maximum lifetime reached, exiting\n");
  process.exit(3);
}, (config.maxLifetimeSecs ?? 1800) * 1000).unref();

// -- latency histogram: log buckets of 2 % from 0.01 ms (bench/run.py reads the same layout) --
const H_BASE = 0.01;
const H_GROWTH = 1.02;
const H_LOG = Math.log(H_GROWTH);
const H_SIZE = 1400;

class Histogram {
  constructor() {
    this.counts = new Uint32Array(H_SIZE);
    this.n = 0;
    this.sum = 0;
    this.max = 0;
  }
  add(value) {
    const v = value > 0 ? value : 0;
    const idx = v <= H_BASE ? 0 : Math.min(H_SIZE - 1, Math.ceil(Math.log(v / H_BASE) / H_LOG));
    this.counts[idx] += 1;
    this.n += 1;
    this.sum += v;
    if (v > this.max) this.max = v;
  }
  toJSON() {
    const buckets = [];
    for (let i = 0; i < H_SIZE; i++) if (this.counts[i]) buckets.push([i, this.counts[i]]);
    return { base: H_BASE, growth: H_GROWTH, n: this.n, sum: this.sum, max: this.max, buckets };
  }
}

// -- per-run counters ------------------------------------------------------------------------
let run = null; // the run in progress (counters), or null
function freshRun(tag, mix) {
  return {
    tag, sent: 0, acked: 0, ackedInWindow: 0, ackedNull: 0, ackErrors: {}, skipped: 0, deliveries: 0,
    deliveriesInWindow: 0, ownCopies: 0, outOfOrder: 0, gaps: 0, firstSend: 0, lastSend: 0, lastDelivery: 0, windowStart: 0,
    windowEnd: 0, latency: new Histogram(), ackLatency: new Histogram(),
    editEvery: mix && mix.edit > 0 ? Math.round(1 / mix.edit) : 0,
    reactCycle: mix && mix.react > 0 ? Math.round(2 / mix.react) : 0,
    requests: { send: 0, edit: 0, react: 0, unreact: 0 }, kinds: { message: 0, message_edited: 0, reaction: 0 },
  };
}

// What client g's k-th request is: "edit", "react" (a toggle) or "send" (see `mix` above).
function requestKind(r, g, k) {
  if (r.editEvery && (k + g) % r.editEvery === 0) return "edit";
  if (!r.reactCycle) return "send";
  const slot = (k + g) % r.reactCycle;
  const first = r.reactCycle >> 2;
  return slot === first || slot === first + 3 ? "react" : "send";
}

function readInt(s, i) {
  let n = 0;
  for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) n = n * 10 + (c - 48);
  return n;
}

let stray = { deliveries: 0, other: 0, closed: 0, serverDisconnects: 0 };

function say(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

// -- one client --------------------------------------------------------------------------------
class Client {
  constructor(g) {
    this.g = g;
    this.name = `${PREFIX}${g}`;
    this.url = URLS[g % URLS.length];
    if (ROOMS > 0 && !PAIRS) {
      const perRoom = Math.ceil(TOTAL / ROOMS);
      this.room = `${ROOM_PREFIX}${Math.min(ROOMS - 1, Math.floor(g / perRoom))}`;
    } else {
      this.room = null; // pairs: set at `join`, from the ack of `open_dm`
    }
    this.ws = null;
    this.connected = false;
    this.joined = false;
    this.ackSeq = 0;
    this.pending = new Map(); // ack id -> (frame, offset of the payload) => void
    this.lastId = 0; // the highest number (message id, event seq) received from the room
    this.lastMessageId = 0; // the last message received: what a `react` is about
    this.ownId = 0; // the client's own last acked message: what an `edit` is about
    this.reacted = []; // messages the client reacted to (acked), oldest first
    this.emoji = EMOJI[g % EMOJI.length];
    this.requestSeq = 0;
    this.sendSeq = 0;
    this.onConnect = null; // (ok, error) => void while connecting
  }

  frame(s) {
    const c0 = s.charCodeAt(0);
    if (c0 === 52) { // "4": a Socket.IO packet
      const c1 = s.charCodeAt(1);
      if (c1 === 50) { // "2": EVENT
        if (s.startsWith('42["message",')) this.delivery(s, "message", '"id":');
        else if (s.startsWith('42["message_edited",')) this.delivery(s, "message_edited", '"seq":');
        else if (s.startsWith('42["reaction",')) this.delivery(s, "reaction", '"seq":');
        else if (!s.startsWith('42["welcome"')) stray.other += 1; // presence and the like
      } else if (c1 === 51) { // "3": ACK <id>[...]
        let i = 2;
        let id = 0;
        for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) id = id * 10 + (c - 48);
        const callback = this.pending.get(id);
        if (callback) {
          this.pending.delete(id);
          callback(s, i);
        }
      } else if (c1 === 48) { // "0": CONNECT accepted
        this.connected = true;
        if (this.onConnect) this.onConnect(true, null);
      } else if (c1 === 52) { // "4": CONNECT_ERROR
        let code = "connect_error";
        try {
          const body = JSON.parse(s.slice(2));
          code = (body.data && body.data.code) || body.message || code;
        } catch { /* keep the generic code */ }
        if (this.onConnect) this.onConnect(false, code);
      } else if (c1 === 49) { // "1": DISCONNECT by the server
        stray.serverDisconnects += 1;
      }
    } else if (c0 === 50) { // Engine.IO ping
      this.ws.send("3");
    } else if (c0 === 48) { // Engine.IO open: CONNECT to "/" with auth
      this.ws.send("40" + JSON.stringify(TOKENS ? { token: TOKENS[this.g] } : { name: this.name }));
    }
  }

  // A `message` or a room event; `key` is where its number is: "id": or "seq":.
  delivery(s, kind, key) {
    const at = now();
    const r = run;
    if (r === null) {
      stray.deliveries += 1;
      return;
    }
    r.deliveries += 1;
    r.kinds[kind] += 1;
    if (at >= r.windowStart && at <= r.windowEnd) r.deliveriesInWindow += 1;
    r.lastDelivery = at;
    const numberAt = s.indexOf(key);
    if (numberAt > 0) {
      const number = readInt(s, numberAt + key.length);
      if (number <= this.lastId) r.outOfOrder += 1;
      else {
        if (this.lastId > 0 && number !== this.lastId + 1) r.gaps += 1;
        this.lastId = number;
      }
      if (kind === "message") this.lastMessageId = number;
    }
    if (PAIRS) { // the sender's own copy counts as a delivery, not in the latency
      const userAt = s.indexOf('"user":"');
      if (userAt > 0 && s.startsWith(this.name + '"', userAt + 8)) {
        r.ownCopies += 1;
        return;
      }
    }
    const textAt = s.indexOf('"text":"t=');
    if (textAt > 0) {
      const sentAt = parseFloat(s.substr(textAt + 10, 24));
      const procAt = s.indexOf(" p=", textAt + 10);
      if (procAt > 0 && procAt < textAt + 40 && readInt(s, procAt + 3) === INDEX) r.latency.add(at - sentAt);
    }
  }

  connect() {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (ok, error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.onConnect = null;
        if (!ok && this.ws) this.ws.terminate();
        resolve({ ok, error });
      };
      const timer = setTimeout(() => finish(false, "timeout"), TIMEOUT_MS);
      const url = this.url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
      this.onConnect = finish;
      this.ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: TIMEOUT_MS });
      this.ws.on("message", (data) => this.frame(data.toString()));
      this.ws.on("error", (err) => finish(false, err.code || err.message));
      this.ws.on("close", () => {
        if (this.connected && !quitting) stray.closed += 1;
        this.connected = false;
        finish(false, "closed");
      });
    });
  }

  call(event, payload, onAck) {
    const id = ++this.ackSeq;
    this.pending.set(id, onAck);
    this.ws.send(`42${id}${JSON.stringify([event, payload])}`);
    return id;
  }

  // A request answered by an ack: {ok: true, reply} or {ok: false, error: code}.
  ask(event, payload) {
    return new Promise((resolve) => {
      if (!this.connected) return resolve({ ok: false, error: "not_connected" });
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ ok: false, error: "timeout" });
      }, TIMEOUT_MS);
      const id = this.call(event, payload, (s, i) => {
        clearTimeout(timer);
        let reply;
        try {
          reply = JSON.parse(s.slice(i))[0];
        } catch {
          return resolve({ ok: false, error: "bad ack" });
        }
        if (!reply || !reply.ok) return resolve({ ok: false, error: (reply && reply.error && reply.error.code) || "refused" });
        resolve({ ok: true, reply });
      });
    });
  }

  async join() {
    const result = await this.ask("join", { room: this.room });
    if (!result.ok) return result;
    const history = result.reply.history || [];
    if (history.length) this.lastId = Math.max(this.lastId, history[history.length - 1].id);
    this.joined = true;
    return { ok: true };
  }

  // pairs: the direct room of this client and `other` (a client name), or the refusal.
  async openDm(other) {
    const result = await this.ask("open_dm", { users: [other] });
    if (!result.ok) return result;
    const room = result.reply.room && result.reply.room.name;
    return typeof room === "string" ? { ok: true, room } : { ok: false, error: "no room name" };
  }

  send(r, closedLoop) {
    if (!this.connected) return;
    if (!closedLoop && this.pending.size >= MAX_PENDING_PER_CLIENT) {
      r.skipped += 1;
      return;
    }
    const sentAt = now();
    const text = `t=${sentAt.toFixed(3)} p=${INDEX} ${PAD}`;
    const [event, payload] = this.request(requestKind(r, this.g, this.requestSeq++), text, r.tag);
    r.requests[event] += 1;
    this.call(event, payload, (s, i) => {
      const at = now();
      const refused = !s.startsWith('[{"ok":true', i);
      if (refused) this.refused(r, event, s, i);
      else this.acked(r, event, payload, s, i, at, at - sentAt);
      if (closedLoop && at < r.windowEnd) {
        if (!refused) this.send(r, true);
        else setTimeout(() => this.send(r, true), 10); // refused (busy): back off a little
      }
    });
    if (r.firstSend === 0) r.firstSend = sentAt;
    r.lastSend = sentAt;
    r.sent += 1;
  }

  // The request of the kind requestKind chose, or a `send` while there is nothing to act on.
  request(kind, text, tag) {
    const room = this.room;
    if (kind === "edit" && this.ownId) return ["edit", { room, id: this.ownId, text }];
    if (kind === "react" && this.reacted.length) {
      return ["unreact", { room, id: this.reacted.shift(), emoji: this.emoji }];
    }
    if (kind === "react" && this.lastMessageId) return ["react", { room, id: this.lastMessageId, emoji: this.emoji }];
    this.sendSeq += 1;
    return ["send", { room, text, nonce: `${this.name}-${tag}-${this.sendSeq}` }];
  }

  acked(r, event, payload, s, i, at, latency) {
    r.acked += 1;
    if (at <= r.windowEnd) r.ackedInWindow += 1;
    r.ackLatency.add(latency);
    if (s.startsWith('[{"ok":true,"event":null', i)) r.ackedNull += 1;
    else if (event === "send") this.ownId = readInt(s, s.indexOf('"id":', i) + 5);
    else if (event === "react") this.reacted.push(payload.id);
  }

  refused(r, event, s, i) {
    let code = "bad_ack";
    try {
      const reply = JSON.parse(s.slice(i))[0];
      code = (reply && reply.error && reply.error.code) || code;
    } catch { /* keep bad_ack */ }
    const key = event === "send" ? code : `${event}:${code}`;
    r.ackErrors[key] = (r.ackErrors[key] || 0) + 1;
  }
}

const clients = [];
for (let g = FIRST; g < FIRST + COUNT; g++) clients.push(new Client(g));
if (PAIRS && (FIRST % 2 || COUNT % 2)) throw new Error("pairs: first and count must be even");
let quitting = false;

async function pool(items, concurrency, work) {
  let next = 0;
  const workers = [];
  for (let w = 0; w < Math.min(concurrency, items.length); w++) {
    workers.push((async () => {
      while (next < items.length) {
        const item = items[next++];
        await work(item);
      }
    })());
  }
  await Promise.all(workers);
}

function sleepUntil(at) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, at - now())));
}

function countErrors(errors, error) {
  errors[error] = (errors[error] || 0) + 1;
}

async function doConnect(cmd) {
  if (cmd.at) await sleepUntil(cmd.at);
  const errors = {};
  let ok = 0;
  let failed = 0;
  let last = 0;
  const first = now();
  await pool(clients, CONNECT_CONCURRENCY, async (client) => {
    const result = await client.connect();
    if (result.ok) {
      ok += 1;
      last = now();
    } else {
      failed += 1;
      countErrors(errors, result.error);
    }
  });
  say({ event: "connected", ok, failed, errors, first, last });
}

async function doJoin() {
  const errors = {};
  let ok = 0;
  let failed = 0;
  let opened = 0;
  const first = now();
  const joined = (result) => {
    if (result.ok) ok += 1;
    else {
      failed += 1;
      countErrors(errors, result.error);
    }
  };
  if (PAIRS) {
    const openers = [];
    for (let i = 0; i + 1 < clients.length; i += 2) openers.push([clients[i], clients[i + 1]]);
    await pool(openers, JOIN_CONCURRENCY, async ([opener, other]) => {
      const result = await opener.openDm(other.name);
      if (!result.ok) {
        failed += 2;
        countErrors(errors, `open_dm:${result.error}`);
        return;
      }
      opened += 1;
      opener.room = other.room = result.room;
      for (const outcome of await Promise.all([opener.join(), other.join()])) joined(outcome);
    });
  } else {
    await pool(clients.filter((c) => c.connected && c.room), JOIN_CONCURRENCY, async (client) => joined(await client.join()));
  }
  say({ event: "joined", ok, failed, errors, opened, first, last: now() });
}

function pendingTotal() {
  let n = 0;
  for (const c of clients) n += c.pending.size;
  return n;
}

async function doRun(cmd) {
  const start = cmd.at || now() + 50;
  const durationMs = cmd.duration * 1000;
  const r = freshRun(cmd.tag || "run", cmd.mix);
  r.windowStart = start;
  r.windowEnd = start + durationMs;
  const senders = clients.filter((c) => c.joined && c.connected);
  await sleepUntil(start - 20);
  run = r;
  const timers = [];
  if (cmd.mode === "closed") {
    await sleepUntil(start);
    for (const c of senders) c.send(r, true);
  } else {
    const period = 1000 / cmd.rate;
    const beats = Math.max(1, Math.round(cmd.duration * cmd.rate));
    for (const c of senders) {
      // Spread the senders evenly over one period; pairs: a pair's two members half a period apart.
      const slot = PAIRS ? (c.g % 2) * Math.floor(TOTAL / 2) + (c.g >> 1) : c.g;
      const offset = (slot / TOTAL) * period;
      let k = 0;
      const beat = () => {
        if (k >= beats) return;
        c.send(r, false);
        k += 1;
        if (k < beats) timers.push(setTimeout(beat, Math.max(0, start + offset + k * period - now())));
      };
      timers.push(setTimeout(beat, Math.max(0, start + offset - now())));
    }
  }
  await sleepUntil(r.windowEnd);
  // Drain: every ack answered and no delivery for quietMs, or drainMs past the window.
  const drainEnd = r.windowEnd + (cmd.drainMs ?? 10000);
  const quietMs = cmd.quietMs ?? 500;
  for (let i = 0; i < 100000 && now() < drainEnd; i++) {
    const quiet = now() - Math.max(r.lastDelivery, r.windowEnd) >= quietMs;
    if (quiet && pendingTotal() === 0) break;
    await sleepUntil(now() + 25);
  }
  for (const t of timers) clearTimeout(t);
  run = null;
  const pendingLeft = pendingTotal();
  for (const c of senders) c.pending.clear(); // late acks of this run are ignored
  say({
    event: "ran", tag: r.tag, senders: senders.length, sent: r.sent, acked: r.acked, ackedInWindow: r.ackedInWindow,
    ackedNull: r.ackedNull, ackErrors: r.ackErrors, requests: r.requests, kinds: r.kinds,
    skipped: r.skipped, pendingLeft, deliveries: r.deliveries, deliveriesInWindow: r.deliveriesInWindow,
    ownCopies: r.ownCopies,
    outOfOrder: r.outOfOrder, gaps: r.gaps, windowStart: r.windowStart, windowEnd: r.windowEnd,
    firstSend: r.firstSend, lastSend: r.lastSend, lastDelivery: r.lastDelivery, finished: now(),
    latency: r.latency.toJSON(), ackLatency: r.ackLatency.toJSON(), closed: stray.closed,
  });
}

function doStatus() {
  let open = 0;
  let joined = 0;
  for (const c of clients) {
    if (c.connected) open += 1;
    if (c.joined) joined += 1;
  }
  say({ event: "status", open, joined, count: clients.length, rss: process.memoryUsage().rss, stray });
}

function quit() {
  if (quitting) return;
  quitting = true;
  for (const c of clients) if (c.ws) c.ws.terminate();
  say({ event: "bye" });
  setTimeout(() => process.exit(0), 50);
}

const commands = { connect: doConnect, join: doJoin, run: doRun, status: doStatus, quit };
let queue = Promise.resolve(); // commands run one after another
const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    say({ event: "error", error: `not JSON: ${line.slice(0, 80)}` });
    return;
  }
  const handler = commands[cmd.cmd];
  if (!handler) {
    say({ event: "error", error: `unknown command ${cmd.cmd}` });
    return;
  }
  queue = queue.then(() => handler(cmd)).catch((err) => say({ event: "error", error: String(err && err.stack) }));
});
input.on("close", quit);
