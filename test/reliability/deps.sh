#!/usr/bin/env bash
# deps.sh [valgrind]: install the Debian packages the reliability harness
# needs, when they are missing (as test/run.sh does for the regression run).
# Debian's own python3 (/usr/bin/python3) is used by the harness, because
# python3-psycopg2 installs into it.
set -eo pipefail
packages=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev make gcc
	python3 python3-psycopg2 curl util-linux)
[ "${1:-}" = valgrind ] && packages+=(valgrind)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
