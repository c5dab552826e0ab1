#!/usr/bin/env bash
# Cold-start benchmark of the desktop app (a benchmark, not a test): seeds a cache of 100k
# messages (+2k posts) through the core's cache API, then starts the release app N times with no
# server reachable and measures the time from exec to "feed rendered" (the UI reports it through
# the `feed_rendered` command once the first page is painted; PAPO_EXIT_AFTER_FEED=1 exits).
# Then it measures the memory of the whole app (PSS of the app and every process it started,
# WebKit's included) once the feed is rendered and the app has sat idle for 5 s.
# Usage: scripts/bench-desktop.sh [runs=7] [messages=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
MESSAGES=${2:-100000}
[ -d ui/node_modules ] || bash scripts/ui-deps.sh
npm run --prefix ui build >/dev/null
cargo build --release --locked -p papo --bin papo --example seed_cache
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
"$TARGET_DIR/release/examples/seed_cache" "$DATA" "$MESSAGES" 2000
ls -la "$DATA"
export PAPO_APP_BIN="$TARGET_DIR/release/papo" PAPO_DATA_DIR="$DATA" RUNS
# Hermetic: no keyring daemon or notification server started by D-Bus activation.
export PAPO_KEYRING=none PAPO_NOTIFICATIONS=log
exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- python3 - <<'PY'
import os, statistics, subprocess, time
app, runs = os.environ["PAPO_APP_BIN"], int(os.environ["RUNS"])
env = dict(os.environ, PAPO_EXIT_AFTER_FEED="1", PAPO_SERVER="http://127.0.0.1:9", RUST_LOG="warn")
walls, inner = [], []
for i in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen([app], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = ""
    for line in p.stdout:
        if line.startswith("PAPO_FEED_RENDERED_MS="):
            break
    wall = (time.perf_counter() - t0) * 1000
    p.wait(timeout=30)
    if not line.startswith("PAPO_FEED_RENDERED_MS="):
        raise SystemExit(f"run {i}: the app exited without rendering the feed")
    ms = float(line.split()[0].split("=")[1])
    walls.append(wall); inner.append(ms)
    print(f"run {i + 1}: exec -> feed rendered {wall:.0f} ms (in-process {ms:.0f} ms; {line.split()[1]})")
print(f"cold start to feed rendered, {runs} runs: median {statistics.median(walls):.0f} ms, "
      f"min {min(walls):.0f} ms, max {max(walls):.0f} ms (first run {walls[0]:.0f} ms)")

# Memory: PSS (proportional set size: shared pages split between the processes sharing them)
# summed over the app and all its descendants, after the feed is rendered and 5 s of idling.
def descendants(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out

def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

idle_env = {k: v for k, v in env.items() if k != "PAPO_EXIT_AFTER_FEED"}
p = subprocess.Popen([app], env=idle_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
for line in p.stdout:
    if line.startswith("PAPO_FEED_RENDERED_MS="):
        break
time.sleep(5)
procs = descendants(p.pid)
names = {pid: open(f"/proc/{pid}/comm").read().strip() for pid in procs if os.path.exists(f"/proc/{pid}/comm")}
total = sum(pss_kib(pid) for pid in procs)
detail = ", ".join(f"{names.get(pid, pid)} {pss_kib(pid) / 1024:.0f} MiB" for pid in procs)
print(f"memory with the cache loaded, idle: PSS {total / 1024:.0f} MiB over {len(procs)} processes ({detail})")
p.terminate()
try:
    p.wait(timeout=10)
except subprocess.TimeoutExpired:
    p.kill()
PY
