#!/bin/sh
# scripts/examples.sh [POOL]: builds and runs the embedding examples of examples/ against a
# pool (default $KLEENE_TEST_POOL, else kleenedemo, made when missing), each in its own
# engine root <pool>/examples-<name>, made afresh. The base image is the busybox rootfs of
# scripts/busybox-rootfs.sh. Fails when any example fails.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/lib.sh"
cd "$top"

need_root
pool=${1:-${KLEENE_TEST_POOL:-kleenedemo}}
"$here/testpool.sh" up "$pool" >/dev/null
rootfs=/var/tmp/kleene-busybox.tar
"$here/busybox-rootfs.sh" "$rootfs"

log "building the examples"
cargo build -q -p kleene-examples --examples
bin=${CARGO_TARGET_DIR:-$top/target}/debug

failed=""
for ex in embed_minimal build_and_run snapshot_debug; do
	root="$pool/examples-$ex"
	destroy_tree "$root"
	log "example $ex on $root"
	if "$bin/examples/$ex" "$root" "$rootfs"; then
		log "example $ex: passed"
	else
		log "example $ex: FAILED"
		failed="$failed $ex"
	fi
	destroy_tree "$root"
done
[ -z "$failed" ] || die "examples failed:$failed"
