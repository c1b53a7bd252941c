#!/usr/bin/env node
// Join the presence channel "posts" of an rxstore gateway with the plain npm socket.io-client,
// and tell its members on request.
//
//   GATEWAY_URL=... RXSTORE_TOKEN=... node tests/interop/presence.mjs
//
// Everything between the two "docs/protocol.md" lines is the JavaScript presence example of
// docs/protocol.md, verbatim (tests/interop/test_node_presence.py checks it). The driver after
// it reads one JSON command a line on stdin:
//   {"members": true}  prints `members [{"user", "conn", "meta"}, ...]`, sorted by user and conn
//   {"update": meta}   sets this connection's metadata; prints `updated {ack}`
//   {"done": true}     exits
import { io } from "socket.io-client";
import * as readline from "node:readline";

const socket = io(process.env.GATEWAY_URL ?? "http://127.0.0.1:8080", {
  transports: ["websocket"],
  auth: { token: process.env.RXSTORE_TOKEN, topics: [] },
});

// -- docs/protocol.md: begin
const room = "posts";
const members = new Map(); // "user/conn" -> member
socket.on(`rxstore:presence:${room}`, (frame) => {
  if (frame.type === "state") members.clear();
  for (const m of frame.type === "state" ? frame.members : [...frame.joins, ...frame.updates])
    members.set(`${m.user}/${m.conn}`, m);
  if (frame.type === "diff") for (const m of frame.leaves) members.delete(`${m.user}/${m.conn}`);
});
// on every "connect" (a reconnect too): join again
socket.on("connect", async () => {
  const ack = await socket.emitWithAck("rxstore:presence_join", { channel: room, meta: { status: "online" } });
  if (!ack.ok) console.error(ack.error, ack.message);
});
// -- docs/protocol.md: end

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.members) {
    const list = [...members.values()].sort((a, b) => (a.user + a.conn < b.user + b.conn ? -1 : 1));
    console.log(`members ${JSON.stringify(list)}`);
  } else if (command.update !== undefined) {
    const ack = await socket.emitWithAck("rxstore:presence_update", { channel: room, meta: command.update });
    console.log(`updated ${JSON.stringify(ack)}`);
  } else if (command.done) {
    socket.close();
    process.exit(0);
  }
});
