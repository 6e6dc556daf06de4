#!/usr/bin/env bash
# run.sh [--build] [--keep]: the pg_cron integration test (test/cron/cron_test.py).
# Installs what is missing (postgresql-15-cron, psycopg2: as root), then runs
# the test against the installed nimble_fdw (--build: make install it first).
set -eo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/../install_packages.sh" postgresql-15-cron
bash "$here/../reliability/deps.sh"
exec timeout -k 15 300 /usr/bin/python3 "$here/cron_test.py" "$@"
