// The benchmark peer: "the obvious alternative" to Papo — an Express-style Node server with
// socket.io 4.8 writing every chat message to SQLite (better-sqlite3, WAL) and broadcasting it.
//
// It speaks the subset of docs/protocol.md that the benchmarks use, with the same shapes:
//   CONNECT auth {token, cursor?, epoch?}  token = Papo's access token (an HS256 JWT)
//   chat:send {id, text}      -> INSERT (own transaction, synchronous=FULL) -> io.emit("log")
//   dm:send   {id, to, text}  -> INSERT -> emit "log" to rooms u:<to> and u:<from>
//   every request gets a `reply` event; after CONNECT the server replays the public stream
//   after cursor.public (and the user's DMs after cursor.private) in `log` batches of 500,
//   then sends `sync` {state: "live"}.
// Flags: --port N (0 = any; prints `listening on 127.0.0.1:PORT`), --db PATH,
//        --secret S, --no-persist (no database: in-memory sequence numbers only),
//        --sync full|normal.
'use strict';

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const PORT = parseInt(arg('--port', '0'), 10);
const DB = arg('--db', 'node-peer.db');
const SECRET = arg('--secret', 'bench-secret-0123456789abcdef');
const SYNC = arg('--sync', 'full').toUpperCase();
const PERSIST = !process.argv.includes('--no-persist');
const EPOCH = crypto.randomBytes(16).toString('hex');

// ---- storage ---------------------------------------------------------------------------------
let store;
if (PERSIST) {
  const Database = require('better-sqlite3');
  const db = new Database(DB);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${SYNC}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS chat (seq INTEGER PRIMARY KEY, sender TEXT NOT NULL,
                                     text TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS dms (id INTEGER PRIMARY KEY, sender TEXT NOT NULL,
                                    recipient TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS dms_sender ON dms (sender, id);
    CREATE INDEX IF NOT EXISTS dms_recipient ON dms (recipient, id);
  `);
  const insChat = db.prepare('INSERT INTO chat (sender, text, at) VALUES (?, ?, ?)');
  const insDm = db.prepare('INSERT INTO dms (sender, recipient, text, at) VALUES (?, ?, ?, ?)');
  const chatAfter = db.prepare('SELECT seq, sender, text, at FROM chat WHERE seq > ? ORDER BY seq LIMIT 500');
  const dmsAfter = db.prepare(
    'SELECT id, sender, recipient, text, at FROM dms WHERE id > ? AND (sender = ? OR recipient = ?) ORDER BY id LIMIT 500');
  const chatHead = db.prepare('SELECT COALESCE(MAX(seq), 0) AS h FROM chat');
  const dmHead = db.prepare('SELECT COALESCE(MAX(id), 0) AS h FROM dms');
  store = {
    chat: (from, text, at) => Number(insChat.run(from, text, at).lastInsertRowid),
    dm: (from, to, text, at) => Number(insDm.run(from, to, text, at).lastInsertRowid),
    chatAfter: (seq) => chatAfter.all(seq),
    dmsAfter: (id, me) => dmsAfter.all(id, me, me),
    heads: () => ({ public: chatHead.get().h, private: dmHead.get().h }),
  };
} else {
  let chatSeq = 0;
  let dmSeq = 0;
  store = {
    chat: () => ++chatSeq,
    dm: () => ++dmSeq,
    chatAfter: () => [],
    dmsAfter: () => [],
    heads: () => ({ public: chatSeq, private: dmSeq }),
  };
}

// ---- auth: the HS256 JWTs Papo signs, checked with the standard library (jsonwebtoken) ----
function verify(token) {
  if (typeof token !== 'string') return null;
  try {
    return jwt.verify(token, SECRET, { algorithms: ['HS256'] });
  } catch (_) {
    return null;
  }
}

// ---- socket.io ---------------------------------------------------------------------------------
const httpServer = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ok: true, epoch: EPOCH, protocol: 1 }));
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  maxHttpBufferSize: 64 * 1024,
  pingInterval: 20000,
  pingTimeout: 20000,
});

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) return next(new Error('token_invalid'));
  socket.data.name = claims.name;
  next();
});

function chatEvent(seq, from, text, at) {
  return { stream: 'public', seq, at, type: 'chat.message', data: { id: seq, from, text, at } };
}
function dmEvent(id, from, to, text, at) {
  return { stream: 'private', seq: id, at, type: 'dm.message', data: { id, from, to, text, at } };
}

io.on('connection', (socket) => {
  const me = socket.data.name;
  socket.join('u:' + me);
  // Replay after the cursor, then live. Node is single-threaded and this handler is
  // synchronous, so nothing can be broadcast between the replay and the room join.
  const auth = socket.handshake.auth || {};
  const cursor = auth.cursor && auth.epoch === EPOCH ? auth.cursor : null;
  if (cursor) {
    let pub = cursor.public | 0;
    for (;;) {
      const rows = store.chatAfter(pub);
      if (rows.length === 0) break;
      socket.emit('log', { events: rows.map((r) => chatEvent(r.seq, r.sender, r.text, r.at)) });
      pub = rows[rows.length - 1].seq;
    }
    let priv = cursor.private | 0;
    for (;;) {
      const rows = store.dmsAfter(priv, me);
      if (rows.length === 0) break;
      socket.emit('log', { events: rows.map((r) => dmEvent(r.id, r.sender, r.recipient, r.text, r.at)) });
      priv = rows[rows.length - 1].id;
    }
  }
  socket.emit('sync', { state: 'live', epoch: EPOCH, heads: store.heads() });

  socket.on('chat:send', (p) => {
    if (!p || typeof p.text !== 'string' || p.text.length === 0 || p.text.length > 4000) {
      return socket.emit('reply', { id: p && p.id, event: 'chat:send', ok: false, error: { code: 'invalid_text' } });
    }
    const at = Date.now();
    const seq = store.chat(me, p.text, at);
    const ev = chatEvent(seq, me, p.text, at);
    io.emit('log', { events: [ev] });
    socket.emit('reply', { id: p.id, event: 'chat:send', ok: true, result: { event: ev, at } });
  });

  socket.on('dm:send', (p) => {
    if (!p || typeof p.text !== 'string' || typeof p.to !== 'string' || p.to === me) {
      return socket.emit('reply', { id: p && p.id, event: 'dm:send', ok: false, error: { code: 'bad_request' } });
    }
    const at = Date.now();
    const id = store.dm(me, p.to, p.text, at);
    const ev = dmEvent(id, me, p.to, p.text, at);
    io.to('u:' + p.to).to('u:' + me).emit('log', { events: [ev] });
    socket.emit('reply', { id: p.id, event: 'dm:send', ok: true, result: { event: ev, at } });
  });
});

httpServer.listen(PORT, '127.0.0.1', 4096, () => {
  const a = httpServer.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    io.close();
    process.exit(0);
  });
}
