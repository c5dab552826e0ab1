// The /admin namespace against the real server process, with the official socket.io-client:
// the role comes from `papo-server grant-admin` only, non-admins are refused at CONNECT and
// every admin action is refused to them (on / as an unknown event, on /admin after a
// revocation as forbidden), statistics arrive every second, and moderation removes posts and
// comments and suspends accounts (sessions ended, sockets closed, sign-in refused until lifted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, register, login, api, connect, until, ofType, req, close, randomUUID, cli, adminConnect, adminReq, waitFor } from './harness.mjs';

const ACTIONS = [
  ['admin:remove_post', (t) => ({ post_id: t.post })],
  ['admin:remove_comment', (t) => ({ comment_id: t.comment })],
  ['admin:suspend', (t) => ({ username: t.user })],
  ['admin:unsuspend', (t) => ({ username: t.user })],
];

test('only a granted admin opens /admin; every admin action is refused to everyone else', async () => {
  const srv = await startServer();
  try {
    const mod = await register(srv.url, 'mod');
    const ana = await register(srv.url, 'ana');
    const cAna = connect(srv.url, ana.access_token);
    await cAna.live;
    const post = (await req(cAna, 'post:create', { text: 'oi' })).result.event.data.id;
    const comment = (await req(cAna, 'comment:create', { post_id: post, text: 'c' })).result.event.data.comment.id;
    const targets = { post, comment, user: ana.username };

    // Nobody is an admin by signing up: /admin refuses at CONNECT, and / does not know them.
    for (const who of [mod, ana]) {
      const a = adminConnect(srv.url, who.access_token);
      assert.equal((await a.refused).message, 'forbidden');
      a.socket.disconnect();
    }
    const cMod = connect(srv.url, mod.access_token);
    const sync = await cMod.live;
    assert.equal(sync.admin, undefined, 'not an admin: no admin flag');
    for (const [event, payload] of ACTIONS) {
      const r = await req(cMod, event, payload(targets));
      assert.equal(r.error?.code, 'unknown_event', `${event} on /`);
    }
    // A bad token is refused as on /.
    const bad = adminConnect(srv.url, 'not-a-token');
    assert.equal((await bad.refused).message, 'token_invalid');
    bad.socket.disconnect();

    assert.match(cli(srv, 'grant-admin', mod.username), /is an admin/);
    assert.throws(() => cli(srv, 'grant-admin', 'nobody_here'), /no user named/);
    // The next connection's sync tells the role.
    const cMod2 = connect(srv.url, mod.access_token);
    assert.equal((await cMod2.live).admin, true);
    // Still unknown on /, even for an admin.
    assert.equal((await req(cMod2, 'admin:remove_post', { post_id: post })).error?.code, 'unknown_event');

    const a = adminConnect(srv.url, mod.access_token);
    await a.open;
    // Anything but the admin requests is unknown on /admin.
    assert.equal((await adminReq(a, 'chat:send', { text: 'x' })).error?.code, 'unknown_event');
    // A malformed request is bad_request with its id.
    const malformed = await adminReq(a, 'admin:remove_post', { post_id: 'seven' });
    assert.equal(malformed.error?.code, 'bad_request');

    // Revoked: each action is forbidden, nothing happens, and the socket closes within 5 s.
    assert.match(cli(srv, 'revoke-admin', mod.username), /no longer an admin/);
    for (const [event, payload] of ACTIONS) {
      const r = await adminReq(a, event, payload(targets));
      assert.equal(r.error?.code, 'forbidden', `${event} after revoke`);
    }
    await waitFor(() => a.disconnected, 'the revoked admin socket to close', 8000);
    const again = adminConnect(srv.url, mod.access_token);
    assert.equal((await again.refused).message, 'forbidden');
    again.socket.disconnect();
    assert.equal(ofType(cAna, 'post.deleted').length, 0);
    assert.equal(ofType(cAna, 'comment.removed').length, 0);
    assert.equal((await login(srv.url, ana.username)).username, ana.username, 'ana was never suspended');
    close(cAna, cMod, cMod2);
  } finally {
    await srv.kill();
  }
});

test('admin:stats arrives every second with connections, users, request and event rates', async () => {
  const srv = await startServer();
  try {
    const mod = await register(srv.url, 'mod');
    cli(srv, 'grant-admin', mod.username);
    const [u1, u2] = [await register(srv.url, 'u'), await register(srv.url, 'u')];
    const socks = [connect(srv.url, u1.access_token), connect(srv.url, u1.access_token), connect(srv.url, u2.access_token)];
    await Promise.all(socks.map((s) => s.live));
    const a = adminConnect(srv.url, mod.access_token);
    await a.open;
    await waitFor(() => a.stats.some(({ s }) => s.nodes[0].connections === 3), 'stats counting 3 sockets', 5000);
    const first = a.stats.at(-1).s;
    assert.equal(first.nodes.length, 1);
    assert.equal(first.nodes[0].users_online, 2);
    assert.equal(first.users_online, 2);
    assert.ok(first.database_bytes > 0, 'database size');
    assert.ok(first.nodes[0].started_at <= first.nodes[0].at);
    // Ten chat messages in one burst show as chat:send requests and log events.
    await Promise.all(Array.from({ length: 10 }, (_, i) => req(socks[0], 'chat:send', { text: `m${i}` })));
    socks[2].socket.emit('no:such-event', {});
    await waitFor(() => {
      const sum = (k) => a.stats.reduce((n, { s }) => n + (s.nodes[0].requests_per_sec[k] ?? 0), 0);
      return sum('chat:send') >= 9.5 && sum('unknown') >= 0.9;
    }, 'the burst in requests_per_sec', 5000);
    const events = a.stats.reduce((n, { s }) => n + s.nodes[0].events_per_sec, 0);
    assert.ok(events >= 9.5, `events_per_sec adds up to the 10 messages: ${events}`);
    // A socket closing shows in the next seconds.
    close(socks[2]);
    await waitFor(() => a.stats.at(-1).s.nodes[0].connections === 2, 'the closed socket to count off', 5000);
    // About one snapshot a second.
    const n0 = a.stats.length;
    await new Promise((r) => setTimeout(r, 3200));
    const n = a.stats.length - n0;
    assert.ok(n >= 2 && n <= 4, `snapshots in 3.2 s: ${n}`);
    a.socket.disconnect();
    close(socks[0], socks[1]);
  } finally {
    await srv.kill();
  }
});

test('moderation: any post or comment removed live; a suspension closes sockets and refuses sign-in until lifted', async () => {
  const srv = await startServer();
  try {
    const mod = await register(srv.url, 'mod');
    cli(srv, 'grant-admin', mod.username);
    const ana = await register(srv.url, 'ana');
    const bia = await register(srv.url, 'bia');
    const anaPhone = await login(srv.url, ana.username);
    const cAna = connect(srv.url, ana.access_token);
    const cAnaPhone = connect(srv.url, anaPhone.access_token);
    const cBia = connect(srv.url, bia.access_token);
    await Promise.all([cAna.live, cAnaPhone.live, cBia.live]);
    const post = (await req(cAna, 'post:create', { text: 'spam' })).result.event.data.id;
    const comment = (await req(cAna, 'comment:create', { post_id: post, text: 'spam too' })).result.event.data.comment.id;
    await req(cBia, 'comment:create', { post_id: post, text: 'fine' });
    const a = adminConnect(srv.url, mod.access_token);
    await a.open;

    const removed = await adminReq(a, 'admin:remove_comment', { comment_id: comment });
    assert.equal(removed.ok, true);
    assert.deepEqual(removed.result.event.data, { comment_id: comment, post_id: post, comment_count: 1 });
    await until(cBia, () => ofType(cBia, 'comment.removed').length === 1, 'comment.removed live');
    assert.equal((await adminReq(a, 'admin:remove_comment', { comment_id: comment })).error?.code, 'not_found');
    const body = { id: randomUUID(), post_id: post };
    const gone = await a.socket.timeout(10000).emitWithAck('admin:remove_post', body);
    assert.equal(gone.result.event.type, 'post.deleted');
    // The same id again: the same answer, no second event.
    const repeat = await a.socket.timeout(10000).emitWithAck('admin:remove_post', body);
    assert.deepEqual(repeat, gone);
    await until(cBia, () => ofType(cBia, 'post.deleted').length === 1, 'post.deleted live');
    await until(cAna, () => ofType(cAna, 'post.deleted').length === 1, 'post.deleted to its author');

    // Admins cannot be suspended; unknown users are not_found.
    assert.equal((await adminReq(a, 'admin:suspend', { username: mod.username })).error?.code, 'forbidden');
    assert.equal((await adminReq(a, 'admin:suspend', { username: 'nobody_here' })).error?.code, 'not_found');
    const closed = [cAna, cAnaPhone].map((c) => new Promise((r) => c.socket.on('disconnect', r)));
    assert.equal((await adminReq(a, 'admin:suspend', { username: ana.username })).ok, true);
    await Promise.all(closed);
    assert.equal(cBia.socket.connected, true, 'others stay connected');
    // Every way back in is refused as suspended, and nothing ana held still works.
    const back = connect(srv.url, ana.access_token);
    assert.equal((await back.connectError).message, 'account_suspended');
    const refresh = await api(srv.url, '/api/refresh', { refresh_token: anaPhone.refresh_token });
    assert.equal(refresh.status, 403);
    assert.equal(refresh.body.error.code, 'account_suspended');
    const signIn = await api(srv.url, '/api/login', { username: ana.username, password: 'correct horse battery' });
    assert.equal(signIn.status, 403);
    assert.equal(signIn.body.error.code, 'account_suspended');
    const wrong = await api(srv.url, '/api/login', { username: ana.username, password: 'wrong password here' });
    assert.equal(wrong.status, 401, 'the state is told only with the right password');
    // Suspending again changes nothing.
    assert.equal((await adminReq(a, 'admin:suspend', { username: ana.username })).ok, true);

    assert.equal((await adminReq(a, 'admin:unsuspend', { username: ana.username })).ok, true);
    const old = connect(srv.url, ana.access_token);
    assert.equal((await old.connectError).message, 'token_invalid', 'old sessions stay ended');
    const fresh = await login(srv.url, ana.username);
    const cFresh = connect(srv.url, fresh.access_token);
    await cFresh.live;
    assert.equal((await req(cFresh, 'chat:send', { text: 'voltei' })).ok, true);
    // Logging out the admin's session closes its /admin socket at once.
    const modSession = await login(srv.url, mod.username);
    const a2 = adminConnect(srv.url, modSession.access_token);
    await a2.open;
    const a2closed = new Promise((r) => a2.socket.on('disconnect', r));
    await api(srv.url, '/api/logout', { refresh_token: modSession.refresh_token });
    await a2closed;
    a.socket.disconnect();
    close(cBia, cFresh, back, old);
  } finally {
    await srv.kill();
  }
});
