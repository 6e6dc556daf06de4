#!/usr/bin/env bash
# install_packages.sh PACKAGE...: install the Debian packages that are
# missing (apt-get, as root); say which, and fail when not root.
# install_packages.sh --update-only: fetch the package lists unless they
# are fresh (a fresh root has none).  Used by ./run.sh and the test
# scripts.  apt's own output goes to a log that is shown only on failure.
set -eo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "install_packages.sh: $1 (run as root, or install them)" >&2
		exit 1
	fi
}

# apt-get ARGS...: quietly; on failure show what it said and return 1
apt_quiet() {
	local log status=0
	log=$(mktemp)
	DEBIAN_FRONTEND=noninteractive apt-get -q -y "$@" >"$log" 2>&1 || status=$?
	[ $status -eq 0 ] || cat "$log" >&2
	rm -f "$log"
	return $status
}

# lists fetched within the hour are used as they are
lists_fresh() {
	[ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -n 1)" ]
}

update_lists() {
	echo "install_packages.sh: fetching the package lists" >&2
	apt_quiet update || { echo "install_packages.sh: apt-get update failed" >&2; exit 1; }
}

if [ "${1:-}" = --update-only ]; then
	need_root "cannot fetch the package lists"
	lists_fresh || update_lists
	exit 0
fi

missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
need_root "missing packages: ${missing[*]}"
lists_fresh || update_lists
echo "install_packages.sh: installing ${missing[*]}" >&2
if ! apt_quiet install --no-install-recommends "${missing[@]}" 2>/dev/null; then
	# lists that went stale within the hour (the mirror moved on): once more
	update_lists
	apt_quiet install --no-install-recommends "${missing[@]}" ||
		{ echo "install_packages.sh: could not install ${missing[*]}" >&2; exit 1; }
fi
