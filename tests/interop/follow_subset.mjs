#!/usr/bin/env node
// Follow a subset (a live query) of an rxstore gateway's table with the plain npm
// socket.io-client, switch it at runtime, and report what it ends up with.
//
//   node tests/interop/follow_subset.mjs URL TOKEN SUBSCRIPTION_JSON [TIME_LIMIT_SECONDS=30]
//
// SUBSCRIPTION_JSON is a subscription object of docs/protocol.md ({id, topic, where,
// columns}). The script connects with auth {token, topics: [], cursor: null,
// subscriptions: [SUBSCRIPTION]} and keeps the subset's rows in a Map by primary key
// `id`: a whole snapshot (its chunks gathered) replaces them, an INSERT or UPDATE puts
// `record`, a DELETE removes `old.id`. It follows the cursor rules of the protocol page:
// a change is a duplicate if its seq is below the cursor, or equal to it under the
// subscription id the cursor's change came under; a snapshot sets the cursor only when
// there is none.
//
// Commands arrive on stdin, one JSON object a line:
//   {"subscribe": SUBSCRIPTION}  emit rxstore:subscribe (a switch when the id is the same);
//                                on the ack, status {"status": "subscribed", "ack", "rows"}
//   {"done": true}               print the report on stdout and exit (0, or 1 with errors)
// Status lines go to stderr, one JSON object each: "connected", "snapshot" {event, seq,
// count}, "live" {seq}, "change" {seq, op, id}, "subscribed" {ack, rows}.
//
// The report (one JSON line on stdout):
//   {"rows": {id: row}, "changes": [{"name", "change", "afterAck": n}],
//    "snapshots": [{"event", "seq", "count", "afterChanges": n}], "acks": [...], "cursor",
//    "dropped": [seq], "errors": [...]}
// where afterAck is how many subscribe acks had arrived when the change did, and
// afterChanges how many changes had arrived when the snapshot was whole. A refused
// connection prints {"refused": err.message, "data": err.data} and exits 2.

import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const [url, token, subscriptionArg, limitArg] = process.argv.slice(2);
if (!url || token === undefined || subscriptionArg === undefined) {
  process.stderr.write("usage: follow_subset.mjs URL TOKEN SUBSCRIPTION_JSON [TIME_LIMIT_SECONDS]\n");
  process.exit(64);
}
const timeLimit = Number.parseFloat(limitArg ?? "30") * 1000;

let subscription = JSON.parse(subscriptionArg); // what the gateway follows (the acked one)
const KEY = "id";
const rows = new Map(); // id -> row of the subset
const changes = [];
const snapshots = [];
const acks = [];
const dropped = [];
const errors = [];
let cursor = null; // the seq of the last change applied (or of the first snapshot)
let cursorEvent = null; // the subscription id that change came under
let since = null; // the seq of the subscription's last snapshot (sent back on a reconnect)
let epoch = null;
let chunks = null; // {event, seq, records} of a snapshot still arriving in chunks
let finished = false;

function status(fields) {
  process.stderr.write(JSON.stringify(fields) + "\n");
}

const socket = io(url, {
  transports: ["websocket"],
  reconnection: false,
  // A function: every (re)connect sends the cursor, and `since` if the subset's snapshot is newer.
  auth: (cb) =>
    cb({
      token,
      topics: [],
      cursor,
      epoch,
      subscriptions: [since !== null && cursor !== null && since > cursor ? { ...subscription, since } : subscription],
    }),
});

function finish(code, extra = {}) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  socket.disconnect();
  const report = {
    rows: Object.fromEntries(rows),
    changes,
    snapshots,
    acks,
    cursor,
    dropped,
    errors,
    ...extra,
  };
  process.stdout.write(JSON.stringify(report) + "\n", () => process.exit(code));
}

function apply(name, change) {
  if (name !== subscription.id) {
    errors.push(`an event of ${JSON.stringify(name)}, not of the subscription ${JSON.stringify(subscription.id)}`);
    return;
  }
  if (change === null || typeof change !== "object" || !Number.isInteger(change.seq)) {
    errors.push(`malformed ${name} payload: ${JSON.stringify(change)}`);
    return;
  }
  changes.push({ name, change, afterAck: acks.length });
  if (cursor !== null && (change.seq < cursor || (change.seq === cursor && name === cursorEvent))) {
    dropped.push(change.seq);
    return;
  }
  if (change.op === "DELETE") {
    if (change.record !== null) errors.push(`DELETE seq=${change.seq} carries a record`);
    rows.delete(change.old[KEY]);
  } else {
    rows.set(change.record[KEY], change.record); // INSERT (a row entering the subset) or UPDATE
  }
  cursor = change.seq;
  cursorEvent = name;
  status({ status: "change", seq: change.seq, op: change.op, id: (change.record ?? change.old)[KEY] });
}

socket.on("connect", () => status({ status: "connected", id: socket.id }));

socket.on("connect_error", (err) => {
  if (socket.active) return;
  finish(2, { refused: err.message, data: err.data ?? null });
});

socket.on("rxstore:reset", (data) => {
  status({ status: "reset", ...data });
  rows.clear();
  chunks = null;
  cursor = cursorEvent = since = epoch = null; // snapshots follow
});

socket.on("rxstore:snapshot", (data) => {
  if (data?.event !== subscription.id || !Array.isArray(data.records) || !Number.isInteger(data.seq)) {
    errors.push(`unexpected rxstore:snapshot: ${JSON.stringify(data)}`);
    return;
  }
  // Chunks are keyed by the subscription id; show the rows only once the snapshot is whole.
  if (chunks === null || chunks.seq !== data.seq || chunks.event !== data.event) {
    chunks = { event: data.event, seq: data.seq, records: [] };
  }
  chunks.records.push(...data.records);
  if (data.more === true) return;
  rows.clear();
  for (const record of chunks.records) rows.set(record[KEY], record);
  snapshots.push({ event: data.event, seq: data.seq, count: chunks.records.length, afterChanges: changes.length });
  chunks = null;
  since = data.seq;
  if (cursor === null) cursor = data.seq; // only a first snapshot (or one after a reset) moves it
  status({ status: "snapshot", event: data.event, seq: data.seq, count: rows.size });
});

socket.on("rxstore:batch", (data) => {
  if (!Array.isArray(data?.events)) {
    errors.push(`malformed rxstore:batch: ${JSON.stringify(data)}`);
    return;
  }
  for (const [name, change] of data.events) apply(name, change);
});

socket.on("rxstore:live", (data) => {
  epoch = data?.epoch ?? epoch;
  status({ status: "live", seq: data?.seq ?? null });
});

socket.onAny((name, data) => {
  if (name.startsWith("rxstore:")) return; // handled above
  apply(name, data); // a change sent alone
});

socket.on("disconnect", (reason) => {
  status({ status: "disconnected", reason });
  if (!finished) finish(1, { disconnected: reason });
});

async function subscribe(next) {
  // The ack comes after the new subset's snapshot, and after every queued frame of the
  // old one: when it arrives, `rows` is the new subset.
  const ack = await socket.timeout(10000).emitWithAck("rxstore:subscribe", next);
  acks.push(ack);
  if (ack.ok) subscription = next;
  status({ status: "subscribed", ack, rows: Object.fromEntries(rows) });
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    errors.push(`not a JSON command: ${line}`);
    return;
  }
  if (command.done) finish(errors.length ? 1 : 0);
  else if (command.subscribe) {
    subscribe(command.subscribe).catch((err) => {
      errors.push(`rxstore:subscribe failed: ${err.message}`);
      status({ status: "subscribed", ack: null, error: err.message });
    });
  } else errors.push(`unknown command: ${line}`);
});

const timer = setTimeout(() => {
  errors.push(`time limit: ${timeLimit / 1000} s`);
  finish(1);
}, timeLimit);
