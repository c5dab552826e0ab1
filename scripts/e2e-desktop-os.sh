#!/usr/bin/env bash
# End-to-end test of the desktop integration (tests/e2e/desktop-os.mjs): native notifications
# asserted on the D-Bus Notify calls made to a real dunst, the tray item and its menu over
# D-Bus, the session in gnome-keyring's Secret Service, single instance, start at login.
# Runs under Xvfb with a private session bus that has NO service activation (only the services
# the test starts answer) and a scratch HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  [ -d ui/node_modules ] || bash scripts/ui-deps.sh
  npm run --prefix ui build
  cargo build --locked --workspace --bins
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PAPO_APP_BIN="$TARGET_DIR/debug/papo"
export PAPO_SERVER_BIN="$TARGET_DIR/debug/papo-server"
export PAPO_CLI_BIN="$TARGET_DIR/debug/papo-cli"
export LANG=en_US.UTF-8
# WebKitWebDriver's screenshot never answers when the web process does not render through
# DMA-BUF buffers (the app's default, src-tauri/webkit_tuning.rs): the scenarios take
# screenshots, so they run with WebKit's own renderer. Everything else is as shipped.
export WEBKIT_DISABLE_DMABUF_RENDERER=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The stock session bus config minus service activation (dunst and gnome-keyring would
# otherwise be started on demand, and "no notification server" could not be tested).
sed '/<standard_session_servicedirs/d; /<servicedir>/d' /usr/share/dbus-1/session.conf > "$scratch/bus.conf"
mkdir -p "$scratch/home"
export HOME="$scratch/home" XDG_CONFIG_HOME="$scratch/home/.config" XDG_DATA_HOME="$scratch/home/.local/share"
xvfb-run -a -s "-screen 0 1280x800x24" \
  dbus-run-session --config-file="$scratch/bus.conf" -- node tests/e2e/desktop-os.mjs
