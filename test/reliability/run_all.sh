#!/usr/bin/env bash
# run_all.sh - the reliability harness of nimble_fdw in one command:
#
#   test/reliability/run_all.sh [--valgrind] [--no-build] [--out DIR]
#                               [--report FILE]
#
#   cancel.py    cancel / statement_timeout / terminate of hanging requests
#   leak.py      10,000 failing queries in one backend: RSS, contexts, fds,
#                and its self-test (an injected 1 kB/request leak must fail it)
#   soak.py      8 sessions, >= 16,000 queries, faults, answers checked
#   shared_soak.py  nimble_fdw preloaded: 16 sessions, 3 window-limited keys,
#                cancels and terminates mid-request, no 429, nothing left waiting
#   valgrind.sh  (with --valgrind) the regression suites under memcheck
#
# then writes test/reliability/REPORT.md (or --report FILE) from the JSON
# each script leaves in --out (default: a new directory in /tmp).
# Missing Debian packages are installed with apt-get (deps.sh).  Every
# script starts and stops its own cluster and mock API (127.0.0.1 only) and
# is bounded in time; each is also run under timeout(1) here.
# Exit status: 0 when every claim holds, 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
valgrind=0
build=1
out=
report=$here/REPORT.md
command="test/reliability/run_all.sh $*"
while (($#)); do
	case "$1" in
	--valgrind) valgrind=1 ;;
	--no-build) build=0 ;;
	--out) out=$2; shift ;;
	--report) report=$2; shift ;;
	-h | --help) sed -n '2,19p' "$0"; exit 0 ;;
	*) echo "run_all.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$out" ] || out=$(mktemp -d /tmp/nimble_reliability.XXXXXX)
mkdir -p "$out"

deps=()
((valgrind)) && deps=(valgrind)
bash "$here/deps.sh" "${deps[@]}" || exit 1
if ((build)); then
	echo "run_all.sh: building and installing the extension"
	flock /tmp/nimble_build.lock make -s -C "$here/../.." \
		PG_CONFIG="${PG_CONFIG:-$(ls -v /usr/lib/postgresql/*/bin/pg_config | tail -n 1)}" install >/dev/null || exit 1
fi

py=/usr/bin/python3
status=0
run() {
	local name=$1 limit=$2
	shift 2
	echo "run_all.sh: $name"
	local rc
	timeout --kill-after=30 "$limit" "$@" 2>&1 | tee "$out/$name.log"
	rc=${PIPESTATUS[0]}   # the script's status, not tee's
	echo "run_all.sh: $name exit $rc"
	[ "$rc" -eq 0 ] || status=1
}
run cancel 900 "$py" "$here/cancel.py" --no-build --json "$out/cancel.json"
run leak 1200 "$py" "$here/leak.py" --no-build --json "$out/leak.json"
# the harness's self-test: an injected leak of 1 kB per HTTP request must
# make leak.py fail (exit 1); anything else is a failure of the harness
echo "run_all.sh: leak self-test (an injected 1 kB leak per request must be caught)"
timeout --kill-after=30 600 "$py" "$here/leak.py" --no-build --self-test-leak 1024 \
	--queries 3000 --json "$out/leak_selftest.json" >"$out/leak_selftest.log" 2>&1
rc=$?
tail -n 3 "$out/leak_selftest.log"
if [ "$rc" -eq 1 ]; then
	echo "run_all.sh: leak self-test: the injected leak was caught"
else
	echo "run_all.sh: leak self-test: exit $rc, the injected leak was NOT caught"
	status=1
fi
run soak 900 "$py" "$here/soak.py" --no-build --json "$out/soak.json"
run shared_soak 300 "$py" "$here/shared_soak.py" --no-build --json "$out/shared_soak.json"
if ((valgrind)); then
	run valgrind 1800 bash "$here/valgrind.sh" --no-build --json "$out/valgrind.json"
	# and its self-test: a leak injected under nimble_fdw's launch() must be found
	echo "run_all.sh: valgrind self-test (an injected leak under a nimble_fdw frame must be found)"
	timeout --kill-after=30 900 bash "$here/valgrind.sh" --no-build --self-test --no-extra \
		--suites "setup batches" --json "$out/valgrind_selftest.json" \
		>"$out/valgrind_selftest.log" 2>&1
	rc=$?
	tail -n 3 "$out/valgrind_selftest.log"
	if [ "$rc" -eq 1 ]; then
		echo "run_all.sh: valgrind self-test: the injected leak was found"
	else
		echo "run_all.sh: valgrind self-test: exit $rc, the injected leak was NOT found"
		status=1
	fi
fi

"$py" "$here/report.py" "$out" "$report" "$command" || status=1
echo "run_all.sh: report written to $report (raw figures in $out)"
exit $status
