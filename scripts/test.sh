#!/bin/sh
# scripts/test.sh: every check of the project, on a fresh Debian machine as root.
# Installs what it needs (zfs-fuse, nftables, buildah as a peer...), starts zfs-fuse,
# makes its own pool (destroyed on exit, success or not), then: rustfmt, clippy (also with the lzc feature), the whole test suite with
# KLEENE_REQUIRE_ZFS=1 (tests that need ZFS or root fail rather than skip), the unit tests
# again as nobody without a pool (scripts/unit-unprivileged.sh), the embedding
# examples (scripts/examples.sh), and the FreeBSD type-check.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/lib.sh"
cd "$top"

need_root
command -v cargo >/dev/null || die "cargo is not installed: install Rust (https://rustup.rs) first"

enable_contrib
apt_install zfs-fuse pkg-config libzfslinux-dev rustc-web rust-web-src busybox-static fonts-dejavu-core \
	iproute2 ca-certificates xz-utils nftables util-linux podman buildah runc python3 python3-venv \
	openssl curl umoci docker-registry skopeo gpg python3-cryptography containerd
# buildah is a peer in the COPY tests, and podman and containerd drive kleene-runtime:
# runc, cgroupfs, explicit ulimits on this kind of machine
# (benches/scripts/podman-setup.sh writes /etc/containers/containers.conf).
"$top/benches/scripts/podman-setup.sh" >/dev/null

start_zfs
pool="kt$(date +%s)x$$"
cleanup() {
	status=$?
	"$here/testpool.sh" down "$pool" || true
	exit $status
}
trap cleanup EXIT INT TERM
"$here/testpool.sh" up "$pool" >/dev/null
export KLEENE_TEST_POOL="$pool" KLEENE_REQUIRE_ZFS=1

# Every step runs, so one run shows every problem; the script fails if any step failed.
failed=""
step() {
	name=$1
	shift
	log "$name"
	start=$(date +%s)
	if "$@"; then
		log "$name: passed in $(($(date +%s) - start))s"
	else
		log "$name: FAILED after $(($(date +%s) - start))s"
		failed="$failed
  - $name"
	fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo clippy (kleene-zfs features)" cargo clippy -p kleene-zfs --all-targets --features lzc,testing,serde -- -D warnings
step "cargo clippy (zfs-daemon tests)" cargo clippy -p kleene-cli --all-targets --features zfs-daemon-tests -- -D warnings
step "cargo test" cargo test --workspace --no-fail-fast
step "unit tests as nobody, without a pool" "$here/unit-unprivileged.sh"
step "examples" "$here/examples.sh" "$pool"
step "cargo test (lzc)" cargo test -p kleene-zfs --features lzc --lib
step "zfs-fuse killed mid-operation (alone: it kills the daemon)" cargo test -p kleene-cli --features zfs-daemon-tests --test zfs_daemon -- --test-threads=1
# The FreeBSD type-check builds std from its sources: the toolchain's own rust-src when
# it has it (or rustup can add it), else Debian's rustc, which ships them but may be older
# than the workspace's rust-version. Its own target dir keeps its artifacts apart.
freebsd_check() {
	if [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ] ||
		rustup component add rust-src >/dev/null 2>&1; then
		env RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$top/target/freebsd-check" \
			cargo check -Zbuild-std=std,panic_abort --target x86_64-unknown-freebsd --workspace
	else
		env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$top/target/freebsd-check" \
			cargo check -Zbuild-std=std,panic_abort --target x86_64-unknown-freebsd --workspace \
			--ignore-rust-version
	fi
}
step "FreeBSD type-check" freebsd_check
if [ -n "$failed" ]; then
	log "failed steps:$failed"
	exit 1
fi
log "all checks passed"
