#!/usr/bin/env node
// Follow the `posts` topic of an rxstore gateway with the plain npm socket.io-client,
// the way a Next.js app would, and report what it ends up with.
//
//   node tests/interop/follow_posts.mjs URL TOKEN N [TIME_LIMIT_SECONDS=30]
//
// It connects with auth {token, topics: ["posts"], cursor: null}, applies the
// snapshot, then every change (from `rxstore:batch` frames or single `post_update`
// events) to a Map of posts by id, dropping any seq <= its cursor. After N applied
// changes (or the time limit) it prints ONE JSON line on stdout:
//
//   {"rows": {id: row}, "seqs": [every change seq received, in order], "errors": [...],
//    "snapshot": {"seq", "count", "frames"} | null (the last one), "snapshots": n, "live": seq | null,
//    "cursor": seq, "dropped": [seqs <= cursor it received and ignored]}
//
// and exits 0 (N reached, no errors) or 1 (errors or time limit). A connection the
// gateway refuses prints {"refused": err.message, "data": err.data} and exits 2.
// Progress lines ({"status": "live", ...}) go to stderr so a test can wait for them.
// It follows across reconnects: each one sends the current cursor in socket.auth.

import { io } from "socket.io-client";

const [url, token, countArg, limitArg] = process.argv.slice(2);
if (!url || token === undefined || countArg === undefined) {
  process.stderr.write("usage: follow_posts.mjs URL TOKEN N [TIME_LIMIT_SECONDS]\n");
  process.exit(64);
}
const wanted = Number.parseInt(countArg, 10);
const timeLimit = Number.parseFloat(limitArg ?? "30") * 1000;

const TOPIC = "posts";
const KEY = "id";
const rows = new Map(); // id -> row
const seqs = []; // every change seq received, before the duplicate filter
const dropped = []; // seqs dropped because seq <= cursor
const errors = [];
let cursor = null; // last seq applied (or the snapshot's seq)
let snapshot = null;
let snapshots = 0; // how many were received (1 unless the cursor expired)
let chunks = null; // {seq, records, frames} of a snapshot still arriving in chunks
let live = null;
let applied = 0;
let finished = false;

const socket = io(url, {
  transports: ["websocket"],
  auth: { token, topics: [TOPIC], cursor: null },
});

function status(fields) {
  process.stderr.write(JSON.stringify(fields) + "\n");
}

function finish(code, extra = {}) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  socket.disconnect();
  const report = {
    rows: Object.fromEntries(rows),
    seqs,
    errors,
    snapshot,
    snapshots,
    live,
    cursor,
    dropped,
    ...extra,
  };
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(code));
}

function setCursor(seq) {
  cursor = seq;
  // socket.io-client re-sends `socket.auth` on every reconnect: resume from here.
  socket.auth.cursor = seq;
}

function applyChange(name, change) {
  if (
    change === null ||
    typeof change !== "object" ||
    !Number.isInteger(change.seq) ||
    !["INSERT", "UPDATE", "DELETE"].includes(change.op)
  ) {
    errors.push(`malformed ${name} payload: ${JSON.stringify(change)}`);
    return;
  }
  seqs.push(change.seq);
  if (change.topic !== TOPIC) {
    errors.push(`${name} seq=${change.seq} is for topic ${JSON.stringify(change.topic)}`);
    return;
  }
  if (cursor !== null && change.seq <= cursor) {
    dropped.push(change.seq);
    return;
  }
  const row = change.op === "DELETE" ? change.old : change.record;
  if (row === null || typeof row !== "object" || !(KEY in row)) {
    errors.push(`${change.op} seq=${change.seq} has no ${KEY} in its ${change.op === "DELETE" ? "old" : "record"}`);
    return;
  }
  if (change.op === "DELETE") rows.delete(row[KEY]);
  else rows.set(row[KEY], row);
  setCursor(change.seq);
  applied += 1;
  if (applied >= wanted) finish(errors.length ? 1 : 0);
}

socket.on("connect", () => status({ status: "connected", id: socket.id }));

socket.on("connect_error", (err) => {
  if (socket.active) {
    // A transport failure: socket.io-client retries by itself (with socket.auth).
    status({ status: "retrying", message: err.message });
    return;
  }
  // Refused by the gateway's connect handler: err.data is {reason, message}.
  finish(2, { refused: err.message, data: err.data ?? null });
});

socket.on("disconnect", (reason) => {
  status({ status: "disconnected", reason });
  // socket.io-client retries by itself after a transport failure, but not after the
  // server disconnected it (gateway shutdown, slow client dropped): reconnect, and
  // the gateway replays everything after socket.auth.cursor.
  if (reason === "io server disconnect" && !finished) setTimeout(() => finished || socket.connect(), 200);
});

socket.on("rxstore:reset", (data) => {
  status({ status: "reset", ...data });
  rows.clear(); // a snapshot follows
});

socket.on("rxstore:snapshot", (data) => {
  if (data?.topic !== TOPIC || !Array.isArray(data.records) || !Number.isInteger(data.seq)) {
    errors.push(`malformed rxstore:snapshot: ${JSON.stringify(data)}`);
    return;
  }
  // A snapshot may come in chunks ("more": true on all but the last): show it only once whole.
  if (chunks === null || chunks.seq !== data.seq) chunks = { seq: data.seq, records: [], frames: 0 };
  chunks.records.push(...data.records);
  chunks.frames += 1;
  if (data.more === true) return;
  rows.clear();
  for (const record of chunks.records) rows.set(record[KEY], record);
  snapshot = { seq: data.seq, count: chunks.records.length, frames: chunks.frames };
  chunks = null;
  snapshots += 1;
  setCursor(data.seq);
  status({ status: "snapshot", ...snapshot });
});

socket.on("rxstore:batch", (data) => {
  if (!Array.isArray(data?.events)) {
    errors.push(`malformed rxstore:batch: ${JSON.stringify(data)}`);
    return;
  }
  for (const [name, payload] of data.events) {
    if (finished) return;
    if (name !== "post_update") {
      errors.push(`unexpected event ${JSON.stringify(name)} in a batch`);
      continue;
    }
    applyChange(name, payload);
  }
});

socket.on("post_update", (payload) => applyChange("post_update", payload));

socket.on("rxstore:live", (data) => {
  live = data?.seq ?? null;
  status({ status: "live", seq: live });
  if (applied >= wanted) finish(errors.length ? 1 : 0);
});

const timer = setTimeout(() => {
  errors.push(`time limit: ${applied} of ${wanted} changes after ${timeLimit / 1000} s`);
  finish(1);
}, timeLimit);
