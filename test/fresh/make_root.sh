#!/usr/bin/env bash
# make_root.sh SUITE DIR: a fresh minimal Debian root (mmdebstrap
# --variant=minbase) of SUITE (bookworm, trixie, sid, ...) in DIR, which
# must not exist yet.  sid's Release file may be past its Valid-Until
# date, so its root is told not to check it (as apt.conf in the root).
set -euo pipefail
suite=$1
dir=$2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ ! -e "$dir" ] || { echo "make_root.sh: $dir exists" >&2; exit 2; }
command -v mmdebstrap >/dev/null || "$(dirname "$0")/../install_packages.sh" mmdebstrap
opts=(--variant=minbase --quiet)
case "$suite" in
sid | unstable) opts+=(--aptopt='Acquire::Check-Valid-Until "false"') ;;
esac
mkdir -p "$(dirname "$dir")"
log=$(mktemp)
if ! mmdebstrap "${opts[@]}" "$suite" "$dir" "$mirror" >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "make_root.sh: mmdebstrap $suite failed" >&2
	exit 1
fi
rm -f "$log"
