//! Veth pairs between the host's bridges and the sandboxes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::IpNet;
use rtnetlink::LinkVeth;

use super::error::{Error, Result};
use super::netlink::{link_by_index, Netlink};
use super::sandbox::Sandbox;

/// The prefix of every host-side veth name the engine makes ([`veth_name`]), so that the
/// repair can find leftovers ([`Netlink::links_with_prefix`]).
pub const VETH_PREFIX: &str = "kv";

/// The prefix of the temporary names of veth peers before they move into their sandbox.
const TEMP_PREFIX: &str = "kt";

/// The longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAMSIZ_MAX: usize = 15;

/// Checks that the kernel would accept `name` as an interface name.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAMSIZ_MAX {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        "contains '/', ':', white space or a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// 64-bit FNV-1a, for names derived from arbitrary ids.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The host-side veth name of a container's `index`-th network attachment: deterministic,
/// at most 15 bytes, starting with [`VETH_PREFIX`].
///
/// Layout: the prefix, 11 characters of the container id (its first 11 when it is at
/// least that long and ASCII alphanumeric, otherwise 11 hex digits of a hash of it), and
/// the index as 2 hex digits. An index above 255 gives the prefix and 13 hex digits of a
/// hash of id and index.
pub fn veth_name(container_id: &str, index: usize) -> String {
    const ID_LEN: usize = 11;
    if index > 0xff {
        let h = fnv1a(format!("{container_id}\0{index}").as_bytes());
        return format!("{VETH_PREFIX}{:013x}", h & 0x000f_ffff_ffff_ffff);
    }
    let id: String = if container_id.len() >= ID_LEN
        && container_id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        container_id[..ID_LEN].to_string()
    } else {
        format!("{:011x}", fnv1a(container_id.as_bytes()) & 0x07ff_ffff_ffff)
    };
    format!("{VETH_PREFIX}{id}{index:02x}")
}

/// A temporary, unique (in this host namespace) name for a veth peer until it is moved
/// into its sandbox: `kt` + pid + counter.
fn temp_peer_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    // a pid is at most 2^22 (6 hex digits): 2 + 6 + 1 + 4 <= 15
    format!("{TEMP_PREFIX}{:x}x{n:x}", std::process::id())
}

/// One attachment of a sandbox to a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The host-side end (see [`veth_name`]).
    pub host_name: String,
    /// The bridge the host end joins (it must exist: [`Netlink::ensure_bridge`]).
    pub bridge: String,
    /// The name of the end inside the sandbox, e.g. `eth0`.
    pub inner_name: String,
    /// The sandbox's addresses on this network (with the network's prefix length).
    pub addrs: Vec<IpNet>,
    /// The IPv4 default route's gateway, when this network gives the default route.
    pub gateway4: Option<Ipv4Addr>,
    /// The IPv6 default route's gateway, likewise.
    pub gateway6: Option<Ipv6Addr>,
    /// The MTU of both ends; the kernel default when `None`.
    pub mtu: Option<u32>,
}

/// Connects `sandbox` to the bridge `spec.bridge` of `host`'s namespace with a veth pair.
///
/// In the host namespace: creates the pair (the peer under a temporary unique name), moves
/// the peer into the sandbox by its descriptor (`IFLA_NET_NS_FD`), attaches the host end to
/// the bridge and sets it up. Inside the sandbox: sets `lo` up, renames the peer to
/// `spec.inner_name`, adds the addresses, sets it up and adds the default routes via the
/// gateways given. If a step fails, the host end (and so the pair) is removed before the
/// error is returned.
pub async fn attach(host: &Netlink, sandbox: &Sandbox, spec: &VethSpec) -> Result<()> {
    check_ifname(&spec.host_name)?;
    check_ifname(&spec.inner_name)?;
    let bridge = host.require_index(&spec.bridge).await?;
    let temp = temp_peer_name();
    let mut builder = LinkVeth::new(&spec.host_name, &temp);
    if let Some(mtu) = spec.mtu {
        builder = builder.mtu(mtu);
    }
    host.handle()
        .link()
        .add(builder.build())
        .execute()
        .await
        .map_err(|e| host.err(format!("create veth pair {} / {temp}", spec.host_name), e))?;
    match attach_made(host, sandbox, spec, bridge, &temp).await {
        Ok(()) => Ok(()),
        Err(err) => {
            match host.remove_link(&spec.host_name).await {
                Ok(_) => {}
                Err(cleanup) => {
                    log::warn!("after a failed attach of {}: {cleanup}", spec.host_name)
                }
            }
            // the peer, if it was never moved, went with the host end; if it was moved,
            // likewise (a veth pair is deleted as one)
            Err(err)
        }
    }
}

/// The steps of [`attach`] after the pair exists.
async fn attach_made(
    host: &Netlink,
    sandbox: &Sandbox,
    spec: &VethSpec,
    bridge: u32,
    temp: &str,
) -> Result<()> {
    let peer = host.require_index(temp).await?;
    host.set_link(
        link_by_index(peer)
            .setns_by_fd(sandbox.fd().as_raw_fd())
            .build(),
        format!("move {temp} into {}", sandbox.label()),
    )
    .await?;
    let host_end = host.require_index(&spec.host_name).await?;
    host.set_link(
        link_by_index(host_end).controller(bridge).build(),
        format!("attach {} to bridge {}", spec.host_name, spec.bridge),
    )
    .await?;
    host.set_up(host_end, &spec.host_name).await?;

    let inner = sandbox.netlink()?;
    let lo = inner.require_index("lo").await?;
    inner.set_up(lo, "lo").await?;
    let index = inner.require_index(temp).await?;
    let mut rename = link_by_index(index).name(spec.inner_name.clone());
    if let Some(mtu) = spec.mtu {
        rename = rename.mtu(mtu);
    }
    inner
        .set_link(
            rename.build(),
            format!("rename {temp} to {}", spec.inner_name),
        )
        .await?;
    for addr in &spec.addrs {
        inner.add_address(index, &spec.inner_name, *addr).await?;
    }
    inner.set_up(index, &spec.inner_name).await?;
    if let Some(gw) = spec.gateway4 {
        inner
            .add_default_route(index, &spec.inner_name, IpAddr::V4(gw))
            .await?;
    }
    if let Some(gw) = spec.gateway6 {
        inner
            .add_default_route(index, &spec.inner_name, IpAddr::V6(gw))
            .await?;
    }
    Ok(())
}

/// Deletes the host end `host_name` of a sandbox's veth pair (the sandbox's end goes with
/// it); `false` when it did not exist.
pub async fn detach(host: &Netlink, host_name: &str) -> Result<bool> {
    host.remove_link(host_name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_are_deterministic() {
        for (id, i) in [
            ("0123456789abcdef", 0),
            ("short", 1),
            ("weird/id:x y", 3),
            ("", 0),
            ("abc", 999),
        ] {
            let n = veth_name(id, i);
            assert!(n.len() <= IFNAMSIZ_MAX, "{n}");
            assert!(n.starts_with(VETH_PREFIX), "{n}");
            assert!(check_ifname(&n).is_ok(), "{n}");
            assert_eq!(n, veth_name(id, i));
        }
        assert_eq!(veth_name("0123456789abcdef", 1), "kv0123456789a01");
        assert_ne!(
            veth_name("0123456789abcdef", 1),
            veth_name("0123456789abcdef", 2)
        );
        assert!(temp_peer_name().len() <= IFNAMSIZ_MAX);
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a/b", "a b", "0123456789abcdef", "..", "a:b"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
