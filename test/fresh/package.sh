#!/usr/bin/env bash
# package.sh SUITE WORKDIR [SOURCE]: the Debian package, end to end, on
# fresh Debian roots.
#
#   1. WORKDIR/build: a fresh minimal root of SUITE (mmdebstrap); the
#      source (SOURCE, by default the tree this script is in: its files
#      that git tracks or does not ignore) is copied in, its build
#      dependencies installed (apt-get build-dep ./), and
#      dpkg-buildpackage -us -uc -b builds postgresql-NN-nimble-fdw for
#      every PostgreSQL major the root has (debian/rules, debian/pgversions)
#   2. each .deb must hold nimble_fdw.so, nimble_fdw.control and the sql
#      files; the .debs are kept in WORKDIR/debs
#   3. WORKDIR/install: a second fresh root that never saw the source; the
#      .debs alone are installed with apt-get install ./...deb, which must
#      pull in postgresql-NN and libcurl
#   4. the demo (demo_script below) runs there
#
# Every entry into a root goes through in_root.sh, which unmounts what it
# mounted; a root is removed only when nothing is mounted under it.  The
# roots are removed at the end (KEEP_ROOTS=1 keeps them); the logs stay
# in WORKDIR/logs, and a failing step prints the end of its log.  Exits
# non-zero on any failure.
#
# DEBIAN_MIRROR (default http://deb.debian.org/debian) is the archive to use.
set -euo pipefail

usage() { echo "usage: $0 SUITE WORKDIR [SOURCE]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
suite=$1
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${3:-$here/../..}" && pwd)
mkdir -p "$2"
work=$(cd "$2" && pwd)
in_root=$here/in_root.sh
# shellcheck source=test/fresh/lib.sh
. "$here/lib.sh"
build=$work/build
install=$work/install
logs=$work/logs
debs=$work/debs

[ "$(id -u)" = 0 ] || { echo "package.sh: must run as root (mmdebstrap, chroot)" >&2; exit 2; }
[ -f "$src/debian/control" ] || { echo "package.sh: $src has no debian/control" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "package.sh: mmdebstrap is not installed" >&2; exit 2; }


# ---------------------------------------------------------------- the demo
# demo_script: the bash command line that in_root.sh runs in the install
# root, from /root/demo, with the PostgreSQL majors of the installed .debs
# in $majors: for each, the README's demo (test/run.sh demo) on the
# installed extension, which builds nothing.  /root/demo holds only the
# demo's files, not the extension's source.
demo_files=(test/run.sh test/demo.sql test/mock_nimble.py test/lib/mock_common.py test/lib/ids.py)
demo_packages=(python3 curl)
demo_script() {
	cat <<'EOF'
set -euo pipefail
cd /root/demo
for v in $majors; do
	echo "## PostgreSQL $v: the demo on the installed package"
	PG_MAJOR=$v test/run.sh demo --installed
done
EOF
}
# --------------------------------------------------------------------------

mkdir -p "$logs"
rm -f "$logs"/*.log
times=()
t_all=$(date +%s.%N)

cleanup() {
	local status=$?
	if [ "${KEEP_ROOTS:-}" ]; then
		echo "package.sh: roots kept in $build and $install"
	else
		remove_root "$build" || status=1
		remove_root "$install" || status=1
	fi
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# elapsed T0 T1: seconds from T0 to T1 (date +%s.%N), to a tenth
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME COMMAND...: run COMMAND with its output in logs/NAME.log; print
# the time it took; on failure print the end of the log and stop
step() {
	local name=$1; shift
	local log=$logs/$name.log t0 t1 dt status=0
	t0=$(date +%s.%N)
	# in the background and waited for, so that set -e holds inside
	# COMMAND (it would not in the left of an ||)
	"$@" >"$log" 2>&1 </dev/null &
	wait $! || status=$?
	t1=$(date +%s.%N)
	dt=$(elapsed "$t0" "$t1")
	times+=("$(printf '%-14s %7s s' "$name" "$dt")")
	if [ $status -ne 0 ]; then
		printf '%-14s FAILED (exit %d, %s s); end of %s:\n' "$name" $status "$dt" "$log"
		tail -n 60 "$log" | sed 's/^/    /'
		exit 1
	fi
	printf '%-14s ok (%s s)\n' "$name" "$dt"
}

# a new root of SUITE at ROOT, removing an old one (when nothing is mounted
# in it: mmdebstrap wants an empty directory)
make_root() {
	remove_root "$1"
	"$here/make_root.sh" "$suite" "$1"
}

copy_source() {
	copy_tree "$src" "$build/root/nimble_fdw"
}

apt_env='export DEBIAN_FRONTEND=noninteractive; apt_get() { apt-get -q -y -o APT::Install-Recommends=false "$@"; }'

build_deps() {
	"$in_root" "$build" "$apt_env; set -e; cd /root/nimble_fdw
		apt_get update
		apt_get build-dep ./"
}

build_package() {
	"$in_root" "$build" 'set -e; cd /root/nimble_fdw
		dpkg-buildpackage -us -uc -b -Jauto
		ls -l /root/*.deb'
}

# every postgresql-NN-nimble-fdw holds the module, the control file and
# the sql files of its major; they go to WORKDIR/debs
check_debs() {
	rm -rf "$debs"
	mkdir -p "$debs"
	local deb v n=0 f
	for deb in "$build"/root/postgresql-*-nimble-fdw_*.deb; do
		[ -e "$deb" ] || continue
		v=$(basename "$deb" | sed -n 's/^postgresql-\([0-9][0-9]*\)-nimble-fdw_.*/\1/p')
		dpkg -c "$deb" >"$debs/$(basename "$deb").contents"
		for f in /usr/lib/postgresql/$v/lib/nimble_fdw.so \
			/usr/share/postgresql/$v/extension/nimble_fdw.control \
			$(cd "$src" && ls nimble_fdw--*.sql | sed "s|^|/usr/share/postgresql/$v/extension/|"); do
			grep -q " \.$f\$" "$debs/$(basename "$deb").contents" ||
				{ echo "$(basename "$deb") lacks $f"; return 1; }
		done
		cp "$deb" "$debs/"
		echo "$(basename "$deb"): $(stat -c %s "$deb") bytes"
		grep -E 'nimble_fdw' "$debs/$(basename "$deb").contents"
		n=$((n + 1))
	done
	[ $n -gt 0 ] || { echo "no postgresql-NN-nimble-fdw .deb was built"; return 1; }
}

# the .debs alone (no source) into the install root, with apt-get install
# ./...deb, which must bring in postgresql-NN and libcurl; then what the
# demo needs besides
install_debs() {
	mkdir -p "$install/root/pkg" "$install/root/demo"
	cp "$debs"/*.deb "$install/root/pkg/"
	(cd "$src" && tar -cf - "${demo_files[@]}") | tar -C "$install/root/demo" -xf -
	"$in_root" "$install" "$apt_env; set -e; cd /root/pkg
		apt_get update
		apt_get install ./postgresql-*-nimble-fdw_*.deb
		for v in $majors; do
			dpkg-query -W -f '\${Package} \${Version} \${Status}\n' postgresql-\$v postgresql-\$v-nimble-fdw
		done
		dpkg-query -W -f '\${Package} \${Version} \${Status}\n' 'libcurl4*' | grep ' installed'
		apt_get install ${demo_packages[*]}"
}

run_demo() {
	"$in_root" "$install" "majors='$majors'; $(demo_script)"
}

echo "package.sh: $suite, source $src, work in $work"
step build-root make_root "$build"
step copy-source copy_source
step build-deps build_deps
step build build_package
step check-debs check_debs
# the majors built, and hence to install and demo
majors=$(ls "$debs" | sed -n 's/^postgresql-\([0-9][0-9]*\)-nimble-fdw_.*\.deb$/\1/p' | sort -un | xargs)
for deb in "$debs"/*.deb; do
	echo "  $(basename "$deb") $(stat -c %s "$deb") bytes"
done
[ "${KEEP_ROOTS:-}" ] || step rm-build-root remove_root "$build"
step install-root make_root "$install"
step install-debs install_debs
step demo run_demo
grep -E '^## |^CREATE EXTENSION' "$logs/demo.log" | sed 's/^/  /' || :
echo "  (the demo's $(wc -l <"$logs/demo.log") lines of output: $logs/demo.log)"

echo "times:"
printf '  %s\n' "${times[@]}"
printf '  %-14s %7s s\n' total "$(elapsed "$t_all" "$(date +%s.%N)")"
echo "package.sh: ok; logs in $logs, packages in $debs"
