#!/bin/sh
# benches/scripts/minbase.sh [OUT]: a Debian bookworm minbase rootfs as an xz tarball, made
# once with debootstrap and cached (default /var/cache/kleene-bench/minbase.txz). Prints
# its path.
set -eu
out=${1:-/var/cache/kleene-bench/minbase.txz}
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi
[ "$(id -u)" = 0 ] || { echo "minbase.sh: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap xz-utils >/dev/null
mkdir -p "$(dirname "$out")"
dir=$(mktemp -d /var/tmp/minbase.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >&2
tar -C "$dir" --numeric-owner --xattrs -cf - . | xz -T0 -6 > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
