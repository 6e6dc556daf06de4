#!/usr/bin/env bash
# run.sh [bench.py options] - the nimble_fdw benchmark (see README.md here).
#
#   test/bench/run.sh                 # the full run, about 13 minutes
#   test/bench/run.sh --quick         # a smoke test, under a minute
#
# Uses the nimble_fdw already installed in PostgreSQL 15 (it does not build);
# missing Debian packages (python3-psycopg2, curl, ...) are installed first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec "$py" "$here/bench.py" "$@"
