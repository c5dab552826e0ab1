// A stock Node socket.io server speaking a tiny subset of the Papo protocol (public chat only),
// so the Rust client core is tested against a server that is not ours.
//
//   node server.js <port|0> <state.json>
// env: SEED=n appends n "node-<k>" chat messages to the log at startup.
// Prints "listening on 127.0.0.1:PORT" when ready.
"use strict";
const fs = require("fs");
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
const statePath = process.argv[3];
const TOKEN = "node-token";
const EPOCH = "node-epoch";

let state = { log: [], nextId: 1 };
if (statePath && fs.existsSync(statePath)) state = JSON.parse(fs.readFileSync(statePath, "utf8"));
const save = () => statePath && fs.writeFileSync(statePath, JSON.stringify(state));

function append(from, text, cid) {
  const at = Date.now();
  const id = state.nextId++;
  const ev = {
    stream: "public",
    seq: state.log.length + 1,
    at,
    type: "chat.message",
    data: { id, from, text, at },
  };
  state.log.push({ ev, cid, from });
  save();
  return ev;
}

const seed = Number(process.env.SEED || 0);
for (let i = 0; i < seed; i++) append("node", `node-${state.log.length + 1}`);

// No accounts here: every account request (e.g. /api/refresh) is refused like Papo's server does.
// socket.io only passes non-socket.io requests to this handler.
const httpServer = http.createServer((req, res) => {
  res.writeHead(401, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: { code: "token_invalid", message: "no accounts on this server" } }));
});
const io = new Server(httpServer, { pingInterval: 5000, pingTimeout: 5000 });

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  if (typeof auth.token !== "string") return next(new Error("bad_auth"));
  if (auth.token !== TOKEN) return next(new Error("token_invalid"));
  socket.data.user = "ana";
  next();
});

// The sender's view carries its client id.
const view = (entry, user) => (entry.cid && entry.from === user ? { ...entry.ev, cid: entry.cid } : entry.ev);

io.on("connection", (socket) => {
  const auth = socket.handshake.auth;
  let after = 0;
  if (auth.cursor && auth.epoch === EPOCH && auth.cursor.public <= state.log.length) {
    after = auth.cursor.public;
  } else if (auth.cursor && (auth.cursor.public > 0 || auth.epoch)) {
    socket.emit("sync", { state: "reset", epoch: EPOCH, heads: { public: state.log.length, private: 0 } });
  }
  const missed = state.log.slice(after).map((e) => view(e, socket.data.user));
  for (let i = 0; i < missed.length; i += 500) socket.emit("log", { events: missed.slice(i, i + 500) });
  socket.emit("sync", { state: "live", epoch: EPOCH, heads: { public: state.log.length, private: 0 } });
  socket.emit("presence", { snapshot: true, online: ["ana"], offline: [] });
  socket.join("public");

  socket.on("sys:ping", (p) => {
    socket.emit("reply", { id: p && p.id, event: "sys:ping", ok: true, result: { at: Date.now() } });
  });
  socket.on("chat:send", (p) => {
    const prior = state.log.find((e) => e.cid && e.cid === p.id);
    const ev = prior ? prior.ev : append(socket.data.user, p.text, p.id);
    socket.emit("reply", { id: p.id, event: "chat:send", ok: true, result: { event: { ...ev, cid: p.id } } });
    if (!prior) {
      for (const [, s] of io.of("/").sockets) s.emit("log", { events: [view(state.log[ev.seq - 1], s.data.user)] });
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${httpServer.address().port}`);
});
