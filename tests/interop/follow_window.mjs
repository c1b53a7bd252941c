#!/usr/bin/env node
// Follow a window (order_by + limit) of an rxstore gateway's posts table with the plain
// npm socket.io-client, and tell its rows on request.
//
//   GATEWAY_URL=... RXSTORE_TOKEN=... LIMIT=5 node tests/interop/follow_window.mjs
//
// Everything between the two "docs/protocol.md" lines is the JavaScript window example
// of docs/protocol.md, verbatim (tests/interop/test_node_window.py checks it). The driver
// after it reads one JSON command a line on stdin:
//   {"rows": true}  prints `rows {"rows": [row, ...], "max": n, "cursor": c}`: the window's
//                   rows in its order, the most rows it ever held, its cursor
//   {"more": n}     loads n more rows; prints `more {"added": k, "limit": l}` once they are in
//   {"done": true}  exits

// -- docs/protocol.md: begin
// npm install socket.io-client@^4
import { io } from "socket.io-client";

// A window (docs: "Windows"): ann's 5 most liked posts, most liked first. The gateway
// keeps it exact; the client applies what it sends, exactly as for any subscription,
// plus two things: an INSERT's `out` and a refill snapshot.
const top = {
  id: "top",
  topic: "posts",
  where: [["author", "=", "ann"]],
  columns: ["title", "likes"],              // the order_by columns are sent too
  order_by: [["likes", "desc"]],            // then the primary key, ascending
  limit: Number(process.env.LIMIT ?? 5),
};
const rows = new Map();   // id -> row of the window: never more than `limit`
let cursor = null;        // last applied seq; persist it with `epoch`
let epoch = null;

function applyWindow({ seq, op, record, old, out }) {
  if (cursor !== null && seq <= cursor) return;        // already applied (one subscription)
  if (op === "DELETE") rows.delete(old.id);             // deleted, or moved out: `old` is the key
  else rows.set(record.id, record);                     // INSERT (entering) or UPDATE
  for (const key of out ?? []) rows.delete(key.id);     // a full window: its last row moves out
  cursor = seq;
}

// The window's order, to show it: order_by, then the primary key; NULL last ascending,
// first descending (text as the gateway orders it: by code point, here by UTF-16 unit).
function compare(a, b) {
  for (const [column, direction] of [...top.order_by, ["id", "asc"]]) {
    const x = a[column] ?? null, y = b[column] ?? null;
    if (x === y) continue;
    const c = x === null ? 1 : y === null ? -1 : x < y ? -1 : 1;
    return direction === "desc" ? -c : c;
  }
  return 0;
}
const windowRows = () => [...rows.values()].sort(compare);

const socket = io(process.env.GATEWAY_URL ?? "http://127.0.0.1:8080", {
  transports: ["websocket"],
  // A window resumes with a fresh snapshot of itself (at most `limit` rows): no `since`.
  auth: (cb) => cb({ token: process.env.RXSTORE_TOKEN, topics: [], subscriptions: [top], cursor, epoch }),
});

let chunks = [];
// The first snapshot, and a refill: when a row leaves the full window (or moves past
// its last row) the gateway sends the window again at a later seq P, and then only
// its changes after P. Either way the snapshot replaces the rows.
socket.on("rxstore:snapshot", ({ event, seq, records, more }) => {
  if (event !== top.id) return;
  chunks.push(...records);
  if (more) return;
  rows.clear();
  for (const row of chunks) rows.set(row.id, row);
  chunks = [];
  if (cursor === null) cursor = seq;                    // only a first snapshot sets the cursor
});
socket.on("rxstore:reset", () => {
  rows.clear();
  chunks = [];
  cursor = epoch = null;
});
socket.on("rxstore:batch", ({ events }) => {
  for (const [name, change] of events) if (name === top.id) applyWindow(change);
});
socket.on(top.id, applyWindow);
// "Load more" (docs: "Paging"): the gateway sends only the rows after the last one held
// (`rxstore:page`, they add to the window), then keeps `limit + n` rows.
socket.on("rxstore:page", ({ event, records }) => {
  if (event !== top.id) return;
  for (const row of records) rows.set(row.id, row);
});
async function more(n) {
  const ack = await socket.timeout(10_000).emitWithAck("rxstore:more", { id: top.id, n });
  if (!ack.ok) throw new Error(`${ack.error}: ${ack.message}`); // bad_request: nothing changed
  top.limit = ack.limit;                                 // what a reconnect asks for
  return ack.added;                                      // fewer than n: the end of the subset
}
socket.on("rxstore:live", (live) => {
  epoch = live.epoch ?? epoch;
  console.log(`live at seq ${live.seq}: ${rows.size} posts`);
});
socket.on("disconnect", (reason) => {
  if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
});
// -- docs/protocol.md: end

// -- the driver
import { createInterface } from "node:readline";

let most = 0; // the most rows the window held after any event was applied
socket.onAny(() => queueMicrotask(() => (most = Math.max(most, rows.size))));
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.done) {
    socket.disconnect();
    process.exit(0);
  }
  if (command.rows) console.log(`rows ${JSON.stringify({ rows: windowRows(), max: most, cursor })}`);
  if (command.more)
    more(command.more).then((added) => console.log(`more ${JSON.stringify({ added, limit: top.limit })}`));
});
