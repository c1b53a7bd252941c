#!/usr/bin/env node
// The seed's backend in miniature: a plain npm `socket.io` 4.x server (what the seed's
// NestJS gateway runs on) that knows nothing of rxstore's protocol.
//
//   node tests/interop/seed_server.mjs PORT TOKEN
//
// It listens on 127.0.0.1:PORT, refuses a connection whose handshake auth token is not
// TOKEN (middleware: `next(new Error("unauthorized"))`, as a NestJS guard or adapter
// would), and keeps posts in memory. Commands arrive on stdin, one JSON object a line:
//
//   {"cmd": "created" | "updated" | "deleted", "post": {...}}   write, then emit to every
//        client `post_update` with {type: cmd, post} (the seed's event)
//   {"cmd": "dump"}                                                report the posts
//   {"cmd": "kick"}                                                disconnect every client
//
// Every command is answered on stdout with one JSON line ({"ok": cmd, ...}); events are
// reported too: {"listening": port}, {"connected": id, "auth": auth},
// {"refused": auth}, {"disconnected": id, "reason": reason}. It exits when stdin closes.

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";

const [portArg, token] = process.argv.slice(2);
if (!portArg || token === undefined) {
  process.stderr.write("usage: seed_server.mjs PORT TOKEN\n");
  process.exit(64);
}

function say(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

const posts = new Map(); // id -> post
const http = createServer();
const io = new Server(http);

io.use((socket, next) => {
  const auth = socket.handshake.auth;
  if (auth?.token !== token) {
    say({ refused: auth });
    next(new Error("unauthorized"));
    return;
  }
  next();
});

io.on("connection", (socket) => {
  say({ connected: socket.id, auth: socket.handshake.auth });
  socket.on("disconnect", (reason) => say({ disconnected: socket.id, reason }));
});

function handle(command) {
  const { cmd, post } = command;
  if (cmd === "created" || cmd === "updated" || cmd === "deleted") {
    if (cmd === "deleted") posts.delete(post.id);
    else posts.set(post.id, post);
    io.emit("post_update", { type: cmd, post });
    say({ ok: cmd, id: post.id });
  } else if (cmd === "dump") {
    say({ ok: cmd, posts: Object.fromEntries(posts) });
  } else if (cmd === "kick") {
    io.disconnectSockets(true);
    say({ ok: cmd });
  } else {
    say({ error: `unknown command ${JSON.stringify(cmd)}` });
  }
}

http.listen(Number.parseInt(portArg, 10), "127.0.0.1", () => {
  say({ listening: http.address().port });
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line.trim()) handle(JSON.parse(line));
  });
  lines.on("close", () => {
    io.close();
    process.exit(0);
  });
});
