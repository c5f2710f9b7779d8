#!/bin/sh
# scripts/quickstart.sh [ROOTFS.tar]: the main job on a fresh machine, as root.
# Makes a test pool when there is none (zfs-fuse on Linux), builds klee (it runs its
# containers' monitors itself), makes a base image from a busybox root file system (built
# from Debian's busybox-static by scripts/busybox-rootfs.sh, or the rootfs tarball you
# name), runs a container from it, builds examples/hello on it and runs that. Everything lives below <pool>/quickstart,
# which is made afresh on each run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/lib.sh"
cd "$top"

need_root
command -v cargo >/dev/null || die "cargo is not installed: install Rust (https://rustup.rs) first"
pool=${KLEENE_POOL:-kleenedemo}
rootfs=${1:-}
"$here/testpool.sh" up "$pool" >/dev/null

log "building klee"
cargo build -q -p kleene-cli
bin=${CARGO_TARGET_DIR:-$top/target}/debug
export KLEENE_ROOT="$pool/quickstart"
# Shows each command as you would type it, then runs it.
klee() {
	printf '$ klee %s\n' "$*"
	"$bin/klee" "$@"
}

if zfs list -H -o name "$KLEENE_ROOT" >/dev/null 2>&1; then
	log "removing the previous run's $KLEENE_ROOT"
	destroy_tree "$KLEENE_ROOT"
fi
if [ -z "$rootfs" ]; then
	rootfs=/var/tmp/kleene-busybox.tar
	"$here/busybox-rootfs.sh" "$rootfs"
fi
case "$rootfs" in /*) ;; *) rootfs=$(pwd)/$rootfs ;; esac
[ -f "$rootfs" ] || die "no such rootfs tarball: $rootfs"

log "running on $KLEENE_ROOT"
klee image create -t busybox fetch "file://$rootfs"
klee run --rm busybox echo hello from a kleene container
klee build -t hello examples/hello
klee run --rm hello
klee lsi
klee run --name rc busybox
klee lsc
klee stop rc
