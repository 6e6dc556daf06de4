#!/usr/bin/env bash
# run.sh [SUITE...]: the README's two commands, exactly as written, on fresh
# minimal Debian roots (default: trixie and sid, that is PostgreSQL 17 and
# 18), as a new user would run them: as root, in a clean environment
# (env -i: no LANG), from a copy of this tree (what a clone of it holds)
# with ../shared beside it, as CI has it (nothing in the tree reads it).
#
# For each SUITE: make a root with mmdebstrap (make_root.sh), copy the tree
# in, run `./run.sh demo` and then `./run.sh test` inside it (in_root.sh),
# and remove the root once nothing is mounted in it.  Prints the time of
# each step; exits non-zero if any step fails.  Run as root.
#
#   NIMBLE_FRESH_WORK  where the roots go (default /var/tmp); each run
#                      makes its own directory there (nimble_fresh.XXXXXX),
#                      so neither a second run at the same time nor the
#                      remains of a killed one (a SIGKILL skips in_root.sh's
#                      teardown and can leave mounts) stand in its way
#   NIMBLE_FRESH_KEEP  set: keep each root after its run, for a look inside
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
parent=${NIMBLE_FRESH_WORK:-/var/tmp}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(trixie sid)

[ "$(id -u)" = 0 ] || { echo "fresh/run.sh: run as root (it builds Debian roots)" >&2; exit 1; }
# shellcheck source=test/fresh/lib.sh
. "$here/lib.sh"

summary=()
status=0
# step NAME COMMAND...: run and time a step, record its result
step() {
	local name=$1 t0 t1 rc
	shift
	echo "=== $name"
	t0=$(date +%s)
	"$@"
	rc=$?
	t1=$(date +%s)
	summary+=("$(printf '%-34s %5d s  %s' "$name" $((t1 - t0)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
	[ $rc -eq 0 ] || status=1
	return $rc
}

# the README's two commands; the prefix tells the suites' lines apart
readme_command() {
	local root=$1 suite=$2 cmd=$3
	"$here/in_root.sh" "$root" "cd /root/nimble_fdw && $cmd" 2>&1 | sed -u "s/^/[$suite] /"
}

mkdir -p "$parent"
work=$(mktemp -d "$parent/nimble_fresh.XXXXXX") || exit 1
echo "fresh/run.sh: roots in $work"
for suite in "${suites[@]}"; do
	root=$work/$suite
	step "$suite: mmdebstrap minbase" "$here/make_root.sh" "$suite" "$root" || continue
	copy_tree "$repo" "$root/root/nimble_fdw"
	if [ -d "$repo/../shared" ]; then
		mkdir -p "$root/root/shared"
		cp -a "$repo/../shared/." "$root/root/shared/"
	fi
	step "$suite: ./run.sh demo" readme_command "$root" "$suite" "./run.sh demo" &&
		step "$suite: ./run.sh test" readme_command "$root" "$suite" "./run.sh test"
	if [ -z "${NIMBLE_FRESH_KEEP:-}" ]; then
		remove_root "$root" || status=1
	fi
done

# the directory goes only when every root in it went (a root with a
# mount left is kept, and said so, rather than deleted across the mount)
[ -n "${NIMBLE_FRESH_KEEP:-}" ] || rmdir "$work" 2>/dev/null ||
	echo "fresh/run.sh: $work is left behind (see above)" >&2

echo "=== fresh roots: times"
printf '%s\n' "${summary[@]}"
exit $status
