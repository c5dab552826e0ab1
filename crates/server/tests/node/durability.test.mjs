// Durability under pressure: a client too slow to read, and a server stopped mid-burst.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, register, connect, until, ofType, req, close, tempDb, randomUUID } from './harness.mjs';

test('a client too slow to read is disconnected, then resumes by cursor without losing anything', async () => {
  const s = await startServer({
    args: ['--rate-per-sec', '100000', '--burst', '100000', '--socket-buffer', '64', '--slow-client-grace-ms', '500'],
  });
  try {
    const [slow, writer] = await Promise.all([register(s.url, 'slow'), register(s.url, 'writer')]);
    // The slow client speaks raw Engine.IO so it can stop reading its TCP socket entirely.
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/socket.io/?EIO=4&transport=websocket`);
    let live = false;
    ws.on('message', (m) => {
      const t = m.toString();
      if (t.startsWith('0')) ws.send(`40${JSON.stringify({ token: slow.access_token })}`);
      if (t.startsWith('42["sync"') && t.includes('"live"')) live = true;
      if (t === '2') ws.send('3');
    });
    while (!live) await new Promise((r) => setTimeout(r, 20));
    ws._socket.pause(); // stop reading: the server's buffers fill up

    const cW = connect(s.url, writer.access_token);
    await cW.live;
    const n = 1500;
    const big = 'x'.repeat(3900);
    for (let i = 0; i < n; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => req(cW, 'chat:send', { text: `${i + j} ${big}` })));
    }
    await new Promise((r) => setTimeout(r, 1500));
    assert.match(s.stderr, /slow client/);
    ws._socket.resume();
    ws.terminate();

    // Catching up from the start gives every message exactly once, in log order. (The 20
    // requests of a batch are in flight together, so the server may apply them in any order.)
    const again = connect(s.url, slow.access_token);
    await again.live;
    const msgs = ofType(again, 'chat.message');
    const got = msgs.map((e) => Number(e.data.text.split(' ')[0])).sort((a, b) => a - b);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
    assert.deepEqual(again.gaps, []);
    assert.ok(msgs.every((e, i) => i === 0 || e.seq === msgs[i - 1].seq + 1));
    close(again, cW);
  } finally {
    await s.kill();
  }
});

test('SIGTERM in the middle of a burst loses nothing that was acknowledged', async () => {
  const db = tempDb();
  let s = await startServer({ db });
  const u = await register(s.url, 'burst');
  const c = connect(s.url, u.access_token);
  await c.live;
  const acked = [];
  let stopped = false;
  const sender = (async () => {
    for (let i = 0; i < 2000 && !stopped; i++) {
      const id = randomUUID();
      try {
        const r = await c.socket.timeout(2000).emitWithAck('chat:send', { id, text: `m${i}` });
        if (r.ok) acked.push(r.result.event.data.text);
      } catch { break; }
    }
  })();
  await until(c, () => ofType(c, 'chat.message').length >= 20, 'some traffic', 10000);
  await s.kill('SIGTERM');
  stopped = true;
  await sender;
  assert.ok(acked.length >= 20);
  s = await startServer({ db, port: s.port });
  const check = connect(s.url, u.access_token);
  await check.live;
  const stored = ofType(check, 'chat.message').map((e) => e.data.text);
  for (const t of acked) assert.ok(stored.includes(t), `acknowledged ${t} survived`);
  assert.equal(new Set(stored).size, stored.length, 'no duplicates');
  close(check, c);
  await s.kill('SIGTERM');
});
