// The account endpoints under abuse, against the real server process: rate limits per address
// and per username, the bounded password-hashing pool, refresh-token reuse, and the error
// bodies of unknown paths and methods.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { startServer, api, register, login, connect, decodeToken, tokenHeader, keyId, signToken, serverBin, req, until, ofType, close } from './harness.mjs';

const PASSWORD = 'correct horse battery';

/** A POST with a JSON body from a chosen local address (Linux routes all of 127/8 to lo). */
function postFrom(url, route, body, localAddress) {
  return new Promise((resolve, reject) => {
    const r = http.request(url + route, {
      method: 'POST', localAddress, headers: { 'content-type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : null }));
    });
    r.on('error', reject);
    r.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

async function raw(url, route, init = {}) {
  const r = await fetch(url + route, init);
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
}

function retryAfter(headers) {
  const v = typeof headers.get === 'function' ? headers.get('retry-after') : headers['retry-after'];
  assert.match(String(v), /^[0-9]+$/, `Retry-After is whole seconds: ${v}`);
  return Number(v);
}

test('unknown paths answer 404 and wrong methods 405, both with the error body', async () => {
  const srv = await startServer();
  try {
    for (const [route, init] of [['/nope', {}], ['/api/nope', { method: 'POST' }], ['/api', {}]]) {
      const r = await raw(srv.url, route, init);
      assert.equal(r.status, 404, route);
      assert.match(r.headers.get('content-type'), /application\/json/);
      assert.equal(r.body.error.code, 'not_found', route);
      assert.equal(typeof r.body.error.message, 'string');
    }
    const get = await raw(srv.url, '/api/login');
    assert.equal(get.status, 405);
    assert.equal(get.body.error.code, 'method_not_allowed');
    assert.equal(get.headers.get('allow'), 'POST');
    const post = await raw(srv.url, '/healthz', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.body.error.code, 'method_not_allowed');
    // The real endpoints still answer.
    assert.equal((await raw(srv.url, '/healthz')).status, 200);
  } finally {
    await srv.kill();
  }
});

test('sign-in attempts are limited per username: 5 a minute, then 429 with Retry-After', async () => {
  const srv = await startServer({ args: ['--login-user-per-min', '5', '--account-ip-per-min', '100'] });
  try {
    const victim = await register(srv.url, 'victim');
    const other = await register(srv.url, 'other');
    for (let i = 0; i < 5; i++) {
      const r = await api(srv.url, '/api/login', { username: victim.username, password: `guess number ${i}` });
      assert.equal(r.status, 401, `guess ${i}`);
      assert.equal(r.body.error.code, 'invalid_credentials');
    }
    // The sixth attempt is refused before the password is looked at, even the right one.
    const refused = await raw(srv.url, '/api/login', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: victim.username, password: PASSWORD }),
    });
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'rate_limited');
    const wait = retryAfter(refused.headers);
    assert.ok(wait >= 1 && wait <= 12, `one attempt comes back within 12 s, told ${wait}`);
    // Another username is not affected.
    assert.equal((await api(srv.url, '/api/login', { username: other.username, password: PASSWORD })).status, 200);
  } finally {
    await srv.kill();
  }
});

test('sign-in and register requests are limited per client address', async () => {
  const srv = await startServer({ args: ['--account-ip-per-min', '3', '--login-user-per-min', '0'] });
  try {
    const from1 = (route, body) => postFrom(srv.url, route, body, '127.0.0.1');
    const reg = await from1('/api/register', { username: 'iplimit_a', password: PASSWORD });
    assert.equal(reg.status, 200);
    assert.equal((await from1('/api/login', { username: 'iplimit_a', password: 'wrong password' })).status, 401);
    // Malformed requests count too, even a body that is not JSON.
    const junk = await from1('/api/register', 'not json');
    assert.equal(junk.status, 400);
    assert.equal(junk.body.error.code, 'bad_request');
    const refused = await from1('/api/login', { username: 'iplimit_a', password: PASSWORD });
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.code, 'rate_limited');
    const wait = retryAfter(refused.headers);
    assert.ok(wait >= 1 && wait <= 20, `3 a minute: one back within 20 s, told ${wait}`);
    assert.equal((await from1('/api/register', { username: 'iplimit_b', password: PASSWORD })).status, 429);
    // Another address still gets in, and the refusals created nothing.
    const other = await postFrom(srv.url, '/api/login', { username: 'iplimit_a', password: PASSWORD }, '127.0.0.2');
    assert.equal(other.status, 200);
    const regB = await postFrom(srv.url, '/api/register', { username: 'iplimit_b', password: PASSWORD }, '127.0.0.2');
    assert.equal(regB.status, 200, 'iplimit_b was not created by the refused request');
    // Refresh is not an account request in that sense.
    const r = await postFrom(srv.url, '/api/refresh', { refresh_token: other.body.refresh_token }, '127.0.0.1');
    assert.equal(r.status, 200);
  } finally {
    await srv.kill();
  }
});

test('a full password-hashing pool answers 503 unavailable with Retry-After, and does nothing', async () => {
  const srv = await startServer({ args: ['--hash-threads', '1', '--hash-queue', '0', '--account-ip-per-min', '0'] });
  try {
    const names = Array.from({ length: 8 }, (_, i) => `pool_${i}`);
    const answers = await Promise.all(names.map((username) => raw(srv.url, '/api/register', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password: PASSWORD }),
    })));
    const ok = answers.filter((a) => a.status === 200);
    const busy = answers.filter((a) => a.status === 503);
    assert.equal(ok.length + busy.length, names.length, JSON.stringify(answers.map((a) => a.status)));
    assert.ok(ok.length >= 1, 'the first one is hashed');
    assert.ok(busy.length >= 1, 'with one thread and no queue, simultaneous ones are refused');
    for (const b of busy) {
      assert.equal(b.body.error.code, 'unavailable');
      assert.ok(retryAfter(b.headers) >= 1);
    }
    // Refused registrations created nothing: the same names register now, one at a time.
    for (const [i, a] of answers.entries()) {
      if (a.status !== 503) continue;
      const again = await api(srv.url, '/api/register', { username: names[i], password: PASSWORD });
      assert.equal(again.status, 200, names[i]);
    }
  } finally {
    await srv.kill();
  }
});

test('a spent refresh token presented again revokes its whole session, and only that one', async () => {
  const srv = await startServer();
  try {
    const phone = await register(srv.url, 'reuse');
    const laptop = await login(srv.url, phone.username);
    const onPhone = connect(srv.url, phone.access_token);
    const onLaptop = connect(srv.url, laptop.access_token);
    await Promise.all([onPhone.live, onLaptop.live]);
    const phoneDropped = new Promise((res) => onPhone.socket.on('disconnect', res));
    let laptopDropped = false;
    onLaptop.socket.on('disconnect', () => { laptopDropped = true; });

    // A → B: fine.
    const b = await api(srv.url, '/api/refresh', { refresh_token: phone.refresh_token });
    assert.equal(b.status, 200);
    assert.notEqual(b.body.refresh_token, phone.refresh_token);
    // A again (a stolen copy replayed): refused, and the session is gone.
    const replay = await api(srv.url, '/api/refresh', { refresh_token: phone.refresh_token });
    assert.equal(replay.status, 401);
    assert.equal(replay.body.error.code, 'token_invalid');
    await phoneDropped;
    // B, the legitimate successor, no longer works either, nor its access token.
    const withB = await api(srv.url, '/api/refresh', { refresh_token: b.body.refresh_token });
    assert.equal(withB.status, 401);
    assert.equal(withB.body.error.code, 'token_invalid');
    for (const token of [b.body.access_token, phone.access_token]) {
      const c = connect(srv.url, token);
      assert.equal((await c.connectError).message, 'token_invalid');
      c.socket.close();
    }
    // The laptop's session is another family: still connected, still refreshable.
    const lr = await api(srv.url, '/api/refresh', { refresh_token: laptop.refresh_token });
    assert.equal(lr.status, 200);
    assert.equal(onLaptop.socket.connected, true);
    assert.equal(laptopDropped, false);
    onLaptop.socket.disconnect();
  } finally {
    await srv.kill();
  }
});

test('logging out with a spent refresh token also revokes the session', async () => {
  const srv = await startServer();
  try {
    const s = await register(srv.url, 'spentout');
    const next = await api(srv.url, '/api/refresh', { refresh_token: s.refresh_token });
    assert.equal(next.status, 200);
    const live = connect(srv.url, next.body.access_token);
    await live.live;
    const dropped = new Promise((res) => live.socket.on('disconnect', res));
    const out = await fetch(srv.url + '/api/logout', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
    });
    assert.equal(out.status, 204);
    await dropped;
    assert.equal((await api(srv.url, '/api/refresh', { refresh_token: next.body.refresh_token })).status, 401);
  } finally {
    await srv.kill();
  }
});

test('expires_in is the access token lifetime counted from the answer', async () => {
  const srv = await startServer({ args: ['--access-ttl-secs', '120'] });
  try {
    const before = Date.now() / 1000;
    const s = await register(srv.url, 'ttl');
    const after = Date.now() / 1000;
    assert.equal(s.expires_in, 120);
    const { exp } = decodeToken(s.access_token);
    assert.ok(Number.isInteger(exp));
    // exp = floor(server time at signing) + expires_in.
    assert.ok(exp >= Math.floor(before) + 120 && exp <= Math.floor(after) + 120, `${before} ${exp} ${after}`);
    const r = await api(srv.url, '/api/refresh', { refresh_token: s.refresh_token });
    assert.equal(r.body.expires_in, 120);
  } finally {
    await srv.kill();
  }
});

test('rotating the signing key signs nobody out: both keys verify, then the old one is retired', async () => {
  const srv = await startServer({ secret: null });
  const keyFile = `${srv.db}.key`;
  const keys = () => readFileSync(keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
  const rotate = () => execFileSync(serverBin(), ['--db', srv.db, 'rotate-token-key'], { encoding: 'utf8' });
  const connects = async (token) => {
    const c = connect(srv.url, token);
    const outcome = await c.live.then(() => 'live', (e) => e.message);
    c.socket.close();
    return outcome;
  };
  try {
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'the key file is private');
    const [k0] = keys();
    const u = await register(srv.url, 'rot');
    const tokenA = u.access_token;
    assert.equal(tokenHeader(tokenA).kid, keyId(k0));

    // Rotation 1: a new key signs, the old one is still accepted.
    const out = rotate();
    const [k1, prev] = keys();
    assert.equal(prev, k0);
    assert.match(out, new RegExp(`signing key ${keyId(k1)}, still accepted ${keyId(k0)}`));
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'still private after the rotation');
    // The running server re-reads the file (every 10 s): new tokens carry the new key.
    let refresh = u.refresh_token;
    let latest;
    const deadline = Date.now() + 15000;
    for (;;) {
      const r = await api(srv.url, '/api/refresh', { refresh_token: refresh });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      refresh = r.body.refresh_token;
      latest = r.body.access_token;
      if (tokenHeader(latest).kid === keyId(k1)) break;
      assert.ok(Date.now() < deadline, 'the server adopted the rotated key within 15 s');
      await new Promise((res) => setTimeout(res, 1000));
    }
    assert.equal(await connects(latest), 'live');
    assert.equal(await connects(tokenA), 'live', 'a token of the previous key still connects');

    // Rotation 2: k0 is dropped. A token of the new key k2 is accepted at once (the server
    // re-reads the file when it meets a key it does not hold) …
    await new Promise((res) => setTimeout(res, 1100));
    rotate();
    const [k2, stillK1] = keys();
    assert.equal(stillK1, k1);
    const claims = decodeToken(latest);
    assert.equal(await connects(signToken(claims, k2)), 'live');
    // … and the token of the retired key asks for a refresh, which works: nobody is signed out.
    assert.equal(await connects(tokenA), 'token_expired');
    const r = await api(srv.url, '/api/refresh', { refresh_token: refresh });
    assert.equal(r.status, 200);
    assert.equal(tokenHeader(r.body.access_token).kid, keyId(k2));
    assert.equal(await connects(r.body.access_token), 'live');
  } finally {
    await srv.kill();
  }
});

test('deleting an account: the password is required, every device leaves, follows are undone, the name stays taken', async () => {
  const srv = await startServer();
  try {
    const gone = await register(srv.url, 'gone');
    const friend = await register(srv.url, 'friend');
    const fan = await register(srv.url, 'fan');
    const laptop = await login(srv.url, gone.username);
    const devices = [connect(srv.url, gone.access_token), connect(srv.url, laptop.access_token)];
    const cFriend = connect(srv.url, friend.access_token);
    const cFan = connect(srv.url, fan.access_token);
    await Promise.all([...devices, cFriend, cFan].map((c) => c.live));
    // gone follows friend, fan follows gone, and gone and friend have a DM conversation.
    assert.equal((await req(devices[0], 'user:follow', { username: friend.username })).ok, true);
    assert.equal((await req(cFan, 'user:follow', { username: gone.username })).ok, true);
    assert.equal((await req(devices[0], 'dm:send', { to: friend.username, text: 'até logo' })).ok, true);
    await until(cFriend, () => ofType(cFriend, 'dm.message').length === 1, 'the DM');

    // A wrong password, a malformed body: refused, nothing happens.
    const wrong = await api(srv.url, '/api/delete-account', { username: gone.username, password: 'not the password' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'invalid_credentials');
    assert.equal((await api(srv.url, '/api/delete-account', { username: gone.username })).body.error.code, 'bad_request');
    assert.equal(devices.every((d) => d.socket.connected), true, 'still connected after refusals');

    const dropped = devices.map((d) => new Promise((res) => d.socket.on('disconnect', res)));
    const del = await api(srv.url, '/api/delete-account', { username: gone.username, password: PASSWORD });
    assert.equal(del.status, 204, JSON.stringify(del));
    await Promise.all(dropped);

    // Both follows undone, with the counts everyone's caches keep.
    for (const c of [cFriend, cFan]) {
      await until(c, () => ofType(c, 'user.unfollowed').length === 2, 'the follows undone');
      const undone = ofType(c, 'user.unfollowed').map((e) => e.data);
      assert.deepEqual(undone.find((u) => u.follower === gone.username), { follower: gone.username, followee: friend.username, follower_count: 0 });
      assert.deepEqual(undone.find((u) => u.followee === gone.username), { follower: fan.username, followee: gone.username, follower_count: 0 });
    }
    // The account can no longer sign in, refresh or connect; its devices are told it was
    // deleted (so they erase what they hold); its name cannot be taken.
    const again = await api(srv.url, '/api/login', { username: gone.username, password: PASSWORD });
    assert.equal(again.body.error.code, 'invalid_credentials');
    const refused = await api(srv.url, '/api/refresh', { refresh_token: laptop.refresh_token });
    assert.deepEqual([refused.status, refused.body.error.code], [401, 'account_deleted']);
    const reconnect = connect(srv.url, gone.access_token);
    assert.equal((await reconnect.connectError).message, 'account_deleted');
    reconnect.socket.close();
    // A session that was logged out before still reads as a plain invalid token.
    const other = await register(srv.url, 'dl_other');
    await api(srv.url, '/api/logout', { refresh_token: other.refresh_token });
    assert.equal((await api(srv.url, '/api/refresh', { refresh_token: other.refresh_token })).body.error.code, 'token_invalid');
    const loggedOut = connect(srv.url, other.access_token);
    assert.equal((await loggedOut.connectError).message, 'token_invalid');
    loggedOut.socket.close();
    const taken = await api(srv.url, '/api/register', { username: gone.username, password: PASSWORD });
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error.code, 'username_taken');
    assert.equal((await api(srv.url, '/api/delete-account', { username: gone.username, password: PASSWORD })).body.error.code, 'invalid_credentials');
    // Nobody can reach it any more; what it said stays in the other's history.
    for (const [event, payload] of [['dm:send', { to: gone.username, text: 'oi?' }], ['user:follow', { username: gone.username }]]) {
      const r = await req(cFriend, event, payload);
      assert.equal(r.ok, false, event);
      assert.equal(r.error.code, 'not_found', event);
    }
    const later = connect(srv.url, friend.access_token);
    await later.live;
    assert.deepEqual(ofType(later, 'dm.message').map((e) => e.data.text), ['até logo']);
    close(later, cFriend, cFan);
  } finally {
    await srv.kill();
  }
});
