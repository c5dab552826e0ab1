// The Papo server against the official socket.io-client: accounts, chat, DMs, feed,
// notifications, presence, auth, resume, idempotency, authorization and bad input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import jwt from 'jsonwebtoken';
import {
  startServer, api, register, login, connect, until, ofType, req, close, signToken,
  decodeToken, randomUUID, tempDb, tokenHeader, keyId, SECRET, watch, presenceView,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.kill('SIGTERM'); });

test('register and login: sessions, wrong password, taken and invalid names', async () => {
  const s = await register(srv.url, 'acct');
  // A standard JWT: HS256, the signing key's id, the user as `sub`, the device session.
  assert.deepEqual(tokenHeader(s.access_token), { alg: 'HS256', typ: 'JWT', kid: keyId(SECRET) });
  const claims = decodeToken(s.access_token);
  assert.deepEqual(Object.keys(claims).sort(), ['exp', 'iat', 'name', 'sid', 'sub']);
  assert.match(claims.sub, /^[0-9]+$/);
  assert.equal(claims.name, s.username);
  assert.equal(claims.exp - claims.iat, 900);
  assert.equal(s.expires_in, 900);
  assert.match(s.refresh_token, /^[0-9a-f]{64}$/);

  const again = await api(srv.url, '/api/register', { username: s.username, password: 'another password' });
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, 'username_taken');

  const wrong = await api(srv.url, '/api/login', { username: s.username, password: 'not the password' });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error.code, 'invalid_credentials');
  const ghost = await api(srv.url, '/api/login', { username: 'nobody_here', password: 'whatever123' });
  assert.equal(ghost.body.error.code, 'invalid_credentials');

  const ok = await login(srv.url, s.username);
  assert.equal(ok.username, s.username);

  for (const [body, code] of [
    [{ username: 'A B', password: 'long enough' }, 'invalid_username'],
    [{ username: 'ab', password: 'long enough' }, 'invalid_username'],
    [{ username: 'fine_name', password: 'short' }, 'weak_password'],
    [{ username: 'fine_name' }, 'bad_request'],
    ['{not json', 'bad_request'],
  ]) {
    const r = await api(srv.url, '/api/register', body);
    assert.equal(r.body.error.code, code, JSON.stringify(body));
  }
  const h = await fetch(srv.url + '/healthz').then((r) => r.json());
  assert.equal(h.ok, true);
  assert.equal(h.protocol, 2);
});

test('public chat reaches every connected user, with the sender\'s client id only for the sender', async () => {
  const users = await Promise.all([1, 2, 3].map(() => register(srv.url, 'pub')));
  const cs = users.map((u) => connect(srv.url, u.access_token));
  await Promise.all(cs.map((c) => c.live));
  const base = cs.map((c) => c.cursor.public);
  const id = randomUUID();
  const reply = await cs[0].socket.timeout(5000).emitWithAck('chat:send', { id, text: 'olá a todos' });
  assert.equal(reply.ok, true);
  assert.equal(reply.id, id);
  assert.equal(reply.event, 'chat:send');
  assert.equal(reply.result.event.type, 'chat.message');
  assert.equal(reply.result.event.cid, id);
  for (const [i, c] of cs.entries()) {
    await until(c, () => ofType(c, 'chat.message').some((e) => e.data.text === 'olá a todos'), 'chat message');
    const ev = ofType(c, 'chat.message').find((e) => e.data.text === 'olá a todos');
    assert.equal(ev.data.from, users[0].username);
    assert.equal(ev.seq, reply.result.event.seq);
    assert.ok(ev.seq > base[i]);
    if (i === 0) assert.equal(ev.cid, id); else assert.equal(ev.cid, undefined);
    assert.deepEqual(c.gaps, []);
  }
  close(...cs);
});

test('a DM reaches every device of the recipient and the sender\'s other devices, nobody else', async () => {
  const [ana, joao, eve] = await Promise.all(['ana', 'joao', 'eve'].map((p) => register(srv.url, p)));
  const joao2 = await login(srv.url, joao.username);
  const ana2 = await login(srv.url, ana.username);
  const cAna = connect(srv.url, ana.access_token);
  const cAna2 = connect(srv.url, ana2.access_token);
  const cJoao = connect(srv.url, joao.access_token);
  const cJoao2 = connect(srv.url, joao2.access_token);
  const cEve = connect(srv.url, eve.access_token);
  const all = [cAna, cAna2, cJoao, cJoao2, cEve];
  await Promise.all(all.map((c) => c.live));

  const r = await req(cAna, 'dm:send', { to: joao.username, text: 'oi joão' });
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.result.event.stream, 'private');
  for (const c of [cAna, cAna2, cJoao, cJoao2]) {
    await until(c, () => ofType(c, 'dm.message').length === 1, 'dm');
    const dm = ofType(c, 'dm.message')[0].data;
    assert.deepEqual([dm.from, dm.to, dm.text], [ana.username, joao.username, 'oi joão']);
  }
  for (const c of [cJoao, cJoao2]) {
    await until(c, () => ofType(c, 'notification').length === 1, 'dm notification');
    const n = ofType(c, 'notification')[0].data;
    assert.equal(n.kind, 'dm');
    assert.equal(n.actor, ana.username);
    assert.equal(n.excerpt, 'oi joão');
  }
  // A ping round trip after the DM proves eve had every chance to receive it.
  await req(cEve, 'sys:ping');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(ofType(cEve, 'dm.message').length, 0);
  assert.equal(ofType(cEve, 'notification').length, 0);
  assert.equal(ofType(cAna, 'notification').length, 0, 'no notification for my own DM');

  const unknown = await req(cAna, 'dm:send', { to: 'no_such_user', text: 'hello?' });
  assert.equal(unknown.ok, false);
  assert.equal(unknown.error.code, 'not_found');
  const self = await req(cAna, 'dm:send', { to: ana.username, text: 'me' });
  assert.equal(self.error.code, 'bad_request');
  close(...all);
});

test('message edit and delete: the sender only, live where the message went, errors at the edges', async () => {
  const [ana, joao, eve] = await Promise.all(['ed_ana', 'ed_joao', 'ed_eve'].map((p) => register(srv.url, p)));
  const ana2 = await login(srv.url, ana.username);
  const cAna = connect(srv.url, ana.access_token);
  const cAna2 = connect(srv.url, ana2.access_token);
  const cJoao = connect(srv.url, joao.access_token);
  const cEve = connect(srv.url, eve.access_token);
  const all = [cAna, cAna2, cJoao, cEve];
  await Promise.all(all.map((c) => c.live));

  const dm = (await req(cAna, 'dm:send', { to: joao.username, text: 'almoço às 12?' })).result.event.data;
  const chat = (await req(cAna, 'chat:send', { text: 'bom dia' })).result.event.data;
  const edit = await req(cAna, 'message:edit', { message_id: dm.id, text: 'almoço às 13?' });
  assert.equal(edit.ok, true, JSON.stringify(edit));
  assert.equal(edit.result.event.type, 'message.edited');
  assert.equal(edit.result.event.stream, 'private');
  for (const c of [cAna, cAna2, cJoao]) {
    await until(c, () => ofType(c, 'message.edited').length === 1, 'dm edit');
    const e = ofType(c, 'message.edited')[0].data;
    assert.deepEqual([e.message_id, e.text], [dm.id, 'almoço às 13?']);
    assert.equal(typeof e.edited_at, 'number');
  }
  const del = await req(cAna2, 'message:delete', { message_id: chat.id });
  assert.equal(del.ok, true, JSON.stringify(del));
  assert.equal(del.result.event.stream, 'public');
  for (const c of all) {
    await until(c, () => ofType(c, 'message.deleted').length === 1, 'chat delete');
    assert.equal(ofType(c, 'message.deleted')[0].data.message_id, chat.id);
  }
  // Eve never hears of the DM's edit (a ping round trip gave her every chance).
  await req(cEve, 'sys:ping');
  assert.equal(ofType(cEve, 'message.edited').length, 0);

  // Deleting again is a no-op; editing a deleted message, or someone else's, is refused.
  const again = await req(cAna, 'message:delete', { message_id: chat.id });
  assert.deepEqual([again.ok, 'event' in again.result], [true, false]);
  assert.equal((await req(cAna, 'message:edit', { message_id: chat.id, text: 'volta' })).error.code, 'not_found');
  assert.equal((await req(cJoao, 'message:edit', { message_id: dm.id, text: 'forjado' })).error.code, 'forbidden');
  assert.equal((await req(cJoao, 'message:delete', { message_id: dm.id })).error.code, 'forbidden');
  // A DM between two others is not even known to exist.
  assert.equal((await req(cEve, 'message:delete', { message_id: dm.id })).error.code, 'not_found');
  assert.equal((await req(cAna, 'message:edit', { message_id: 999999, text: 'x' })).error.code, 'not_found');
  assert.equal((await req(cAna, 'message:edit', { message_id: dm.id, text: '  ' })).error.code, 'invalid_text');
  assert.equal((await req(cAna, 'message:edit', { message_id: 'one', text: 'x' })).error.code, 'bad_request');
  // A device of joao's that was away replays his stream: the DM, then its edit, in log order.
  const back = connect(srv.url, joao.access_token, { cursor: { public: 0, private: 0 }, epoch: cJoao.epoch });
  await back.live;
  const mine = back.events.filter((e) => e.data.id === dm.id || e.data.message_id === dm.id).map((e) => e.type);
  assert.deepEqual(mine.filter((t) => t !== 'notification'), ['dm.message', 'message.edited']);
  close(...all, back);
});

test('replies: quote the original of the same conversation, notify its sender once, refuse anything else', async () => {
  const [ana, joao, eve] = await Promise.all(['rp_ana', 'rp_joao', 'rp_eve'].map((p) => register(srv.url, p)));
  const [cAna, cJoao, cEve] = [ana, joao, eve].map((u) => connect(srv.url, u.access_token));
  await Promise.all([cAna.live, cJoao.live, cEve.live]);
  const notes = (c, kind) => ofType(c, 'notification').filter((e) => e.data.kind === kind).map((e) => e.data);

  const long = 'começo ' + 'x'.repeat(200);
  const original = (await req(cAna, 'chat:send', { text: long })).result.event.data;
  assert.equal('reply_to' in original, false, 'a message that replies to nothing has no reply_to');
  // joao replies, mentioning ana too: she gets one `reply` notification, no `mention`.
  const r = await req(cJoao, 'chat:send', { text: `@${ana.username} concordo`, reply_to: original.id });
  assert.equal(r.ok, true, JSON.stringify(r));
  const reply = r.result.event.data;
  assert.deepEqual(Object.keys(reply.reply_to).sort(), ['excerpt', 'from', 'message_id']);
  assert.deepEqual([reply.reply_to.message_id, reply.reply_to.from], [original.id, ana.username]);
  assert.equal([...reply.reply_to.excerpt].length, 140);
  assert.ok(reply.reply_to.excerpt.endsWith('…'));
  for (const c of [cAna, cEve]) {
    await until(c, () => ofType(c, 'chat.message').some((e) => e.data.id === reply.id && e.data.reply_to?.message_id === original.id), 'reply live');
  }
  await until(cAna, () => notes(cAna, 'reply').length === 1, 'reply notification');
  assert.deepEqual([notes(cAna, 'reply')[0].actor, notes(cAna, 'reply')[0].message_id], [joao.username, reply.id]);
  await req(cAna, 'sys:ping');
  assert.equal(notes(cAna, 'mention').length, 0, 'the reply notification stands for the mention');

  // A DM reply, in both users' streams; eve cannot quote their DM, nor anyone a deleted message.
  const dm = (await req(cAna, 'dm:send', { to: joao.username, text: 'almoço?' })).result.event.data;
  const back = await req(cJoao, 'dm:send', { to: ana.username, text: 'sim', reply_to: dm.id });
  assert.equal(back.result.event.data.reply_to.message_id, dm.id);
  await until(cAna, () => ofType(cAna, 'dm.message').some((e) => e.data.reply_to?.message_id === dm.id), 'dm reply live');
  for (const [c, payload] of [
    [cEve, { to: ana.username, text: 'x', reply_to: dm.id }],
    [cJoao, { to: ana.username, text: 'x', reply_to: original.id }],
    [cJoao, { to: ana.username, text: 'x', reply_to: 99999999 }],
  ]) {
    assert.equal((await req(c, 'dm:send', payload)).error.code, 'not_found', JSON.stringify(payload));
  }
  assert.equal((await req(cEve, 'chat:send', { text: 'x', reply_to: dm.id })).error.code, 'not_found');
  await req(cAna, 'message:delete', { message_id: original.id });
  assert.equal((await req(cEve, 'chat:send', { text: 'x', reply_to: original.id })).error.code, 'not_found');
  assert.equal((await req(cEve, 'chat:send', { text: 'x', reply_to: 'one' })).error.code, 'bad_request');
  close(cAna, cJoao, cEve);
});

test('shares: a post of its own pointing at the original, counted live for everyone, notified, undone', async () => {
  const [ana, joao, eve] = await Promise.all(['sh_ana', 'sh_joao', 'sh_eve'].map((p) => register(srv.url, p)));
  const [cAna, cJoao, cEve] = [ana, joao, eve].map((u) => connect(srv.url, u.access_token));
  await Promise.all([cAna.live, cJoao.live, cEve.live]);
  const post = (await req(cAna, 'post:create', { text: 'vale compartilhar' })).result.event.data;
  assert.equal(post.share_count, 0);
  const r = await req(cJoao, 'post:share', { post_id: post.id, text: 'leiam' });
  assert.equal(r.ok, true, JSON.stringify(r));
  const share = r.result.event.data;
  assert.deepEqual([r.result.event.type, share.share_of, share.text, share.author], ['post.created', post.id, 'leiam', joao.username]);
  for (const c of [cAna, cJoao, cEve]) {
    await until(c, () => ofType(c, 'post.shared').some((e) => e.data.post_id === post.id && e.data.share_count === 1), 'share counted');
  }
  await until(cAna, () => ofType(cAna, 'notification').some((e) => e.data.kind === 'share' && e.data.post_id === post.id && e.data.actor === joao.username), 'share notification');
  // Again: nothing new. Without a comment, eve shares joao's share: the original is shared.
  const again = await req(cJoao, 'post:share', { post_id: post.id });
  assert.deepEqual([again.ok, 'event' in again.result], [true, false]);
  const eves = (await req(cEve, 'post:share', { post_id: share.id })).result.event.data;
  assert.deepEqual([eves.share_of, eves.text], [post.id, '']);
  await until(cAna, () => ofType(cAna, 'post.shared').some((e) => e.data.share_count === 2), 'two shares');
  // Un-share: the share is deleted and the count goes down, live.
  const undo = await req(cEve, 'post:unshare', { post_id: post.id });
  assert.equal(undo.result.event.type, 'post.deleted');
  await until(cAna, () => ofType(cAna, 'post.unshared').some((e) => e.data.by === eve.username && e.data.share_count === 1), 'unshared');
  // The edges: no such post, a deleted one, a blank comment, a malformed id.
  assert.equal((await req(cEve, 'post:share', { post_id: 99999999 })).error.code, 'not_found');
  assert.equal((await req(cEve, 'post:share', { post_id: post.id, text: '   ' })).error.code, 'invalid_text');
  assert.equal((await req(cEve, 'post:share', { post_id: 'one' })).error.code, 'bad_request');
  await req(cAna, 'post:delete', { post_id: post.id });
  assert.equal((await req(cEve, 'post:share', { post_id: post.id })).error.code, 'not_found');
  close(cAna, cJoao, cEve);
});

test('mentions: @name in a public message, post or comment notifies that user, never the author', async () => {
  const [ana, joao, eve] = await Promise.all(['mn_ana', 'mn_joao', 'mn_eve'].map((p) => register(srv.url, p)));
  const [cAna, cJoao, cEve] = [ana, joao, eve].map((u) => connect(srv.url, u.access_token));
  await Promise.all([cAna.live, cJoao.live, cEve.live]);
  const mentionsOf = (c) => ofType(c, 'notification').filter((e) => e.data.kind === 'mention').map((e) => e.data);

  const chat = (await req(cAna, 'chat:send', { text: `oi @${joao.username}, @${ana.username} e @nobody_zz9 @${joao.username}` })).result.event.data;
  await until(cJoao, () => mentionsOf(cJoao).length === 1, 'chat mention');
  const m = mentionsOf(cJoao)[0];
  assert.deepEqual([m.actor, m.message_id, m.post_id ?? null], [ana.username, chat.id, null]);
  assert.ok(m.excerpt.startsWith('oi @'));

  const post = (await req(cAna, 'post:create', { text: `para @${eve.username}` })).result.event.data;
  await until(cEve, () => mentionsOf(cEve).length === 1, 'post mention');
  assert.equal(mentionsOf(cEve)[0].post_id, post.id);

  // joao comments on ana's post mentioning ana (she gets the comment notification only) and eve.
  const comment = (await req(cJoao, 'comment:create', { post_id: post.id, text: `@${ana.username} @${eve.username} sim` })).result.event.data.comment;
  await until(cEve, () => mentionsOf(cEve).length === 2, 'comment mention');
  assert.deepEqual([mentionsOf(cEve)[1].comment_id, mentionsOf(cEve)[1].post_id], [comment.id, post.id]);
  await until(cAna, () => ofType(cAna, 'notification').some((e) => e.data.kind === 'comment'), 'comment notification');
  // A DM is not a mention (the DM notifies on its own).
  await req(cJoao, 'dm:send', { to: ana.username, text: `@${eve.username} viu?` });
  await req(cAna, 'sys:ping');
  await req(cEve, 'sys:ping');
  assert.equal(mentionsOf(cAna).length, 0, 'never my own mention, nor a second one on a comment of my post');
  assert.equal(mentionsOf(cEve).length, 2);
  close(cAna, cJoao, cEve);
});

test('feed: posts, likes, comments and follows with consistent counters and notifications', async () => {
  const [author, fan, other] = await Promise.all(['author', 'fan', 'other'].map((p) => register(srv.url, p)));
  const cA = connect(srv.url, author.access_token);
  const cF = connect(srv.url, fan.access_token);
  const cO = connect(srv.url, other.access_token);
  await Promise.all([cA.live, cF.live, cO.live]);

  const created = await req(cA, 'post:create', { text: 'primeiro post' });
  assert.equal(created.ok, true);
  const post = created.result.event.data;
  assert.deepEqual([post.author, post.like_count, post.comment_count], [author.username, 0, 0]);

  const like1 = await req(cF, 'post:like', { post_id: post.id });
  assert.equal(like1.result.event.data.like_count, 1);
  const like2 = await req(cF, 'post:like', { post_id: post.id });
  assert.equal(like2.ok, true, 'liking twice is fine');
  assert.equal(like2.result.event, undefined, 'and changes nothing');
  const like3 = await req(cO, 'post:like', { post_id: post.id });
  assert.equal(like3.result.event.data.like_count, 2);
  const selfLike = await req(cA, 'post:like', { post_id: post.id });
  assert.equal(selfLike.result.event.data.like_count, 3);
  const unlike = await req(cO, 'post:unlike', { post_id: post.id });
  assert.equal(unlike.result.event.data.like_count, 2);

  const comment = await req(cF, 'comment:create', { post_id: post.id, text: 'boa!' });
  assert.equal(comment.result.event.data.comment_count, 1);
  const follow = await req(cF, 'user:follow', { username: author.username });
  assert.equal(follow.result.event.data.follower_count, 1);
  const follow2 = await req(cO, 'user:follow', { username: author.username });
  assert.equal(follow2.result.event.data.follower_count, 2);
  const unfollow = await req(cO, 'user:unfollow', { username: author.username });
  assert.equal(unfollow.result.event.data.follower_count, 1);

  const edit = await req(cA, 'post:edit', { post_id: post.id, text: 'primeiro post (editado)' });
  assert.equal(edit.result.event.type, 'post.edited');

  // Everyone sees the feed events live, in the same order.
  const feedTypes = (c) => c.events.filter((e) => e.stream === 'public' && e.type !== 'chat.message'
    && (e.data.post_id === post.id || e.data.id === post.id || e.data.comment?.post_id === post.id
      || e.data.followee === author.username)).map((e) => e.type);
  for (const c of [cA, cF, cO]) {
    await until(c, () => feedTypes(c).length === 10, 'feed events');
  }
  assert.deepEqual(feedTypes(cF), feedTypes(cA));
  assert.deepEqual(feedTypes(cO), feedTypes(cA));

  // The author got: 2 likes (fan, other), 1 comment, 2 follows — never its own like.
  await until(cA, () => ofType(cA, 'notification').length === 5, 'notifications');
  const kinds = ofType(cA, 'notification').map((n) => `${n.data.kind}:${n.data.actor}`);
  assert.deepEqual(kinds, [
    `like:${fan.username}`, `like:${other.username}`, `comment:${fan.username}`,
    `follow:${fan.username}`, `follow:${other.username}`,
  ]);
  assert.equal(ofType(cA, 'notification')[2].data.excerpt, 'boa!');
  assert.equal(ofType(cF, 'notification').length, 0);

  const del = await req(cA, 'post:delete', { post_id: post.id });
  assert.equal(del.result.event.type, 'post.deleted');
  const likeDeleted = await req(cF, 'post:like', { post_id: post.id });
  assert.equal(likeDeleted.error.code, 'not_found');
  close(cA, cF, cO);
});

test('counters stay exact under concurrent likes from many connections', async () => {
  const author = await register(srv.url, 'conc');
  const cA = connect(srv.url, author.access_token);
  await cA.live;
  const post = (await req(cA, 'post:create', { text: 'like me' })).result.event.data;
  const likers = await Promise.all(Array.from({ length: 12 }, () => register(srv.url, 'liker')));
  const cs = likers.map((u) => connect(srv.url, u.access_token));
  await Promise.all(cs.map((c) => c.live));
  const replies = await Promise.all(cs.flatMap((c) => [req(c, 'post:like', { post_id: post.id }), req(c, 'post:like', { post_id: post.id })]));
  assert.ok(replies.every((r) => r.ok));
  const counts = replies.filter((r) => r.result.event).map((r) => r.result.event.data.like_count).sort((a, b) => a - b);
  assert.deepEqual(counts, Array.from({ length: 12 }, (_, i) => i + 1));
  close(cA, ...cs);
});

/** Whether any presence packet a client got names `user`. */
const heardOf = (c, user) => c.presence.some((p) => p.online.includes(user) || p.offline.includes(user));

test('presence: online while any device is connected, offline when the last leaves', async () => {
  const [watcher, multi] = await Promise.all([register(srv.url, 'watch'), register(srv.url, 'multi')]);
  const multi2 = await login(srv.url, multi.username);
  const cW = connect(srv.url, watcher.access_token);
  await cW.live;
  assert.equal((await req(cW, 'user:follow', { username: multi.username })).ok, true);
  const snap = cW.presence.find((p) => p.snapshot);
  assert.deepEqual(snap.online, [], 'nobody of interest is online yet');
  const d1 = connect(srv.url, multi.access_token);
  await d1.live;
  await until(cW, () => cW.presence.some((p) => !p.snapshot && p.online.includes(multi.username)), 'online');
  const d2 = connect(srv.url, multi2.access_token);
  await d2.live;
  d1.socket.disconnect();
  await req(cW, 'sys:ping');
  await new Promise((r) => setTimeout(r, 400));
  assert.ok(presenceView(cW).has(multi.username), 'still online on device 2');
  d2.socket.disconnect();
  await until(cW, () => !presenceView(cW).has(multi.username), 'offline');
  close(cW);
});

test('presence by interest: followed users, DM peers and watched users only, each told at once', async () => {
  const [me, fol, peer, seen, stranger] = await Promise.all(
    ['pme', 'pfol', 'ppeer', 'pseen', 'pstr'].map((p) => register(srv.url, p)));
  const others = [fol, peer, seen, stranger].map((u) => connect(srv.url, u.access_token));
  await Promise.all(others.map((x) => x.live));
  const [cFol, cPeer, cSeen, cStr] = others;
  // Set up before connecting: a follow and a DM conversation (from the database at connect).
  const setup = connect(srv.url, me.access_token);
  await setup.live;
  assert.equal((await req(setup, 'user:follow', { username: fol.username })).ok, true);
  assert.equal((await req(cPeer, 'dm:send', { to: me.username, text: 'oi' })).ok, true);
  setup.socket.disconnect();
  await until(cPeer, () => !presenceView(cPeer).has(me.username), 'me offline for my DM peer');

  const cMe = connect(srv.url, me.access_token);
  await cMe.live;
  await until(cMe, () => cMe.presence.some((p) => p.snapshot), 'snapshot');
  await until(cMe, () => presenceView(cMe).has(fol.username) && presenceView(cMe).has(peer.username), 'followed and peer online');
  assert.ok(!heardOf(cMe, seen.username) && !heardOf(cMe, stranger.username), 'nobody else');
  // My DM peer hears that I came back (I am theirs too).
  await until(cPeer, () => presenceView(cPeer).has(me.username), 'peer sees me online');

  // Watching: the state comes before the answer; unwatching stops the news.
  const w = await watch(cMe, [seen.username]);
  assert.equal(w.ok, true);
  assert.ok(presenceView(cMe).has(seen.username), 'watched user online, told before the ack');
  cSeen.socket.disconnect();
  await until(cMe, () => !presenceView(cMe).has(seen.username), 'watched user offline');
  assert.equal((await watch(cMe, [])).ok, true);
  const seenAgain = connect(srv.url, seen.access_token);
  await seenAgain.live;
  // A stranger comes and goes: never heard of.
  cStr.socket.disconnect();
  const str2 = connect(srv.url, stranger.access_token);
  await str2.live;
  await new Promise((r) => setTimeout(r, 600)); // past the 250 ms presence window
  await req(cMe, 'sys:ping');
  assert.ok(!heardOf(cMe, stranger.username), 'stranger never reported');
  assert.ok(!presenceView(cMe).has(seen.username), 'unwatched user not reported back online');

  // Following while connected: the state at once, on every device of mine; unfollowing stops it.
  const me2 = await login(srv.url, me.username);
  const cMe2 = connect(srv.url, me2.access_token);
  await cMe2.live;
  assert.equal((await req(cMe, 'user:follow', { username: stranger.username })).ok, true);
  await until(cMe, () => presenceView(cMe).has(stranger.username), 'followed stranger online');
  await until(cMe2, () => presenceView(cMe2).has(stranger.username), 'on my other device too');
  assert.equal((await req(cMe2, 'user:unfollow', { username: stranger.username })).ok, true);
  await req(cMe, 'sys:ping');
  const before = cMe.presence.length;
  str2.socket.disconnect();
  await new Promise((r) => setTimeout(r, 600));
  await req(cMe, 'sys:ping');
  assert.ok(!cMe.presence.slice(before).some((p) => p.offline.includes(stranger.username)), 'unfollowed: no news');
  // Unfollowing a DM peer keeps their presence (still a peer).
  assert.equal((await req(cMe, 'user:follow', { username: peer.username })).ok, true);
  assert.equal((await req(cMe, 'user:unfollow', { username: peer.username })).ok, true);
  cPeer.socket.disconnect();
  await until(cMe, () => !presenceView(cMe).has(peer.username), 'peer offline still reported');

  // A first DM while both are connected makes both sides peers at once.
  const [x, y] = await Promise.all(['px', 'py'].map((p) => register(srv.url, p)));
  const cX = connect(srv.url, x.access_token);
  const cY = connect(srv.url, y.access_token);
  await Promise.all([cX.live, cY.live]);
  assert.ok(!heardOf(cX, y.username));
  // x already follows y: the first DM still makes x y's peer (y follows nobody).
  assert.equal((await req(cX, 'user:follow', { username: y.username })).ok, true);
  await until(cX, () => presenceView(cX).has(y.username), 'followed y online');
  assert.ok(!heardOf(cY, x.username), 'y does not follow x');
  assert.equal((await req(cX, 'dm:send', { to: y.username, text: 'olá' })).ok, true);
  await until(cX, () => presenceView(cX).has(y.username), 'sender sees the new peer');
  await until(cY, () => presenceView(cY).has(x.username), 'recipient sees the new peer');

  // Bad watch requests: too many, not usernames, malformed.
  const many = Array.from({ length: 201 }, (_, i) => `u${i}`);
  for (const [payload, what] of [
    [{ users: many }, 'too many'],
    [{ users: ['not a name!'] }, 'invalid name'],
    [{ users: 'ana' }, 'not a list'],
  ]) {
    const r = await req(cMe, 'presence:watch', payload);
    assert.equal(r.ok, false, what);
    assert.equal(r.error.code, 'bad_request', what);
  }
  assert.equal((await watch(cMe, Array.from({ length: 200 }, (_, i) => `user${i}`))).ok, true, '200 is fine');
  close(cMe, cMe2, cFol, seenAgain, cX, cY);
});

test('typing reaches the conversation\'s readers only; read state syncs to my other devices', async () => {
  const [a, b, c] = await Promise.all(['ta', 'tb', 'tc'].map((p) => register(srv.url, p)));
  const a2 = await login(srv.url, a.username);
  const cA = connect(srv.url, a.access_token);
  const cA2 = connect(srv.url, a2.access_token);
  const cB = connect(srv.url, b.access_token);
  const cC = connect(srv.url, c.access_token);
  await Promise.all([cA, cA2, cB, cC].map((x) => x.live));
  // Public typing reaches only the connections showing the public room (b), never the typist.
  assert.equal((await watch(cB, [], true)).ok, true);
  assert.equal((await watch(cA2, [], true)).ok, true);
  cA.socket.emit('typing:set', { conversation: 'public', typing: true });
  await until(cB, () => cB.typing.length === 1, 'public typing');
  assert.deepEqual(cB.typing[0], { conversation: 'public', username: a.username, typing: true });
  await req(cC, 'sys:ping');
  await req(cA2, 'sys:ping');
  assert.equal(cC.typing.length, 0, 'not showing the public room');
  assert.equal(cA2.typing.length, 0, 'my own devices');
  assert.equal((await watch(cB, [], false)).ok, true);
  cB.typing.length = 0;
  cA.socket.emit('typing:set', { conversation: `dm:${b.username}`, typing: true });
  await until(cB, () => cB.typing.length === 1, 'typing');
  assert.deepEqual(cB.typing[0], { conversation: `dm:${a.username}`, username: a.username, typing: true });
  await req(cC, 'sys:ping');
  assert.equal(cC.typing.length, 0);

  const dm = await req(cB, 'dm:send', { to: a.username, text: 'lê isto' });
  const read = await req(cA, 'read:mark', { conversation: `dm:${b.username}`, last_read: dm.result.event.data.id });
  assert.equal(read.result.event.type, 'read.updated');
  await until(cA2, () => ofType(cA2, 'read.updated').length === 1, 'read state on device 2');
  assert.deepEqual(ofType(cA2, 'read.updated')[0].data, { conversation: `dm:${b.username}`, last_read: dm.result.event.data.id });
  const older = await req(cA, 'read:mark', { conversation: `dm:${b.username}`, last_read: 0 });
  assert.equal(older.ok, true);
  assert.equal(older.result.event, undefined, 'read state never moves back');
  assert.equal(ofType(cB, 'read.updated').length, 0);
  close(cA, cA2, cB, cC);
});

test('tokens: invalid, forged, expired and revoked tokens are refused with the right reason', async () => {
  const u = await register(srv.url, 'tok');
  const claims = decodeToken(u.access_token);
  const cases = [
    ['garbage', 'token_invalid'],
    // A token of the format before JWTs (a device signed in before the upgrade): refresh.
    ['v1.eyJ1aWQiOjEsIm5hbWUiOiJ0b2sifQ.c2lnbmF0dXJl', 'token_expired'],
    // Another secret presenting the server's key id: a forgery.
    [signToken(claims, 'some-other-secret-value', keyId(SECRET)), 'token_invalid'],
    // Well signed but with HS512, or with no key id.
    [jwt.sign(claims, SECRET, { algorithm: 'HS512', keyid: keyId(SECRET) }), 'token_invalid'],
    [jwt.sign(claims, SECRET, { algorithm: 'HS256' }), 'token_invalid'],
    // A key the server does not hold (retired by a rotation): refresh, like an expired one.
    [signToken(claims, 'some-other-secret-value'), 'token_expired'],
    [signToken({ ...claims, exp: Math.floor(Date.now() / 1000) - 5 }), 'token_expired'],
    [signToken({ ...claims, sid: 'no-such-session' }), 'token_invalid'],
  ];
  for (const [token, reason] of cases) {
    const c = connect(srv.url, token);
    const err = await c.connectError;
    assert.equal(err.message, reason);
    c.socket.close();
  }
  const noAuth = connect(srv.url, undefined);
  assert.equal((await noAuth.connectError).message, 'bad_auth');
  noAuth.socket.close();

  // Refresh rotates: the new pair works, the old refresh token is dead.
  const r1 = await api(srv.url, '/api/refresh', { refresh_token: u.refresh_token });
  assert.equal(r1.status, 200);
  const reused = await api(srv.url, '/api/refresh', { refresh_token: u.refresh_token });
  assert.equal(reused.body.error.code, 'token_invalid');
  // (That replay also revoked the whole session: see accounts.test.mjs.)

  // Logout revokes the session: live sockets are dropped, its tokens refused.
  const fresh = await login(srv.url, u.username);
  const live = connect(srv.url, fresh.access_token);
  await live.live;
  const dropped = new Promise((res) => live.socket.on('disconnect', res));
  const out = await fetch(srv.url + '/api/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: fresh.refresh_token }) });
  assert.equal(out.status, 204);
  await dropped;
  const after = connect(srv.url, fresh.access_token);
  assert.equal((await after.connectError).message, 'token_invalid');
  after.socket.close();
});

test('idempotency: the same client id sent 3 times, across a reconnect, has one effect', async () => {
  const [u, watcher] = await Promise.all([register(srv.url, 'idem'), register(srv.url, 'idw')]);
  const cW = connect(srv.url, watcher.access_token);
  await cW.live;
  const id = randomUUID();
  const c1 = connect(srv.url, u.access_token);
  await c1.live;
  const r1 = await c1.socket.timeout(5000).emitWithAck('chat:send', { id, text: 'só uma vez' });
  const r2 = await c1.socket.timeout(5000).emitWithAck('chat:send', { id, text: 'só uma vez' });
  c1.socket.disconnect();
  const c2 = connect(srv.url, u.access_token, { cursor: c1.cursor, epoch: c1.epoch });
  await c2.live;
  const r3 = await c2.socket.timeout(5000).emitWithAck('chat:send', { id, text: 'só uma vez' });
  assert.deepEqual(r2, r1);
  assert.deepEqual(r3, r1);
  const conflict = await c2.socket.timeout(5000).emitWithAck('post:create', { id, text: 'x' });
  assert.equal(conflict.error.code, 'id_conflict');
  await req(cW, 'sys:ping');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(ofType(cW, 'chat.message').filter((e) => e.data.text === 'só uma vez').length, 1);
  // Without an ack the reply comes as a `reply` event, echoing the id.
  c2.socket.emit('chat:send', { id, text: 'só uma vez' });
  await until(c2, () => c2.replies.length === 1, 'reply event');
  assert.deepEqual(c2.replies[0], r1);
  close(cW, c2);
});

test('authorization: nobody edits, deletes or reads what is not theirs, or acts as someone else', async () => {
  const [a, b, c] = await Promise.all(['az', 'bz', 'cz'].map((p) => register(srv.url, p)));
  const cA = connect(srv.url, a.access_token);
  const cB = connect(srv.url, b.access_token);
  const cC = connect(srv.url, c.access_token);
  await Promise.all([cA.live, cB.live, cC.live]);
  const post = (await req(cB, 'post:create', { text: 'do B' })).result.event.data;
  assert.equal((await req(cA, 'post:edit', { post_id: post.id, text: 'hacked' })).error.code, 'forbidden');
  assert.equal((await req(cA, 'post:delete', { post_id: post.id })).error.code, 'forbidden');
  // A field claiming another author is ignored: the token decides who acts.
  const spoof = await req(cA, 'chat:send', { text: 'quem sou eu', from: b.username });
  assert.equal(spoof.result.event.data.from, a.username);
  // B's DM to C never reaches A, live or by replaying its private stream from 0.
  await req(cB, 'dm:send', { to: c.username, text: 'segredo' });
  await until(cC, () => ofType(cC, 'dm.message').length === 1, 'dm to c');
  cA.socket.disconnect();
  const replay = connect(srv.url, a.access_token, { cursor: { public: 0, private: 0 }, epoch: cA.epoch });
  await replay.live;
  assert.ok(!replay.events.some((e) => JSON.stringify(e).includes('segredo')));
  assert.ok(replay.events.filter((e) => e.stream === 'private').every((e) => e.type !== 'dm.message'));
  // A cursor beyond my own stream does not reveal anybody else's: it is a reset.
  replay.socket.disconnect();
  const ahead = connect(srv.url, a.access_token, { cursor: { public: 0, private: 10_000 }, epoch: cA.epoch });
  await ahead.live;
  assert.equal(ahead.syncs[0].state, 'reset');
  close(ahead, cB, cC);
});

test('bad input: every malformed, oversized or unknown request gets its error code and the server keeps serving', async () => {
  const u = await register(srv.url, 'bad');
  const c = connect(srv.url, u.access_token);
  await c.live;
  const long = 'x'.repeat(4001);
  const cases = [
    ['chat:send', { id: randomUUID() }, 'bad_request'],
    ['chat:send', { id: randomUUID(), text: 42 }, 'bad_request'],
    ['chat:send', { id: 'not-a-uuid', text: 'hi' }, 'bad_request'],
    ['chat:send', { text: 'no id' }, 'bad_request'],
    ['chat:send', 'just a string', 'bad_request'],
    ['chat:send', { id: randomUUID(), text: '   ' }, 'invalid_text'],
    ['chat:send', { id: randomUUID(), text: long }, 'invalid_text'],
    ['post:create', { id: randomUUID(), text: long }, 'invalid_text'],
    ['post:edit', { id: randomUUID(), post_id: 999999, text: 'x' }, 'not_found'],
    ['post:like', { id: randomUUID(), post_id: 'one' }, 'bad_request'],
    ['post:like', { id: randomUUID(), post_id: 999999 }, 'not_found'],
    ['comment:create', { id: randomUUID(), post_id: 999999, text: 'x' }, 'not_found'],
    ['user:follow', { id: randomUUID(), username: 'nobody_at_all' }, 'not_found'],
    ['user:follow', { id: randomUUID(), username: u.username }, 'bad_request'],
    ['read:mark', { id: randomUUID(), conversation: 'room:42', last_read: 1 }, 'bad_request'],
    ['read:mark', { id: randomUUID(), conversation: 'public', last_read: -1 }, 'bad_request'],
    ['dm:send', { id: randomUUID(), to: 'nobody_at_all', text: 'x' }, 'not_found'],
    ['typing:set', { conversation: 42 }, 'bad_request'],
    ['typing:set', { conversation: 'dm:nobody_at_all', typing: true }, 'not_found'],
    ['no:such:event', { id: randomUUID() }, 'unknown_event'],
    ['message', { id: randomUUID() }, 'unknown_event'],
  ];
  for (const [event, payload, code] of cases) {
    const r = await c.socket.timeout(5000).emitWithAck(event, payload);
    assert.equal(r.ok, false, `${event} ${JSON.stringify(payload).slice(0, 60)}`);
    assert.equal(r.error.code, code, `${event} ${JSON.stringify(payload).slice(0, 60)}: ${r.error.message}`);
    assert.ok(r.error.message.length > 0);
  }
  // The echoed id lets a client match an error to its request even when the rest was bad.
  const id = randomUUID();
  const echoed = await c.socket.timeout(5000).emitWithAck('chat:send', { id, text: 7 });
  assert.equal(echoed.id, id);

  // A packet above the payload cap closes that connection only.
  const big = connect(srv.url, u.access_token);
  await big.live;
  const gone = new Promise((res) => big.socket.on('disconnect', res));
  big.socket.emit('chat:send', { id: randomUUID(), text: 'y'.repeat(200_000) });
  await gone;
  // Everything else still works.
  const ok = await req(c, 'chat:send', { text: 'still here' });
  assert.equal(ok.ok, true);
  assert.ok(!/panicked/.test(srv.stderr));
  close(c);
});

test('rate limit: a flood gets rate_limited errors, not a dead server', async () => {
  const u = await register(srv.url, 'flood');
  const c = connect(srv.url, u.access_token);
  await c.live;
  const replies = await Promise.all(Array.from({ length: 150 }, () => req(c, 'sys:ping').catch(() => null)));
  const limited = replies.filter((r) => r && r.error?.code === 'rate_limited').length;
  assert.ok(limited > 0, 'some requests were limited');
  assert.ok(replies.filter((r) => r && r.ok).length >= 60, 'the burst went through');
  close(c);
});

test('resume: after a disconnect and a server SIGKILL + restart, the client gets exactly what it missed, in order', async () => {
  const db = tempDb();
  let s = await startServer({ db });
  const [reader, w1, w2] = await Promise.all(['reader', 'wa', 'wb'].map((p) => register(s.url, p)));
  let cR = connect(s.url, reader.access_token);
  const cW1 = connect(s.url, w1.access_token);
  const cW2 = connect(s.url, w2.access_token);
  await Promise.all([cR.live, cW1.live, cW2.live]);
  await req(cW1, 'chat:send', { text: 'before' });
  await until(cR, () => ofType(cR, 'chat.message').length === 1, 'first message');
  const cursor = { ...cR.cursor };
  const epoch = cR.epoch;
  cR.socket.disconnect();

  const sent = [];
  for (let i = 0; i < 40; i++) {
    const w = i % 2 ? cW2 : cW1;
    const text = `missed ${i}`;
    sent.push(text);
    if (i % 10 === 0) {
      await req(w, 'dm:send', { to: reader.username, text: `dm ${text}` });
    }
    await req(w, 'chat:send', { text });
  }
  await s.kill('SIGKILL');
  s = await startServer({ db, port: s.port });
  cR = connect(s.url, reader.access_token, { cursor, epoch });
  await cR.live;
  assert.equal(cR.syncs[0].state, 'live', 'no reset: the cursor is served from the log');
  assert.deepEqual(ofType(cR, 'chat.message').map((e) => e.data.text), sent);
  assert.deepEqual(ofType(cR, 'dm.message').map((e) => e.data.text), sent.filter((_, i) => i % 10 === 0).map((t) => `dm ${t}`));
  assert.deepEqual(cR.gaps, []);
  const seqs = cR.events.filter((e) => e.stream === 'public').map((e) => e.seq);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => cursor.public + 1 + i));
  // Live events continue after the replay with the next sequence number.
  const cW = connect(s.url, w1.access_token);
  await cW.live;
  await req(cW, 'chat:send', { text: 'after restart' });
  await until(cR, () => ofType(cR, 'chat.message').at(-1)?.data.text === 'after restart', 'live after replay');
  assert.deepEqual(cR.gaps, []);
  close(cR, cW);
  await s.kill('SIGTERM');
});

test('a cursor from another database (epoch) gets an explicit reset and a full replay', async () => {
  const s = await startServer({ db: tempDb() });
  const u = await register(s.url, 'epoch');
  const c0 = connect(s.url, u.access_token);
  await c0.live;
  await req(c0, 'chat:send', { text: 'in this epoch' });
  c0.socket.disconnect();
  const c = connect(s.url, u.access_token, { cursor: { public: 1, private: 0 }, epoch: 'some-old-epoch' });
  await c.live;
  assert.equal(c.syncs[0].state, 'reset');
  assert.notEqual(c.syncs[0].epoch, 'some-old-epoch');
  assert.ok(ofType(c, 'chat.message').some((e) => e.data.text === 'in this epoch'));
  assert.deepEqual(c.gaps, []);
  close(c);
  await s.kill('SIGTERM');
});

test('a request sent the moment CONNECT is answered always gets its reply (no handler race)', async () => {
  // socketioxide answers CONNECT before it runs the connect handler; requests sent at once must
  // still find their handlers (registered by the connect middleware) and be answered.
  const u = await register(srv.url, 'race');
  const { io } = await import('socket.io-client');
  let unanswered = 0;
  const cycle = () =>
    new Promise((resolve) => {
      const s = io(srv.url, { auth: { token: u.access_token }, transports: ['websocket'], forceNew: true, reconnection: false });
      s.on('connect', () => {
        s.timeout(3000).emit('typing:set', { conversation: 'public', typing: false }, (err) => {
          if (err) unanswered++;
          s.close();
          resolve();
        });
      });
      s.on('connect_error', () => {
        unanswered++;
        resolve();
      });
    });
  for (let round = 0; round < 150; round++) await Promise.all([cycle(), cycle(), cycle(), cycle()]);
  assert.equal(unanswered, 0, `${unanswered} of 600 first requests got no reply`);
});
