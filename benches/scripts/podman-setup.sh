#!/bin/sh
# benches/scripts/podman-setup.sh: podman, buildah and runc from Debian, configured for this
# kind of machine (runc, cgroupfs, no CAP_SYS_RESOURCE: explicit ulimits).
set -eu
missing=""
for p in podman buildah runc; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
mkdir -p /etc/containers
cat >/etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
podman --version
