#!/usr/bin/env bash
# The README's two commands in one script, for a fresh Debian 12 machine:
#
#   test/run.sh demo   install what is missing, build, start a throwaway
#                      cluster and the bundled mock API, run the example
#                      queries (against the real API when NIMBLE_API_KEY is set)
#   test/run.sh test   the same set-up, then every test suite
#
# Packages are installed with apt-get when missing (as root).  The cluster
# is made by pg_virtualenv, so nothing outside a temporary directory changes
# but the installed extension files.
set -eo pipefail
set -u
cd "$(dirname "$0")/.."
mode=${1:-test}

test/install_packages.sh postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev \
	make gcc python3 curl

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
make -s PG_CONFIG="$PG_CONFIG"
make -s PG_CONFIG="$PG_CONFIG" install >/dev/null

work=$(mktemp -d)
mock_pids=
cleanup() {
	for pid in $mock_pids; do
		kill "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# start_mock [SCRIPT] ARGS...: a mock API (test/mock_nimble.py unless SCRIPT
# names another test/mock_*.py) on a free port; sets $mock_url
start_mock() {
	local script=test/mock_nimble.py
	case "${1:-}" in
	test/mock_*.py) script=$1; shift ;;
	esac
	local name
	name=$(basename "$script" .py)
	local portfile=$work/$name.port
	rm -f "$portfile"
	python3 "$script" --port 0 --port-file "$portfile" "$@" >"$work/$name.log" 2>&1 &
	mock_pids="$mock_pids $!"
	for _ in $(seq 100); do
		[ -s "$portfile" ] && break
		sleep 0.1
	done
	[ -s "$portfile" ] || { echo "run.sh: $script did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
	mock_url="http://127.0.0.1:$(tr -d '[:space:]' <"$portfile")"
}

case "$mode" in
demo)
	if [ -n "${NIMBLE_API_KEY:-}" ]; then
		export NIMBLE_URL=${NIMBLE_URL:-https://sdk.nimbleway.com/v1}
		# a url of your own (a proxy, say) must be an allowed host
		host=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).hostname or "")' "$NIMBLE_URL")
		export PGOPTIONS="-c nimble_fdw.allowed_hosts=$host"
		echo "run.sh: demo against $NIMBLE_URL"
	else
		start_mock
		export NIMBLE_URL=$mock_url/v1 NIMBLE_API_KEY=test-key
		# the mock is on loopback, which nimble_fdw.allowed_hosts must allow
		export PGOPTIONS="-c nimble_fdw.allowed_hosts=127.0.0.1"
		echo "run.sh: demo against the bundled mock API at $NIMBLE_URL"
	fi
	pg_virtualenv -v 15 psql -X -q -v ON_ERROR_STOP=1 -f test/demo.sql
	;;
test)
	status=0
	# the mock's own checks first: the suites trust what it serves
	python3 test/mock_selfcheck.py --no-bench >"$work/selfcheck.log" 2>&1 || status=$?
	tail -n 1 "$work/selfcheck.log" | sed 's/^/mock_selfcheck: /'
	[ $status -eq 0 ] || { cat "$work/selfcheck.log"; exit $status; }

	python3 test/mock_apis_selfcheck.py --no-bench >"$work/apis_selfcheck.log" 2>&1 || status=$?
	sed "s/^/mock_apis_selfcheck: /" "$work/apis_selfcheck.log" | tail -n 3
	[ $status -eq 0 ] || { cat "$work/apis_selfcheck.log"; exit $status; }

	start_mock
	export NIMBLE_MOCK_URL=$mock_url
	# the other APIs of the route tables (issue 6), each with its own mock
	start_mock test/mock_scrape.py
	export NIMBLE_SCRAPE_MOCK_URL=$mock_url
	start_mock test/mock_factcheck.py
	export NIMBLE_FACTCHECK_MOCK_URL=$mock_url
	# every message at every level goes to the log, which must then hold
	# neither key the suites use (the api key never appears in a message)
	pg_virtualenv -v 15 -o log_min_messages=debug5 -o log_error_verbosity=verbose sh -c '
		make -s PG_CONFIG="$PG_CONFIG" installcheck; status=$?
		log=/var/log/postgresql/postgresql-15-regress.log
		if grep -n -e "test-key" -e "sekrit-key-123" "$log"; then
			echo "run.sh: an API key appears in the server log ($log)"
			exit 1
		fi
		echo "run.sh: server log checked: $(wc -l <"$log") lines, no API key in them"
		exit $status' 2>&1 | tee "$work/regress.log" || status=$?
	[ -f regression.diffs ] && [ -s regression.diffs ] && cat regression.diffs
	passed=$(grep -cE '^(not )?ok |\.\.\. ok' "$work/regress.log" || true)
	failed=$(grep -cE '\.\.\. FAILED' "$work/regress.log" || true)
	[ "$passed" -gt 0 ] || status=1
	echo "pg_regress: $passed passed, $failed failed"
	exit $status
	;;
*)
	echo "usage: test/run.sh demo|test" >&2
	exit 2
	;;
esac
