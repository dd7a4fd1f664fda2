#!/usr/bin/env bash
# Runs COMMAND in a mount namespace laid out as systemd lays out kronopd.service's:
#   ProtectSystem=strict  everything read-only but /dev, /proc, /sys and the state and
#                         runtime directories (StateDirectory=, RuntimeDirectory=);
#   ProtectHome=yes       /home, /root and /run/user empty and read-only;
#   PrivateTmp=yes        /tmp and /var/tmp of its own;
#   PrivateDevices=yes    a /dev of its own with the pseudo devices only, and the host's
#                         /dev/shm bind-mounted into it.
# It checks, without systemd as PID 1, that the unit's sandbox leaves kronopd the host's
# /dev/shm, where producers find the segment.
#
# Usage: sandbox.sh STATE_DIR RUNTIME_DIR -- COMMAND [ARG...]   (as root)
#        sandbox.sh --probe    exit 0 if mount namespaces can be made here, else 77
set -euo pipefail

if [ "${1:-}" = --probe ]; then
  unshare --mount --propagation private true 2>/dev/null || exit 77
  exit 0
fi
if [ $# -lt 4 ] || [ "$3" != -- ]; then
  echo "usage: sandbox.sh STATE_DIR RUNTIME_DIR -- COMMAND [ARG...]" >&2
  exit 2
fi
state=$1
runtime=$2
shift 3

# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --mount --propagation private -- bash -euo pipefail -c '
state=$1 runtime=$2
shift 2
# The state and runtime directories stay writable (below): mounts of their own.
mount --bind "$state" "$state"
mount --bind "$runtime" "$runtime"
# PrivateDevices=yes
dev=$(mktemp -d /run/kronop-sandbox-dev.XXXXXX)
mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs "$dev"
for d in null zero full random urandom; do
  touch "$dev/$d"
  mount --bind "/dev/$d" "$dev/$d"
done
mkdir "$dev/shm"
mount --rbind /dev/shm "$dev/shm"
mount --move "$dev" /dev
rmdir "$dev"
# PrivateTmp=yes
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
# ProtectHome=yes
for h in /home /root /run/user; do
  if [ -d "$h" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$h"; fi
done
# ProtectSystem=strict, with the state and runtime directories writable
awk "{ print \$2 }" /proc/self/mounts | while read -r m; do
  case $m in
    /dev | /dev/* | /proc | /proc/* | /sys | /sys/* | /tmp | /var/tmp | "$state" | "$runtime") ;;
    *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;;
  esac
done
exec "$@"
' sandbox "$state" "$runtime" "$@"
