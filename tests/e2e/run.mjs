// End-to-end test of the real Papo desktop app: the real papo-server, the app binary driven
// through WebKitWebDriver (W3C WebDriver over plain HTTP), and a second user driven by papo-cli.
// Run inside a display and a session bus (scripts/e2e.sh does that). Exits non-zero on failure.
//
// Env: PAPO_APP_BIN, PAPO_SERVER_BIN, PAPO_CLI_BIN (required); E2E_SCREENSHOTS (dir, optional).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { need, logger, freePort, sleep, until, starter, webdriver } from "./lib.mjs";

const APP = need("PAPO_APP_BIN");
const SERVER = need("PAPO_SERVER_BIN");
const CLI = need("PAPO_CLI_BIN");
const SHOTS = process.env.E2E_SCREENSHOTS || null;
const WD_PORT = Number(process.env.E2E_WEBDRIVER_PORT || (await freePort()));
const PORT = await freePort();
const URL_ = `http://127.0.0.1:${PORT}`;
const tmp = mkdtempSync(join(tmpdir(), "papo-e2e-"));
const appData = join(tmp, "app");
const joaoCache = join(tmp, "joao");
const PASSWORD = "correct horse 1";
const children = [];
let server = null;
let session = null;
const t0 = Date.now();

const log = logger("e2e", t0);
const start = starter(children);

async function startServer() {
  server = start(SERVER, ["--bind", `127.0.0.1:${PORT}`, "--db", join(tmp, "server.db")], { RUST_LOG: "warn" }, "papo-server");
  await until("server healthz", async () => (await fetch(`${URL_}/healthz`)).ok, 20000);
  log("server up on", URL_);
}

async function stopServer() {
  const s = server;
  server = null;
  s.kill("SIGKILL");
  await new Promise((r) => (s.exitCode !== null || s.signalCode ? r() : s.on("exit", r)));
  log("server stopped");
}

function cli(...args) {
  return execFileSync(CLI, ["--server", URL_, "--cache", joaoCache, ...args], {
    env: { ...process.env, PAPO_PASSWORD: PASSWORD, RUST_LOG: "warn" },
    encoding: "utf8",
    timeout: 30000,
  });
}

// ------------------------------------------------------------------ WebDriver over HTTP

async function openApp() {
  const caps = {
    capabilities: {
      alwaysMatch: { "webkitgtk:browserOptions": { binary: APP, args: ["--data-dir", appData, "--server", URL_] } },
    },
  };
  const v = await wd("POST", "/session", caps);
  session = v.sessionId;
  log("app session", session);
}

async function closeApp() {
  if (!session) return;
  await wd("DELETE", `/session/${session}`).catch((e) => log("close:", e.message));
  session = null;
  await sleep(500);
}

const { wd, js, find, click, type, clear, textOf, attr, ENTER } = webdriver(WD_PORT, () => session);
const bannerState = () => attr('[data-testid="banner"]', "data-state");

async function waitText(css, text, timeout = 20000) {
  return until(`"${text}" in ${css}`, async () => ((await textOf(css)) ?? "").includes(text), timeout);
}

/** A notification whose row reads `sentence` (its name is a link of its own, so the row's text
 * is joined with single spaces). */
async function waitNotification(sentence, timeout = 20000) {
  return until(`notification "${sentence}"`, () => js(
    `return [...document.querySelectorAll('[data-testid="notifications"] li')].some((li) => li.innerText.replace(/\\s+/g, ' ').includes(arguments[0]))`,
    sentence), timeout);
}

/** The data-state of the newest own message containing `text`. */
const messageState = (text) =>
  js(
    `const ms = [...document.querySelectorAll('[data-testid="message"]')].filter(m => m.innerText.includes(arguments[0]));
     return ms.length ? ms[ms.length - 1].getAttribute('data-state') : null;`,
    text,
  );

async function screenshot(name) {
  if (!SHOTS) return;
  await sleep(400);
  const b64 = await wd("GET", `/session/${session}/screenshot`);
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(join(SHOTS, `${name}.png`), Buffer.from(b64, "base64"));
  log("screenshot", name);
}

function check(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
  log("ok:", message);
}

// ------------------------------------------------------------------ the scenario

async function scenario() {
  await startServer();
  cli("register", "joao");
  log("joao registered via papo-cli");

  start("WebKitWebDriver", [`--port=${WD_PORT}`, "--host=127.0.0.1"], { TAURI_WEBVIEW_AUTOMATION: "true" }, "WebKitWebDriver");
  await until("WebKitWebDriver", async () => (await fetch(`http://127.0.0.1:${WD_PORT}/status`)).ok, 10000);
  await openApp();

  // Sign in: the wrong password first, then create the account.
  await until("sign-in form", () => find('[data-testid="username"]'));
  await type('[data-testid="username"]', "joao");
  await type('[data-testid="password"]', "wrong password");
  await click('[data-testid="signin-submit"]');
  await waitText('[data-testid="signin-error"]', "Wrong username or password");
  check(true, "wrong password shows a clear message");
  await screenshot("sign-in");
  await clear('[data-testid="username"]');
  await clear('[data-testid="password"]');
  await type('[data-testid="username"]', "ana");
  await type('[data-testid="password"]', PASSWORD);
  await click('[data-testid="signin-toggle"]');
  await click('[data-testid="signin-submit"]');
  await until("connected", async () => (await bannerState()) === "connected");
  check(true, "account created in the app and connected");

  // A public message and a DM from joao appear live.
  await click('[data-testid="nav-chat"]');
  await until("public conversation", () => find('[data-testid="conversation"][data-conversation="public"]'));
  cli("send", "bom dia from joao");
  await waitText('[data-testid="messages"]', "bom dia from joao");
  check(true, "public message from papo-cli appears live");
  cli("dm", "ana", "oi ana, tudo bem?");
  await until("DM conversation listed", () => find('[data-testid="conv-dm:joao"]'));
  const unread = await textOf('[data-testid="unread-dm:joao"]');
  check(unread === "1", `DM conversation shows 1 unread (got ${unread})`);

  // /msg from the public room composer reaches joao.
  await type('[data-testid="chat-composer"]', "/msg joao oi joao, from the app" + ENTER);
  await until("joao got the /msg", () => {
    cli("tail", "--until-live", "--seconds", "10");
    return cli("history", "dm:ana").includes("oi joao, from the app");
  }, 30000, 500);
  check(true, "/msg typed in the public composer reaches joao");
  await type('[data-testid="chat-composer"]', "hello everyone" + ENTER);
  await until("own public message sent", async () => (await messageState("hello everyone")) === "sent");
  await screenshot("chat");

  // Mentions: joao's "@ana" is highlighted as mine and listed in notifications; typing "@jo"
  // offers joao, Enter completes it, and the message goes out with the mention.
  cli("send", "olha isto @ana");
  await until("mention of me highlighted", () => js(
    `return [...document.querySelectorAll('[data-testid="message"]')].some((m) => m.innerText.includes('olha isto') &&
       [...m.querySelectorAll('[data-testid="mention"]')].some((s) => s.classList.contains('me') && s.innerText === '@ana'))`));
  await type('[data-testid="chat-composer"]', "oi @jo");
  await until("completion offered", async () => ((await textOf('[data-testid="mention-options"]')) ?? "").includes("@joao"));
  await type('[data-testid="chat-composer"]', ENTER);
  await until("mention completed", async () => (await js(`return document.querySelector('[data-testid="chat-composer"]').value`)) === "oi @joao ");
  await type('[data-testid="chat-composer"]', "bem-vindo" + ENTER);
  await until("mention sent", async () => (await messageState("oi @joao bem-vindo")) === "sent");
  await click('[data-testid="nav-notifications"]');
  await waitNotification("@joao mentioned you");
  check(true, "a mention of me is highlighted and notified; '@jo' completes to @joao and is sent");
  await screenshot("mentions");
  await click('[data-testid="nav-chat"]');
  await until("public conversation again", () => find('[data-testid="conversation"][data-conversation="public"]'));

  await click('[data-testid="conv-dm:joao"]');
  await waitText('[data-testid="messages"]', "oi ana, tudo bem?");
  await waitText('[data-testid="messages"]', "oi joao, from the app");
  await until("DM read", async () => (await textOf('[data-testid="unread-dm:joao"]')) === null);
  check(true, "DM view shows both directions and clears the unread count");
  await type('[data-testid="chat-composer"]', "vamos almoçar?" + ENTER);
  await until("dm sent", async () => (await messageState("vamos almoçar?")) === "sent");
  await screenshot("dm");

  // Edit and delete: a DM of mine edited in the app reaches joao edited; one joao deletes leaves
  // "message deleted" in its place in the app.
  const inRow = (text, testid) =>
    js(
      `const m = [...document.querySelectorAll('[data-testid="message"]')].filter(m => m.innerText.includes(arguments[0])).pop();
       const b = m?.querySelector('[data-testid="' + arguments[1] + '"]');
       if (b && b.tagName === 'BUTTON') b.click();
       return !!b;`,
      text,
      testid,
    );
  await until("edit offered on my DM", () => inRow("vamos almoçar?", "message-edit"));
  await until("edit box", () => find('[data-testid="message-edit-text"]'));
  await clear('[data-testid="message-edit-text"]');
  await type('[data-testid="message-edit-text"]', "vamos jantar?" + ENTER);
  await waitText('[data-testid="messages"]', "vamos jantar?");
  await until("marked edited", () => inRow("vamos jantar?", "message-edited"));
  const joaoRows = () => {
    cli("tail", "--until-live", "--seconds", "10");
    return cli("history", "dm:ana", "--limit", "200").trim().split("\n").map((l) => JSON.parse(l));
  };
  await until("joao sees the edit", () => joaoRows().some((r) => r.text === "vamos jantar?" && r.edited_at !== null), 30000, 500);
  check(true, "a DM edited in the app shows 'edited' and reaches joao's device edited");
  cli("dm", "ana", "mensagem errada, apagar");
  await waitText('[data-testid="messages"]', "mensagem errada, apagar");
  const wrong = joaoRows().find((r) => r.text === "mensagem errada, apagar");
  check(wrong && wrong.server_id !== null, `joao's cache holds his DM with its server id (${wrong?.server_id})`);
  cli("delete-message", String(wrong.server_id));
  await until("the DM is gone", async () => !((await textOf('[data-testid="messages"]')) ?? "").includes("mensagem errada, apagar"), 20000);
  await until("deleted placeholder", async () => (await js(`return document.querySelectorAll('[data-testid="message-deleted"]').length`)) === 1);
  check(true, "a DM joao deleted shows 'message deleted' in its place in the app");
  await screenshot("dm-edited-deleted");

  // Unread position: a conversation with unread messages opens at a "new messages" line above
  // the first of them; scrolled up from the bottom, "jump to latest" brings the newest into view.
  await click('[data-testid="conv-public"]');
  const BACKLOG = 30;
  for (let i = 1; i <= BACKLOG; i++) cli("dm", "ana", `backlog ${i} of ${BACKLOG}`);
  await until("backlog unread", async () => (await textOf('[data-testid="unread-dm:joao"]')) === String(BACKLOG), 30000);
  await click('[data-testid="conv-dm:joao"]');
  await until("new-messages line", () => find('[data-testid="new-messages"]'));
  const placed = await until("line placed in view", () => js(`
    const line = document.querySelector('[data-testid="new-messages"]');
    const list = document.querySelector('[data-testid="messages"]').getBoundingClientRect();
    const r = line.getBoundingClientRect();
    const next = line.nextElementSibling?.innerText ?? "";
    return r.top >= list.top - 1 && r.bottom <= list.bottom && next.includes("backlog 1 of") ? next : null;`), 10000);
  check(true, `opened at the first unread: the line is in view, above "${placed.trim().split("\n").pop()}"`);
  await until("jump-to-latest offered", () => find('[data-testid="jump-latest"]'));
  await click('[data-testid="jump-latest"]');
  await until("newest in view", () => js(`
    const list = document.querySelector('[data-testid="messages"]').getBoundingClientRect();
    const last = [...document.querySelectorAll('[data-testid="message"]')].find((m) => m.innerText.includes("backlog ${BACKLOG} of"));
    if (!last) return false;
    const r = last.getBoundingClientRect();
    return r.top >= list.top && r.bottom <= list.bottom + 1;`), 10000);
  await until("jump button gone at the bottom", async () => !(await js(`return !!document.querySelector('[data-testid="jump-latest"]')`)), 10000);
  check(true, "jump to latest: the newest message in view, the button gone");
  await screenshot("unread-position");

  // Replies: a reply from the app quotes joao's message and reaches him as a reply; his reply to
  // the first DM (no longer loaded: more than a page back) quotes it, and clicking the quote
  // brings it into view from the cache; "jump to latest" goes back; the quote follows the
  // original when joao deletes it. A public reply to my message notifies me.
  const rowsOf = (conversation) => {
    cli("tail", "--until-live", "--seconds", "10");
    return cli("history", conversation, "--limit", "500").trim().split("\n").map((l) => JSON.parse(l));
  };
  await until("reply offered on joao's message", () => inRow("backlog 29 of", "message-reply"));
  await waitText('[data-testid="replying"]', "backlog 29 of");
  await type('[data-testid="chat-composer"]', "respondendo ao 29" + ENTER);
  await until("reply sent", async () => (await messageState("respondendo ao 29")) === "sent");
  const quoted = await js(`const m = [...document.querySelectorAll('[data-testid="message"]')].find((m) => m.innerText.includes('respondendo ao 29'));
    return m?.querySelector('[data-testid="quote"]')?.innerText ?? null;`);
  check(quoted && quoted.includes("joao") && quoted.includes("backlog 29 of"), `my reply shows its quote above it (${quoted?.replace(/\n/g, " ")})`);
  check(!(await js(`return !!document.querySelector('[data-testid="replying"]')`)), "the reply bar closes once sent");
  await until("joao gets the reply", () => {
    const rows = rowsOf("dm:ana");
    const original = rows.find((r) => r.text === "backlog 29 of 30");
    const reply = rows.find((r) => r.text === "respondendo ao 29");
    return original && reply?.reply_to?.server_id === original.server_id && reply.reply_to.sender === "joao";
  }, 30000, 500);
  check(true, "joao's device holds my reply, quoting his message by its server id");

  await click('[data-testid="conv-public"]');
  for (let i = 1; i <= 30; i++) cli("dm", "ana", `filler ${i}`);
  const first = rowsOf("dm:ana").find((r) => r.text === "oi ana, tudo bem?");
  cli("dm", "ana", "lembra disso?", "--reply-to", String(first.server_id));
  await until("joao's reply unread", async () => (await textOf('[data-testid="unread-dm:joao"]')) === "31", 30000);
  await click('[data-testid="conv-dm:joao"]');
  // It opens at the first unread (filler 1); the reply is the newest.
  await until("opened at the unread line", () => find('[data-testid="new-messages"]'));
  await until("jump-to-latest offered at the unread line", () => find('[data-testid="jump-latest"]'));
  await click('[data-testid="jump-latest"]');
  await waitText('[data-testid="messages"]', "lembra disso?");
  const loaded = Number(await attr('[data-testid="messages"]', "data-count"));
  const total = rowsOf("dm:ana").length;
  check(loaded < total, `the DM opens with ${loaded} of its ${total} messages loaded: the original is not`);
  await until("joao's quote shown", () => inRow("lembra disso?", "quote"));
  await until("the original brought into view", () => js(`
    const list = document.querySelector('[data-testid="messages"]').getBoundingClientRect();
    const m = [...document.querySelectorAll('[data-testid="message"]')].find((m) => m.innerText.includes("oi ana, tudo bem?"));
    if (!m || !m.classList.contains('landed')) return false;
    const r = m.getBoundingClientRect();
    return r.top >= list.top - 1 && r.bottom <= list.bottom + 1;`), 10000);
  check(true, "clicking the quote loads the original from the cache and shows it, highlighted");
  await screenshot("reply-jump");
  await until("jump-to-latest offered away from the newest", () => find('[data-testid="jump-latest"]'));
  await click('[data-testid="jump-latest"]');
  await until("back at the newest", () => js(`
    const list = document.querySelector('[data-testid="messages"]').getBoundingClientRect();
    const m = [...document.querySelectorAll('[data-testid="message"]')].find((m) => m.innerText.includes("lembra disso?"));
    if (!m) return false;
    const r = m.getBoundingClientRect();
    return r.top >= list.top && r.bottom <= list.bottom + 1;`), 10000);
  check(true, "jump to latest returns to the newest messages");
  cli("delete-message", String(first.server_id));
  await until("the quote says the original was deleted", () => js(`
    const m = [...document.querySelectorAll('[data-testid="message"]')].find((m) => m.innerText.includes("lembra disso?"));
    return !!m?.querySelector('[data-testid="quote-deleted"]');`), 20000);
  check(true, "the quote follows its original: deleted, it shows 'message deleted'");

  await click('[data-testid="conv-public"]');
  const hello = rowsOf("public").find((r) => r.text === "hello everyone");
  cli("send", "concordo com a ana", "--reply-to", String(hello.server_id));
  await until("public reply shown with its quote", () => inRow("concordo com a ana", "quote"));
  await click('[data-testid="nav-notifications"]');
  await waitNotification("@joao replied to you");
  check(true, "a public reply to my message shows its quote and notifies me");
  await js(`[...document.querySelectorAll('[data-testid="notifications"] li')].find((li) => li.querySelector('[data-kind="reply"]'))
    .querySelector('[data-testid="user-link"]').click();`);
  await until("joao's profile from the notification", () => find('[data-testid="profile"][data-user="joao"]'));
  check(true, "the name in a notification opens that user's profile");
  await click('[data-testid="nav-chat"]');
  await until("public conversation after replies", () => find('[data-testid="conversation"][data-conversation="public"]'));

  // Feed: a post from joao, one from the app, a like.
  cli("post", "Primeiro post do joao: bom dia, Papo!");
  await click('[data-testid="nav-feed"]');
  await waitText('[data-testid="feed-list"]', "Primeiro post do joao");
  await type('[data-testid="post-composer"]', "Hello from the Papo desktop app" + ENTER);
  await waitText('[data-testid="feed-list"]', "Hello from the Papo desktop app");
  await until("joao's post liked", async () => {
    const n = await js(
      `const p = [...document.querySelectorAll('[data-testid="post"]')].find(p => p.innerText.includes('Primeiro post'));
       if (!p) return null;
       if (p.querySelector('[data-testid="like"]').getAttribute('aria-pressed') !== 'true') p.querySelector('[data-testid="like"]').click();
       return p.querySelector('[data-testid="like-count"]').innerText;`,
    );
    return n === "1";
  }, 20000, 1000);
  check(true, "post composed in the app, like counter updated");

  // Shares: joao shares my post (with a comment) — it shows as his share of it, my post counts
  // it and I am notified; I share his post from the app with a comment, then un-share it; when
  // he deletes a post I shared, my share shows it as unavailable.
  const cardOf = (text, extra = "") => `[...document.querySelectorAll('[data-testid="post"]')].find((p) => p.innerText.includes(${JSON.stringify(text)})${extra})`;
  const serverIdOf = async (text) =>
    Number(await until(`server id of "${text}"`, () => js(`return ${cardOf(text, " && !p.querySelector('[data-testid=\"shared-post\"]')")}?.getAttribute('data-server-id') || null`)));
  const mineId = await serverIdOf("Hello from the Papo desktop app");
  cli("share", String(mineId), "--comment", "olhem o post da ana");
  await until("joao's share in my feed", () => js(`const p = ${cardOf("olhem o post da ana")};
    return !!p && p.querySelector('[data-testid="shared-by"]').innerText.includes('@joao')
      && p.querySelector('[data-testid="shared-post"]').innerText.includes('Hello from the Papo desktop app');`), 20000);
  await until("my post counts the share", () => js(`return ${cardOf("Hello from the Papo desktop app", " && !p.querySelector('[data-testid=\"shared-post\"]')")}
    ?.querySelector('[data-testid="share-count"]')?.innerText === '1'`), 20000);
  check(true, "joao's share shows his comment over my post, and my post's share counter is 1");
  await js(`${cardOf("Primeiro post do joao", " && !p.querySelector('[data-testid=\"shared-post\"]')")}.querySelector('[data-testid="share"]').click()`);
  await until("share box", () => find('[data-testid="share-comment"]'));
  await type('[data-testid="share-comment"]', "vale a pena");
  await click('[data-testid="share-confirm"]');
  await until("my share in the feed", () => js(`const p = ${cardOf("vale a pena")};
    return !!p && p.querySelector('[data-testid="shared-post"]').innerText.includes('Primeiro post do joao') && p.getAttribute('data-state') === 'sent';`), 20000);
  const joaosCard = cardOf("Primeiro post do joao", " && !p.querySelector('[data-testid=\"shared-post\"]')");
  await until("joao's post shared by me", () => js(`const b = ${joaosCard}.querySelector('[data-testid="share"]');
    return b.getAttribute('aria-pressed') === 'true' && b.innerText.includes('1');`), 20000);
  check(true, "shared from the app with a comment: my share shows, his post is shared by me (1)");
  await js(`${joaosCard}.querySelector('[data-testid="share"]').click()`);
  await until("un-shared", () => js(`return !${cardOf("vale a pena")} &&
    ${joaosCard}.querySelector('[data-testid="share-count"]').innerText === '0'`), 20000);
  check(true, "un-sharing removes my share and counts down");
  cli("post", "um post que vai sumir");
  await waitText('[data-testid="feed-list"]', "um post que vai sumir");
  const doomed = await serverIdOf("um post que vai sumir");
  await js(`${cardOf("um post que vai sumir")}.querySelector('[data-testid="share"]').click()`);
  await click('[data-testid="share-confirm"]');
  await until("shared the doomed post", () => js(`return !!${cardOf("um post que vai sumir", " && p.querySelector('[data-testid=\"shared-post\"]')")}`), 20000);
  cli("delete-post", String(doomed));
  await until("my share says unavailable", () => js(`return [...document.querySelectorAll('[data-testid="shared-unavailable"]')].length === 1`), 20000);
  check(true, "a share of a deleted post shows it as unavailable");
  await click('[data-testid="nav-notifications"]');
  await waitNotification("@joao shared your post");
  check(true, "joao's share of my post is in my notifications");
  await click('[data-testid="nav-feed"]');
  await screenshot("feed");

  // Profiles: joao's name opens his page (his post, follow, message); following him shows live
  // in his counts and in my own page's "following" list.
  await js(`[...document.querySelectorAll('[data-testid="post"]')].find(p => p.innerText.includes('Primeiro post'))
              .querySelector('[data-testid="user-link"]').click();`);
  await until("joao's profile", () => find('[data-testid="profile"][data-user="joao"]'));
  await waitText('[data-testid="profile-posts"]', "Primeiro post do joao");
  // (His share of my post is his; the post it shows is mine.)
  const authors = await js(`return [...document.querySelectorAll('[data-testid="profile-posts"] [data-testid="post"]')]
    .map((p) => p.querySelector(':scope > header [data-testid="user-link"]').getAttribute('data-user'))`);
  check(authors.length > 0 && authors.every((a) => a === "joao"), `joao's page shows his posts only (${authors.join(", ")})`);
  await waitText('[data-testid="profile-counts"]', "Followers: 0");
  await click('[data-testid="profile-follow"]');
  await waitText('[data-testid="profile-counts"]', "Followers: 1");
  await until("unfollow offered", async () => (await textOf('[data-testid="profile-follow"]'))?.trim() === "Unfollow");
  check(true, "follow from joao's page: his follower count and the button follow the server's event");
  await click('[data-testid="profile-tab-followers"]');
  await waitText('[data-testid="profile-people"]', "@ana");
  await screenshot("profile");
  await click('[data-testid="me"]');
  await until("my own profile", () => find('[data-testid="profile"][data-user="ana"]'));
  await click('[data-testid="profile-tab-following"]');
  await waitText('[data-testid="profile-people"]', "@joao");
  check(true, "my own page lists whom I follow");
  await js(`document.querySelector('[data-testid="profile-people"] [data-testid="user-link"]').click();`);
  await until("back on joao's profile", () => find('[data-testid="profile"][data-user="joao"]'));
  // The header (with Message) draws once the profile is read.
  await until("joao's profile header", () => find('[data-testid="profile-message"]'));
  await click('[data-testid="profile-message"]');
  await until("DM opened from the profile", () => find('[data-testid="conversation"][data-conversation="dm:joao"]'));
  check(true, "a name in a list opens that profile; Message opens the DM");
  cli("follow", "ana", "--wait", "10");
  await click('[data-testid="nav-notifications"]');
  await until("follow notification", () => find('[data-testid="notifications"] [data-kind="follow"]'), 20000);
  await click('[data-testid="notifications"] [data-kind="follow"]');
  await until("the follower's profile", () => find('[data-testid="profile"][data-user="joao"]'));
  await waitText('[data-testid="profile-counts"]', "follows you");
  check(true, "a follow notification opens the follower's profile, which says they follow me");

  // Diagnostics (Settings → Connection diagnostics): the connection as the core sees it, live;
  // what a copy holds has no token and no message text.
  await click('[data-testid="nav-settings"]');
  await click('[data-testid="open-diagnostics"]');
  await until("diagnostics", () => find('[data-testid="diagnostics"]'));
  await waitText('[data-testid="diag-transport"]', "websocket");
  await waitText('[data-testid="diag-state"]', "connected");
  await until("a round trip", async () => /^\d+ ms$/.test((await textOf('[data-testid="diag-rtt"]')) ?? ""), 20000);
  await waitText('[data-testid="diag-recent"]', "log");
  const diagText = await textOf('[data-testid="diag-text"]');
  const diag = JSON.parse(diagText);
  check(diag.cursor.public > 0 && diag.cursor.private > 0 && diag.server_url === URL_,
    `diagnostics: websocket, connected, ${diag.rtt_ms} ms round trip, cursor ${diag.cursor.public}/${diag.cursor.private}`);
  check(!/token|bom dia|tudo bem/i.test(diagText), "the diagnostics text holds no token and no message text");
  await click('[data-testid="diag-copy"]');
  await until("copied", async () => ((await js(`return document.querySelector('.toast')?.innerText ?? ''`)) ?? "").includes("Diagnostics copied"), 5000);
  await screenshot("diagnostics");

  // Stop the server: the banner says retrying; a message written now is pending.
  await click('[data-testid="nav-chat"]');
  await click('[data-testid="conv-public"]');
  await stopServer();
  await until("banner retrying", async () => (await bannerState()) === "retrying", 30000);
  const bannerText = await textOf('[data-testid="banner"]');
  check(/Retrying in \d+ s/.test(bannerText), `banner shows retrying with a countdown ("${bannerText}")`);
  await type('[data-testid="chat-composer"]', "written while offline" + ENTER);
  await until("offline message pending", async () => (await messageState("written while offline")) === "pending");
  check(true, "a message written offline is pending");
  await screenshot("offline-banner");

  // Start the server again: the message is sent, once. Meanwhile ana was made an admin on the
  // server's machine (papo-server grant-admin): the next connection's sync says so.
  execFileSync(SERVER, ["--db", join(tmp, "server.db"), "grant-admin", "ana"], { env: { ...process.env, PAPO_LOG: "warn" } });
  await startServer();
  await click('[data-testid="retry-now"]').catch(() => {});
  await until("reconnected", async () => (await bannerState()) === "connected", 40000);
  await until("offline message sent", async () => (await messageState("written while offline")) === "sent", 30000);
  cli("tail", "--until-live", "--seconds", "10");
  const history = cli("history", "public");
  const copies = history.split("written while offline").length - 1;
  check(copies === 1, `the offline message reached the server exactly once (${copies})`);

  // Admin: the page appears for an admin only, with the server's live figures; a post of
  // joao's is removed from its card; joao is suspended (his CLI is refused) and then let back.
  await until("Admin in the sidebar", () => find('[data-testid="nav-admin"]'), 20000);
  await click('[data-testid="nav-admin"]');
  await until("the /admin connection open", async () => (await attr('[data-testid="admin-state"]', "data-state")) === "open", 20000);
  await waitText('[data-testid="admin-node-count"]', "1");
  await until("live stats count the app's connection", async () => Number(await textOf('[data-testid="admin-connections"]')) >= 1, 10000);
  check(true, "the Admin page shows the live figures of the one node");
  await screenshot("admin");
  cli("post", "spam do joao para moderar");
  await click('[data-testid="nav-feed"]');
  await waitText('[data-testid="feed-list"]', "spam do joao para moderar");
  await js(`${cardOf("spam do joao para moderar")}.querySelector('[data-testid="admin-remove-post"]').click()`);
  await until("the removed post leaves the feed", () => js(`return !${cardOf("spam do joao para moderar")}`), 20000);
  check(true, "an admin removes someone else's post from its card");
  await click('[data-testid="nav-admin"]');
  await until("the /admin connection open again", async () => (await attr('[data-testid="admin-state"]', "data-state")) === "open", 20000);
  await js(`const s = document.querySelector('[data-testid="admin-action"]'); s.value = 'suspend'; s.dispatchEvent(new Event('change'));`);
  await type('[data-testid="admin-target"]', "joao");
  await click('[data-testid="admin-apply"]');
  await waitText(".toast", "Done");
  let refused = "";
  try {
    cli("login", "joao");
  } catch (e) {
    refused = String(e.stdout);
  }
  check(/suspended/.test(refused), `a suspended joao cannot sign in (${refused.trim()})`);
  await js(`const s = document.querySelector('[data-testid="admin-action"]'); s.value = 'unsuspend'; s.dispatchEvent(new Event('change'));`);
  await type('[data-testid="admin-target"]', "joao");
  await click('[data-testid="admin-apply"]');
  await until("lifted", async () => ((await js(`return document.querySelector('.toast')?.innerText ?? ''`)) ?? "").includes("Lift suspension"), 10000);
  cli("login", "joao");
  check(true, "after the suspension is lifted joao signs in again");
  await click('[data-testid="nav-chat"]');

  // Drafts: text typed and not sent stays in its conversation when switching away and back,
  // and (below) across a restart of the app.
  const DRAFT = "rascunho: amanhã às 10?";
  await click('[data-testid="conv-dm:joao"]');
  await type('[data-testid="chat-composer"]', DRAFT);
  await click('[data-testid="conv-public"]');
  await until("public composer empty", async () => (await js(`return document.querySelector('[data-testid="chat-composer"]')?.value`)) === "");
  await click('[data-testid="conv-dm:joao"]');
  await until("draft back in the DM composer", async () => (await js(`return document.querySelector('[data-testid="chat-composer"]')?.value`)) === DRAFT, 10000);
  check(true, "a draft stays in its conversation across switching views");

  // Quit the app, stop the server, start the app: the cache is readable and searchable.
  await click('[data-testid="conv-public"]');
  await closeApp();
  await stopServer();
  await openApp();
  await until("cached app", async () => ["signed_out", "offline", "retrying", "connecting"].includes(await bannerState()), 20000);
  await waitText('[data-testid="feed-list"]', "Primeiro post do joao");
  check(true, "feed readable from the cache with no server");
  await click('[data-testid="nav-chat"]');
  await click('[data-testid="conv-dm:joao"]');
  // It opens at the bottom (nothing unread): the newest DM, not the first, is what shows.
  await waitText('[data-testid="messages"]', "lembra disso?");
  check(true, "DM conversation readable from the cache with no server");
  await until("draft kept across a restart", async () => (await js(`return document.querySelector('[data-testid="chat-composer"]')?.value`)) === DRAFT, 10000);
  check(true, "the DM's draft is still in its composer after a restart");
  await js(`document.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', ctrlKey: true, bubbles: true}));
            window.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', ctrlKey: true}));`);
  await until("search dialog", () => find('[data-testid="search-input"]'));
  await type('[data-testid="search-input"]', "offline");
  await waitText('[data-testid="search-results"]', "written while offline");
  check(true, "search works offline (Ctrl+K)");
  await screenshot("offline-search");
  await js(`document.querySelector('[data-testid="search-results"] [data-testid="user-link"][data-user="ana"]').click();`);
  await until("my profile from a search result", () => find('[data-testid="profile"][data-user="ana"]'));
  check(!(await js(`return !!document.querySelector('[data-testid="search-input"]')`)), "the name in a search result opens the profile and closes the search");
  await click('[data-testid="nav-feed"]');
  await screenshot("offline-cached");

  // Delete my account (Settings, with the password): a wrong password is refused; the right
  // one brings back the sign-in form with the cache erased, and the server signs ana in no more.
  // (This restarted app kept no session: the keyring is off in this scenario. Sign in again.)
  await startServer();
  await click('[data-testid="banner-sign-in"]');
  await until("sign-in form", () => find('[data-testid="username"]'));
  await clear('[data-testid="username"]');
  await clear('[data-testid="password"]');
  await type('[data-testid="username"]', "ana");
  await type('[data-testid="password"]', PASSWORD);
  await click('[data-testid="signin-submit"]');
  await until("signed in again for the deletion", async () => (await bannerState()) === "connected", 40000);
  const cacheHolds = (text) =>
    readdirSync(appData).filter((f) => f.startsWith("cache"))
      .some((f) => readFileSync(join(appData, f)).includes(text));
  check(cacheHolds("backlog 30 of 30"), "before the deletion the app's cache holds ana's DMs");
  await click('[data-testid="nav-settings"]');
  await click('[data-testid="delete-account"] summary');
  await type('[data-testid="delete-password"]', "not the password");
  await click('[data-testid="delete-account-confirm"]');
  await waitText(".toast", "Wrong username or password");
  check(await bannerState() === "connected", "a wrong password deletes nothing: still signed in and connected");
  await type('[data-testid="delete-password"]', PASSWORD);
  await click('[data-testid="delete-account-confirm"]');
  await until("sign-in form after the deletion", () => find('[data-testid="username"]'), 20000);
  const again = await fetch(`${URL_}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "ana", password: PASSWORD }),
  });
  check(again.status === 401, `the deleted account cannot sign in (${again.status})`);
  check(!cacheHolds("backlog 30 of 30"), "the deleted account's DMs are gone from the app's data directory");
}

let failed = false;
try {
  await scenario();
  log("E2E PASSED");
} catch (e) {
  failed = true;
  console.error("E2E FAILED:", e.stack || e);
  if (session) await screenshot("failure").catch(() => {});
  for (const c of children) {
    if (c.output) console.error(`---- ${c.name} output (tail) ----\n${c.output.slice(-3000)}`);
  }
} finally {
  await closeApp().catch(() => {});
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (!process.env.E2E_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
