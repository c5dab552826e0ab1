// What both desktop end-to-end scripts share: environment, ports, waiting, child processes,
// and a small W3C WebDriver client over plain HTTP (WebKitWebDriver drives the real app).
import { spawn } from "node:child_process";
import net from "node:net";

export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

/** A log function that prefixes the seconds since `t0`. */
export function logger(tag, t0 = Date.now()) {
  return (...a) => console.log(`[${tag} +${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; throws with the last value after the timeout. */
export async function until(what, fn, timeoutMs = 20000, everyMs = 200) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for: ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** A `start(cmd, args, env, name)` that records output and remembers the child in `children`. */
export function starter(children, stdin = "ignore") {
  return function start(cmd, args, env = {}, name = cmd) {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: [stdin, "pipe", "pipe"] });
    child.output = "";
    child.stdout.on("data", (d) => (child.output += d));
    child.stderr.on("data", (d) => (child.output += d));
    child.name = name;
    children.push(child);
    return child;
  };
}

/** WebDriver commands against the server on `port`, for the session `session()` returns. */
export function webdriver(port, session) {
  const base = `http://127.0.0.1:${port}`;
  async function wd(method, path, body) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json.value ?? json).slice(0, 300)}`);
    return json.value;
  }
  const S = () => `/session/${session()}`;
  const js = (script, ...args) => wd("POST", `${S()}/execute/sync`, { script, args });
  const find = async (css) => Object.values(await wd("POST", `${S()}/element`, { using: "css selector", value: css }))[0];
  return {
    wd,
    js,
    find,
    click: async (css) => wd("POST", `${S()}/element/${await find(css)}/click`, {}),
    type: async (css, text) => wd("POST", `${S()}/element/${await find(css)}/value`, { text }),
    clear: async (css) => wd("POST", `${S()}/element/${await find(css)}/clear`, {}),
    textOf: (css) => js(`const e = document.querySelector(arguments[0]); return e ? e.innerText : null;`, css),
    attr: (css, name) => js(`const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;`, css, name),
    ENTER: "\uE007",
  };
}
