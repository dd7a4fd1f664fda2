#!/usr/bin/env bash
# Installs what is missing, builds, and runs kronopd in the foreground with its embedded
# defaults (data in ./var, segment /dev/shm/kronop). Extra arguments go to kronopd.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default
echo "kronopd: publish with  ./build/kronopctl/kronopctl publish --topic reel:123 --event reel_update --json '{\"views\":1}'"
echo "kronopd: counters with ./build/kronopctl/kronopctl stats   (Ctrl-C stops the daemon)"
exec ./build/kronopd/kronopd "$@"
