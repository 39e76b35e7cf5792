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
//   included, then ack {ok, message}; a repeated nonce (same room and name) is answered
//   with the original message and not broadcast again;
// - `edit` {room, id, text} of one's own message (within the edit window) -> `message_edited`
//   {room, seq, kind: "edit", id, text, edited_at, user} to the room, then ack {ok, event};
// - `react` / `unreact` {room, id, emoji} -> `reaction` {room, seq, kind, id, emoji, user,
//   count, users (first 5)} to the room, then ack {ok, event}; per message at most 20 emoji,
//   per person 10; the emoji check is rough (one pictographic character and its modifiers);
// - nothing changed (same text, reaction already there or not there): ack {ok, event: null};
// - `open_dm` {users: [name, ...]} -> ack {ok, room: {name, kind: "direct", title}}: the
//   room of the caller and those names (at most CHAT_DM_MAX in all), "dm-" and 24 hex digits
//   of the SHA-256 of the sorted lower-cased names, so the same people always get the same
//   name. Nothing is stored and nobody is checked: the room is a public room that whoever
//   knows the name may join (no accounts, no membership; the benchmark's floor);
// - one sequence per room: a message's id and an event's seq are its next number;
// - history kept in memory, at most 1000 messages per room, edited text included (reactions
//   are not listed in history; no `delete`, `set_topic` nor `join {since}`).
// Logs `listening on http://HOST:PORT` once it accepts connections; stops on SIGTERM/SIGINT.
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const HISTORY = 50;
const HISTORY_KEPT = 1000;
const MAX_MESSAGE = 4000;
const MAX_ROOMS_PER_CONNECTION = 50;
const MEMBERS_LISTED = Number(process.env.CHAT_MAX_MEMBERS_LISTED || 500);
const DM_MAX = Number(process.env.CHAT_DM_MAX || 8);
const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_RE = /^[a-z0-9_-]{1,64}$/;
const NONCE_MAX = 64;
const EDIT_WINDOW_MS = 900 * 1000;
const REACTIONS_PER_MESSAGE = 20;
const REACTIONS_PER_USER = 10;
const REACTION_USERS_LISTED = 5;
const EMOJI_RE = /^\p{Extended_Pictographic}[\p{Emoji_Modifier}\p{Extended_Pictographic}\u200d\ufe0f]{0,31}$/u;

function option(flag, fallback) {
  const at = process.argv.indexOf(flag);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option("--host", "127.0.0.1");
const port = Number(option("--port", "0"));

class Room {
  constructor(name) {
    this.name = name;
    this.lastId = 0; // the room's one sequence: message ids and event seqs
    this.history = []; // newest last, at most HISTORY_KEPT
    this.kept = new Map(); // id -> {message, author, at, reactions: Map emoji -> Set of names}
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

// The text of a send or edit, or the failure to answer.
function checkText(value) {
  if (typeof value !== "string") return failure("invalid_text", "text must be a string");
  const text = value.trim();
  if (!text) return failure("invalid_text", "text is empty");
  if (text.length > MAX_MESSAGE) return failure("text_too_long", `at most ${MAX_MESSAGE} characters`);
  return text;
}

// The room and kept message an edit or reaction is about, or the failure to answer.
function target(socket, data) {
  if (!isObject(data)) return failure("invalid_payload", "payload must be an object");
  if (typeof data.room !== "string" || !ROOM_RE.test(data.room)) {
    return failure("invalid_room", "room names are 1-64 of a-z 0-9 _ -");
  }
  if (!Number.isSafeInteger(data.id) || data.id < 0) return failure("invalid_payload", "id must be an integer");
  if (!socket.data.rooms.has(data.room)) return failure("not_member", `join ${data.room} first`);
  const room = rooms.get(data.room);
  const kept = room.kept.get(data.id);
  if (!kept) return failure("message_not_found", `no message ${data.id} in ${data.room}`);
  return { room, kept };
}

// The room's next number for an event, announced to the room before the ack.
function announce(room, name, kind, fields) {
  room.lastId += 1;
  const event = { room: room.name, seq: room.lastId, kind, ...fields };
  io.to(room.name).emit(name, event);
  return { ok: true, event };
}

function keep(room, message, author) {
  room.history.push(message);
  room.kept.set(message.id, { message, author, at: Date.now(), reactions: new Map() });
  while (room.history.length > HISTORY_KEPT) room.kept.delete(room.history.shift().id);
}

function edit(socket, data) {
  const found = target(socket, data);
  if (found.ok === false) return found;
  const text = checkText(data.text);
  if (typeof text !== "string") return text;
  const { room, kept } = found;
  const name = socket.data.name;
  if (kept.author !== name) return failure("forbidden", "only its author or staff may change this message");
  if (Date.now() - kept.at > EDIT_WINDOW_MS) return failure("edit_window_closed", "too late to change it");
  if (kept.message.text === text) return { ok: true, event: null };
  kept.message.text = text;
  kept.message.edited_at = isoMicros(new Date());
  const fields = { id: kept.message.id, text, edited_at: kept.message.edited_at, user: name };
  return announce(room, "message_edited", "edit", fields);
}

function tooManyReactions(kept, name, emoji) {
  if (!kept.reactions.has(emoji) && kept.reactions.size >= REACTIONS_PER_MESSAGE) return true;
  let mine = 0;
  for (const users of kept.reactions.values()) if (users.has(name)) mine += 1;
  return mine >= REACTIONS_PER_USER;
}

function reaction(socket, data, kind) {
  const found = target(socket, data);
  if (found.ok === false) return found;
  const emoji = data.emoji;
  if (typeof emoji !== "string" || !EMOJI_RE.test(emoji)) {
    return failure("invalid_emoji", "emoji must be exactly one emoji");
  }
  const { room, kept } = found;
  const name = socket.data.name;
  const users = kept.reactions.get(emoji) || new Set();
  if (users.has(name) === (kind === "react")) return { ok: true, event: null };
  if (kind === "react") {
    if (tooManyReactions(kept, name, emoji)) return failure("too_many_reactions", "too many reactions");
    kept.reactions.set(emoji, users.add(name));
  } else {
    users.delete(name);
    if (!users.size) kept.reactions.delete(emoji);
  }
  const listed = Array.from(users).slice(0, REACTION_USERS_LISTED);
  return announce(room, "reaction", kind, { id: kept.message.id, emoji, user: name, count: users.size, users: listed });
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
    const text = checkText(data.text);
    if (typeof text !== "string") return reply(text);
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
    keep(room, message, name);
    if (nonceKey !== null) {
      room.nonces.set(nonceKey, message);
      if (room.nonces.size > HISTORY_KEPT) room.nonces.delete(room.nonces.keys().next().value);
    }
    io.to(roomName).emit("message", message);
    reply({ ok: true, message });
  });

  socket.on("open_dm", (data, ack) => {
    const reply = replyTo(ack);
    if (!isObject(data) || !Array.isArray(data.users)) return reply(failure("invalid_payload", "users must be a list"));
    if (!data.users.every((u) => typeof u === "string" && NAME_RE.test(u))) {
      return reply(failure("invalid_payload", "users must be names"));
    }
    const people = Array.from(new Set([name, ...data.users].map((u) => u.toLowerCase()))).sort();
    if (people.length < 2) return reply(failure("invalid_payload", "name at least one other person"));
    if (people.length > DM_MAX) return reply(failure("too_many_people", `at most ${DM_MAX} people`));
    const roomName = "dm-" + createHash("sha256").update(people.join(",")).digest("hex").slice(0, 24);
    reply({ ok: true, room: { name: roomName, kind: "direct", title: people.join(", ") } });
  });

  socket.on("edit", (data, ack) => replyTo(ack)(edit(socket, data)));
  socket.on("react", (data, ack) => replyTo(ack)(reaction(socket, data, "react")));
  socket.on("unreact", (data, ack) => replyTo(ack)(reaction(socket, data, "unreact")));

  socket.onAny((event, ...args) => {
    if (["join", "leave", "send", "open_dm", "edit", "react", "unreact"].includes(event)) return;
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
