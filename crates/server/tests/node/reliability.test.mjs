// Reliability under pressure, with the official socket.io-client: slow clients are really
// disconnected, every request gets its reply (or the connection closes), log packets are sized
// on their encoded JSON, contract checks on read marks and ids, and per-user request budgets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import {
  startServer, register, login, connect, until, ofType, req, close, signToken, decodeToken,
  randomUUID, watch, presenceView,
} from './harness.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Characters that JSON escapes as \u0001: 24 KB of JSON per message (room for a prefix). */
const ESCAPED = '\u0001'.repeat(3990);

/** The net.Socket under a socket.io-client connection's WebSocket transport. */
function tcpOf(socket) {
  const t = socket.io.engine.transport;
  assert.equal(t.name, 'websocket');
  return t.ws._socket;
}

/** Waits until an observer has seen `name` go offline in a presence change after it was last
 * seen online (watching starts with the user's current state, which may be offline). */
function wentOffline(obs, name, ms) {
  return until(obs, () => {
    const i = obs.presence.findLastIndex((p) => p.online.includes(name));
    return i >= 0 && obs.presence.slice(i + 1).some((p) => !p.snapshot && p.offline.includes(name));
  }, `${name} offline`, ms);
}

async function slowClientScenario(upgrade) {
  const s = await startServer({
    args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '64',
      '--slow-client-grace-ms', '1000'],
  });
  try {
    const [slowU, writer, watcher] = await Promise.all(['slow', 'writer', 'watch'].map((p) => register(s.url, p)));
    const cW = connect(s.url, writer.access_token);
    const obs = connect(s.url, watcher.access_token);
    await Promise.all([cW.live, obs.live]);
    await watch(obs, [slowU.username]);

    // The slow client: the harness's recorder, over websocket directly or polling + upgrade.
    const slow = connect(s.url, slowU.access_token, { autoConnect: false });
    if (upgrade) {
      slow.socket.io.opts.transports = ['polling', 'websocket'];
      slow.socket.io.opts.upgrade = true;
    }
    slow.socket.connect();
    await slow.live;
    if (upgrade) {
      await new Promise((resolve) => {
        if (slow.socket.io.engine.transport.name === 'websocket') return resolve();
        slow.socket.io.engine.once('upgrade', resolve);
      });
    }
    await until(obs, () => obs.presence.some((p) => p.online.includes(slowU.username)), 'slow online');
    let disconnected = null;
    slow.socket.on('disconnect', (reason) => { disconnected = reason; });

    const tcp = tcpOf(slow.socket);
    tcp.pause(); // stop reading: the server's socket buffers and then the kernel's fill up

    // ~19 MB of log for a client that reads nothing.
    const n = 800;
    for (let i = 0; i < n; i += 40) {
      const batch = Array.from({ length: 40 }, (_, j) => req(cW, 'chat:send', { text: `${i + j} ${ESCAPED}` }));
      for (const r of await Promise.all(batch)) assert.equal(r.ok, true, JSON.stringify(r.error));
    }

    // Seen from the server: the connection is gone, so the user went offline.
    await wentOffline(obs, slowU.username, 20000);
    assert.match(s.stderr, /slow client/);
    // Seen from the client, once it reads again: the transport was closed (not a stall).
    tcp.resume();
    for (let t = 0; t < 100 && !disconnected; t++) await sleep(50);
    assert.ok(disconnected, 'the slow client saw its connection close');
    assert.match(disconnected, /transport (close|error)/);

    // Reconnecting with its cursor gives everything after it, exactly once, in order.
    const before = ofType(slow, 'chat.message');
    assert.ok(before.length < n, `the slow client had not received everything (${before.length})`);
    const again = connect(s.url, slowU.access_token, { cursor: slow.cursor, epoch: slow.epoch });
    await again.live;
    const after = ofType(again, 'chat.message');
    assert.deepEqual(again.gaps, []);
    if (after.length) assert.equal(after[0].seq, slow.cursor.public + 1);
    const got = [...before, ...after].map((e) => Number(e.data.text.split(' ')[0])).sort((a, b) => a - b);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
    close(again, cW, obs, slow);
  } finally {
    await s.kill();
  }
}

test('a socket.io client that stops reading (websocket) is really disconnected, then resumes by cursor', async () => {
  await slowClientScenario(false);
});

test('a socket.io client that stops reading after upgrading from polling is really disconnected', async () => {
  await slowClientScenario(true);
});

test('a polling client that stops polling is disconnected (by the heartbeat) and resumes by cursor', async () => {
  const s = await startServer({
    args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '16',
      '--slow-client-grace-ms', '500'],
  });
  try {
    const [slowU, writer, watcher] = await Promise.all(['poll', 'pw', 'pt'].map((p) => register(s.url, p)));
    const cW = connect(s.url, writer.access_token);
    const obs = connect(s.url, watcher.access_token);
    await Promise.all([cW.live, obs.live]);
    await watch(obs, [slowU.username]);
    const slow = connect(s.url, slowU.access_token, { autoConnect: false });
    slow.socket.io.opts.transports = ['polling'];
    slow.socket.io.opts.upgrade = false;
    slow.socket.connect();
    await slow.live;
    await until(obs, () => obs.presence.some((p) => p.online.includes(slowU.username)), 'online');
    assert.equal(slow.socket.io.engine.transport.name, 'polling');
    await new Promise((resolve) => slow.socket.io.engine.transport.pause(resolve)); // no more polls
    const n = 100;
    for (let i = 0; i < n; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => req(cW, 'chat:send', { text: `${i + j} x` })));
    }
    // The server heartbeat (every 20 s) cannot queue its ping into the full buffer: closed.
    await wentOffline(obs, slowU.username, 45000);
    const again = connect(s.url, slowU.access_token, { cursor: slow.cursor, epoch: slow.epoch });
    await again.live;
    const got = [...ofType(slow, 'chat.message'), ...ofType(again, 'chat.message')]
      .map((e) => Number(e.data.text.split(' ')[0])).sort((a, b) => a - b);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
    assert.deepEqual(again.gaps, []);
    close(again, cW, obs, slow);
  } finally {
    await s.kill();
  }
});

test('a presence change that finds a full buffer is not lost: the client gets it once it reads again', async () => {
  const s = await startServer({
    args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '16',
      '--slow-client-grace-ms', '60000'],
  });
  try {
    const [slowU, writer, late] = await Promise.all(['busy', 'pw', 'late'].map((p) => register(s.url, p)));
    const cW = connect(s.url, writer.access_token);
    const slow = connect(s.url, slowU.access_token);
    await Promise.all([cW.live, slow.live]);
    await watch(slow, [late.username]);
    const tcp = tcpOf(slow.socket);
    tcp.pause();
    for (let i = 0; i < 600; i += 40) {
      await Promise.all(Array.from({ length: 40 }, (_, j) => req(cW, 'chat:send', { text: `${i + j} ${ESCAPED}` })));
    }
    await sleep(300);
    // Comes online while the slow client's buffer is full.
    const cL = connect(s.url, late.access_token);
    await cL.live;
    await sleep(600); // past the 250 ms presence window
    tcp.resume();
    await until(slow, () => ofType(slow, 'chat.message').length === 600, 'catching up', 30000);
    await until(slow, () => presenceView(slow).has(late.username), 'late user online in the view', 5000);
    close(cW, slow, cL);
  } finally {
    await s.kill();
  }
});

test('logout drops a socket even while its buffer is full', async () => {
  // A long grace: only the logout can be what drops it.
  const s = await startServer({
    args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '16',
      '--slow-client-grace-ms', '60000'],
  });
  try {
    const [slowU, writer, watcher] = await Promise.all(['stuck', 'wr', 'wt'].map((p) => register(s.url, p)));
    const cW = connect(s.url, writer.access_token);
    const obs = connect(s.url, watcher.access_token);
    const slow = connect(s.url, slowU.access_token);
    await Promise.all([cW.live, obs.live, slow.live]);
    await watch(obs, [slowU.username]);
    await until(obs, () => obs.presence.some((p) => p.online.includes(slowU.username)), 'online');
    tcpOf(slow.socket).pause();
    for (let i = 0; i < 600; i += 40) {
      await Promise.all(Array.from({ length: 40 }, (_, j) => req(cW, 'chat:send', { text: `${i + j} ${ESCAPED}` })));
    }
    await sleep(500);
    const out = await fetch(s.url + '/api/logout', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: slowU.refresh_token }),
    });
    assert.equal(out.status, 204);
    await wentOffline(obs, slowU.username, 5000);
    close(cW, obs, slow);
  } finally {
    await s.kill();
  }
});

test('with a tiny socket buffer every request gets exactly one reply, or its connection closes', async () => {
  const s = await startServer({ args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '8'] });
  try {
    const users = await Promise.all([1, 2, 3, 4].map(() => register(s.url, 'tiny')));
    const cs = users.map((u) => connect(s.url, u.access_token));
    await Promise.all(cs.map((c) => c.live));
    const dropped = cs.map(() => false);
    cs.forEach((c, i) => c.socket.on('disconnect', () => { dropped[i] = true; }));
    const perSocket = 120;
    const results = await Promise.all(cs.map(async (c, i) => {
      const pending = [];
      for (let k = 0; k < perSocket; k++) {
        const id = randomUUID();
        const text = `${i}.${k} ${'"\\'.repeat(200)}`;
        if (k % 2) {
          // Half as acks...
          pending.push(c.socket.timeout(20000).emitWithAck('chat:send', { id, text })
            .then((r) => (r.id === id ? 1 : 0), () => 0));
        } else {
          // ...half answered by `reply` events.
          c.socket.emit('chat:send', { id, text });
          pending.push(until(c, () => c.replies.some((r) => r.id === id), `reply ${id}`, 20000)
            .then(() => 1, () => 0));
        }
      }
      return (await Promise.all(pending)).reduce((a, b) => a + b, 0);
    }));
    for (const [i, answered] of results.entries()) {
      if (!dropped[i]) assert.equal(answered, perSocket, `socket ${i} stayed connected: every request answered`);
    }
    // Exactly one reply per request sent without an ack.
    for (const c of cs) {
      const ids = c.replies.map((r) => r.id);
      assert.equal(new Set(ids).size, ids.length, 'no request answered twice');
    }
    close(...cs);
  } finally {
    await s.kill();
  }
});

test('replay packets of escape-heavy texts stay within 16 KiB of JSON (one big event alone)', async () => {
  const s = await startServer();
  try {
    const [a, b] = await Promise.all([register(s.url, 'esc'), register(s.url, 'rdr')]);
    const cA = connect(s.url, a.access_token);
    await cA.live;
    const texts = [
      ESCAPED,
      '"\\'.repeat(2000),
      '\u0001\u001f\n\t"'.repeat(800),
      'olá "mundo" \\ \u007f\u2028 😀'.repeat(150),
      'short',
    ];
    for (let i = 0; i < 40; i++) {
      const r = await req(cA, 'chat:send', { text: texts[i % texts.length] });
      assert.equal(r.ok, true, JSON.stringify(r.error));
    }
    const cB = connect(s.url, b.access_token, { autoConnect: false });
    const sizes = []; // [engine.io packet bytes, events in it]
    cB.socket.io.on('open', () => {
      cB.socket.io.engine.on('packet', (p) => {
        if (p.type === 'message' && typeof p.data === 'string' && p.data.startsWith('2["log"')) {
          sizes.push([Buffer.byteLength(p.data), JSON.parse(p.data.slice(1))[1].events.length]);
        }
      });
    });
    cB.socket.connect();
    await cB.live;
    assert.equal(ofType(cB, 'chat.message').length, 40);
    assert.ok(sizes.length > 1);
    const frame = '2["log",]'.length;
    for (const [bytes, events] of sizes) {
      assert.ok(bytes < 64 * 1024, `a packet of ${bytes} bytes exceeds what the server accepts`);
      if (events > 1) assert.ok(bytes - frame <= 16 * 1024, `${events} events in ${bytes} bytes`);
    }
    close(cA, cB);
  } finally {
    await s.kill();
  }
});

test('read:mark refuses dm:<self> and positions that are not messages of the conversation', async () => {
  const s = await startServer();
  try {
    const [a, b, c] = await Promise.all(['rma', 'rmb', 'rmc'].map((p) => register(s.url, p)));
    const cA = connect(s.url, a.access_token);
    const cC = connect(s.url, c.access_token);
    await Promise.all([cA.live, cC.live]);
    const dm = await req(cA, 'dm:send', { to: b.username, text: 'oi' });
    const other = await req(cC, 'dm:send', { to: b.username, text: 'not yours' });
    const pub = await req(cA, 'chat:send', { text: 'olá' });
    const dmId = dm.result.event.data.id;
    const cases = [
      [{ conversation: `dm:${a.username}`, last_read: dmId }, 'bad_request'], // myself
      [{ conversation: `dm:${b.username}`, last_read: 1e12 }, 'bad_request'], // beyond anything
      [{ conversation: `dm:${b.username}`, last_read: other.result.event.data.id }, 'bad_request'], // another DM
      [{ conversation: `dm:${b.username}`, last_read: pub.result.event.data.id }, 'bad_request'], // public msg
      [{ conversation: 'public', last_read: dmId }, 'bad_request'], // a DM id in public
    ];
    for (const [payload, code] of cases) {
      const r = await req(cA, 'read:mark', payload);
      assert.equal(r.ok, false, JSON.stringify(payload));
      assert.equal(r.error.code, code, JSON.stringify(payload));
    }
    assert.equal((await req(cA, 'read:mark', { conversation: `dm:${b.username}`, last_read: dmId })).ok, true);
    assert.equal((await req(cA, 'read:mark', { conversation: 'public', last_read: pub.result.event.data.id })).ok, true);
    assert.equal((await req(cA, 'read:mark', { conversation: 'public', last_read: 0 })).ok, true);
    // Nothing refused reached the log.
    await until(cA, () => ofType(cA, 'read.updated').length === 2, 'two read marks');
    await sleep(200);
    assert.equal(ofType(cA, 'read.updated').length, 2);
    close(cA, cC);
  } finally {
    await s.kill();
  }
});

test('ids that are not UUIDs are echoed in raw_id, errors stay small; sys:ping carries the stream heads', async () => {
  const s = await startServer();
  try {
    const [a] = await Promise.all([register(s.url, 'rawid')]);
    const cA = connect(s.url, a.access_token);
    await cA.live;
    const bad = await cA.socket.timeout(5000).emitWithAck('chat:send', { id: 'my-id-1', text: 'x' });
    assert.equal(bad.ok, false);
    assert.equal(bad.error.code, 'bad_request');
    assert.equal(bad.id, undefined);
    assert.equal(bad.raw_id, 'my-id-1');
    const num = await cA.socket.timeout(5000).emitWithAck('post:like', { id: 42 });
    assert.equal(num.raw_id, 42);
    const unknown = await cA.socket.timeout(5000).emitWithAck('no:such', { id: 'zz' });
    assert.equal(unknown.error.code, 'unknown_event');
    assert.equal(unknown.raw_id, 'zz');
    const huge = await cA.socket.timeout(5000).emitWithAck('chat:send', { id: 'x'.repeat(500), text: 'x' });
    assert.equal(huge.raw_id, undefined);
    // A huge value where a number belongs: the error quotes at most a little of it.
    const quoted = await cA.socket.timeout(5000).emitWithAck('post:like', { id: randomUUID(), post_id: '"'.repeat(25000) });
    assert.equal(quoted.error.code, 'bad_request');
    assert.ok(JSON.stringify(quoted).length < 2000, `a reply of ${JSON.stringify(quoted).length} bytes`);
    const uuid = randomUUID();
    const good = await cA.socket.timeout(5000).emitWithAck('chat:send', { id: uuid, text: 'x' });
    assert.equal(good.id, uuid);
    assert.equal(good.raw_id, undefined);

    await req(cA, 'dm:send', { to: (await register(s.url, 'peer')).username, text: 'oi' });
    await until(cA, () => ofType(cA, 'dm.message').length === 1, 'dm');
    const ping = await req(cA, 'sys:ping');
    assert.equal(ping.ok, true);
    assert.deepEqual(ping.result.heads, cA.cursor);
    assert.ok(ping.result.heads.public >= 1 && ping.result.heads.private >= 1);
    const rawPing = await cA.socket.timeout(5000).emitWithAck('sys:ping', { id: 7 });
    assert.equal(rawPing.ok, true);
    assert.equal(rawPing.raw_id, 7);
    close(cA);
  } finally {
    await s.kill();
  }
});

test('an access token that expires while connected does not drop the socket', async () => {
  const s = await startServer();
  try {
    const u = await register(s.url, 'ttl');
    const claims = decodeToken(u.access_token);
    const token = signToken({ ...claims, exp: Math.floor(Date.now() / 1000) + 2 });
    const c = connect(s.url, token);
    await c.live;
    let reason = null;
    c.socket.on('disconnect', (r) => { reason = r; });
    await sleep(3000);
    const ping = await req(c, 'sys:ping');
    assert.equal(ping.ok, true, 'still served after the token expired');
    assert.equal(reason, null);
    // A new connection with that token is refused.
    const late = connect(s.url, token);
    assert.equal((await late.connectError).message, 'token_expired');
    close(c);
  } finally {
    await s.kill();
  }
});

test('the request budget is per user: two sockets of one user share it', async () => {
  const s = await startServer({ args: ['--rate-per-sec', '1', '--burst', '10'] });
  try {
    const u = await register(s.url, 'budget');
    const second = await login(s.url, u.username);
    const c1 = connect(s.url, u.access_token);
    const c2 = connect(s.url, second.access_token);
    const other = connect(s.url, (await register(s.url, 'other')).access_token);
    await Promise.all([c1.live, c2.live, other.live]);
    const replies = await Promise.all([c1, c2].flatMap((c) => Array.from({ length: 10 }, () => req(c, 'sys:ping'))));
    const ok = replies.filter((r) => r.ok).length;
    const limited = replies.filter((r) => r.error?.code === 'rate_limited').length;
    assert.equal(ok + limited, 20);
    assert.ok(ok <= 12, `${ok} requests went through: the two sockets must not get 10 each`);
    assert.ok(limited >= 8);
    // Another user has a budget of their own.
    const theirs = await Promise.all(Array.from({ length: 5 }, () => req(other, 'sys:ping')));
    assert.ok(theirs.every((r) => r.ok));
    close(c1, c2, other);
  } finally {
    await s.kill();
  }
});
