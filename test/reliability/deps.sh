#!/usr/bin/env bash
# deps.sh [valgrind]: install the Debian packages the reliability harness
# needs, when they are missing (as test/run.sh does for the regression run).
# Debian's own python3 (/usr/bin/python3) is used by the harness, because
# python3-psycopg2 installs into it.
set -eo pipefail
packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev make gcc
	python3 python3-psycopg2 curl util-linux)
[ "${1:-}" = valgrind ] && packages+=(valgrind)
exec "$(dirname "$0")/../install_packages.sh" "${packages[@]}"
