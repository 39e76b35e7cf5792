// Reference server for the benchmarks: Node.js + Socket.IO 4.x speaking the subset of the
// chat protocol (docs/PROTOCOL.md) that bench/loadgen.mjs uses, with everything in memory.
//
//   node bench/reference/server.mjs [--host 127.0.0.1] [--port 0]
//
// - connect with auth {name}: guest name rules, unique (case-insensitive) among the
//   connections online; refusals are connect_error with data {code, message};
// - `welcome` {name, token: ""} on every accepted connection;
// - `join` {room} -> ack {ok, room, history (last 50), members (sorted, at most
//   CHAT_MAX_MEMBERS_LISTED), count};
// - `leave` {room} -> ack {ok};
// - `send` {room, text, nonce?} -> `message` {id, room, user, text, ts} to the room, sender
//   included, then ack {ok, message}; ids are per-room counters; a repeated nonce (same
//   room and name) is answered with the original message and not broadcast again;
// - history kept in memory, at most 1000 messages per room.
// Logs `listening on http://HOST:PORT` once it accepts connections; stops on SIGTERM/SIGINT.
import { createServer } from "node:http";
import { Server } from "socket.io";

const HISTORY = 50;
const HISTORY_KEPT = 1000;
const MAX_MESSAGE = 4000;
const MAX_ROOMS_PER_CONNECTION = 50;
const MEMBERS_LISTED = Number(process.env.CHAT_MAX_MEMBERS_LISTED || 500);
const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_RE = /^[a-z0-9_-]{1,64}$/;
const NONCE_MAX = 64;

function option(flag, fallback) {
  const at = process.argv.indexOf(flag);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "0"));

class Room {
  constructor(name) {
    this.name = name;
    this.lastId = 0;
    this.history = []; // newest last, at most HISTORY_KEPT
    this.members = new Set(); // names
    this.nonces = new Map(); // "name\nnonce" -> message, in insertion order, bounded
  }
}

const rooms = new Map(); // name -> Room
const online = new Map(); // lower-cased name -> socket id

function failure(code, message) {
  return { ok: false, error: { code, message } };
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isoMicros(date) {
  // Same shape as the Python server's timestamps: microseconds and "Z".
  return date.toISOString().slice(0, 23) + "000Z";
}

function replyTo(ack) {
  return typeof ack === "function" ? ack : () => {};
}

const http = createServer((req, res) => {
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found\n");
});

const io = new Server(http, {
  serveClient: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 65536,
  perMessageDeflate: false,
  httpCompression: false,
});

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  const fail = (code, message) => {
    const err = new Error(message);
    err.data = { code, message };
    next(err);
  };
  if (!isObject(auth)) return fail("invalid_payload", "auth must be an object");
  const name = auth.name;
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    return fail("invalid_name", "connect with auth {name}");
  }
  const key = name.toLowerCase();
  if (online.has(key)) return fail("name_taken", `${name} is already online`);
  online.set(key, socket.id);
  socket.data.name = name;
  socket.data.rooms = new Set();
  next();
});

function leaveRoom(socket, roomName) {
  const room = rooms.get(roomName);
  if (!socket.data.rooms.delete(roomName)) return false;
  socket.leave(roomName);
  if (room) room.members.delete(socket.data.name);
  return true;
}

io.on("connection", (socket) => {
  const name = socket.data.name;
  socket.emit("welcome", { name, token: "" });

  socket.on("join", (data, ack) => {
    const reply = replyTo(ack);
    if (!isObject(data)) return reply(failure("invalid_payload", "payload must be an object"));
    const roomName = data.room;
    if (typeof roomName !== "string" || !ROOM_RE.test(roomName)) {
      return reply(failure("invalid_room", "room names are 1-64 of a-z 0-9 _ -"));
    }
    if (!socket.data.rooms.has(roomName) && socket.data.rooms.size >= MAX_ROOMS_PER_CONNECTION) {
      return reply(failure("too_many_rooms", `at most ${MAX_ROOMS_PER_CONNECTION} rooms per connection`));
    }
    let room = rooms.get(roomName);
    if (!room) {
      room = new Room(roomName);
      rooms.set(roomName, room);
    }
    socket.data.rooms.add(roomName);
    room.members.add(name);
    socket.join(roomName);
    const members = Array.from(room.members).sort().slice(0, MEMBERS_LISTED);
    reply({
      ok: true,
      room: roomName,
      history: room.history.slice(-HISTORY),
      members,
      count: room.members.size,
    });
  });

  socket.on("leave", (data, ack) => {
    const reply = replyTo(ack);
    if (!isObject(data)) return reply(failure("invalid_payload", "payload must be an object"));
    if (typeof data.room !== "string" || !ROOM_RE.test(data.room)) {
      return reply(failure("invalid_room", "room names are 1-64 of a-z 0-9 _ -"));
    }
    leaveRoom(socket, data.room);
    reply({ ok: true });
  });

  socket.on("send", (data, ack) => {
    const reply = replyTo(ack);
    if (!isObject(data)) return reply(failure("invalid_payload", "payload must be an object"));
    const roomName = data.room;
    if (typeof roomName !== "string" || !ROOM_RE.test(roomName)) {
      return reply(failure("invalid_room", "room names are 1-64 of a-z 0-9 _ -"));
    }
    if (typeof data.text !== "string") return reply(failure("invalid_text", "text must be a string"));
    const text = data.text.trim();
    if (!text) return reply(failure("invalid_text", "text is empty"));
    if (text.length > MAX_MESSAGE) return reply(failure("text_too_long", `at most ${MAX_MESSAGE} characters`));
    const nonce = data.nonce;
    if (nonce !== undefined && (typeof nonce !== "string" || nonce.length < 1 || nonce.length > NONCE_MAX)) {
      return reply(failure("invalid_payload", "nonce must be a string of 1-64 characters"));
    }
    if (!socket.data.rooms.has(roomName)) return reply(failure("not_member", `join ${roomName} first`));
    const room = rooms.get(roomName);
    const nonceKey = nonce === undefined ? null : `${name}\n${nonce}`;
    if (nonceKey !== null) {
      const earlier = room.nonces.get(nonceKey);
      if (earlier) return reply({ ok: true, message: earlier });
    }
    room.lastId += 1;
    const message = { id: room.lastId, room: roomName, user: name, text, ts: isoMicros(new Date()) };
    room.history.push(message);
    if (room.history.length > HISTORY_KEPT) room.history.splice(0, room.history.length - HISTORY_KEPT);
    if (nonceKey !== null) {
      room.nonces.set(nonceKey, message);
      if (room.nonces.size > HISTORY_KEPT) room.nonces.delete(room.nonces.keys().next().value);
    }
    io.to(roomName).emit("message", message);
    reply({ ok: true, message });
  });

  socket.onAny((event, ...args) => {
    if (["join", "leave", "send"].includes(event)) return;
    const ack = args[args.length - 1];
    if (typeof ack === "function") ack(failure("unknown_event", `unknown event '${String(event).slice(0, 64)}'`));
  });

  socket.on("disconnect", () => {
    for (const roomName of Array.from(socket.data.rooms)) leaveRoom(socket, roomName);
    if (online.get(name.toLowerCase()) === socket.id) online.delete(name.toLowerCase());
  });
});

http.listen(port, host, () => {
  const address = http.address();
  console.log(`listening on http://${host}:${address.port} node=reference-${process.pid}`);
});

function stop() {
  io.close();
  http.close();
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
