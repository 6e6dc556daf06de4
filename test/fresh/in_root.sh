#!/usr/bin/env bash
# in_root.sh ROOT COMMAND...: run COMMAND (a bash command line) as root
# inside the Debian root ROOT, in a clean environment (env -i: no LANG, a
# login's PATH and HOME only), with /proc, /sys, /dev, /dev/pts and
# /dev/shm mounted.  Whatever happens, every process left in the root is
# stopped and every mount is taken down again before this script exits;
# it fails rather than leave a mount behind.  Its exit status is COMMAND's.
set -u
root=$(cd "$1" && pwd) || exit 2
shift
[ -x "$root/bin/bash" ] || { echo "in_root.sh: $root is not a Debian root" >&2; exit 2; }

# shellcheck source=test/fresh/lib.sh
. "$(dirname "$0")/lib.sh"

# stop every process whose root directory is ours (a postgres left
# running would keep /dev busy), then unmount
teardown() {
	local pid pids tries
	for tries in 1 2 3 4 5 6 7 8 9 10; do
		pids=
		for pid in /proc/[0-9]*; do
			[ "$(readlink "$pid/root" 2>/dev/null)" = "$root" ] && pids="$pids ${pid#/proc/}"
		done
		[ -n "$pids" ] || break
		if [ "$tries" -lt 5 ]; then kill -TERM $pids 2>/dev/null; else kill -KILL $pids 2>/dev/null; fi
		sleep 1
	done
	local m
	for m in $(mounts_under "$root"); do
		mountpoint -q "$m" || continue		# gone with its parent
		umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null ||
			echo "in_root.sh: cannot unmount $m" >&2
	done
	if [ -n "$(mounts_under "$root")" ]; then
		echo "in_root.sh: mounts are left under $root: do not delete it" >&2
		return 1
	fi
	return 0
}
trap 'teardown || exit 3' EXIT
trap 'exit 130' INT TERM

# /sys and /dev are the host's, bound recursively (their /dev/pts and
# /dev/shm included) and made slaves, so that nothing mounted or unmounted
# under the root can reach the host's own mounts
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
mountpoint -q "$root/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
mountpoint -q "$root/dev/shm" || { mkdir -p "$root/dev/shm" && mount -t tmpfs -o mode=1777 shm "$root/dev/shm"; }

# a daemon that a package's maintainer script would start (the cluster of
# postgresql-NN) stays stopped, as in Debian's own build chroots
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	chroot "$root" /bin/bash -c "$*"
status=$?
exit $status
