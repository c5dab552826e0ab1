#!/usr/bin/env bash
# The desktop benchmark moved to bench/desktop.sh (cold start at 100k and 1M cached, idle PSS of
# every process, each WebKit knob, live latency and a soak against a real papo-server); this
# name is kept for muscle memory. Usage: scripts/bench-desktop.sh [--quick]
exec "$(dirname "$0")/../bench/desktop.sh" "$@"
