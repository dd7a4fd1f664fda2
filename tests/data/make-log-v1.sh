#!/usr/bin/env bash
# Makes tests/data/log-v1.sql: a durable log as kronopd wrote it before blocks (schema
# version 1, a row per message), dumped as SQL (sqlite3 .dump, plus its user_version) so that
# the repository holds text, not a database file; the migration test
# (tests/kronopd/log_migration_test.cc) makes the database from it, row for row, payloads
# (zstd frames included) as the old writer stored them.
# It needs a build of that kronopd: check out commit 7b75c89 (the last one with version 1)
# in a worktree and build kronopd and kronopctl there, then run this with its build dir:
#
#   git worktree add /tmp/kronop-v1 7b75c89
#   cmake -S /tmp/kronop-v1 -B /tmp/kronop-v1/b -DCMAKE_BUILD_TYPE=Release
#   cmake --build /tmp/kronop-v1/b -j2 --target kronopd kronopctl
#   tests/data/make-log-v1.sh /tmp/kronop-v1/b
#
# What it holds (the test checks each): reel:1 with 1,500 messages ({"n":1} .. {"n":1500}),
# reel:2 with 3 messages whose 3,971-byte bodies the old writer stored compressed, system
# with 2 messages of priority high, all from kronopctl publish (one producer identity per
# run), and one topic epoch each.
set -euo pipefail
build=${1:?usage: make-log-v1.sh OLD_BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/kronop-make-v1.XXXXXX)
shm=kronop-make-v1-$$
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"; rm -f /dev/shm/$shm' EXIT
"$build/kronopd/kronopd" --data-dir "$tmp" --shm-name "$shm" --control-socket "$tmp/ctl.sock" \
  --port 0 --retention-hours 0 >"$tmp/out.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [[ -S $tmp/ctl.sock ]] && break; sleep 0.1; done
ctl=("$build/kronopctl/kronopctl" --socket "$tmp/ctl.sock" --shm-name "$shm")
for i in $(seq 1500); do echo "{\"n\":$i}"; done | while read -r line; do
  "${ctl[@]}" publish --topic reel:1 --event reel_update --json "$line" >/dev/null
done
big=$(printf '{"text":"%s"}' "$(printf 'kronop%.0s' $(seq 660))")
"${ctl[@]}" publish --topic reel:2 --event comment --json "$big" --count 3 >/dev/null
"${ctl[@]}" publish --topic system --event system_notice --json '{"msg":"maintenance"}' \
  --priority high --count 2 >/dev/null
for _ in $(seq 100); do
  n=$("${ctl[@]}" --data-dir "$tmp" replay --topic reel:1 2>/dev/null | wc -l)
  [[ $n -ge 1500 ]] && break
  sleep 0.1
done
kill -TERM $pid
wait $pid || true
sqlite3 "$tmp/kronop.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
{
  sqlite3 "$tmp/kronop.db" .dump
  echo "PRAGMA user_version=$(sqlite3 "$tmp/kronop.db" 'PRAGMA user_version');"
} >"$here/log-v1.sql"
echo "wrote $here/log-v1.sql ($(stat -c %s "$here/log-v1.sql") bytes)"
