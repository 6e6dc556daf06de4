#!/usr/bin/env bash
# The README's two commands, once what they need is installed (./run.sh
# installs it on a fresh Debian machine, then calls make, which calls this):
#
#   test/run.sh demo   build, start a throwaway cluster and the bundled mock
#                      API, run the example queries (against the real API
#                      when NIMBLE_API_KEY is set)
#   test/run.sh test   the same set-up, then the mocks' self-checks and the
#                      pg_regress suites (make test adds the HTTP/2 check
#                      and the pg_cron test)
#   test/run.sh demo --installed
#                      the demo on the installed extension, building nothing
#                      (the Debian package's check: only test/ is needed)
#
# PG_CONFIG (or PG_MAJOR) picks the PostgreSQL; by default the newest one
# installed.  The cluster is made by pg_virtualenv, so nothing outside a
# temporary directory changes but the installed extension files.  It is
# UTF-8 (locale C.UTF-8) whatever the caller's locale, so that the suites
# see the same text on every machine.
set -eo pipefail
set -u
cd "$(dirname "$0")/.."
mode=${1:-test}
# --installed: use the extension as installed (a Debian package, say), and
# build nothing; only test/ need be here
installed=
[ "${2:-}" = --installed ] && installed=1

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -n "${PG_MAJOR:-}" ]; then
		PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
	else
		PG_CONFIG=$(ls -v /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | tail -n 1)
	fi
fi
if [ ! -x "${PG_CONFIG:-}" ] || ! command -v pg_virtualenv >/dev/null; then
	echo "run.sh: PostgreSQL ${PG_MAJOR:-}${PG_MAJOR:+ }is not installed (pg_config: ${PG_CONFIG:-none}); ./run.sh $mode installs what is missing" >&2
	exit 1
fi
PG_MAJOR=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
export PG_CONFIG PG_MAJOR
export LC_ALL=C.UTF-8
unset LANGUAGE

if [ -n "$installed" ]; then
	[ -f "$("$PG_CONFIG" --pkglibdir)/nimble_fdw.so" ] ||
		{ echo "run.sh: nimble_fdw is not installed for PostgreSQL $PG_MAJOR" >&2; exit 1; }
else
	# warnings are errors here, not in the Makefile a user builds with
	make -s PG_CONFIG="$PG_CONFIG" COPT="${COPT:--Werror}"
	make -s PG_CONFIG="$PG_CONFIG" COPT="${COPT:--Werror}" install >/dev/null
fi

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
mocks_started=0
start_mock() {
	local script=test/mock_nimble.py
	case "${1:-}" in
	test/mock_*.py) script=$1; shift ;;
	esac
	local name
	mocks_started=$((mocks_started + 1))
	name=$(basename "$script" .py).$mocks_started
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
		# the mock is on loopback, whose port nimble_fdw.allowed_hosts must allow
		export PGOPTIONS="-c nimble_fdw.allowed_hosts=${mock_url#http://}"
		echo "run.sh: demo against the bundled mock API at $NIMBLE_URL"
	fi
	pg_virtualenv -v "$PG_MAJOR" -c --locale=C.UTF-8 psql -X -q -v ON_ERROR_STOP=1 -f test/demo.sql
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
	# the scraping API's and the fact-check API's mocks (README section 5a)
	start_mock test/mock_scrape.py
	export NIMBLE_SCRAPE_MOCK_URL=$mock_url
	start_mock test/mock_factcheck.py
	export NIMBLE_FACTCHECK_MOCK_URL=$mock_url
	# an account of 2,000 batches of 3 tasks, for the planner's choices
	# (key_join, analyze)
	start_mock --batches 2000 --tasks-per-batch 3
	export NIMBLE_BIG_MOCK_URL=$mock_url
	# every message at every level goes to the log, which must then hold
	# neither key the suites use (the api key never appears in a message).
	# The command inside always succeeds, so that pg_virtualenv does not
	# print the log's last 100 lines; its status comes back in a file, and
	# the whole log is kept in log/.
	mkdir -p log
	keep_log=$PWD/log/postgresql-regress.log
	rm -f "$keep_log" regression.diffs
	echo 1 >"$work/regress.status"
	pg_virtualenv -v "$PG_MAJOR" -c --locale=C.UTF-8 \
		-o log_min_messages=debug5 -o log_error_verbosity=verbose \
		env STATUS_FILE="$work/regress.status" KEEP_LOG="$keep_log" sh -c '
		make -s PG_CONFIG="$PG_CONFIG" installcheck; status=$?
		log=/var/log/postgresql/postgresql-$PG_MAJOR-regress.log
		[ -f "$log" ] || log=$(ls "${PG_CLUSTER_CONF_ROOT%/postgresql}"/log/*.log 2>/dev/null | head -n 1)
		cp "$log" "$KEEP_LOG"
		if grep -n -e "test-key" -e "sekrit-key-123" "$log"; then
			echo "run.sh: an API key appears in the server log"
			status=1
		else
			echo "run.sh: server log checked: $(wc -l <"$log") lines, no API key in them"
		fi
		echo $status >"$STATUS_FILE"' 2>&1 | tee "$work/regress.log" || true
	status=$(cat "$work/regress.status")
	if [ -s regression.diffs ]; then
		cat regression.diffs
		echo "run.sh: the differences are in regression.diffs, the server log in log/postgresql-regress.log"
	fi
	# pg_regress 16 and later print TAP ("ok 3 - batches", "not ok 6 -
	# tasks"), 15 "test batches ... ok" / "... FAILED"
	passed=$(grep -cE '^ok [0-9]+ |\.\.\. ok ' "$work/regress.log" || true)
	failed=$(grep -cE '^not ok [0-9]+ |\.\.\. FAILED ' "$work/regress.log" || true)
	[ "$failed" -eq 0 ] || status=1
	total=$(sed -n 's/^REGRESS = //p' Makefile | wc -w)
	if [ $((passed + failed)) -ne "$total" ]; then
		echo "run.sh: pg_regress stopped early: $((total - passed - failed)) of $total suites did not run"
		status=1
	fi
	echo "$passed passed, $failed failed"
	exit "$status"
	;;
*)
	echo "usage: test/run.sh demo|test" >&2
	exit 2
	;;
esac
