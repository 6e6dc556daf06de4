# lib.sh: what the fresh-root scripts (run.sh, package.sh) share.  Source
# it from bash; it defines functions only.

# mounts_under ROOT: the mount points under ROOT, deepest first
mounts_under() {
	findmnt -rn -o TARGET | awk -v r="$1" 'index($0, r "/") == 1' | sort -r
}

# remove_root ROOT: delete a root, but only when nothing is mounted under
# it, and never across into another file system
remove_root() {
	[ -e "$1" ] || return 0
	if [ -n "$(mounts_under "$1")" ]; then
		echo "fresh: mounts are left under $1, not removing it:" >&2
		mounts_under "$1" >&2
		return 1
	fi
	rm -rf --one-file-system "$1"
}

# copy_tree SRC DEST: the files of the tree SRC that a clone of it has
# (tracked, or new and not ignored; a tracked file deleted from the work
# tree is left out), or outside a git work tree all but .git, into DEST
copy_tree() {
	mkdir -p "$2"
	if git -C "$1" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		(cd "$1" && git ls-files -co --exclude-standard -z |
			tar --null --ignore-failed-read -cf - -T - 2>/dev/null)
	else
		tar -C "$1" --exclude=.git -cf - .
	fi | tar -C "$2" -xf -
}
