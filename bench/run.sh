#!/usr/bin/env bash
# The Papo benchmark suite, in one command (see docs/benchmarks.md):
#
#   bench/run.sh            # everything: builds, runs every scenario against Papo and the Node
#                           # peer, writes bench/results/latest.json, the plot and the tables
#   bench/run.sh --quick    # a 2-minute smoke run of the same machinery (small numbers)
#   bench/run.sh --scenarios fanout,storm     # a subset; other `papo-bench run` flags pass through
#   bench/run.sh --scenarios cluster          # scale-out: 3 nodes on Postgres + Redis vs 1 node
#                           # (needs PAPO_BENCH_POSTGRES_URL / PAPO_BENCH_REDIS_URL, or the
#                           # PAPO_TEST_* ones: eval "$(bash scripts/test-services.sh)"); writes
#                           # bench/results/cluster.json and only the scale-out section of the docs
#
# Environment: PAPO_SERVER_BIN=/path/to/papo-server to measure a prebuilt server instead of
# building crates/server (PAPO_SERVER_REV=<text> says which source it was built from); CARGO_TARGET_DIR as usual; BENCH_NO_DOCS=1 to only print the tables.
# Traffic goes to 127.0.0.1 only; every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"

# A run of only the cluster scenario keeps its own files, so it does not replace the results of
# the main suite (latest.json, meta.json, the plot).
NAME=latest
META=meta.json
prev=""
for a in "$@"; do
  case "$prev" in --scenarios) SCEN=$a ;; esac
  case "$a" in --scenarios=*) SCEN=${a#--scenarios=} ;; esac
  prev=$a
done
if [ "${SCEN:-}" = cluster ]; then NAME=cluster; META=cluster-meta.json; fi
# Likewise the client core alone: client.json, whose results replace the client section.
if [ "${SCEN:-}" = client ]; then NAME=client; META=client-meta.json; fi
# The heap profile alone: heap.json.
if [ "${SCEN:-}" = heap ]; then NAME=heap; META=heap-meta.json; fi
# And private messages alone: dm.json, whose results replace the DM section.
if [ "${SCEN:-}" = dm ]; then NAME=dm; META=dm-meta.json; fi
# BENCH_NAME=<name> writes <name>.json / <name>-meta.json instead (e.g. a run of an older build
# kept for a before/after table); the docs are then left alone.
if [ -n "${BENCH_NAME:-}" ]; then NAME=$BENCH_NAME; META=$BENCH_NAME-meta.json; BENCH_NO_DOCS=1; fi

echo "== load before building: $(cat /proc/loadavg)"
if [ -z "${PAPO_SERVER_BIN:-}" ]; then
  cargo build --release -p papo-server -p papo-bench
  PAPO_SERVER_BIN=$CARGO_TARGET_DIR/release/papo-server
else
  cargo build --release -p papo-bench
fi
BENCH=$CARGO_TARGET_DIR/release/papo-bench

# The Node peer: socket.io 4.8 + better-sqlite3 (compiled from source against /usr/include/node
# when no prebuilt binary can be downloaded).
if ! (cd bench/node-peer && node -e "require('better-sqlite3')(':memory:')" 2>/dev/null); then
  (cd bench/node-peer && npm ci --no-audit --no-fund)
  (cd bench/node-peer && node -e "require('better-sqlite3')(':memory:')") ||
    (cd bench/node-peer && npm rebuild better-sqlite3 --build-from-source)
fi

# The plot needs matplotlib: a private venv under bench/.venv (PyPI).
VENV=$ROOT/bench/.venv
if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "matplotlib>=3.8,<4"
fi

# Many sockets: the load generator holds up to 19,000 at once.
ulimit -n "$(ulimit -Hn)" || true
echo "== open files limit: $(ulimit -n)"

# A run keeps the one before it (runs come in pairs) as dm-previous.json / latest-previous.json.
if [ "$NAME" = latest ] && [ -f "$RESULTS/latest.json" ]; then
  cp "$RESULTS/latest.json" "$RESULTS/latest-previous.json"
  cp "$RESULTS/meta.json" "$RESULTS/latest-previous-meta.json"
fi
if [ "$NAME" = dm ] && [ -f "$RESULTS/dm.json" ]; then
  cp "$RESULTS/dm.json" "$RESULTS/dm-previous.json"
  cp "$RESULTS/dm-meta.json" "$RESULTS/dm-previous-meta.json"
fi

# What was measured, on what.
python3 - "$RESULTS/$META" "$PAPO_SERVER_BIN" <<'PY'
import json, os, platform, subprocess, sys, datetime
def sh(*a):
    try: return subprocess.run(a, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e: return f"unknown ({e})"
def pkg(name):
    try: return json.load(open(f"bench/node-peer/node_modules/{name}/package.json"))["version"]
    except Exception: return "?"
def lock(name):
    out, cur = [], None
    for line in open("Cargo.lock"):
        if line.startswith("name = "): cur = line.split('"')[1]
        elif line.startswith("version = ") and cur == name: out.append(line.split('"')[1])
    return max(out, key=lambda v: [int(x) for x in v.split(".") if x.isdigit()]) if out else "?"
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
rev = sh("git", "rev-parse", "--short", "HEAD")
dirty = sh("git", "status", "--porcelain", "--", "crates", "bench", ":!bench/results")
meta = {
  "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
  "machine": f"{os.cpu_count()} cores ({cpu}), {int(mem)//1024//1024} GiB RAM, Linux {platform.release()}",
  "papo_rev": os.environ.get("PAPO_SERVER_REV") or (rev + (" + uncommitted changes" if dirty else "")),
  "papo_server_bin": sys.argv[2],
  "rustc": sh("rustc", "--version"), "socketioxide": lock("socketioxide"),
  "tokio_tungstenite": lock("tokio-tungstenite"), "rusqlite": lock("rusqlite"),
  "node": sh("node", "--version"), "socket_io": pkg("socket.io"), "better_sqlite3": pkg("better-sqlite3"),
  "load_before": open("/proc/loadavg").read().split()[:3],
  "postgres": sh("psql", "--version"), "redis": sh("redis-server", "--version"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
print(json.dumps(meta, indent=2))
PY

echo "== running (load $(cut -d' ' -f1-3 /proc/loadavg))"
START=$(date +%s)
"$BENCH" run --papo-server "$PAPO_SERVER_BIN" --node-peer bench/node-peer \
  --out "$RESULTS/$NAME.json" "$@" 2>&1 | tee "$RESULTS/$NAME.log"
echo "== scenarios took $(( $(date +%s) - START )) s; load now $(cut -d' ' -f1-3 /proc/loadavg)"

DOCS_ARGS=(--docs docs/benchmarks.md)
[ -n "${BENCH_NO_DOCS:-}" ] && DOCS_ARGS=()
PLOT_ARGS=(--plot docs/benchmarks-p99.png)
[ "$NAME" != latest ] && PLOT_ARGS=()
# The DM section comes from dm.json (with the older build's run and the previous run beside it)
# unless this run measured DMs itself.
DM_ARGS=()
if [ "$NAME" = dm ] || [ "$NAME" = heap ] || [ "$NAME" = client ] || { [ "$NAME" = latest ] && [ -n "${SCEN:-}" ] && [[ ",$SCEN," != *",dm,"* ]]; }; then
  [ -f "$RESULTS/dm.json" ] && DM_ARGS+=(--dm "$RESULTS/dm.json" --dm-meta "$RESULTS/dm-meta.json")
  [ -f "$RESULTS/dm-before.json" ] && DM_ARGS+=(--dm-before "$RESULTS/dm-before.json" --dm-before-meta "$RESULTS/dm-before-meta.json")
  [ -f "$RESULTS/dm-previous.json" ] && DM_ARGS+=(--dm-previous "$RESULTS/dm-previous.json")
fi
# Likewise the client section from client.json, and the fan-out of the build before serialize-once.
if [ "$NAME" = latest ] && [ -n "${SCEN:-}" ] && [[ ",$SCEN," != *",client,"* ]] && [ -f "$RESULTS/client.json" ]; then
  DM_ARGS+=(--client "$RESULTS/client.json" --client-meta "$RESULTS/client-meta.json")
fi
if [ -f "$RESULTS/heap.json" ]; then
  DM_ARGS+=(--heap "$RESULTS/heap.json" --heap-meta "$RESULTS/heap-meta.json")
  [ -f "$RESULTS/heap-before.json" ] && DM_ARGS+=(--heap-before "$RESULTS/heap-before.json" --heap-before-meta "$RESULTS/heap-before-meta.json")
fi
# The idle before/after table: the build before presence by interest against this run.
if [ "$NAME" = latest ] && [ -f "$RESULTS/idle-before-interest.json" ]; then
  DM_ARGS+=(--before "$RESULTS/idle-before-interest.json")
fi
if [ -f "$RESULTS/fanout-before.json" ]; then
  DM_ARGS+=(--fanout-before "$RESULTS/fanout-before.json" --fanout-before-meta "$RESULTS/fanout-before-meta.json")
  [ -f "$RESULTS/latest-previous.json" ] && DM_ARGS+=(--fanout-previous "$RESULTS/latest-previous.json")
fi
# The client before/after table: an earlier build's run (client-before.json), and the run before
# this one (client-previous.json, kept by hand as the first of two runs).
for k in before previous; do
  if [ -f "$RESULTS/client-$k.json" ]; then
    DM_ARGS+=(--client-$k "$RESULTS/client-$k.json" --client-$k-meta "$RESULTS/client-$k-meta.json")
  fi
done
if [ "$NAME" = client ] || [ "$NAME" = dm ] || [ "$NAME" = heap ]; then
  "$VENV/bin/python" bench/report.py "$RESULTS/latest.json" "$RESULTS/meta.json" \
    --client "$RESULTS/client.json" --client-meta "$RESULTS/client-meta.json" "${DM_ARGS[@]}" "${DOCS_ARGS[@]}"
else
  "$VENV/bin/python" bench/report.py "$RESULTS/$NAME.json" "$RESULTS/$META" \
    "${PLOT_ARGS[@]}" "${DM_ARGS[@]}" "${DOCS_ARGS[@]}"
fi
