#!/usr/bin/env bash
# run.sh [--latency-ms MS] [--keep] [--verbose]: the HTTP/2 and keep-alive
# checks of nimble_fdw (h2_check.py) against nginx (TLS, h2) in front of the
# mock API.  Run as root: it installs nginx-light/openssl when missing and
# runs PostgreSQL as the postgres user.  Uses the installed extension; builds
# nothing.  Exit status 0 when every check passes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# h2_check.py stops itself after 110 s; this is the backstop
exec timeout -k 10 150 /usr/bin/python3 "$here/h2_check.py" "$@"
