#!/usr/bin/env bash
# The desktop benchmark (a benchmark, not a test): builds the RELEASE app, papo-server,
# papo-cli and examples/seed_cache.rs, seeds caches of 100k and 1M messages through the core's
# cache API, then runs bench/desktop.py under Xvfb with a session bus. It writes
# bench/results/desktop.json; `python3 bench/desktop_report.py` turns that into the Desktop
# section of docs/benchmarks.md.
#
#   bench/desktop.sh            the full run (~25 min: 7 cold starts per size, 60 s of load,
#                               a 10 min soak)
#   bench/desktop.sh --quick    a smoke run (~3 min): 3 cold starts, 15 s of load, 30 s soak
#
# Overrides (environment): RUNS, SIZES ("100000 1000000"), RATE (200), LOAD_SECONDS (60),
# SOAK_SECONDS (600), SAMPLE_SECONDS (10), KNOBS (1: measure each WebKit knob), OUT,
# NO_BUILD=1 (measure what is built), NO_LOCK=1 (already inside /tmp/papo-build.lock).
# Measure on a quiet machine: the load average before and after is recorded in the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "${1:-}" = "--quick" ]; then
  : "${RUNS:=3}" "${LOAD_SECONDS:=15}" "${SOAK_SECONDS:=30}" "${SAMPLE_SECONDS:=5}"
  QUICK=1
else
  QUICK=0
fi
export RUNS=${RUNS:-7} RATE=${RATE:-200} LOAD_SECONDS=${LOAD_SECONDS:-60}
export SOAK_SECONDS=${SOAK_SECONDS:-600} SAMPLE_SECONDS=${SAMPLE_SECONDS:-10} KNOBS=${KNOBS:-1}
SIZES=${SIZES:-"100000 1000000"}
export OUT=${OUT:-$ROOT/bench/results/desktop.json}

# Everything below builds or measures: one lock for all of it (re-entered with NO_LOCK=1).
if [ "${NO_LOCK:-0}" != 1 ]; then
  exec env NO_LOCK=1 flock /tmp/papo-build.lock "$0" "$@"
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  [ -d ui/node_modules ] || bash scripts/ui-deps.sh
  npm run --prefix ui build >/dev/null
  cargo build --release --locked --workspace --bins --example seed_cache
  [ -d crates/server/tests/node/node_modules ] ||
    npm ci --prefix crates/server/tests/node --no-audit --no-fund --loglevel=error
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PAPO_APP_BIN="$TARGET_DIR/release/papo" PAPO_SERVER_BIN="$TARGET_DIR/release/papo-server"

WORK=$(mktemp -d /tmp/papo-desk-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
META="$WORK/meta.json"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
REV=$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- . ':!bench/results' ':!docs' || echo "-dirty")
export LOAD_BEFORE REV QUICK
python3 - "$META" <<'PY'
import json, os, platform, subprocess, sys, time
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
osr = dict(l.strip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
json.dump({
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "machine": f"{os.cpu_count()} vCPU {cpu}, {mem / 1048576:.1f} GiB RAM, {osr.get('PRETTY_NAME', '?').strip(chr(34))}, Linux {platform.release()}",
    "papo_rev": os.environ["REV"],
    "webkitgtk": out("pkg-config", "--modversion", "webkit2gtk-4.1"),
    "mesa": out("sh", "-c", "dpkg-query -W -f='${Version}' libgl1-mesa-dri 2>/dev/null"),
    "xvfb": "Xvfb 1280x800x24, Mesa software rendering (no GPU)",
    "load_before_build": os.environ["LOAD_BEFORE"].split(),
    "quick": os.environ["QUICK"] == "1",
}, open(sys.argv[1], "w"))
PY

SEEDED=""
for n in $SIZES; do
  "$TARGET_DIR/release/examples/seed_cache" "$WORK/seed-$n" "$n" 2000 >/dev/null
  echo "seeded $n messages: $(du -sh "$WORK/seed-$n/cache.sqlite" | cut -f1)"
  SEEDED="$SEEDED $n=$WORK/seed-$n"
done
export SEEDED META
export LANG=en_US.UTF-8
xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- python3 bench/desktop.py
