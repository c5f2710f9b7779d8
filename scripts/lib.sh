# Shared by the scripts in this folder: package installs and the zfs-fuse daemon.
# Sourced, not run.

KLEENE_APT_UPDATED=${KLEENE_APT_UPDATED:-0}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "this needs root (ZFS pools, namespaces): run it with sudo"
}

# Debian's contrib component holds libzfslinux-dev (libzfs_core for the lzc feature).
enable_contrib() {
	[ -f /etc/apt/sources.list.d/kleene-contrib.sources ] && return 0
	grep -rqs 'contrib' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	cat >/etc/apt/sources.list.d/kleene-contrib.sources <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $codename
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	KLEENE_APT_UPDATED=0
}

# apt_install PKG...: installs what is missing; one `apt-get update` per run.
apt_install() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	command -v apt-get >/dev/null || die "missing packages:$missing (and no apt-get to install them)"
	if [ "$KLEENE_APT_UPDATED" != 1 ]; then
		log "apt-get update"
		apt-get update -qq || die "apt-get update failed"
		KLEENE_APT_UPDATED=1
	fi
	log "installing$missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null \
		|| die "apt-get install$missing failed"
}

# zfs_answers: the ZFS control path answers (daemon up, or kernel module loaded).
zfs_answers() { zpool list -H -o name >/dev/null 2>&1; }

# zfs_fuse_running: a zfs-fuse process exists (procps may be missing, so /proc).
zfs_fuse_running() {
	for c in /proc/[0-9]*/comm; do
		[ "$(cat "$c" 2>/dev/null)" = zfs-fuse ] && return 0
	done
	return 1
}

# wait_zfs SECONDS: waits for the control path to answer.
wait_zfs() {
	i=0
	while [ "$i" -lt "$(($1 * 10))" ]; do
		zfs_answers && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# Starts the zfs-fuse daemon unless one runs (Linux); loads zfs on FreeBSD.
# zfs-fuse refuses to start, silently (it logs to syslog), when its pid file
# exists, even a stale one left by a daemon that died or by a package install
# that started one; so a stale pid file is removed first.
start_zfs() {
	case "$(uname -s)" in
	Linux)
		if command -v zpool >/dev/null && [ -e /dev/zfs ] && ! command -v zfs-fuse >/dev/null; then
			return 0 # OpenZFS kernel module
		fi
		apt_install zfs-fuse
		zfs_answers && return 0
		# A daemon that is starting (a package install may have started one) or
		# exiting: wait until it answers or is gone.
		i=0
		while zfs_fuse_running; do
			[ "$i" = 0 ] && log "waiting for the running zfs-fuse"
			zfs_answers && return 0
			[ "$i" -ge 300 ] && die "a zfs-fuse process runs but does not answer (zpool list fails)"
			sleep 0.1
			i=$((i + 1))
		done
		log "starting zfs-fuse"
		[ -e /dev/fuse ] || die "no /dev/fuse: zfs-fuse needs FUSE"
		pidfile=/run/zfs-fuse.pid
		if [ -e "$pidfile" ]; then
			log "removing stale $pidfile"
			rm -f "$pidfile"
		fi
		mkdir -p /var/lock/zfs /run/zfs
		zfs-fuse --pidfile "$pidfile" || die "zfs-fuse did not start (exit $?; it logs to syslog)"
		wait_zfs 30 || die "zfs-fuse started but does not answer (zpool list fails)"
		;;
	FreeBSD)
		kldstat -q -m zfs || kldload zfs || die "cannot load zfs"
		;;
	*) die "unsupported system $(uname -s)" ;;
	esac
}

# destroy_tree DATASET: removes a dataset and everything below it, if it exists.
# zfs-fuse can answer "busy" for a moment after the last unmount.
destroy_tree() {
	zfs list -H -o name "$1" >/dev/null 2>&1 || return 0
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		zfs destroy -R "$1" 2>/dev/null && return 0
		sleep 0.5
	done
	zfs list -H -o name "$1" >/dev/null 2>&1 && die "could not destroy $1"
	return 0
}
