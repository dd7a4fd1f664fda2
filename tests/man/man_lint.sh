#!/bin/sh
# man_lint: each manual page given passes `mandoc -Tlint -W warning` without a message.
# Skips (exit status 77) without mandoc (Debian package mandoc, scripts/install-deps.sh).
if ! command -v mandoc >/dev/null 2>&1; then
  echo "man_lint: SKIPPED: needs mandoc"
  exit 77
fi
status=0
for page in "$@"; do
  out=$(mandoc -Tlint -W warning "$page" 2>&1)
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    status=1
  else
    echo "ok $page"
  fi
done
exit $status
