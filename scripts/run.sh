#!/usr/bin/env bash
# Runs Papo on this machine: installs the Debian/Ubuntu packages, builds the UI and the desktop
# app (release), starts papo-server on its SQLite default (data in ~/.local/share/papo-server,
# port 8080) in the background, then opens the desktop app connected to it. The server stops
# when the app exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh run

echo "== building the UI and the app (release; a few minutes the first time)"
[ -d ui/node_modules ] || bash scripts/ui-deps.sh
npm run --prefix ui build
cargo build --release --locked -p papo -p papo-server
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

DATA="${XDG_DATA_HOME:-$HOME/.local/share}/papo-server"
mkdir -p "$DATA"
PORT=${PAPO_PORT:-8080}
echo "== papo-server on 127.0.0.1:$PORT (data in $DATA)"
"$TARGET_DIR/release/papo-server" --bind "127.0.0.1:$PORT" --db "$DATA/papo.db" >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== starting the Papo desktop app (create an account on the sign-in screen)"
PAPO_SERVER="http://127.0.0.1:$PORT" "$TARGET_DIR/release/papo" "$@"
