#!/usr/bin/env node
// Follow `posts` with the plain npm socket.io-client and report every row value it decoded,
// to show that the gateway's frames are JSON a browser can parse (no bare Infinity/NaN).
//
//   node tests/interop/non_finite.mjs URL TOKEN CURSOR WANT [TIME_LIMIT_SECONDS=20]
//
// CURSOR is "null" (a snapshot first) or a seq (a replay of every change after it).
// After `rxstore:live` and WANT change events in all (replayed and live), or the time
// limit, it prints ONE JSON line on stdout and exits 0 (1 on the time limit):
//
//   {"snapshot": [row, ...] | null, "changes": [record, ...], "live": seq | null,
//    "disconnects": [reason, ...], "errors": [message, ...]}
//
// socket.io-client drops a frame it cannot parse and disconnects with reason "parse error":
// `disconnects` shows it.

import { io } from "socket.io-client";

const [url, token, cursorArg, wantArg, limitArg] = process.argv.slice(2);
const cursor = cursorArg === "null" ? null : Number.parseInt(cursorArg, 10);
const want = Number.parseInt(wantArg, 10);
const timeLimit = Number.parseFloat(limitArg ?? "20") * 1000;

let snapshot = null;
const changes = [];
const disconnects = [];
const errors = [];
let live = null;
let finished = false;

const socket = io(url, {
  transports: ["websocket"],
  reconnection: false,
  auth: { token, topics: ["posts"], cursor },
});

function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  socket.disconnect();
  const report = { snapshot, changes, live, disconnects, errors };
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(code));
}

function check() {
  if (live !== null && changes.length >= want) finish(0);
}

function onChange(change) {
  changes.push(change.record ?? change.old);
  check();
}

socket.on("rxstore:snapshot", ({ records }) => {
  snapshot = (snapshot ?? []).concat(records);
});
socket.on("rxstore:batch", ({ events }) => {
  for (const [name, change] of events) if (name === "post_update") onChange(change);
});
socket.on("post_update", onChange);
socket.on("rxstore:live", ({ seq }) => {
  live = seq;
  process.stderr.write(JSON.stringify({ status: "live", seq }) + "\n");
  check();
});
socket.on("disconnect", (reason) => {
  disconnects.push(reason);
  if (reason !== "io client disconnect") finish(1);
});
socket.on("connect_error", (err) => {
  errors.push(err.message);
  finish(1);
});

const timer = setTimeout(() => {
  errors.push("time limit");
  finish(1);
}, timeLimit);
