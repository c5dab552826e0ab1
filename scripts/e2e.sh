#!/usr/bin/env bash
# End-to-end test of the desktop app: builds the UI and the app (debug), then runs
# tests/e2e/run.mjs under Xvfb with a session bus. The driver starts papo-server on 127.0.0.1
# with a temp database, WebKitWebDriver, and papo-cli as the second user; screenshots go to
# docs/screenshots/. Exits non-zero on any failed assertion.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  [ -d ui/node_modules ] || bash scripts/ui-deps.sh
  npm run --prefix ui build
  cargo build --locked --workspace --bins
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PAPO_APP_BIN="$TARGET_DIR/debug/papo"
export PAPO_SERVER_BIN="$TARGET_DIR/debug/papo-server"
export PAPO_CLI_BIN="$TARGET_DIR/debug/papo-cli"
export E2E_SCREENSHOTS="${E2E_SCREENSHOTS:-$ROOT/docs/screenshots}"
export LANG=en_US.UTF-8
# This scenario is about the app itself: keep it off the machine's keyring (D-Bus activation
# would start the user's gnome-keyring) and its notification server. The desktop integration
# has its own hermetic scenario (scripts/e2e-desktop-os.sh).
export PAPO_KEYRING=none PAPO_NOTIFICATIONS=log
# WebKitWebDriver's screenshot never answers when the web process does not render through
# DMA-BUF buffers (the app's default, src-tauri/webkit_tuning.rs): the scenarios take
# screenshots, so they run with WebKit's own renderer. Everything else is as shipped.
export WEBKIT_DISABLE_DMABUF_RENDERER=0
exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- node tests/e2e/run.mjs
