#!/bin/sh
# Builds kronop-ipc-bench with the kronopd and kronopctl it measures (an optimised build in a
# directory of its own) and runs it. Everything after the options below goes to the
# benchmark, e.g.
#
#   bench/run-ipc-bench.sh                      # all scenarios, 5 runs each, a table
#   bench/run-ipc-bench.sh --json > ipc.json    # the same as one JSON object
#   bench/run-ipc-bench.sh -r 3 -s throughput   # one scenario, 3 runs
#   bench/run-ipc-bench.sh --build-type RelWithDebInfo -- --help
#
# Options (before the benchmark's own):
#   --build-type T   Release (default) or RelWithDebInfo
#   --build-dir D    build directory (default: build-bench at the top of the repository)
#   --               end of these options
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
build_type=${KRONOP_BENCH_BUILD_TYPE:-Release}
build_dir=${KRONOP_BENCH_BUILD_DIR:-$top/build-bench}

while [ $# -gt 0 ]; do
  case $1 in
    --build-type) build_type=$2; shift 2 ;;
    --build-type=*) build_type=${1#*=}; shift ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --build-dir=*) build_dir=${1#*=}; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done

case $build_type in
  Release | RelWithDebInfo) ;;
  *) echo "run-ipc-bench.sh: --build-type must be Release or RelWithDebInfo (a benchmark of an" \
          "unoptimised build measures the compiler)" >&2; exit 2 ;;
esac

generator=
if command -v ninja > /dev/null 2>&1; then generator="-G Ninja"; fi
# Progress of the build goes to stderr, so that stdout is only the benchmark's result.
# shellcheck disable=SC2086 # $generator is empty or two words on purpose
cmake -S "$top" -B "$build_dir" $generator -DCMAKE_BUILD_TYPE="$build_type" >&2
cmake --build "$build_dir" --target kronop-ipc-bench kronopd kronopctl >&2

exec "$build_dir/bench/kronop-ipc-bench" "$@"
