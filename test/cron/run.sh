#!/usr/bin/env bash
# run.sh [--build] [--keep]: the pg_cron integration test (test/cron/cron_test.py).
# Installs what is missing (postgresql-NN-cron, psycopg2: as root), then runs
# the test against the installed nimble_fdw (--build: make install it first).
# NN is PG_MAJOR, else the newest PostgreSQL installed.
set -eo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PG_MAJOR=${PG_MAJOR:-$(ls -v /usr/lib/postgresql 2>/dev/null | tail -n 1)}
"$here/../install_packages.sh" "postgresql-$PG_MAJOR-cron"
bash "$here/../reliability/deps.sh"
exec timeout -k 15 300 /usr/bin/python3 "$here/cron_test.py" "$@"
