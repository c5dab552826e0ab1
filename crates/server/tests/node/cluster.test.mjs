// Three papo-server nodes on one Postgres database and one Redis: users on different nodes
// talk live, and when a node dies (SIGKILL) mid-burst its clients move to the others and end
// with every event exactly once, in order; presence is right afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, register, login, connect, until, ofType, req, reqPatiently, close, watch, cli, adminConnect, adminReq, waitFor } from './harness.mjs';

const PG = process.env.PAPO_TEST_POSTGRES_URL;
const REDIS = process.env.PAPO_TEST_REDIS_URL;
const required = !!process.env.PAPO_REQUIRE_POSTGRES;
const skip = !(PG && REDIS) && !required ? 'set PAPO_TEST_POSTGRES_URL and PAPO_TEST_REDIS_URL' : false;

function freshDatabase() {
  if (!PG || !REDIS) throw new Error('PAPO_REQUIRE_POSTGRES is set but PAPO_TEST_POSTGRES_URL / PAPO_TEST_REDIS_URL are not');
  const name = `papo_cluster_${process.pid}_${Date.now()}`;
  execFileSync('psql', [PG, '-q', '-c', `CREATE DATABASE ${name}`]);
  const u = new URL(PG);
  u.pathname = `/${name}`;
  return u.toString();
}

test('three nodes: live across nodes, a node killed mid-burst loses nothing, presence follows', { skip, timeout: 120000 }, async () => {
  const db = freshDatabase();
  const args = ['--redis', REDIS];
  const nodes = [];
  // Start one node first so the schema is created once, then the others.
  nodes.push(await startServer({ db, args }));
  nodes.push(...await Promise.all([1, 2].map(() => startServer({ db, args }))));
  const [n1, n2, n3] = nodes;
  try {
    const [a, b, c, w1, w2, d] = await Promise.all(['ca', 'cb', 'cc', 'cw1', 'cw2', 'cd'].map((p) => register(n1.url, p)));
    const c2 = await login(n2.url, c.username);
    const cA = connect(n1.url, a.access_token);
    const cB = connect(n2.url, b.access_token);
    const cC = connect(n3.url, c.access_token);
    const cC2 = connect(n1.url, c2.access_token);
    const cD = connect(n3.url, d.access_token);
    const all = [cA, cB, cC, cC2, cD];
    await Promise.all(all.map((x) => x.live));

    // Public chat written on node 1 reaches nodes 2 and 3.
    await req(cA, 'chat:send', { text: 'olá de n1' });
    for (const x of [cB, cC, cC2, cD]) {
      await until(x, () => ofType(x, 'chat.message').some((e) => e.data.text === 'olá de n1'), 'cross-node chat');
    }
    // A DM reaches both devices of the recipient, on nodes 3 and 1, and nobody else.
    await req(cA, 'dm:send', { to: c.username, text: 'segredo' });
    await until(cC, () => ofType(cC, 'dm.message').length === 1, 'dm on node 3');
    await until(cC2, () => ofType(cC2, 'dm.message').length === 1, 'dm on node 1');
    // Feed and notifications across nodes.
    const post = (await req(cB, 'post:create', { text: 'post em n2' })).result.event.data;
    await req(cA, 'post:like', { post_id: post.id });
    await until(cB, () => ofType(cB, 'notification').some((n) => n.data.kind === 'like'), 'like notification on node 2');
    await until(cC, () => ofType(cC, 'post.liked').some((e) => e.data.like_count === 1), 'counter on node 3');
    // Typing crosses nodes through the Redis adapter.
    cA.socket.emit('typing:set', { conversation: `dm:${b.username}`, typing: true });
    await until(cB, () => cB.typing.some((t) => t.username === a.username), 'typing across nodes');
    assert.equal(cC.typing.length, 0);
    assert.equal(ofType(cB, 'dm.message').length, 0);
    // Presence counts devices on every node (for the users a connection watches).
    for (const x of [cA, cB]) assert.equal((await watch(x, [a, b, c, d].map((u) => u.username))).ok, true);
    for (const x of [cA, cB]) {
      await until(x, () => {
        const online = new Set();
        for (const p of x.presence) { p.online.forEach((u) => online.add(u)); p.offline.forEach((u) => online.delete(u)); }
        return [a, b, c, d].every((u) => online.has(u.username));
      }, 'everyone online');
    }

    // Burst from writers on nodes 1 and 2; node 3 dies in the middle of it.
    const cW1 = connect(n1.url, w1.access_token);
    const cW2 = connect(n2.url, w2.access_token);
    await Promise.all([cW1.live, cW2.live]);
    const N = 150;
    const writer = async (cw, tag) => {
      for (let i = 0; i < N; i++) {
        // 300 sends outrun the per-user budget (30/s): retried as a client does.
        const r = await reqPatiently(cw, 'chat:send', { text: `${tag} ${i}` });
        assert.equal(r.ok, true);
      }
    };
    const burst = Promise.all([writer(cW1, 'w1'), writer(cW2, 'w2')]);
    await until(cC, () => ofType(cC, 'chat.message').filter((e) => e.data.text.startsWith('w')).length >= 40, 'mid-burst');
    const dropped = new Promise((r) => cC.socket.on('disconnect', r));
    await n3.kill('SIGKILL');
    await dropped;
    // c moves to node 2 with its cursor; d stays away.
    const moved = connect(n2.url, c.access_token, { cursor: cC.cursor, epoch: cC.epoch });
    await moved.live;
    await burst;
    await until(moved, () => ofType(cC, 'chat.message').length + ofType(moved, 'chat.message').length >= 2 * N + 1, 'all messages', 30000);
    const texts = [...ofType(cC, 'chat.message'), ...ofType(moved, 'chat.message')].map((e) => e.data.text).filter((t) => /^w[12] /.test(t));
    assert.equal(texts.length, 2 * N, 'every burst message, none twice');
    assert.equal(new Set(texts).size, 2 * N);
    for (const tag of ['w1', 'w2']) {
      const mine = texts.filter((t) => t.startsWith(`${tag} `)).map((t) => Number(t.split(' ')[1]));
      assert.deepEqual(mine, Array.from({ length: N }, (_, i) => i), `${tag} in order`);
    }
    assert.deepEqual(moved.gaps, []);
    assert.deepEqual(cC.gaps, []);
    const seqs = [...cC.events, ...moved.events].filter((e) => e.stream === 'public').map((e) => e.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0] + i), 'public seq contiguous across the move');

    // Presence afterwards: d (only on the dead node) goes offline; c (moved) stays online.
    await until(cA, () => cA.presence.some((p) => p.offline.includes(d.username)), 'dead node users offline', 15000);
    // (Watching starts with each user's last announced state, which may still be offline for
    // one who just connected: only what came after c was first seen online counts.)
    const cOn = cA.presence.findIndex((p) => p.online.includes(c.username));
    assert.ok(cOn >= 0, 'c seen online');
    assert.ok(!cA.presence.slice(cOn + 1).filter((p) => !p.snapshot).some((p) => p.offline.includes(c.username)), 'c never went offline');
    close(cA, cB, cC2, cW1, cW2, moved);
  } finally {
    for (const n of nodes) await n.kill('SIGTERM');
  }
});

test('two nodes: admin:stats lists both with their own connections; a suspension closes sockets on both', { skip, timeout: 60000 }, async () => {
  const db = freshDatabase();
  const args = ['--redis', REDIS];
  const n1 = await startServer({ db, args });
  const n2 = await startServer({ db, args });
  try {
    const mod = await register(n1.url, 'cm');
    const u = await register(n1.url, 'cu');
    assert.match(cli(n1, 'grant-admin', mod.username), /is an admin/);
    const onN2 = await login(n2.url, u.username);
    const c1 = connect(n1.url, u.access_token);
    const c2 = connect(n2.url, onN2.access_token);
    const c2b = connect(n2.url, onN2.access_token);
    await Promise.all([c1.live, c2.live, c2b.live]);
    const a = adminConnect(n1.url, mod.access_token);
    await a.open;
    const both = (s) => s.nodes.length === 2 && s.nodes.map((n) => n.connections).sort().join() === '1,2';
    await waitFor(() => a.stats.some(({ s }) => both(s)), 'stats of both nodes', 10000);
    const s = a.stats.find(({ s }) => both(s)).s;
    assert.deepEqual(s.nodes.map((n) => n.node), [...s.nodes.map((n) => n.node)].sort(), 'sorted by node id');
    assert.equal(new Set(s.nodes.map((n) => n.node)).size, 2);
    assert.equal(s.users_online, 1);
    assert.ok(s.database_bytes > 0);
    // Requests on node 2 show in node 2's figures, seen from node 1.
    await Promise.all(Array.from({ length: 5 }, (_, i) => req(c2, 'chat:send', { text: `n2 ${i}` })));
    await waitFor(() => a.stats.some(({ s }) => s.nodes.some((n) => n.connections === 2 && (n.requests_per_sec['chat:send'] ?? 0) > 0)), 'node 2 requests', 10000);
    // A suspension from node 1 closes the user's sockets on both nodes.
    const closed = [c1, c2, c2b].map((c) => new Promise((r) => c.socket.on('disconnect', r)));
    assert.equal((await adminReq(a, 'admin:suspend', { username: u.username })).ok, true);
    await Promise.all(closed);
    const back = connect(n2.url, onN2.access_token);
    assert.equal((await back.connectError).message, 'account_suspended');
    // A stopped node drops out of the figures within 5 s.
    await n2.kill('SIGTERM');
    await waitFor(() => a.stats.at(-1)?.s.nodes.length === 1, 'the stopped node to drop out', 10000);
    a.socket.disconnect();
    close(back);
  } finally {
    await n1.kill('SIGTERM');
    await n2.kill('SIGTERM');
  }
});
