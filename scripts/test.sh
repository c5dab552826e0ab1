#!/usr/bin/env bash
# Installs what the tests need on Debian/Ubuntu, then runs every test: formatting, lints, Rust
# unit and integration tests, and the interop suites driven by the official socket.io packages.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/install-deps.sh test

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "== desktop UI: dependencies, build (the app embeds ui/dist at compile time)"
bash scripts/ui-deps.sh
npm run --prefix ui build
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries used by the tests)"
cargo build --workspace --bins --locked
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PAPO_SERVER_BIN="$TARGET_DIR/debug/papo-server"
export PAPO_CLI_BIN="$TARGET_DIR/debug/papo-cli"

echo "== npm peers (official socket.io-client and socket.io server)"
npm ci --prefix crates/server/tests/node --no-audit --no-fund --loglevel=error
npm ci --prefix crates/client/tests/node --no-audit --no-fund --loglevel=error
export PAPO_REQUIRE_NODE=1
echo "== Postgres and Redis on loopback (scale-out tests)"
eval "$(bash scripts/test-services.sh)"

echo "== cargo test"
cargo test --workspace --locked

echo "== server interop suite (official socket.io-client)"
(cd crates/server/tests/node && npm test)
echo "== desktop UI: type check and unit tests (Vitest)"
npm run --prefix ui check
npm run --prefix ui test
echo "== desktop app: end-to-end on the real binary (Xvfb, WebKitWebDriver, papo-server, papo-cli)"
E2E_SKIP_BUILD=1 bash scripts/e2e.sh
echo "== desktop integration: notifications (dunst + dbus-monitor), tray over D-Bus, keyring, single instance"
E2E_SKIP_BUILD=1 bash scripts/e2e-desktop-os.sh
echo "== keyring round trip in the kernel keyring (a fresh session keyring)"
PAPO_KEYRING=keyutils keyctl session - cargo test -p papo --lib --locked -- --ignored keyring_round_trip
echo "== installers: .deb + .rpm with the Tauri CLI (release build), install / start / remove the .deb"
bash scripts/package.sh
bash scripts/test-package.sh
echo "== all tests passed"
