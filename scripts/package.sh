#!/usr/bin/env bash
# Builds the Linux installers with the Tauri CLI (npm @tauri-apps/cli): a .deb, and an .rpm
# (the bundler writes it natively, no rpmbuild needed). AppImage is not built: it downloads
# AppRun from GitHub, which does not work offline. Windows (msi, nsis) and macOS (app, dmg)
# bundles are built by .github/workflows/desktop.yml on those platforms.
# Usage: package.sh [bundles]   (default: deb,rpm). Prints the paths of the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bundles=${1:-deb,rpm}
[ -d ui/node_modules ] || bash scripts/ui-deps.sh
# The UI first, here: the CLI runs beforeBuildCommand in the first directory with a
# package.json it finds, which is not always ui/'s parent. Then the release binary + bundles.
npm run --prefix ui build >&2
npx --prefix ui tauri build --ci --bundles "$bundles" --config '{"build":{"beforeBuildCommand":""}}' >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ls -1 "$TARGET_DIR"/release/bundle/deb/*.deb "$TARGET_DIR"/release/bundle/rpm/*.rpm 2>/dev/null || true
