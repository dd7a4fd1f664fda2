#!/usr/bin/env bash
# The Debian package, installed for real: builds kronop_<version>_<arch>.deb with cpack from
# the build directory, installs it with dpkg, checks the user, the files, the unit
# (systemd-analyze verify) and the pkg-config file, builds a C producer against the
# installed header and library, runs kronopd from the installed unit's ExecStart= as its
# user, publishes through it, stops it with SIGTERM (exit status 0), purges the package and
# checks that nothing of it is left.
#
#   install_test.sh BUILD_DIR CPACK PRODUCER_C
#
# It changes the system (dpkg, a user), so it needs root and dpkg and skips (exit status 77)
# without them, or when kronop is already installed there (the package, its user or
# /usr/sbin/kronopd): it never touches an installation it did not make. It cleans up after
# itself however it ends.
#
# Overrides of the unit's command line, so that it runs beside other tests: --port 0 (the
# kernel picks a free port) and --shm-name kronop-install-test-PID (the unit's segment,
# kronop, may be a developer's). The data and control socket paths are the unit's own,
# /var/lib/kronop and /run/kronop, which nothing else uses.
set -euo pipefail

build=$(realpath "${1:?build dir}")
cpack=${2:?cpack}
producer_c=$(realpath "${3:?producer.c}")
n=1000
topic=reel:install-test
shm=kronop-install-test-$$

skip() {
  echo "install_test: SKIPPED: $*"
  exit 77
}
fail() {
  echo "install_test: FAILED: $*" >&2
  exit 1
}
step() { echo "--- $*"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (it installs the package with dpkg)"
for tool in dpkg dpkg-deb dpkg-query cc pkg-config setpriv getent flock python3; do
  command -v "$tool" >/dev/null || skip "needs $tool"
done

# One install test at a time on this host, whichever tree it is built from.
exec 9>/run/lock/kronop-install-test.lock
flock -w 900 9 || fail "another install test held /run/lock/kronop-install-test.lock for 15 min"

if dpkg-query -W -f='${db:Status-Status}' kronop 2>/dev/null | grep -qv '^not-installed$'; then
  skip "the kronop package is installed on this host; not touching it"
fi
getent passwd kronop >/dev/null && skip "a user kronop exists on this host; not touching it"
getent group kronop >/dev/null && skip "a group kronop exists on this host; not touching it"
[ -e /usr/sbin/kronopd ] && skip "/usr/sbin/kronopd exists (installed by hand?); not touching it"

tmp=$(mktemp -d /tmp/kronop-install-test.XXXXXX)
chmod 755 "$tmp" # the kronop user runs the producer from here
kronopd_pid=""
made_run_dir=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$kronopd_pid" ] && kill -0 "$kronopd_pid" 2>/dev/null; then
    kill -KILL "$kronopd_pid"
    wait "$kronopd_pid" 2>/dev/null
  fi
  rm -f "/dev/shm/$shm"
  [ -n "$made_run_dir" ] && rm -rf "$made_run_dir"
  if dpkg-query -W -f='${db:Status-Status}' kronop 2>/dev/null | grep -qv '^not-installed$'; then
    echo "install_test: cleaning up: dpkg --purge kronop"
    dpkg --purge kronop >/dev/null
  fi
  if ((rc != 0 && rc != 77)) && [ -s "$tmp/kronopd.log" ]; then
    echo "--- kronopd's log:" >&2
    cat "$tmp/kronopd.log" >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# dpkg refuses to run while apt or another dpkg holds its lock: wait for it.
dpkg_locked() {
  local out
  for _ in $(seq 120); do
    if out=$("$@" 2>&1); then
      printf '%s\n' "$out"
      return 0
    fi
    grep -q 'lock' <<<"$out" || break
    sleep 1
  done
  printf '%s\n' "$out" >&2
  return 1
}

step "cpack"
(cd "$tmp" && "$cpack" --config "$build/CPackConfig.cmake" -B "$tmp/pkg") >"$tmp/cpack.log" 2>&1 ||
  {
    cat "$tmp/cpack.log" >&2
    fail "cpack failed"
  }
debs=("$tmp"/pkg/*.deb)
if ((${#debs[@]} != 1)) || [ ! -f "${debs[0]}" ]; then fail "cpack made ${debs[*]}, not one .deb"; fi
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg --print-architecture)
[ "$(basename "$deb")" = "kronop_${version}_${arch}.deb" ] ||
  fail "package file $(basename "$deb"), expected kronop_${version}_${arch}.deb"
echo "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"

step "dpkg -i"
dpkg_locked dpkg -i "$deb" || fail "dpkg -i failed"
dpkg-query -W -f='${db:Status-Abbrev}\n' kronop | grep -q '^ii' || fail "kronop is not installed"
dpkg -L kronop >"$tmp/files"

step "user and group"
getent passwd kronop || fail "no user kronop"
getent group kronop || fail "no group kronop"

step "files"
libdir=$(pkg-config --variable=libdir kronop-ipc) || fail "pkg-config does not know kronop-ipc"
unit=""
for f in /usr/lib/systemd/system/kronopd.service /lib/systemd/system/kronopd.service; do
  if grep -Fqx "$f" "$tmp/files"; then
    unit=$f
    break
  fi
done
[ -n "$unit" ] || fail "the package has no /usr/lib/systemd/system/kronopd.service"
for f in /usr/sbin/kronopd /usr/bin/kronopctl /usr/include/kronop_ipc.h \
  "$libdir/libkronop_ipc.so" "$libdir/libkronop_ipc.so.0" "$libdir/pkgconfig/kronop-ipc.pc" \
  "$unit" "${unit%.service}.socket" /usr/lib/sysusers.d/kronop.conf /etc/kronop/kronopd.conf \
  /usr/share/man/man8/kronopd.8 /usr/share/man/man1/kronopctl.1 \
  /usr/share/man/man7/kronop-ipc.7; do
  [ -f "$f" ] || fail "$f is not installed"
  grep -Fqx "$f" "$tmp/files" || fail "$f is not the package's (dpkg -L)"
  echo "ok $f"
done
dpkg-query -W -f='${Conffiles}\n' kronop | grep -q '^ /etc/kronop/kronopd.conf ' ||
  fail "/etc/kronop/kronopd.conf is not a conffile"
grep -qx 'prefix=/usr' "$libdir/pkgconfig/kronop-ipc.pc" || fail "kronop-ipc.pc: prefix is not /usr"
grep -qx 'ExecStart=/usr/sbin/kronopd --config /etc/kronop/kronopd.conf' "$unit" ||
  fail "$unit: ExecStart= does not name /usr/sbin/kronopd and /etc/kronop/kronopd.conf"

step "systemd-analyze verify $unit ${unit%.service}.socket"
if command -v systemd-analyze >/dev/null; then
  # Offline: it loads the units into a test manager, without PID 1 being systemd. --man=no:
  # checking Documentation= would need man-db.
  out=$(systemd-analyze verify --man=no "$unit" "${unit%.service}.socket" 2>&1) || {
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify failed"
  }
  [ -z "$out" ] || {
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify warned"
  }
  echo "ok"
  step "systemd-analyze security --offline=true $unit (informational)"
  systemd-analyze security --offline=true --no-pager "$unit" 2>&1 | tail -n 1 || true
else
  echo "systemd-analyze is missing: not verified"
fi

step "a producer built against the installed library"
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/producer" "$producer_c" \
  $(pkg-config --cflags --libs kronop-ipc) || fail "the producer does not build"
loaded=$(ldd "$tmp/producer" | awk '$1 == "libkronop_ipc.so.0" { print $3 }')
if [ -z "$loaded" ] || [ "$(realpath "$loaded")" != "$(realpath "$libdir/libkronop_ipc.so.0")" ]; then
  fail "the producer does not load $libdir/libkronop_ipc.so.0: $(ldd "$tmp/producer")"
fi

step "kronopd from the unit's ExecStart="
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(unit_value ExecStart)
exec_start=${exec_start#[-@:+!]}
read -ra command <<<"$exec_start"
user=$(unit_value User)
group=$(unit_value Group)
# What systemd does before ExecStart=: RuntimeDirectory= and StateDirectory= are created
# for the user with their modes, then the working directory and the umask apply.
runtime_dir=/run/$(unit_value RuntimeDirectory)
state_dir=/var/lib/$(unit_value StateDirectory)
install -d -o "$user" -g "$group" -m "$(unit_value RuntimeDirectoryMode)" "$runtime_dir"
made_run_dir=$runtime_dir
install -d -o "$user" -g "$group" -m "$(unit_value StateDirectoryMode)" "$state_dir"
conf=""
for ((i = 1; i + 1 < ${#command[@]}; ++i)); do
  [ "${command[i]}" = --config ] && conf=${command[i + 1]}
done
[ -f "$conf" ] || fail "ExecStart= names no --config file"
control_socket=$(sed -n 's/^control-socket *= *//p' "$conf")
data_dir=$(sed -n 's/^data-dir *= *//p' "$conf")
# The unit's mount sandbox (ProtectSystem=strict, PrivateDevices=, ...), as far as this
# machine can make it: kronopd must still share /dev/shm with producers outside it.
sandbox=("$(dirname "$producer_c")/sandbox.sh" "$state_dir" "$runtime_dir" --)
if "${sandbox[0]}" --probe; then
  "${sandbox[@]}" sh -c 'touch /etc/kronop-sandbox-probe 2>/dev/null && exit 1; exit 0' ||
    fail "the sandbox leaves /etc writable"
  echo "in the unit's mount sandbox (ProtectSystem=strict, ProtectHome, PrivateTmp, PrivateDevices)"
else
  echo "no mount namespaces here: kronopd runs without the unit's mount sandbox"
  sandbox=()
fi
echo "${command[*]} --port 0 --shm-name $shm (as $user:$group)"
(
  cd "$(unit_value WorkingDirectory)"
  umask "$(unit_value UMask)"
  exec "${sandbox[@]}" setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
    "${command[@]}" --port 0 --shm-name "$shm"
) >"$tmp/kronopd.log" 2>&1 &
kronopd_pid=$!

kronopctl=(/usr/bin/kronopctl --socket "$control_socket" --data-dir "$data_dir")
for _ in $(seq 150); do
  "${kronopctl[@]}" health >/dev/null 2>&1 && break
  kill -0 "$kronopd_pid" 2>/dev/null || fail "kronopd exited at start"
  sleep 0.1
done
"${kronopctl[@]}" health || fail "kronopd does not answer on $control_socket"

step "publish $n messages as $user"
setpriv --reuid="$user" --regid="$group" --init-groups "$tmp/producer" "$shm" "$topic" "$n" ||
  fail "the producer failed"
records() {
  "${kronopctl[@]}" --json stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"])'
}
logged() { "${kronopctl[@]}" replay --topic "$topic" 2>/dev/null | wc -l; }
for _ in $(seq 100); do
  [ "$(records)" = "$n" ] && [ "$(logged)" = "$n" ] && break
  sleep 0.1
done
[ "$(records)" = "$n" ] || fail "kronopd took $(records) records, not $n"
[ "$(logged)" = "$n" ] || fail "the durable log holds $(logged) messages of $topic, not $n"
echo "kronopd took $n records and logged them"

step "SIGTERM"
kill -TERM "$kronopd_pid"
for _ in $(seq 300); do
  kill -0 "$kronopd_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$kronopd_pid" 2>/dev/null && fail "kronopd still runs 30 s after SIGTERM"
status=0
wait "$kronopd_pid" || status=$?
kronopd_pid=""
((status == 0)) || fail "kronopd exited with status $status after SIGTERM"
echo "exit status 0"
# What systemd does when the service stops: the runtime directory goes. The segment stays
# (kronopd keeps it for the next start); this test's one is not the package's.
rm -rf "$runtime_dir"
made_run_dir=""
rm -f "/dev/shm/$shm"

step "dpkg --purge"
dpkg_locked dpkg --purge kronop || fail "dpkg --purge failed"
dpkg-query -W -f='${db:Status-Status}' kronop 2>/dev/null | grep -qv '^not-installed$' &&
  fail "kronop is still known to dpkg after the purge"
while read -r f; do
  if [ -e "$f" ] && [ ! -d "$f" ]; then fail "$f is left after the purge"; fi
done <"$tmp/files"
for d in /etc/kronop "$state_dir" "$runtime_dir" "$libdir/pkgconfig/kronop-ipc.pc"; do
  [ ! -e "$d" ] || fail "$d is left after the purge"
done
getent passwd kronop && fail "the user kronop is left after the purge"
getent group kronop && fail "the group kronop is left after the purge"
echo "install_test: passed"
