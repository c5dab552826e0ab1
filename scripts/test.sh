#!/usr/bin/env bash
# Installs what the tests need on Debian/Ubuntu, then runs every test: formatting, lints, Rust
# unit and integration tests, the interop suites driven by the official socket.io packages, the
# desktop app end to end, and the installers. A missing service (Postgres, Redis, Node, Xvfb)
# fails the run: nothing is skipped.
#
# Every cargo step uses the same package set and features (`--workspace`), so the tree is
# compiled once for clippy (check) and once for the tests and binaries (debug); the installer
# test bundles that same debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$SECONDS
step() { echo "== [$(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s] $*"; }

bash scripts/install-deps.sh test

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step "Postgres and Redis on loopback (scale-out tests)"
services=$(mktemp)
bash scripts/test-services.sh >"$services"
. "$services"
rm -f "$services"
step "desktop UI: dependencies, build (the app embeds ui/dist at compile time)"
bash scripts/ui-deps.sh
npm run --prefix ui build
step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo build (binaries used by the tests)"
cargo build --workspace --bins --locked
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PAPO_SERVER_BIN="$TARGET_DIR/debug/papo-server"
export PAPO_CLI_BIN="$TARGET_DIR/debug/papo-cli"

step "npm peers (official socket.io-client and socket.io server)"
npm ci --prefix crates/server/tests/node --no-audit --no-fund --loglevel=error
npm ci --prefix crates/client/tests/node --no-audit --no-fund --loglevel=error

step "cargo test"
cargo test --workspace --locked
step "cargo test, the tests that need outside services (Postgres, Node peers, a kernel keyring)"
PAPO_KEYRING=keyutils keyctl session - cargo test --workspace --locked -- --ignored

step "server interop suite (official socket.io-client)"
(cd crates/server/tests/node && npm test)
step "desktop UI: type check and unit tests (Vitest)"
npm run --prefix ui check
npm run --prefix ui test
step "desktop app: end-to-end on the real binary (Xvfb, WebKitWebDriver, papo-server, papo-cli)"
E2E_SKIP_BUILD=1 bash scripts/e2e.sh
step "desktop integration: notifications (dunst + dbus-monitor), tray over D-Bus, keyring, single instance"
E2E_SKIP_BUILD=1 bash scripts/e2e-desktop-os.sh
step "installers: .deb + .rpm with the Tauri CLI (from the debug build), install / start / remove the .deb"
PACKAGE_PROFILE=debug bash scripts/package.sh
PACKAGE_PROFILE=debug bash scripts/test-package.sh
step "all tests passed"
