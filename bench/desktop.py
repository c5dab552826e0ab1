#!/usr/bin/env python3
"""The desktop benchmark's driver (run by bench/desktop.sh inside Xvfb and a session bus).

Measures the release app and writes one JSON file (bench/results/desktop.json by default):
  cold_start  exec -> first feed page rendered, offline, per cache size (N runs each)
  idle        PSS of every process of the app (papo + WebKit's), 100k cached, idle
  knobs       the same idle PSS with each WebKit/JSC knob on and off
  inspect     what holds the web process's memory: smaps grouped by mapping, DOM nodes,
              images, JS heap (JSC's GC log), and what the page can observe
  live        signed in to a real papo-server, public chat on screen, RATE messages/s for
              LOAD_SECONDS: send -> DOM latency (in-page MutationObserver), main-thread stalls
  soak        the same load for SOAK_SECONDS with PSS (and DOM size) sampled every 10 s

Inputs come from the environment (bench/desktop.sh sets them): PAPO_APP_BIN, PAPO_SERVER_BIN,
SEEDED (space-separated "messages=dir" pairs), RUNS, RATE, LOAD_SECONDS, SOAK_SECONDS,
SAMPLE_SECONDS, KNOBS (1/0), OUT, META (a JSON file with machine, git rev, versions).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.environ["PAPO_APP_BIN"]
SERVER = os.environ.get("PAPO_SERVER_BIN", "")
RUNS = int(os.environ.get("RUNS", "7"))
RATE = float(os.environ.get("RATE", "200"))
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE_SECONDS = float(os.environ.get("SAMPLE_SECONDS", "10"))
KNOBS = os.environ.get("KNOBS", "1") == "1"
OUT = os.environ.get("OUT", os.path.join(HERE, "results", "desktop.json"))
SEEDED = dict(
    (int(k), v) for k, v in (p.split("=", 1) for p in os.environ.get("SEEDED", "").split())
)
BASE_ENV = dict(
    os.environ,
    PAPO_KEYRING="none",
    PAPO_NOTIFICATIONS="log",
    RUST_LOG="warn",
)
for k in ("PAPO_EXIT_AFTER_FEED", "WEBKIT_DISABLE_COMPOSITING_MODE", "WEBKIT_DISABLE_DMABUF_RENDERER",
          "JSC_useJIT", "WEBKIT_SKIA_ENABLE_CPU_RENDERING", "PAPO_WEBKIT_DEFAULTS", "PAPO_WEBKIT_ACCEL", "PAPO_WEBKIT_CACHE"):
    BASE_ENV.pop(k, None)


def log(*a):
    print("[desktop-bench]", *a, flush=True)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary(xs):
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "min": min(xs),
        "p50": statistics.median(xs),
        "p99": pct(xs, 99),
        "max": max(xs),
    }


# ------------------------------------------------------------------ processes and memory

def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def kind(name):
    if name.startswith("WebKitWebProc"):
        return "web"
    if name.startswith("WebKitNetwork"):
        return "network"
    if name.startswith("WebKitGPU"):
        return "gpu"
    if name == "papo":
        return "app"
    return "other"


def memory(root):
    """PSS of `root` and every process below it, in KiB, by process kind and in total."""
    procs = []
    for pid in descendants(root):
        name = comm(pid)
        procs.append({"pid": pid, "name": name, "kind": kind(name), "pss_kib": pss_kib(pid)})
    by_kind = {}
    for p in procs:
        by_kind[p["kind"]] = by_kind.get(p["kind"], 0) + p["pss_kib"]
    return {"total_kib": sum(p["pss_kib"] for p in procs), "by_kind_kib": by_kind, "processes": procs}


def smaps_groups(pid):
    """Per-mapping PSS of one process grouped by what the mapping is (KiB)."""
    groups = {}
    cur = None
    big_anon = []
    try:
        lines = open(f"/proc/{pid}/smaps").read().splitlines()
    except OSError:
        return {}
    for line in lines:
        parts = line.split(None, 5)
        if parts and re.match(r"^[0-9a-f]+-[0-9a-f]+$", parts[0]):
            path = parts[5] if len(parts) > 5 else ""
            cur = {"path": path, "perms": parts[1], "range": parts[0]}
            continue
        if cur is not None and line.startswith("Pss:"):
            kib = int(line.split()[1])
            g = group_of(cur["path"], cur["perms"])
            groups[g] = groups.get(g, 0) + kib
            if g == "anonymous" and kib >= 4096:
                lo, hi = (int(x, 16) for x in cur["range"].split("-"))
                big_anon.append({"size_kib": (hi - lo) // 1024, "pss_kib": kib, "perms": cur["perms"]})
    groups = dict(sorted(groups.items(), key=lambda kv: -kv[1]))
    return {"groups_kib": groups, "big_anonymous": sorted(big_anon, key=lambda m: -m["pss_kib"])[:12]}


def group_of(path, perms):
    p = path.lower()
    if "libwebkit" in p or "libjavascriptcore" in p:
        return "libwebkit2gtk + libjavascriptcoregtk (code, data)"
    if ("/dri/" in p or "libgallium" in p or "libllvm" in p or "/dev/dri" in p or "mesa" in p
            or "libgl" in p or "libegl" in p or "libgbm" in p or "libepoxy" in p or "libvulkan" in p):
        return "Mesa / LLVM / GL (software rendering)"
    if ".so" in p:
        return "other shared libraries"
    if p == "[heap]":
        return "[heap] (malloc arena of the main thread)"
    if p.startswith("[stack"):
        return "[stack]"
    if "memfd:" in p or p.startswith("/dev/shm") or "sysv" in p:
        return "shared memory (memfd/shm: graphics and IPC buffers)"
    if p.startswith("[anon:"):
        return f"named anonymous {path}"
    if p == "":
        return "anonymous"
    if p.startswith("["):
        return f"other {path}"
    if "/fonts/" in p or p.endswith((".ttf", ".otf", ".pcf.gz")):
        return "font files"
    return "other files (ICU data, caches, locale)"


def wait_feed(p, timeout=60):
    """Reads the app's stdout until the feed-rendered line; returns (ms in-process, marks)."""
    end = time.time() + timeout
    for line in p.stdout:
        if line.startswith("PAPO_FEED_RENDERED_MS="):
            parts = line.split()
            return float(parts[0].split("=")[1]), " ".join(parts[1:])
        if time.time() > end:
            break
    raise RuntimeError("the app exited (or timed out) without rendering the feed")


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ (a) cold start

def cold_start(size, data):
    env = dict(BASE_ENV, PAPO_EXIT_AFTER_FEED="1", PAPO_SERVER="http://127.0.0.1:9", PAPO_DATA_DIR=data)
    walls, inner = [], []
    for i in range(RUNS):
        t0 = time.perf_counter()
        p = subprocess.Popen([APP], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ms, marks = wait_feed(p)
        wall = (time.perf_counter() - t0) * 1000
        p.wait(timeout=30)
        walls.append(round(wall, 1))
        inner.append(ms)
        log(f"cold start {size}: run {i + 1}: {wall:.0f} ms (in-process {ms:.0f} ms; {marks})")
    return {"messages": size, "runs_ms": walls, "in_process_ms": inner, **summary(walls)}


# ------------------------------------------------------------------ (b) idle memory, knobs

def idle_memory(data, extra_env=None, settle=8):
    env = dict(BASE_ENV, PAPO_SERVER="http://127.0.0.1:9", PAPO_DATA_DIR=data, **(extra_env or {}))
    p = subprocess.Popen([APP], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_feed(p)
        time.sleep(settle)
        samples = []
        for _ in range(3):
            samples.append(memory(p.pid))
            time.sleep(1)
        m = samples[-1]
        m["web_smaps"] = next((smaps_groups(x["pid"]) for x in m["processes"] if x["kind"] == "web"), {})
        m["app_smaps"] = smaps_groups(p.pid)
        return m
    finally:
        stop(p)


KNOB_SET = [
    ("as shipped (the app's defaults)", {}),
    ("no defaults (PAPO_WEBKIT_DEFAULTS=0: WebKit's own settings)", {"PAPO_WEBKIT_DEFAULTS": "0"}),
    ("WEBKIT_DISABLE_COMPOSITING_MODE=1", {"PAPO_WEBKIT_DEFAULTS": "0", "WEBKIT_DISABLE_COMPOSITING_MODE": "1"}),
    ("hardware acceleration policy never", {"PAPO_WEBKIT_DEFAULTS": "0", "PAPO_WEBKIT_ACCEL": "never"}),
    ("WEBKIT_DISABLE_DMABUF_RENDERER=1", {"PAPO_WEBKIT_DEFAULTS": "0", "WEBKIT_DISABLE_DMABUF_RENDERER": "1"}),
    ("cache model document viewer", {"PAPO_WEBKIT_DEFAULTS": "0", "PAPO_WEBKIT_CACHE": "viewer"}),
    ("JSC_useJIT=0 (JavaScript interpreter only)", {"PAPO_WEBKIT_DEFAULTS": "0", "JSC_useJIT": "0"}),
    ("WEBKIT_SKIA_ENABLE_CPU_RENDERING=1", {"PAPO_WEBKIT_DEFAULTS": "0", "WEBKIT_SKIA_ENABLE_CPU_RENDERING": "1"}),
    # Do they add up with what the app sets?
    ("as shipped + WEBKIT_DISABLE_COMPOSITING_MODE=1", {"WEBKIT_DISABLE_COMPOSITING_MODE": "1"}),
    ("as shipped + JSC_useJIT=0", {"JSC_useJIT": "0"}),
]


def knobs(data):
    out = []
    for name, env in KNOB_SET:
        m = idle_memory(data, env)
        row = {"knob": name, "env": env, "total_kib": m["total_kib"], "by_kind_kib": m["by_kind_kib"],
               "web_groups_kib": m["web_smaps"].get("groups_kib", {})}
        out.append(row)
        log(f"knob {name}: total {m['total_kib'] / 1024:.0f} MiB {({k: round(v / 1024) for k, v in m['by_kind_kib'].items()})}")
    return out


# ------------------------------------------------------------------ WebDriver (plain HTTP)

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriver:
    def __init__(self, env, output=subprocess.DEVNULL):
        self.port = free_port()
        # The app inherits this environment, and its (and WebKit's) stderr goes to `output`.
        self.proc = subprocess.Popen(
            ["WebKitWebDriver", f"--port={self.port}", "--host=127.0.0.1"],
            env=dict(env, TAURI_WEBVIEW_AUTOMATION="true"),
            stdout=output, stderr=output,
        )
        self.session = None
        until("WebKitWebDriver", lambda: self.http("GET", "/status") is not None, 10)

    def http(self, method, path, body=None, timeout=60):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}").get("value")

    def open(self, args):
        caps = {"capabilities": {"alwaysMatch": {"webkitgtk:browserOptions": {"binary": APP, "args": args}}}}
        self.session = self.http("POST", "/session", caps)["sessionId"]

    def js(self, script, *args, timeout=300):
        # Generous: under load the page's main thread can be busy for a long time.
        return self.http("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)},
                         timeout=timeout)

    def find(self, css):
        v = self.http("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})
        return list(v.values())[0]

    def click(self, css):
        self.http("POST", f"/session/{self.session}/element/{self.find(css)}/click", {})

    def type(self, css, text):
        self.http("POST", f"/session/{self.session}/element/{self.find(css)}/value", {"text": text})

    def app_pid(self):
        return next((p for p in descendants(self.proc.pid) if comm(p) == "papo"), None)

    def close(self):
        if self.session:
            try:
                self.http("DELETE", f"/session/{self.session}", timeout=15)
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log("closing the session:", e)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def until(what, f, timeout=30, every=0.2):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = f()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - polled again until the timeout
            last = e
        time.sleep(every)
    raise RuntimeError(f"timed out waiting for {what} (last: {last})")


PAGE_FACTS = r"""
const imgs = [...document.images].map(i => [i.naturalWidth, i.naturalHeight]);
const types = (typeof PerformanceObserver !== 'undefined' && PerformanceObserver.supportedEntryTypes) || [];
return {
  dom_nodes: document.getElementsByTagName('*').length,
  all_nodes: document.createTreeWalker(document, NodeFilter.SHOW_ALL).nextNode() ? (() => {
    const w = document.createTreeWalker(document, NodeFilter.SHOW_ALL); let n = 0; while (w.nextNode()) n++; return n; })() : 0,
  images: imgs.length,
  image_pixels: imgs.reduce((a, [w, h]) => a + w * h, 0),
  svgs: document.getElementsByTagName('svg').length,
  stylesheets: document.styleSheets.length,
  html_chars: document.documentElement.outerHTML.length,
  performance_memory: (performance.memory ? {used: performance.memory.usedJSHeapSize, total: performance.memory.totalJSHeapSize} : null),
  supported_entry_types: types,
  message_rows: document.querySelectorAll('[data-testid="message"]').length,
  list_count: (document.querySelector('[data-testid="messages"]') || {dataset: {}}).dataset.count || null,
  device_pixel_ratio: window.devicePixelRatio,
  viewport: [innerWidth, innerHeight],
};
"""


def gc_log_heap(path):
    """The last heap sizes JSC's GC log (JSC_logGC=1) printed: [(before_kb, after_kb), ...]."""
    out = []
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return out
    for m in re.finditer(r"(\d+)kb\s*=>\s*(\d+)kb", text):
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def inspect(data):
    """Idle with the 100k cache, through WebDriver: page facts and the web process's smaps."""
    errlog = tempfile.NamedTemporaryFile(prefix="papo-gc-", suffix=".log", delete=False)
    env = dict(BASE_ENV, PAPO_SERVER="http://127.0.0.1:9", PAPO_DATA_DIR=data, JSC_logGC="1")
    wd = WebDriver(env, output=errlog)
    try:
        wd.open(["--data-dir", data, "--server", "http://127.0.0.1:9"])
        until("feed", lambda: wd.js("return document.querySelectorAll('[data-testid=\"post\"]').length") > 0, 60)
        time.sleep(8)
        facts = wd.js(PAGE_FACTS)
        pid = wd.app_pid()
        mem = memory(pid)
        web = next((x["pid"] for x in mem["processes"] if x["kind"] == "web"), None)
        facts["web_smaps"] = smaps_groups(web) if web else {}
        facts["memory"] = mem
        heap = gc_log_heap(errlog.name)
        facts["jsc_gc"] = {"collections": len(heap), "last_before_after_kb": heap[-1] if heap else None,
                           "max_after_kb": max((a for _, a in heap), default=None)}
        return facts
    finally:
        wd.close()
        os.unlink(errlog.name)


# ------------------------------------------------------------------ (c, d) live

PROBE = r"""
if (window.__bench) return 'already';
const B = window.__bench = { lat: [], seen: new Set(), gaps: [], longtasks: [], gapMax: 0, over50: 0, ticks: 0 };
const re = /bench#(\d+)@(\d+)/g;
function scan(text, now) {
  re.lastIndex = 0; let m;
  while ((m = re.exec(text))) {
    const seq = +m[1];
    if (!B.seen.has(seq)) { B.seen.add(seq); B.lat.push(now - +m[2]); }
  }
}
new MutationObserver((muts) => {
  const now = Date.now();
  for (const mu of muts) {
    if (mu.type === 'characterData') { scan(mu.target.data || '', now); continue; }
    for (const n of mu.addedNodes) scan(n.textContent || '', now);
  }
}).observe(document.body, { childList: true, subtree: true, characterData: true });
if ((PerformanceObserver.supportedEntryTypes || []).includes('longtask')) {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) B.longtasks.push(e.duration); }).observe({ entryTypes: ['longtask'] });
}
let last = performance.now();
setInterval(() => {
  const now = performance.now(); const gap = now - last - 10; last = now; B.ticks++;
  if (gap > B.gapMax) B.gapMax = gap;
  if (gap > 50) { B.over50++; B.gaps.push(Math.round(gap)); }
}, 10);
return 'installed';
"""

TAKE = r"""
const B = window.__bench; const out = { lat: B.lat, seen: B.seen.size, gapMax: B.gapMax, over50: B.over50,
  gaps: B.gaps.slice(-200), longtasks: B.longtasks, ticks: B.ticks };
B.lat = []; B.gapMax = 0; B.over50 = 0; B.gaps = []; B.longtasks = []; B.ticks = 0;
return out;
"""


def start_server(tmp):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = subprocess.Popen(
        [SERVER, "--bind", f"127.0.0.1:{port}", "--db", os.path.join(tmp, "server.db")],
        env=dict(os.environ, RUST_LOG="warn", PAPO_LOG="warn", PAPO_ACCOUNT_IP_PER_MIN="0"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    until("server healthz", lambda: urllib.request.urlopen(f"{url}/healthz", timeout=2).status == 200, 20)
    return p, url


def register(url, name, password):
    req = urllib.request.Request(
        f"{url}/api/register", method="POST", headers={"content-type": "application/json"},
        data=json.dumps({"username": name, "password": password}).encode(),
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def send_load(url, seconds):
    return subprocess.Popen(
        ["node", os.path.join(HERE, "desktop-sender.mjs"), url, str(RATE), str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def sender_result(p):
    out, err = p.communicate(timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"sender failed ({p.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def live():
    tmp = tempfile.mkdtemp(prefix="papo-desk-live-")
    server, url = start_server(tmp)
    wd = None
    try:
        password = "correct horse 1"
        register(url, "bench_app", password)
        wd = WebDriver(BASE_ENV)
        wd.open(["--data-dir", os.path.join(tmp, "app"), "--server", url])
        until("sign-in form", lambda: wd.find('[data-testid="username"]'), 60)
        wd.type('[data-testid="username"]', "bench_app")
        wd.type('[data-testid="password"]', password)
        wd.click('[data-testid="signin-submit"]')
        until("connected", lambda: wd.js(
            "const b = document.querySelector('[data-testid=\"banner\"]'); return b && b.getAttribute('data-state') === 'connected';"), 40)
        wd.click('[data-testid="nav-chat"]')
        until("public chat", lambda: wd.find('[data-testid="conversation"][data-conversation="public"]'), 20)
        types = wd.js("return PerformanceObserver.supportedEntryTypes || []")
        wd.js(PROBE)
        pid = wd.app_pid()
        idle_connected = memory(pid)
        log(f"connected, idle: PSS {idle_connected['total_kib'] / 1024:.0f} MiB; entry types {types}")

        # (c) latency and stalls
        s = send_load(url, LOAD_SECONDS)
        t0 = time.time()
        samples = []
        while s.poll() is None:
            time.sleep(min(SAMPLE_SECONDS, 5))
            samples.append({"t": round(time.time() - t0, 1), "total_kib": memory(pid)["total_kib"]})
        sent = sender_result(s)
        time.sleep(3)
        took = wd.js(TAKE)
        lat = took["lat"]
        after = memory(pid)
        web = next((x["pid"] for x in after["processes"] if x["kind"] == "web"), None)
        after_smaps = smaps_groups(web) if web else {}
        load = {
            "rate": RATE, "seconds": LOAD_SECONDS, "sender": sent,
            "delivered_to_dom": took["seen"], "latency_ms": summary(lat),
            "longtask_supported": "longtask" in types, "longtasks_ms": summary(took["longtasks"]),
            "timer_gap_max_ms": round(took["gapMax"], 1), "timer_gaps_over_50ms": took["over50"],
            "timer_ticks": took["ticks"], "worst_gaps_ms": sorted(took["gaps"])[-10:],
            "pss_samples": samples,
            "after": {"total_kib": after["total_kib"], "by_kind_kib": after["by_kind_kib"],
                      "web_smaps": after_smaps},
            "page": wd.js(PAGE_FACTS),
        }
        log(f"load {RATE:.0f}/s for {LOAD_SECONDS:.0f} s: sent {sent['sent']}, acked {sent['acked_ok']}, "
            f"in DOM {took['seen']}; latency {load['latency_ms']}; max gap {took['gapMax']:.0f} ms, "
            f"{took['over50']} gaps > 50 ms")

        # (d) soak: PSS every SAMPLE_SECONDS
        soak = None
        if SOAK_SECONDS > 0:
            s = send_load(url, SOAK_SECONDS)
            t0 = time.time()
            pss = []
            while s.poll() is None:
                m = memory(pid)
                facts = wd.js("return [document.getElementsByTagName('*').length, (document.querySelector('[data-testid=\"messages\"]')||{dataset:{}}).dataset.count]")
                pss.append({"t": round(time.time() - t0, 1), "total_kib": m["total_kib"], "by_kind_kib": m["by_kind_kib"],
                            "dom_nodes": facts[0], "rows_in_memory": int(facts[1] or 0)})
                log(f"soak t={pss[-1]['t']:.0f}s PSS {m['total_kib'] / 1024:.0f} MiB "
                    f"{({k: round(v / 1024) for k, v in m['by_kind_kib'].items()})}, DOM {facts[0]}, rows {facts[1]}")
                time.sleep(SAMPLE_SECONDS)
            sent2 = sender_result(s)
            time.sleep(3)
            took = wd.js(TAKE)
            soak = {
                "rate": RATE, "seconds": SOAK_SECONDS, "sender": sent2, "delivered_to_dom": took["seen"],
                "latency_ms": summary(took["lat"]), "timer_gap_max_ms": round(took["gapMax"], 1),
                "timer_gaps_over_50ms": took["over50"], "samples": pss, **trend(pss),
            }
            log(f"soak: max {soak['max_kib'] / 1024:.0f} MiB, slope {soak['slope_kib_per_min'] / 1024:.2f} MiB/min")
        return {"idle_connected": idle_connected, "load": load, "soak": soak}
    finally:
        if wd:
            wd.close()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def trend(samples):
    """Max PSS, least-squares slope over the whole run and over its second half (KiB/min)."""
    def slope(pts):
        if len(pts) < 2:
            return 0.0
        xs = [p["t"] / 60 for p in pts]
        ys = [p["total_kib"] for p in pts]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0
    ys = [p["total_kib"] for p in samples]
    return {
        "max_kib": max(ys) if ys else 0,
        "first_kib": ys[0] if ys else 0,
        "last_kib": ys[-1] if ys else 0,
        "slope_kib_per_min": slope(samples),
        "slope_second_half_kib_per_min": slope(samples[len(samples) // 2:]),
    }


# ------------------------------------------------------------------ main

def main():
    meta = json.load(open(os.environ["META"])) if os.environ.get("META") else {}
    res = {"meta": meta, "load_before": loadavg(), "params": {
        "runs": RUNS, "rate": RATE, "load_seconds": LOAD_SECONDS, "soak_seconds": SOAK_SECONDS,
        "sample_seconds": SAMPLE_SECONDS, "sizes": sorted(SEEDED)}}
    t_start = time.time()
    res["cold_start"] = [cold_start(n, SEEDED[n]) for n in sorted(SEEDED)]
    for c in res["cold_start"]:
        log(f"cold start {c['messages']}: median {c['p50']:.0f} ms, p99 {c['p99']:.0f}, max {c['max']:.0f}")
    idle_dir = SEEDED.get(100000) or SEEDED[min(SEEDED)]
    res["idle"] = idle_memory(idle_dir)
    res["idle"]["messages"] = 100000 if 100000 in SEEDED else min(SEEDED)
    log(f"idle PSS {res['idle']['total_kib'] / 1024:.0f} MiB {({k: round(v / 1024) for k, v in res['idle']['by_kind_kib'].items()})}")
    res["inspect"] = inspect(idle_dir)
    log(f"inspect: DOM {res['inspect']['dom_nodes']} elements, {res['inspect']['images']} images, "
        f"JSC GC {res['inspect']['jsc_gc']}; web smaps {res['inspect']['web_smaps'].get('groups_kib')}")
    if KNOBS:
        res["knobs"] = knobs(idle_dir)
    if SERVER:
        res["live"] = live()
    res["load_after"] = loadavg()
    res["total_secs"] = round(time.time() - t_start)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    log(f"wrote {OUT} (load before {res['load_before']}, after {res['load_after']}, {res['total_secs']} s)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
