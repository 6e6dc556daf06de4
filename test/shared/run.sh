#!/usr/bin/env bash
# run.sh [--build] [--keep] [--pg-config PATH]: the shared-memory request
# budget checks (test/shared/shared_test.py): nimble_fdw in
# shared_preload_libraries, several backends spending from one budget.
# Installs what is missing (psycopg2 and the PostgreSQL packages: as root),
# then runs the test against the installed nimble_fdw (--build: make install
# it first).  PostgreSQL: PG_CONFIG, else PG_MAJOR's, else the newest under
# /usr/lib/postgresql, else pg_config from PATH.  About 30 s.
set -eo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/../reliability/deps.sh"
# shared_test.py stops itself after 150 s; this is the backstop
exec timeout -k 15 180 /usr/bin/python3 "$here/shared_test.py" "$@"
