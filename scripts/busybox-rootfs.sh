#!/bin/sh
# scripts/busybox-rootfs.sh OUT.tar: a small root file system as a tar archive, made from
# Debian's busybox-static (installed when missing): /bin/busybox and a link for each of its
# applets, /etc/passwd and /etc/group with root, and the usual empty directories.
# `klee image create fetch file://OUT.tar` makes a base image of it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
case "$1" in /*) out=$1 ;; *) out=$(pwd)/$1 ;; esac

[ -x /bin/busybox ] || apt_install busybox-static
/bin/busybox --list >/dev/null 2>&1 || die "/bin/busybox is not a static busybox with applets"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/root" "$tmp/home" "$tmp/var/log" "$tmp/dev" "$tmp/proc"
mkdir -m 1777 "$tmp/tmp"
cp /bin/busybox "$tmp/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
# The base image's command is Kleene's /bin/sh /etc/rc: a small rc that starts syslogd
# and exits, so `klee run busybox` leaves a running container, as on FreeBSD.
cat >"$tmp/etc/rc" <<'RC'
#!/bin/sh
# A stand-in for FreeBSD's /etc/rc: start the services, then exit.
echo 'Starting syslogd.'
syslogd -O /var/log/messages
RC
cat >"$tmp/etc/rc.shutdown" <<'RC'
#!/bin/sh
# A stand-in for FreeBSD's /etc/rc.shutdown (Kleene's default exec.stop).
echo 'Stopping syslogd.'
killall syslogd 2>/dev/null
exit 0
RC
chmod 755 "$tmp/etc/rc" "$tmp/etc/rc.shutdown"
tar --numeric-owner --owner=0 --group=0 -C "$tmp" -cf "$out" .
log "wrote $out ($(du -h "$out" | cut -f1), busybox $(/bin/busybox | head -1 | cut -d' ' -f2))"
