#!/usr/bin/env bash
# Builds the Linux installers with the Tauri CLI (npm @tauri-apps/cli): a .deb, and an .rpm
# (the bundler writes it natively, no rpmbuild needed). AppImage is not built: it downloads
# AppRun from GitHub, which does not work offline. Windows (msi, nsis) and macOS (app, dmg)
# bundles are built by .github/workflows/desktop.yml on those platforms.
# Usage: package.sh [bundles]   (default: deb,rpm). Prints the paths of the packages.
# PACKAGE_PROFILE=debug bundles the debug binary that `cargo build --workspace --bins` already
# built (`tauri bundle --debug`, no second compilation): the test command uses it to check the
# packaging and the install/remove cycle without a release build of the whole tree.
set -euo pipefail
cd "$(dirname "$0")/.."
bundles=${1:-deb,rpm}
profile=${PACKAGE_PROFILE:-release}
[ -d ui/node_modules ] || bash scripts/ui-deps.sh
# The UI first, here: the CLI runs beforeBuildCommand in the first directory with a
# package.json it finds, which is not always ui/'s parent. Then the binary + bundles.
npm run --prefix ui build >&2
no_hooks='{"build":{"beforeBuildCommand":"","beforeBundleCommand":""}}'
if [ "$profile" = debug ]; then
  cargo build --workspace --bins --locked >&2
  npx --prefix ui tauri bundle --ci --debug --bundles "$bundles" --config "$no_hooks" >&2
else
  npx --prefix ui tauri build --ci --bundles "$bundles" --config "$no_hooks" >&2
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ls -1 "$TARGET_DIR/$profile"/bundle/deb/*.deb "$TARGET_DIR/$profile"/bundle/rpm/*.rpm 2>/dev/null || true
