#!/usr/bin/env bash
# valgrind.sh - the project's regression suites (make installcheck, with
# NIMBLE_MOCK_URL, as test/run.sh runs them) against a private PostgreSQL 15
# whose postmaster, and so every backend it forks, runs under valgrind
# memcheck; then an extra pass of failing queries, cancels/timeouts/
# terminates of hanging requests and soak statements on the same server.
# The per-process reports are parsed: definite leaks and invalid accesses
# whose stack has a nimble_fdw frame must be zero; the rest is summarised.
#
#   test/reliability/valgrind.sh [--no-build] [--json FILE] [--keep]
#                                [--no-extra] [--suites "setup errors"]
#                                [--self-test]
#
# --self-test runs postgres under an LD_PRELOAD wrapper of
# curl_multi_add_handle() that leaks 64 bytes per request, called from
# nimble_fdw's launch(): the claim must then fail (checks the parsing).
#
# Suppressions: test/reliability/valgrind.supp (PostgreSQL's noise).
# Exit status 0 when the claim holds, 1 when it does not, 2 on a usage error.
# Bounded: installcheck is given 25 minutes at most (it takes ~1 min here).
set -eo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=1
args=()
while (($#)); do
	case "$1" in
	--no-build) build=0 ;;
	--json | --suites | --outdir | --per-kind | --timeout) args+=("$1" "$2"); shift ;;
	--keep | --no-extra | --self-test) args+=("$1") ;;
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "valgrind.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
bash "$here/deps.sh" valgrind
if ((build)); then
	flock /tmp/nimble_build.lock make -s -C "$here/../.." \
		PG_CONFIG="${PG_CONFIG:-$(ls -v /usr/lib/postgresql/*/bin/pg_config | tail -n 1)}" install >/dev/null
fi
exec /usr/bin/python3 "$here/vg_run.py" "${args[@]}"
