#!/usr/bin/env bash
# Fuzzes every libFuzzer target of the fuzz build for a long time, one target after the
# other, then merges what each run found into tests/fuzz/corpus/<name>/ (libFuzzer's
# -merge=1: only the new inputs that reach coverage the committed ones do not, so the
# named seeds stay as they are), so that every build replays them (<target>_corpus).
#
#   tests/fuzz/fuzz-long.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 1200 (20 minutes). Each target runs with the options its
# ctest <target>_run test has (-max_len, -dict), taken from ctest itself. Needs the fuzz
# build: `cmake --preset fuzz && cmake --build --preset fuzz`. The fuzzers run at nice 10
# (KRONOP_FUZZ_NICE), so that the machine stays usable. A fuzzer stops at its first crash
# (its row then shows the executions until then).
#
# Prints a table: executions, executions per second, coverage (libFuzzer's "cov": edges
# reached; "ft": features), corpus size before and after the merge, and crashes. A
# crash's input is kept in build-fuzz/tests/fuzz/artifacts/ and the exit status is 1.
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-1200}
shift || true
build=${KRONOP_FUZZ_BUILD:-build-fuzz}
[ -d "$build/tests/fuzz" ] || {
  echo "fuzz-long.sh: no fuzz build in $build (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
  exit 2
}
out=$build/tests/fuzz/long
mkdir -p "$out"

# The <target>_run commands, one JSON array per line (ctest gives none for a target not
# built: only the named targets need to be).
mapfile -t commands < <(cd "$build" && ctest --show-only=json-v1 -R '_fuzz_run$' |
  node -e 'const j = JSON.parse(require("fs").readFileSync(0));
           for (const t of j.tests) if (t.command) console.log(JSON.stringify(t.command));')

rows=()
status=0
for command in "${commands[@]}"; do
  mapfile -t argv < <(node -e 'for (const a of JSON.parse(process.argv[1])) console.log(a)' "$command")
  binary=${argv[0]}
  name=$(basename "$binary")
  if (($# > 0)) && [[ " $* " != *" $name "* ]]; then continue; fi
  seeds=${argv[-1]}
  options=()
  for a in "${argv[@]:1}"; do
    case $a in -max_len=* | -dict=*) options+=("$a") ;; esac
  done
  work=$out/$name.corpus
  rm -rf "$work" && mkdir -p "$work"
  log=$out/$name.log
  before=$(find "$seeds" -type f | wc -l)
  echo "== $name: ${seconds}s (log: $log)" >&2
  nice -n "${KRONOP_FUZZ_NICE:-10}" "$binary" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$build/tests/fuzz/artifacts/$name-" "${options[@]}" "$work" "$seeds" \
    >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 | awk '{print $2 " / " $4}')
  crashes=0
  if ((rc != 0)); then
    crashes=1
    status=1
    echo "== $name stopped with status $rc: see $log" >&2
  fi
  # Into the committed seeds: the new inputs that add coverage, as few as cover it.
  if ! "$binary" -merge=1 "${options[@]}" "$seeds" "$work" >"$out/$name.merge.log" 2>&1; then
    echo "== $name: merge failed: see $out/$name.merge.log" >&2
    status=1
  fi
  after=$(find "$seeds" -type f | wc -l)
  rows+=("$(printf '%-18s %6s %14s %10s %14s %6s -> %-6s %7s' "$name" "$seconds" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "$before" "$after" "$crashes")")
done

printf '%-18s %6s %14s %10s %14s %16s %7s\n' target seconds executions 'exec/s' 'cov / ft' \
  'corpus' crashes
printf '%s\n' "${rows[@]}"
exit $status
