#!/usr/bin/env bash
# Installs the .deb built by scripts/package.sh, starts the installed binary under Xvfb for a
# few seconds, checks that it ran (its log and the data directory it created), then removes
# the package and checks that every file it installed is gone.
# As root with apt (CI, a test machine): `apt-get install ./Papo_*.deb` and `apt-get remove`.
# Otherwise (or with PACKAGE_TEST_SCRATCH=1): `dpkg -x` into a scratch root and run from there.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
deb=$(ls -1t "$TARGET_DIR/${PACKAGE_PROFILE:-release}"/bundle/deb/*.deb | head -1)
echo "== package: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
name=$(dpkg-deb --field "$deb" Package)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_app() { # $1 = binary; runs it ~8 s with no server reachable, checks it started
  local bin=$1 data="$work/data" log="$work/app.log" rc=0
  mkdir -p "$work/home"
  HOME="$work/home" RUST_LOG=info timeout 8 xvfb-run -a -s "-screen 0 1024x768x24" \
    dbus-run-session -- "$bin" --data-dir "$data" --server http://127.0.0.1:9 >"$log" 2>&1 || rc=$?
  # 124: still running when the timeout stopped it, which is what a started app does.
  if [ "$rc" != 124 ]; then echo "the installed app exited early (status $rc):"; tail -20 "$log"; exit 1; fi
  grep -q "starting" "$log" || { echo "no start line in the log:"; tail -20 "$log"; exit 1; }
  [ -f "$data/cache.sqlite" ] || { echo "the app did not create its cache"; exit 1; }
  echo "ok: the installed binary started (log line, cache created, ran until stopped)"
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${PACKAGE_TEST_SCRATCH:-0}" != 1 ]; then
  if dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed"; then
    echo "$name is already installed here: refusing to touch it" >&2; exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb"
  files=$(dpkg -L "$name")
  bin=$(echo "$files" | grep -E '^/usr/bin/' | head -1)
  [ -x "$bin" ] || { echo "no binary installed"; exit 1; }
  echo "$files" | grep -q '^/usr/share/applications/.*\.desktop$' || { echo "no .desktop entry"; exit 1; }
  echo "ok: installed $(echo "$files" | wc -l) paths, binary $bin"
  run_app "$bin"
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "$name"
  left=0
  while read -r f; do
    if [ -f "$f" ] || [ -L "$f" ]; then echo "left behind: $f"; left=1; fi
  done <<<"$files"
  dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" && left=1
  [ "$left" = 0 ] || exit 1
  echo "ok: apt-get remove took every installed file away"
else
  dpkg -x "$deb" "$work/root"
  bin=$(ls "$work"/root/usr/bin/* | head -1)
  ls "$work"/root/usr/share/applications/*.desktop >/dev/null
  echo "ok: unpacked into a scratch root, binary $bin"
  run_app "$bin"
fi
echo "== package test passed"
