// Load for the desktop benchmark (bench/desktop.py): USERS accounts in the public chat, each
// with the official socket.io-client, send RATE messages/s in total for SECONDS. Each text
// carries its sequence number and the sender's wall-clock send time (`bench#<seq>@<ms>`), so the
// app's in-page probe can compute send -> DOM. The accounts share the load round-robin (20/s
// each at 200/s with 10 users): under the server's per-user budget (~30 requests/s).
//
//   node bench/desktop-sender.mjs URL RATE SECONDS [USERS=10]
//
// Prints one JSON line: {"sent", "acked_ok", "errors", "first_send_ms", "last_send_ms",
// "late_ticks_max_ms"} (late_ticks_max_ms = how far the sender's own timer fell behind).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { randomUUID } from "node:crypto";

const here = dirname(fileURLToPath(import.meta.url));
// The socket.io-client the server's interop tests pin (crates/server/tests/node).
const require = createRequire(join(here, "../crates/server/tests/node/package.json"));
const { io } = require("socket.io-client");

const [url, rateArg, secondsArg, usersArg] = process.argv.slice(2);
if (!url || !rateArg || !secondsArg) {
  console.error("usage: node bench/desktop-sender.mjs URL RATE SECONDS [USERS=10]");
  process.exit(2);
}
const RATE = Number(rateArg);
const SECONDS = Number(secondsArg);
const USERS = Number(usersArg ?? 10);
if (!(RATE > 0 && SECONDS > 0 && USERS > 0)) {
  console.error("RATE, SECONDS and USERS must be positive numbers");
  process.exit(2);
}

async function register(name) {
  const res = await fetch(`${url}/api/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: name, password: "correct horse battery" }),
  });
  const body = await res.json().catch(() => null);
  if (res.status !== 200) throw new Error(`register ${name}: ${res.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

function connect(token) {
  const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    socket.on("sync", (s) => s.state === "live" && resolve(socket));
    socket.on("connect_error", reject);
  });
}

const tag = (process.pid % 10000).toString(36);
const sockets = [];
for (let i = 0; i < USERS; i++) sockets.push(await connect(await register(`load${tag}_${i}`)));

let sent = 0;
let ackedOk = 0;
let errors = 0;
const errorCodes = {};
let lateMax = 0;
const total = Math.round(RATE * SECONDS);
const start = Date.now() + 100;
const firstSend = start;
let lastSend = start;

await new Promise((resolve) => {
  const timer = setInterval(() => {
    const now = Date.now();
    const due = Math.min(total, Math.floor(((now - start) * RATE) / 1000) + 1);
    if (due > sent) lateMax = Math.max(lateMax, now - (start + ((due - 1) * 1000) / RATE));
    while (sent < due) {
      const seq = sent++;
      const at = Date.now();
      lastSend = at;
      sockets[seq % USERS]
        .timeout(30000)
        .emitWithAck("chat:send", { id: randomUUID(), text: `bench#${seq}@${at}` })
        .then((r) => {
          if (r && r.ok) ackedOk++;
          else {
            errors++;
            const code = r?.error?.code ?? "unknown";
            errorCodes[code] = (errorCodes[code] ?? 0) + 1;
          }
        })
        .catch(() => {
          errors++;
          errorCodes.timeout = (errorCodes.timeout ?? 0) + 1;
        });
    }
    if (sent >= total) {
      clearInterval(timer);
      resolve();
    }
  }, 2);
});
// Wait for the outstanding acks (at most 30 s).
const until = Date.now() + 30000;
while (ackedOk + errors < sent && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
for (const s of sockets) s.disconnect();
console.log(
  JSON.stringify({
    sent,
    acked_ok: ackedOk,
    errors,
    error_codes: errorCodes,
    first_send_ms: firstSend,
    last_send_ms: lastSend,
    late_ticks_max_ms: lateMax,
  }),
);
process.exit(0);
