#!/usr/bin/env bash
# run.sh demo | test: the README's two commands, for a fresh Debian machine
# (12, 13 or sid), as root, from a clone of this repository.  It needs
# nothing beyond Debian's minimal base: it installs what is missing (make,
# the compiler, PostgreSQL and its server headers, libcurl, python3, ...),
# then runs `make demo` or `make test` with the PostgreSQL it chose.
#
#   ./run.sh demo    build, start a throwaway cluster and the bundled mock
#                    API, run the example queries (the real API when
#                    NIMBLE_API_KEY is set)
#   ./run.sh test    the same set-up, then every test (make test)
#
# PostgreSQL: the major version that this Debian release ships, unless
# PG_MAJOR (15, 16, 17, 18) or PG_CONFIG (a pg_config path) names another.
# Packages come from the machine's apt sources; Debian itself offers one
# major version per release (12: 15, 13: 17, sid: 18).
set -eo pipefail
trap 'echo "run.sh: failed at line $LINENO (exit $?)" >&2' ERR
cd "$(dirname "$0")"

mode=${1:-}
case "$mode" in
demo | test) ;;
*)
	echo "usage: ./run.sh demo|test   (PG_MAJOR=NN picks the PostgreSQL major version)" >&2
	exit 2
	;;
esac

# a clean environment may lack the sbin directories that dpkg needs
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

# the version that the release's "postgresql" package depends on
release_major() {
	{ apt-cache depends postgresql 2>/dev/null || true; } |
		sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1
}

if [ -z "${PG_MAJOR:-}" ] && [ -n "${PG_CONFIG:-}" ]; then
	PG_MAJOR=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
fi
if [ -z "${PG_MAJOR:-}" ]; then
	PG_MAJOR=$(release_major)
	if [ -z "$PG_MAJOR" ] && [ "$(id -u)" = 0 ]; then
		# a fresh root has no package lists yet
		test/install_packages.sh --update-only
		PG_MAJOR=$(release_major)
	fi
fi
case "${PG_MAJOR:-}" in
15 | 16 | 17 | 18) ;;
*)
	echo "run.sh: cannot tell which PostgreSQL to use (got '${PG_MAJOR:-nothing}'); set PG_MAJOR to 15, 16, 17 or 18" >&2
	exit 2
	;;
esac
export PG_MAJOR
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}

# What each command needs.  ca-certificates is only recommended by libcurl
# and libc6-dev only by gcc, but without them no https request can be
# verified and nothing compiles.
packages=(make gcc libc6-dev libcurl4-openssl-dev ca-certificates curl python3
	"postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR")
if [ "$mode" = test ]; then
	# the HTTP/2 check (nginx, openssl) and the pg_cron test (psycopg2)
	packages+=(nginx-light openssl python3-psycopg2 "postgresql-$PG_MAJOR-cron")
fi
test/install_packages.sh "${packages[@]}"

exec make --no-print-directory PG_CONFIG="$PG_CONFIG" "$mode"
