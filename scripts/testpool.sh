#!/bin/sh
# scripts/testpool.sh up|down [NAME]
# A file-backed ZFS pool for tests and demos: zfs-fuse on Linux, native ZFS on FreeBSD.
# `up` prints the line that points the tests at it: export KLEENE_TEST_POOL=NAME
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

cmd=${1:-}
name=${2:-kleenetest}
size=${KLEENE_POOL_SIZE:-4G}
img=/var/tmp/kleene-pool-$name.img

case "$cmd" in
up)
	need_root
	start_zfs
	if zpool list -H -o name "$name" >/dev/null 2>&1; then
		log "pool $name is already there"
	else
		rm -f "$img"
		truncate -s "$size" "$img"
		zpool create -f "$name" "$img" >/dev/null 2>&1 || zpool create -f "$name" "$img" \
			|| die "zpool create $name $img failed"
		log "created pool $name on $img ($size)"
	fi
	echo "export KLEENE_TEST_POOL=$name"
	;;
down)
	need_root
	if zpool list -H -o name "$name" >/dev/null 2>&1; then
		# zfs-fuse can answer "busy" for a moment after the last unmount.
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			zpool destroy -f "$name" 2>/dev/null && break
			sleep 0.5
		done
		zpool list -H -o name "$name" >/dev/null 2>&1 && die "could not destroy pool $name"
		log "destroyed pool $name"
	fi
	rm -f "$img"
	;;
*)
	echo "usage: $0 up|down [NAME]" >&2
	exit 2
	;;
esac
