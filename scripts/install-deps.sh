#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Papo needs. Usage: install-deps.sh run|test
set -euo pipefail
what=${1:-test}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

pkgs=(build-essential pkg-config libssl-dev python3 curl ca-certificates)
# The desktop app (Tauri 2 on WebKitGTK 4.1); the tray library is loaded at run time.
pkgs+=(file libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev)
if [ "$what" = test ]; then
  # Headless desktop end-to-end: X server, session bus, WebKitWebDriver, screenshots.
  pkgs+=(xvfb xauth dbus-x11 dbus-bin dbus-daemon webkit2gtk-driver imagemagick x11-utils
    libglib2.0-bin at-spi2-core)
  # Desktop integration end-to-end: a real notification server, the Secret Service and its
  # CLI, the kernel keyring tools (scripts/e2e-desktop-os.sh, the keyring unit test).
  pkgs+=(dunst gnome-keyring libsecret-tools keyutils)
  # Scale-out tests: a shared database and the Socket.IO Redis adapter, on loopback.
  pkgs+=(postgresql postgresql-client redis-server)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt 2>/dev/null || true
