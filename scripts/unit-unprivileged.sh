#!/bin/sh
# scripts/unit-unprivileged.sh: the unit tests that must need neither root nor a ZFS pool
# (kleene-core's build planning, caching and repair on the in-memory ZFS; the parser; the
# ZFS argv and the in-memory backend), built as root, then run as `nobody` with no pool
# named. A test that needs more fails here.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/lib.sh"
cd "$top"
need_root
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed"

exes=$(cargo test --lib --no-run --message-format=json \
	-p kleene-core -p kleene-dockerfile -p kleene-zfs -p kleene-net -p kleene-oci -p kleene-runtime 2>/dev/null |
	python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
')
[ -n "$exes" ] || die "no unit test binaries were built"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
chown nobody "$home"
status=0
for exe in $exes; do
	log "as nobody: $(basename "$exe")"
	setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -u KLEENE_TEST_POOL -u KLEENE_REQUIRE_ZFS HOME="$home" TMPDIR="$home" "$exe" -q || status=1
done
exit $status
