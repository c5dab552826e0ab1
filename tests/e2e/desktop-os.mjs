// End-to-end test of Papo as a desktop citizen: native notifications (a real notification
// server, dunst, with the Notify calls captured by dbus-monitor), the tray item over D-Bus
// (StatusNotifierItem + com.canonical.dbusmenu), the session in the OS keyring (gnome-keyring's
// Secret Service, checked with secret-tool), single instance and start at login.
//
// Run by scripts/e2e-desktop-os.sh inside Xvfb and a private session bus WITHOUT service
// activation (only what this script starts answers on it). HOME is a scratch directory.
// Env: PAPO_APP_BIN, PAPO_SERVER_BIN, PAPO_CLI_BIN (required).
import { spawn, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, statSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { need, logger, freePort, sleep, until, starter, webdriver } from "./lib.mjs";

const APP = need("PAPO_APP_BIN");
const SERVER = need("PAPO_SERVER_BIN");
const CLI = need("PAPO_CLI_BIN");
const HOME = need("HOME");
const PORT = await freePort();
const WD_PORT = await freePort();
const URL_ = `http://127.0.0.1:${PORT}`;
const tmp = mkdtempSync(join(tmpdir(), "papo-e2e-os-"));
const appData = join(tmp, "app");
const joaoCache = join(tmp, "joao");
const PASSWORD = "correct horse 1";
const SERVICE = "app.papo.desktop";
const children = [];
let session = null;
let dunst = null;
const t0 = Date.now();

const log = logger("e2e-os", t0);
const start = starter(children, "pipe");

async function stop(child) {
  if (child.exitCode !== null || child.signalCode) return;
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null || child.signalCode ? r() : child.on("exit", r)));
}

function check(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
  log("ok:", message);
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", timeout: 30000, stdio: ["ignore", "pipe", "pipe"], ...opts });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(" ")}: status ${e.status} ${e.signal ?? ""} ${String(e.stdout ?? "").slice(-300)} ${String(e.stderr || e.message).trim().slice(0, 400)}`);
  }
}
// papo-cli exits 3 when its action is still queued after --wait: that is a failure here. (It
// used to happen now and then — a first request sent before the server's connect handler had
// registered its event handlers was dropped; the client core now waits for the server's first
// `sync`, see `Pump::ready` in crates/client/src/supervisor.rs.)
const cli = (...args) =>
  run(CLI, ["--server", URL_, "--cache", joaoCache, ...args], {
    env: { ...process.env, PAPO_PASSWORD: PASSWORD, RUST_LOG: "warn" },
  });
/** joao's copy of his DM to ana with this text (its server id, to edit or delete it). */
function joaoDm(text) {
  cli("tail", "--until-live", "--seconds", "10");
  const rows = cli("history", "dm:ana", "--limit", "200").trim().split("\n").map((l) => JSON.parse(l));
  const row = rows.find((r) => r.text === text);
  if (!row || row.server_id === null) throw new Error(`joao's cache has no sent DM "${text}"`);
  return row;
}

// ------------------------------------------------------------------ D-Bus helpers

function gdbus(...args) {
  return run("gdbus", ["call", "--session", "--timeout", "5", ...args]);
}
function hasOwner(name) {
  return gdbus("--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus", "--method",
    "org.freedesktop.DBus.NameHasOwner", name).includes("true");
}

/** Every Notify call captured so far: {appName, replacesId, summary, body, actions}. */
let monitor = null;
function notifies() {
  const calls = [];
  const blocks = monitor.output.split(/\n(?=method call )/);
  for (const b of blocks) {
    if (!b.startsWith("method call ") || !b.includes("member=Notify")) continue;
    const strings = [...b.matchAll(/^\s*string "((?:[^"\\]|\\.)*)"/gm)].map((m) => m[1]);
    const replaces = /^\s*uint32 (\d+)/m.exec(b);
    // strings: app_name, icon, summary, body, then the actions array, then hint keys/values.
    const actionsBlock = /array \[\n((?:\s*string "[^"]*"\n)*)\s*\]/m.exec(b);
    const actions = actionsBlock ? [...actionsBlock[1].matchAll(/string "([^"]*)"/g)].map((m) => m[1]) : [];
    calls.push({ appName: strings[0], replacesId: Number(replaces?.[1]), summary: strings[2], body: strings[3], actions });
  }
  return calls;
}
async function nextNotify(after, what) {
  return until(`Notify: ${what}`, () => notifies().length > after && notifies()[after], 20000);
}

/** The tray item: {dest, path} of the StatusNotifierItem the app exported. */
const TRAY_PATH = "/org/ayatana/NotificationItem/tray_icon_tray_app_main";
function trayProp(t, prop) {
  return gdbus("--dest", t.dest, "--object-path", t.path, "--method", "org.freedesktop.DBus.Properties.Get",
    "org.kde.StatusNotifierItem", prop);
}
async function findTray() {
  return until("tray item on the bus", () => {
    const names = gdbus("--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus", "--method",
      "org.freedesktop.DBus.ListNames").match(/'[^']+'/g).map((s) => s.slice(1, -1));
    // Only the app's own connections (asking others could block on a busy peer).
    const mine = names.filter((n) => {
      try {
        return n.startsWith(":") && readFileSync(`/proc/${pidOf(n)}/comm`, "utf8").trim() === "papo";
      } catch {
        return false;
      }
    });
    // The GTK process's own (first) connection exports the item; zbus connections (notifier,
    // keyring) do not answer unknown calls at all, so try in connection order, briefly.
    mine.sort((a, b) => Number(a.split(".")[1]) - Number(b.split(".")[1]));
    for (const dest of mine) {
      try {
        run("gdbus", ["call", "--session", "--timeout", "1", "--dest", dest, "--object-path", TRAY_PATH,
          "--method", "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierItem", "Id"]);
        return { dest, path: TRAY_PATH };
      } catch {}
    }
    return null;
  }, 20000, 500);
}
const trayLabel = (t) => /<'([^']*)'>/.exec(trayProp(t, "XAyatanaLabel"))?.[1] ?? "";
const trayIconName = (t) => /<'([^']*)'>/.exec(trayProp(t, "IconName"))?.[1] ?? "";
function trayMenu(t) {
  const menuPath = /objectpath '([^']+)'/.exec(trayProp(t, "Menu"))[1];
  const layout = gdbus("--dest", t.dest, "--object-path", menuPath, "--method", "com.canonical.dbusmenu.GetLayout", "--", "0", "-1", "@as []");
  const items = {};
  for (const m of layout.matchAll(/\((\d+), \{([^}]*)\}/g)) {
    const label = /'label': <'([^']*)'>/.exec(m[2]);
    if (label) items[label[1].replace(/_/g, "")] = Number(m[1]);
  }
  return { menuPath, items };
}
function trayClick(t, label) {
  const { menuPath, items } = trayMenu(t);
  if (!(label in items)) throw new Error(`no tray item "${label}" in ${JSON.stringify(items)}`);
  gdbus("--dest", t.dest, "--object-path", menuPath, "--method", "com.canonical.dbusmenu.Event",
    "--", String(items[label]), "clicked", "<0>", "0");
  log("tray: clicked", label);
}
function pidOf(dest) {
  const out = gdbus("--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus", "--method",
    "org.freedesktop.DBus.GetConnectionUnixProcessID", dest);
  return Number(/uint32 (\d+)/.exec(out)[1]);
}
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// ------------------------------------------------------------------ keyring helpers

const secretLookup = () => spawnSync("secret-tool", ["lookup", "service", SERVICE, "username", URL_], { encoding: "utf8" });
const secretItems = () =>
  spawnSync("secret-tool", ["search", "--all", "service", SERVICE], { encoding: "utf8" }).stdout +
  spawnSync("secret-tool", ["search", "--all", "service", SERVICE], { encoding: "utf8" }).stderr;

// ------------------------------------------------------------------ WebDriver over HTTP

let wdp = null; // the current WebKitWebDriver; the app's output goes to its output
const webDriverUp = () => fetch(`http://127.0.0.1:${WD_PORT}/status`).then((r) => r.ok, () => false);
async function startWebDriver() {
  wdp = start("WebKitWebDriver", [`--port=${WD_PORT}`, "--host=127.0.0.1"],
    { TAURI_WEBVIEW_AUTOMATION: "true", RUST_LOG: "info,papo_client=debug,papo_app=debug" }, "WebKitWebDriver");
  await until("WebKitWebDriver", webDriverUp, 10000);
}
async function openApp() {
  // WebKitWebDriver may exit when the app it drives quits on its own (tray Quit): start another.
  if (!(await webDriverUp())) {
    log("WebKitWebDriver is gone; starting a new one");
    await startWebDriver();
  }
  const caps = { capabilities: { alwaysMatch: { "webkitgtk:browserOptions": { binary: APP, args: ["--data-dir", appData, "--server", URL_] } } } };
  session = (await wd("POST", "/session", caps)).sessionId;
  log("app session", session);
}
async function closeApp() {
  if (!session) return;
  await wd("DELETE", `/session/${session}`).catch((e) => log("close:", e.message));
  session = null;
  await sleep(500);
}
const { wd, js, find, click, type, textOf, attr, ENTER } = webdriver(WD_PORT, () => session);
const exists = (css) => js(`return !!document.querySelector(arguments[0]);`, css);
const waitText = (css, text, timeout = 20000) =>
  until(`"${text}" in ${css}`, async () => ((await textOf(css)) ?? "").includes(text), timeout);
const connected = () => until("connected", async () => (await attr('[data-testid="banner"]', "data-state")) === "connected", 30000);

// ------------------------------------------------------------------ the scenario

async function scenario() {
  // The desktop's services: a notification server, the capture, the Secret Service.
  writeFileSync(join(tmp, "dunstrc"), "[global]\n  follow = none\n[urgency_low]\n  timeout = 0\n[urgency_normal]\n  timeout = 0\n[urgency_critical]\n  timeout = 0\n");
  monitor = start("dbus-monitor", ["--session", "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"], {}, "dbus-monitor");
  dunst = start("dunst", ["-config", join(tmp, "dunstrc")], {}, "dunst");
  const keyringd = start("gnome-keyring-daemon", ["--foreground", "--unlock", "--components=secrets"], {}, "gnome-keyring-daemon");
  keyringd.stdin.end("keyring-pw");
  await until("dunst and the Secret Service on the bus", () => hasOwner("org.freedesktop.Notifications") && hasOwner("org.freedesktop.secrets"), 15000, 300);
  log("dunst and gnome-keyring up");

  start(SERVER, ["--bind", `127.0.0.1:${PORT}`, "--db", join(tmp, "server.db")], { RUST_LOG: "warn" }, "papo-server");
  await until("server", async () => (await fetch(`${URL_}/healthz`)).ok);
  cli("register", "joao");
  await startWebDriver();
  await openApp();

  // ---- keyring: sign in → the session is in the Secret Service
  await until("sign-in form", () => find('[data-testid="username"]'));
  check(!(await exists('[data-testid="keyring-notice"]')), "a keyring is available: no session-only notice");
  await type('[data-testid="username"]', "ana");
  await type('[data-testid="password"]', PASSWORD);
  await click('[data-testid="signin-toggle"]');
  await click('[data-testid="signin-submit"]');
  await connected();
  const secret1 = await until("session in the keyring", () => secretLookup().stdout.trim());
  const tokens = new Set();
  const grab = (s) => {
    const j = JSON.parse(s);
    tokens.add(j.access_token);
    tokens.add(j.refresh_token);
    return j;
  };
  check(grab(secret1).username === "ana", "signed in: the session (both tokens) is in the Secret Service");
  check(secretItems().includes(`username = ${URL_}`), "secret-tool finds the entry under service app.papo.desktop");
  await click('[data-testid="nav-settings"]');
  await until("keyring status", async () => (await attr('[data-testid="keyring-status"]', "data-backend")) === "secret-service");
  check((await attr('[data-testid="native-status"]', "data-available")) === "true", "settings: native notifications available (dunst)");
  const tray = await findTray();
  const appPid = pidOf(tray.dest);
  log("tray item at", tray.dest, "pid", appPid);

  // ---- notifications: like, follow, DM from joao
  await click('[data-testid="nav-feed"]');
  await type('[data-testid="post-composer"]', "ana's first post" + ENTER);
  const postId = await until("joao sees ana's post", () => {
    const found = [];
    const walk = (v) => {
      if (!v || typeof v !== "object") return;
      if (v.type === "post.created" && v.data?.text === "ana's first post") found.push(v.data.id);
      Object.values(v).forEach(walk);
    };
    for (const l of cli("tail", "--until-live", "--seconds", "10").split("\n").filter(Boolean)) {
      try {
        walk(JSON.parse(l));
      } catch {}
    }
    return found[0] ?? null;
  }, 30000, 1000);
  log("ana's post is", postId);
  let n = notifies().length;
  cli("like", String(postId));
  let note = await nextNotify(n, "like");
  check(note.summary === "joao liked your post", `like → "${note.summary}" / "${note.body}"`);
  check(JSON.stringify(note.actions) === JSON.stringify(["default", "Open"]) && note.appName === "Papo", "actions [default, Open], app Papo");
  n = notifies().length;
  cli("follow", "ana");
  note = await nextNotify(n, "follow");
  check(note.summary === "joao followed you", `follow → "${note.summary}"`);
  n = notifies().length;
  cli("dm", "ana", "oi ana, tudo bem?");
  note = await nextNotify(n, "dm");
  check(note.summary === "joao" && note.body === "oi ana, tudo bem?", `DM → "${note.summary}" / "${note.body}"`);

  // ---- titles in the app's language: Portuguese chosen in Settings, then back to the system's
  const setLanguage = async (value) => {
    await click('[data-testid="nav-settings"]');
    await until("language select", () => find('[data-testid="language"]'));
    await js(`const s = document.querySelector('[data-testid="language"]');
      s.value = arguments[0]; s.dispatchEvent(new Event('change', { bubbles: true }));`, value);
  };
  await setLanguage("pt_br");
  await waitText('[data-testid="nav-notifications"]', "Notificações");
  cli("unfollow", "ana");
  await sleep(300);
  n = notifies().length;
  cli("follow", "ana");
  note = await nextNotify(n, "follow in Portuguese");
  // (The follow notification still shown is replaced, counting: "… (2)".)
  check(note.summary.startsWith("joao começou a seguir você"), `pt-BR: follow → "${note.summary}"`);
  await setLanguage("system");
  await click('[data-testid="nav-feed"]');

  // ---- none for my own actions, none for the conversation on screen
  cli("post", "post do joao");
  await waitText('[data-testid="feed-list"]', "post do joao");
  n = notifies().length;
  await js(`const p = [...document.querySelectorAll('[data-testid="post"]')].find(p => p.innerText.includes('post do joao'));
            p.querySelector('[data-testid="like"]').click();`);
  await type('[data-testid="post-composer"]', "/msg joao from ana" + ENTER);
  await click('[data-testid="nav-chat"]');
  await click('[data-testid="conv-dm:joao"]');
  await waitText('[data-testid="messages"]', "from ana");
  cli("dm", "ana", "seen on screen");
  await waitText('[data-testid="messages"]', "seen on screen");
  await sleep(1500);
  await click('[data-testid="nav-feed"]');
  cli("dm", "ana", "after leaving");
  note = await nextNotify(n, "sentinel");
  check(notifies().length === n + 1 && note.body === "after leaving",
    `my like, my DM and the DM on screen raised none; the next DM did (${JSON.stringify(notifies().slice(n).map((x) => x.body))})`);

  // ---- a burst of 20 DMs is one notification, replaced in place
  run("dunstctl", ["close-all"]);
  await sleep(800);
  n = notifies().length;
  for (let i = 1; i <= 20; i++) cli("dm", "ana", `burst ${i}`, "--wait", "10");
  await until("20 Notify calls", () => notifies().length >= n + 20, 30000);
  const burst = notifies().slice(n);
  const ids = new Set(burst.slice(1).map((b) => b.replacesId));
  check(burst.length === 20 && burst[0].replacesId === 0 && ids.size === 1 && !ids.has(0),
    `20 DMs: the first is new, the 19 others replace it (replaces_id ${[...ids]})`);
  check(burst[19].summary === "joao (20)" && burst[19].body === "burst 20", `the last says "${burst[19].summary}" / "${burst[19].body}"`);
  check(run("dunstctl", ["count", "displayed"]).trim() === "1", "dunst displays exactly one notification");

  // ---- joao deletes his last DM of the burst: the notification is shown again without it
  const burstId = [...ids][0];
  n = notifies().length;
  cli("delete-message", String(joaoDm("burst 20").server_id), "--wait", "10");
  note = await nextNotify(n, "the burst without the deleted DM");
  check(note.replacesId === burstId && note.summary === "joao (19)" && note.body === "burst 19",
    `a deleted DM leaves the burst's notification without it ("${note.summary}" / "${note.body}", replaces ${note.replacesId})`);
  check(run("dunstctl", ["count", "displayed"]).trim() === "1", "still one notification displayed");

  // ---- tray: unread count and icon variant
  const badge = await until("chat badge", () => textOf('[data-testid="nav-chat"] .badge'));
  await until("tray label = unread count", () => trayLabel(tray) === badge.trim(), 10000);
  check(Number(trayLabel(tray)) > 0, `tray label shows the unread count (${trayLabel(tray)})`);
  const unreadIcon = trayIconName(tray);

  // ---- clicking the notification opens its conversation
  run("dunstctl", ["action", "0"]);
  await until("DM conversation opened", () => exists('[data-testid="conversation"][data-conversation="dm:joao"]'), 10000);
  check(true, "invoking the notification's default action opened the conversation dm:joao");
  await until("tray count cleared", () => trayLabel(tray) === "", 15000);
  check(trayIconName(tray) !== unreadIcon, "read: the tray label is empty and the icon changed back");

  // ---- tray menu: do-not-disturb
  await click('[data-testid="nav-feed"]');
  trayClick(tray, "Do not disturb");
  await click('[data-testid="nav-settings"]');
  await until("DND checked in settings", () => js(`return document.querySelector('[data-testid="dnd"]').checked`));
  n = notifies().length;
  cli("dm", "ana", "during dnd");
  await click('[data-testid="nav-chat"]');
  await until("DM arrives", () => exists('[data-testid="conv-dm:joao"]'));
  await click('[data-testid="nav-feed"]');
  trayClick(tray, "Do not disturb");
  await sleep(500);
  // Nothing else on screen: the withdrawal check below counts what dunst displays.
  run("dunstctl", ["close-all"]);
  cli("dm", "ana", "after dnd");
  note = await nextNotify(n, "after dnd");
  check(notifies().length === n + 1 && note.body === "after dnd", "tray do-not-disturb on: no notification; off: notifications again");

  // ---- a DM deleted by its sender takes its notification with it (dunst never expires them here)
  await until("the 'after dnd' notification displayed", () => run("dunstctl", ["count", "displayed"]).trim() === "1", 10000);
  cli("delete-message", String(joaoDm("after dnd").server_id), "--wait", "10");
  await until("the deleted DM's notification closed", () => run("dunstctl", ["count", "displayed"]).trim() === "0", 15000);
  check(true, "a DM joao deleted: its notification was withdrawn (CloseNotification)");

  // ---- quiet hours: a daily window in local time silences notifications and the tray says so
  const hhmm = (m) => `${String(Math.floor(((m % 1440) + 1440) % 1440 / 60)).padStart(2, "0")}:${String(((m % 1440) + 1440) % 1440 % 60).padStart(2, "0")}`;
  const nowMinute = await js("const d = new Date(); return d.getHours() * 60 + d.getMinutes();");
  const setTime = (id, v) => js(`const i = document.querySelector('[data-testid="${id}"]'); i.value = arguments[0]; i.dispatchEvent(new Event("change", { bubbles: true }));`, v);
  await click('[data-testid="nav-settings"]');
  await click('[data-testid="quiet-hours"]');
  await until("quiet-hours inputs", () => exists('[data-testid="quiet-end"]'));
  // The window holds now (started a minute ago, ends in two hours).
  await setTime("quiet-end", hhmm(nowMinute + 120));
  await sleep(300);
  await setTime("quiet-start", hhmm(nowMinute - 1));
  const quietLabel = `Do not disturb (quiet hours until ${hhmm(nowMinute + 120)})`;
  await until("tray says quiet hours", () => quietLabel in trayMenu(tray).items, 10000);
  n = notifies().length;
  cli("dm", "ana", "during quiet hours");
  await click('[data-testid="nav-chat"]');
  await waitText('[data-testid="conv-dm:joao"]', "during quiet hours");
  // The window moved past now: the label is plain again and notifications come back.
  await click('[data-testid="nav-settings"]');
  await setTime("quiet-start", hhmm(nowMinute + 180));
  await setTime("quiet-end", hhmm(nowMinute + 240));
  await until("tray quiet label gone", () => "Do not disturb" in trayMenu(tray).items, 10000);
  await click('[data-testid="nav-feed"]');
  cli("dm", "ana", "after quiet hours");
  note = await nextNotify(n, "after quiet hours");
  check(notifies().length === n + 1 && note.body === "after quiet hours",
    "quiet hours holding now: no notification and the tray item says until when; outside them: notifications again");
  await click('[data-testid="nav-settings"]');
  await click('[data-testid="quiet-hours"]');

  // ---- single instance: a second launch hands over and exits
  const second = spawnSync(APP, ["--data-dir", appData, "--server", URL_], { encoding: "utf8", timeout: 20000 });
  check(second.status === 0, `a second launch exits at once (status ${second.status})`);
  await until("focus request logged", () => wdp.output.includes("another instance was started"), 5000);
  check(alive(appPid), "the first instance keeps running and was asked to focus");

  // ---- start at login
  await click('[data-testid="nav-settings"]');
  await click('[data-testid="autostart"]');
  const autostartDir = join(HOME, ".config", "autostart");
  const entry = await until("autostart entry", () => existsSync(autostartDir) && readdirSync(autostartDir).find((f) => f.endsWith(".desktop")));
  check(readFileSync(join(autostartDir, entry), "utf8").includes("--minimized"), `start at login: ${entry} runs Papo --minimized`);
  await click('[data-testid="autostart"]');
  await until("autostart entry removed", () => !existsSync(join(autostartDir, entry)));
  check(true, "start at login off: the entry is gone");

  // ---- tray Quit, start again: signed in from the keyring, no password
  trayClick(tray, "Quit");
  await until("app exited", () => !alive(appPid), 15000);
  check(true, "tray Quit ends the app");
  await closeApp();
  await openApp();
  await connected();
  check((await textOf('[data-testid="me"]')) === "@ana" && !(await exists('[data-testid="password"]')), "started again: signed in as ana without a password");
  const tray2 = await findTray();
  const secret2 = secretLookup().stdout.trim();
  if (secret2) grab(secret2);

  // ---- tray Sign out: the keyring entry is gone, and so is the cache
  const dmLeft = [];
  const scan = (dir) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) scan(p);
      else if (readFileSync(p).includes("oi ana, tudo bem?")) dmLeft.push(p);
    }
  };
  scan(appData);
  check(dmLeft.length > 0, `before sign-out joao's DM is in the cache (${dmLeft.join(", ")})`);
  trayClick(tray2, "Sign out");
  await until("sign-in form after tray sign out", () => exists('[data-testid="password"]'), 15000);
  await until("keyring entry deleted", () => secretLookup().stdout.trim() === "" && !secretItems().includes(URL_), 10000);
  check(true, "tray Sign out: back to the sign-in form, the keyring entry is deleted");
  // Sign-out erases the cache: joao's DMs to ana are in no file of the data directory.
  await until("the cache to be erased", () => (dmLeft.length = 0, scan(appData), dmLeft.length === 0), 10000);
  check(dmLeft.length === 0, `tray Sign out: the DMs are gone from the data directory (${dmLeft.join(", ")})`);

  // ---- the tokens are nowhere in the data directory or the logs
  const leaks = [];
  const walk = (dir) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const bytes = readFileSync(p);
        for (const t of tokens) if (bytes.includes(t)) leaks.push(p);
      }
    }
  };
  walk(appData);
  const appLogs = children.filter((c) => c.name === "WebKitWebDriver").map((c) => c.output).join("\n");
  for (const t of tokens) if (appLogs.includes(t)) leaks.push("app log");
  check(tokens.size >= 2 && leaks.length === 0, `${tokens.size} tokens: in neither the data directory nor the logs (${leaks.join(", ")})`);

  // ---- no notification server: the app keeps working and says so
  await type('[data-testid="password"]', PASSWORD);
  await click('[data-testid="signin-submit"]');
  await connected();
  await stop(dunst);
  await until("notification server gone", () => !hasOwner("org.freedesktop.Notifications"), 5000);
  cli("dm", "ana", "nobody shows this");
  await click('[data-testid="nav-chat"]');
  await click('[data-testid="conv-dm:joao"]');
  await waitText('[data-testid="messages"]', "nobody shows this");
  await click('[data-testid="nav-settings"]');
  await until("settings say no notification server", async () => (await attr('[data-testid="native-status"]', "data-available")) === "false", 10000);
  check((await textOf('[data-testid="native-status"]')).includes("No notification server"), "no notification server: the DM still arrives, Settings says so");
}

let failed = false;
try {
  await scenario();
  log("E2E DESKTOP-OS PASSED");
} catch (e) {
  failed = true;
  console.error("E2E DESKTOP-OS FAILED:", e.stack || e);
  for (const c of children) if (c.output && c.name !== "dbus-monitor") console.error(`---- ${c.name} (tail) ----\n${c.output.slice(-4000)}`);
  if (monitor) console.error(`---- Notify calls ----\n${JSON.stringify(notifies(), null, 1).slice(-3000)}`);
} finally {
  await closeApp().catch(() => {});
  for (const c of children.reverse()) if (c.exitCode === null && !c.signalCode) c.kill("SIGKILL");
  if (!process.env.E2E_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
