#!/usr/bin/env bash
# Installs the UI's npm dependencies at the versions in ui/package-lock.json.
#
# Not `npm ci`: the Tauri CLI package lists one optional native binary per platform, and a
# registry mirror that lacks the other platforms' binaries (as on the machines this project is
# built on) yields a lock file without them, which `npm ci` then refuses as "out of sync".
# `npm install` with the lock file installs the same locked versions and skips the missing
# optional binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
npm install --prefix ui --no-audit --no-fund --loglevel=error
