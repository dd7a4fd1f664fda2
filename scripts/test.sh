#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite, in four builds:
#   default (RelWithDebInfo), ASan+UBSan, TSan, and the libFuzzer targets (clang);
# then 'release': the plain Release build a user or a package build makes (no preset, no
# tests) and its Debian package, which counts as one check.
# Each build's ctest output is shown; the last line sums them up.
# KRONOP_TEST_BUILDS="default asan" limits the builds (for quick local runs).
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh || exit 1

# The real-client tests (tests/clients, ctest 'clients_node.*') need the npm packages of
# their lockfile.
if ! (cd tests/clients && npm ci --no-audit --no-fund); then
  echo "test.sh: 'npm ci' in tests/clients failed"
  exit 1
fi

builds=${KRONOP_TEST_BUILDS:-"default asan tsan fuzz release"}
total_passed=0
total_failed=0
failed_builds=()

# Sanitizer settings: fail on the first report, and show where.
export ASAN_OPTIONS=${ASAN_OPTIONS:-"abort_on_error=0:detect_leaks=1:strict_string_checks=1"}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-"print_stacktrace=1:halt_on_error=1"}
export TSAN_OPTIONS=${TSAN_OPTIONS:-"halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"}

start=$SECONDS
for preset in $builds; do
  echo "=== build '$preset' (at $((SECONDS - start)) s) ==="
  if [ "$preset" = release ]; then
    # As a user builds it: CMake's own Release flags (-O3), not a preset; warnings are
    # errors here so that CI sees what that compiler says there.
    if cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DKRONOP_WERROR=ON \
      -DKRONOP_BUILD_TESTS=OFF >/dev/null &&
      cmake --build build-release -j "$(nproc)" &&
      (cd build-release && cpack -G DEB); then
      echo "=== build 'release' and its package passed ==="
      total_passed=$((total_passed + 1))
    else
      echo "=== build 'release' FAILED to compile or package ==="
      failed_builds+=("$preset")
      total_failed=$((total_failed + 1))
    fi
    continue
  fi
  if ! cmake --preset "$preset" >/dev/null || ! cmake --build --preset "$preset"; then
    echo "=== build '$preset' FAILED to compile ==="
    failed_builds+=("$preset")
    total_failed=$((total_failed + 1))
    continue
  fi
  log=$(mktemp)
  ctest --preset "$preset" -j "$(nproc)" --timeout 600 2>&1 | tee "$log"
  summary=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  rm -f "$log"
  if [ -z "$summary" ]; then
    failed_builds+=("$preset")
    total_failed=$((total_failed + 1))
    continue
  fi
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
  out_of=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$summary")
  total_passed=$((total_passed + out_of - failed))
  total_failed=$((total_failed + failed))
  ((failed > 0)) && failed_builds+=("$preset")
done

echo
echo "all builds and tests took $((SECONDS - start)) s"
if ((${#failed_builds[@]})); then echo "failing builds: ${failed_builds[*]}"; fi
echo "${total_passed} passed, ${total_failed} failed"
((total_failed == 0))
