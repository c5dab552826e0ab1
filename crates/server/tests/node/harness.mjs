// Test harness: runs the real papo-server binary and drives it with the official
// socket.io-client, as an independent peer would.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { io } from 'socket.io-client';

export const SECRET = 'test-secret-0123456789abcdef';

export function serverBin() {
  const bin = process.env.PAPO_SERVER_BIN;
  if (!bin) throw new Error('set PAPO_SERVER_BIN to the papo-server binary');
  return bin;
}

export function tempDb() {
  return path.join(mkdtempSync(path.join(tmpdir(), 'papo-node-')), 'papo.db');
}

/** Starts papo-server on 127.0.0.1:0 and resolves once it prints its port. */
/** Starts papo-server; `secret: null` leaves the keys to the key file (`<db>.key`). */
export function startServer({ db = tempDb(), port = 0, args = [], secret = SECRET } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(serverBin(), [
      '--bind', `127.0.0.1:${port}`, '--db', db, ...(secret ? ['--token-secret', secret] : []),
      '--sqlite-sync', 'normal', ...args,
    ], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        // The suites sign in hundreds of times from one address (127.0.0.1): the account rate
        // limits are off unless a test passes them (accounts.test.mjs tests them).
        PAPO_ACCOUNT_IP_PER_MIN: '0',
        PAPO_LOGIN_USER_PER_MIN: '0',
        ...process.env,
        PAPO_LOG: process.env.PAPO_LOG ?? 'warn',
      },
    });
    let out = '';
    let err = '';
    proc.stderr.on('data', (d) => { err += d; if (process.env.PAPO_TEST_VERBOSE) process.stderr.write(d); });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) {
        const p = Number(m[1]);
        resolve({
          proc, db, port: p, url: `http://127.0.0.1:${p}`,
          get stderr() { return err; },
          kill(signal = 'SIGKILL') {
            return new Promise((res) => {
              if (proc.exitCode !== null || proc.signalCode !== null) return res();
              proc.once('exit', () => res());
              proc.kill(signal);
            });
          },
        });
      }
    });
    proc.once('exit', (code) => reject(new Error(`papo-server exited (${code}) before listening:\n${err}`)));
  });
}

export async function api(url, route, body) {
  const r = await fetch(url + route, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

let userCounter = 0;
/** Registers a fresh user; returns its session. */
export async function register(url, prefix = 'user') {
  const username = `${prefix}_${process.pid % 1000}_${++userCounter}`.slice(0, 20);
  const r = await api(url, '/api/register', { username, password: 'correct horse battery' });
  if (r.status !== 200) throw new Error(`register failed: ${JSON.stringify(r)}`);
  return r.body;
}

export async function login(url, username) {
  const r = await api(url, '/api/login', { username, password: 'correct horse battery' });
  if (r.status !== 200) throw new Error(`login failed: ${JSON.stringify(r)}`);
  return r.body;
}

/** The `kid` the server gives a signing secret: base64url SHA-256 of it, 16 characters. */
export function keyId(secret) {
  return createHash('sha256').update(secret).digest('base64url').slice(0, 16);
}

/**
 * Signs an access token with the standard JWT library (HS256), as the server would with
 * `secret`, to test expiry, forgery and rotation without waiting. `kid` defaults to the id of
 * `secret`.
 */
export function signToken(claims, secret = SECRET, kid = keyId(secret)) {
  return jwt.sign(claims, secret, { algorithm: 'HS256', keyid: kid }); // keeps claims.iat if set
}

/** The claims of a token, unverified (the client never needs to; tests do). */
export function decodeToken(token) {
  return jwt.decode(token);
}

/** The header of a token ({alg, typ, kid}). */
export function tokenHeader(token) {
  return jwt.decode(token, { complete: true }).header;
}

/**
 * A connected client that records everything it receives. `live` resolves on the first
 * `sync` with state live; `cursor` tracks the last seq per stream (checking there are no gaps).
 */
export function connect(url, token, { cursor, epoch, autoConnect = true } = {}) {
  const socket = io(url, {
    auth: { token, ...(cursor ? { cursor } : {}), ...(epoch ? { epoch } : {}) },
    transports: ['websocket'], reconnection: false, forceNew: true, autoConnect,
  });
  const c = {
    socket,
    events: [], // every LogEvent, in arrival order
    syncs: [],
    presence: [],
    typing: [],
    replies: [],
    cursor: { public: cursor?.public ?? 0, private: cursor?.private ?? 0 },
    epoch,
    gaps: [],
    waiters: [],
  };
  socket.on('log', (batch) => {
    for (const ev of batch.events) {
      const last = c.cursor[ev.stream];
      if (ev.seq !== last + 1) c.gaps.push({ stream: ev.stream, expected: last + 1, got: ev.seq });
      c.cursor[ev.stream] = Math.max(last, ev.seq);
      c.events.push(ev);
    }
    poke(c);
  });
  socket.on('sync', (s) => {
    c.syncs.push(s);
    c.epoch = s.epoch;
    if (s.state === 'reset') c.cursor = { public: 0, private: 0 };
    poke(c);
  });
  socket.on('presence', (p) => { c.presence.push(p); poke(c); });
  socket.on('typing', (t) => { c.typing.push(t); poke(c); });
  socket.on('reply', (r) => { c.replies.push(r); poke(c); });
  c.live = new Promise((resolve, reject) => {
    socket.on('sync', (s) => { if (s.state === 'live') resolve(s); });
    socket.on('connect_error', (e) => reject(e));
  });
  c.connectError = new Promise((resolve) => socket.on('connect_error', (e) => resolve(e)));
  c.live.catch(() => {});
  return c;
}

function poke(c) {
  for (const w of [...c.waiters]) {
    if (w.pred()) { c.waiters.splice(c.waiters.indexOf(w), 1); w.resolve(); }
  }
}

/** Waits until `pred()` holds for client c (re-checked on every received packet). */
export function until(c, pred, what = 'condition', ms = 10000) {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      c.waiters.splice(c.waiters.indexOf(w), 1);
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const w = { pred, resolve: () => { clearTimeout(t); resolve(); } };
    c.waiters.push(w);
  });
}

export function ofType(c, type) {
  return c.events.filter((e) => e.type === type);
}

/** Sends a request with an ack and resolves with the Reply. */
export function req(c, event, payload = {}) {
  return c.socket.timeout(10000).emitWithAck(event, { id: randomUUID(), ...payload });
}

/** Sends a request the way a well-behaved client does under the per-user rate limit
 * (docs/protocol.md): a `rate_limited` reply is retried later with the same id. */
export async function reqPatiently(c, event, payload = {}) {
  const body = { id: randomUUID(), ...payload };
  for (;;) {
    const r = await c.socket.timeout(10000).emitWithAck(event, body);
    if (r.error?.code !== 'rate_limited') return r;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Says whose presence (besides followed users and DM peers) this connection shows, and whether
 * it shows the public room (its typing); resolves with the Reply. */
export function watch(c, users, publicTyping = false) {
  return req(c, 'presence:watch', { users, public_typing: publicTyping });
}

/** The set of online users a client's presence packets add up to (a snapshot replaces it). */
export function presenceView(c) {
  const view = new Set();
  for (const p of c.presence) {
    if (p.snapshot) view.clear();
    for (const u of p.online) view.add(u);
    for (const u of p.offline) view.delete(u);
  }
  return view;
}

export function close(...clients) {
  for (const c of clients) c.socket.disconnect();
}

/** Runs `papo-server <command> <name>` on the server's database. */
export function cli(srv, command, username) {
  return execFileSync(serverBin(), ['--db', srv.db, command, username], {
    encoding: 'utf8', env: { ...process.env, PAPO_LOG: 'warn' },
  });
}

/** An /admin connection that records its stats; `open` resolves on connect, `refused` on connect_error. */
export function adminConnect(url, token) {
  const socket = io(`${url}/admin`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  const a = { socket, stats: [], disconnected: false };
  socket.on('admin:stats', (s) => a.stats.push({ got: Date.now(), s }));
  socket.on('disconnect', () => { a.disconnected = true; });
  a.open = new Promise((resolve, reject) => {
    socket.on('connect', resolve);
    socket.on('connect_error', reject);
  });
  a.refused = new Promise((resolve) => socket.on('connect_error', resolve));
  a.open.catch(() => {});
  return a;
}

export function adminReq(a, event, payload) {
  return a.socket.timeout(10000).emitWithAck(event, { id: randomUUID(), ...payload });
}

export async function waitFor(pred, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { randomUUID };
