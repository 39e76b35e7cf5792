// A crowd of real socket.io-client 4.x clients for cluster tests (failover, reconnect storm).
// Usage: node tests/js/crowd.mjs URL COUNT ROOM PREFIX
// Each client connects over websocket with auth {name}, keeps the `welcome` token for its
// reconnects (socket.io-client's own randomized backoff), and on every (re)connect joins ROOM
// with `since` = the last id it holds, looping while the server says `truncated`. Like the
// browser client, it tries a refused join again after `retry_after` and reconnects after a
// refused connect (socket.io-client leaves those to the application).
// Commands on stdin, one per line; answers are JSON lines on stdout:
//   check K  -> {"event":"check","complete":n,"connected":c,"problems":[...]} where complete
//               counts clients whose received ids are exactly 1..K, in order, none twice
//   quit     -> disconnects everyone and exits
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [url, countText, room, prefix] = process.argv.slice(2);
const count = Number(countText);
const clients = [];

function say(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function lastId(client) {
  return client.ids.length ? client.ids[client.ids.length - 1] : undefined;
}

// The join reply is handled in its ack callback, synchronously: several frames can arrive in
// one network read, and a promise continuation (await emitWithAck) would run only after the
// live `message` frames behind the ack had already been handled.
function joinFrom(client) {
  const since = lastId(client);
  const payload = since === undefined ? { room } : { room, since };
  client.socket.timeout(15000).emit("join", payload, (err, reply) => {
    if (err || !reply.ok) {  // as a browser does: try again later, from the same resume point
      client.errors.push(err ? `join timeout: ${err.message}` : `join: ${reply.error.code}`);
      const after = err ? 1 : Number(reply.error.retry_after) || 1;
      setTimeout(() => { if (client.socket.connected) joinFrom(client); }, after * 1000);
      return;
    }
    client.joins.push({ since, got: reply.history.map((m) => m.id), at: client.ids.length });
    for (const message of reply.history) client.ids.push(message.id);
    if (reply.truncated) joinFrom(client);
    else client.joined = true;
  });
}

function makeClient(index) {
  const client = { ids: [], errors: [], joined: false, connects: 0, joins: [] };
  const socket = io(url, {
    transports: ["websocket"],
    auth: { name: `${prefix}${index}` },
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.5,
    timeout: 10000,
  });
  client.socket = socket;
  socket.on("welcome", (data) => {
    socket.auth = { token: data.token };
  });
  socket.on("connect", () => {
    client.connects += 1;
    client.joined = false;
    joinFrom(client);
  });
  socket.on("message", (message) => {
    if (message.room === room) client.ids.push(message.id);
  });
  socket.on("connect_error", (err) => {
    if (err.data && err.data.code) client.lastRefusal = err.data.code;
    // refused by the server (not a network failure): socket.io-client does not retry by itself
    if (!socket.active) setTimeout(() => socket.connect(), 1000);
  });
  return client;
}

function check(expected) {
  let complete = 0;
  const problems = [];
  for (const [index, client] of clients.entries()) {
    const ok = client.ids.length === expected && client.ids.every((id, i) => id === i + 1);
    if (ok) complete += 1;
    else if (problems.length < 5)
      problems.push({ index, got: client.ids.length, ids: client.ids.slice(0, 60), joins: client.joins.slice(-4),
                      connects: client.connects, errors: client.errors.slice(-2),
                      connected: client.socket.connected, refusal: client.lastRefusal });
  }
  const connected = clients.filter((c) => c.socket.connected && c.joined).length;
  say("check", { expected, complete, connected, problems });
}

for (let i = 0; i < count; i += 1) {
  clients.push(makeClient(i));
  if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 20));
}
const started = Date.now();
let lastProgress = 0;
const readyTimer = setInterval(() => {
  const joined = clients.filter((c) => c.joined).length;
  if (Date.now() - lastProgress > 2000) {
    lastProgress = Date.now();
    const connected = clients.filter((c) => c.socket.connected).length;
    const refusals = {};
    for (const c of clients) if (c.lastRefusal) refusals[c.lastRefusal] = (refusals[c.lastRefusal] || 0) + 1;
    const errors = clients.reduce((n, c) => n + c.errors.length, 0);
    say("progress", { connected, joined, errors, refusals, ms: Date.now() - started });
  }
  if (joined === count) {
    clearInterval(readyTimer);
    say("ready", { joined, ms: Date.now() - started });
  }
}, 100);

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === "check") check(Number(arg));
  if (command === "quit") {
    for (const client of clients) client.socket.disconnect();
    process.exit(0);
  }
});
