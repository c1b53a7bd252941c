// Loads the `posts` snapshot with the npm socket.io-client (as a browser would),
// assembling its chunks, and prints ONE JSON line when live:
//
//   {"count": rows, "digest": sha256 of "id\nbody\n" over the rows in id order,
//    "frames": snapshot frames received, "disconnects": n, "errors": [...]}
//
// Usage: node snapshot_digest.mjs URL TOKEN [TIME_LIMIT_SECONDS]. Exit 0 when live
// without errors, 1 otherwise.
import { createHash } from "node:crypto";
import { io } from "socket.io-client";

const [url, token, limitArg] = process.argv.slice(2);
const timeLimit = Number.parseFloat(limitArg ?? "60") * 1000;
const errors = [];
let rows = null;
let chunks = [];
let frames = 0;
let disconnects = 0;
let finished = false;

const socket = io(url, {
  transports: ["websocket"],
  reconnection: false,
  auth: { token, topics: ["posts"], cursor: null },
});

function finish(code, extra = {}) {
  if (finished) return;
  finished = true;
  const ids = rows === null ? [] : [...rows.keys()].sort();
  const hash = createHash("sha256");
  for (const id of ids) hash.update(`${id}\n${rows.get(id).body}\n`);
  process.stdout.write(
    JSON.stringify({ count: ids.length, digest: hash.digest("hex"), frames, disconnects, errors, ...extra }) + "\n",
  );
  socket.close();
  process.exit(code);
}

socket.on("rxstore:snapshot", (data) => {
  frames += 1;
  if (data?.topic !== "posts" || !Array.isArray(data.records)) {
    errors.push("malformed snapshot frame");
    return;
  }
  chunks.push(...data.records);
  if (data.more === true) return;
  rows = new Map(chunks.map((row) => [row.id, row]));
  chunks = [];
});
socket.on("rxstore:live", () => finish(errors.length || rows === null ? 1 : 0));
socket.on("disconnect", (reason) => {
  if (finished) return;
  disconnects += 1;
  errors.push(`disconnected: ${reason}`);
  finish(1);
});
socket.on("connect_error", (err) => {
  errors.push(`connect_error: ${err.message}`);
  finish(1);
});
setTimeout(() => {
  errors.push("time limit");
  finish(1);
}, timeLimit);
