#!/usr/bin/env bash
# deps.sh [valgrind]: install the Debian packages the reliability harness
# needs, when they are missing (as ./run.sh does for the regression run),
# for PG_MAJOR's PostgreSQL (default: the newest installed, else 15).
# Debian's own python3 (/usr/bin/python3) is used by the harness, because
# python3-psycopg2 installs into it.
set -eo pipefail
major=${PG_MAJOR:-$(ls -v /usr/lib/postgresql 2>/dev/null | tail -n 1)}
major=${major:-15}
packages=("postgresql-$major" "postgresql-server-dev-$major" libcurl4-openssl-dev make gcc
	libc6-dev ca-certificates python3 python3-psycopg2 curl util-linux)
[ "${1:-}" = valgrind ] && packages+=(valgrind)
exec "$(dirname "$0")/../install_packages.sh" "${packages[@]}"
