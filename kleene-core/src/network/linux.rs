//! Linux: bridges, veths into per-container namespaces, nftables.

use kleene_jail::{NetNs, NetworkMode};
use kleene_net::linux::{self, Netlink, Sandbox, VethSpec};
use kleene_net::model::FirewallInput;

use super::{host_addresses, interface_addresses, with_prefixes};
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Container, Endpoint, Network, NetworkType};

fn err(e: linux::Error) -> CoreError {
    CoreError::Network(e.to_string())
}

/// The host's interface names.
pub async fn interfaces() -> Result<Vec<String>> {
    Netlink::current()
        .await
        .map_err(err)?
        .links_with_prefix("")
        .await
        .map_err(err)
}

pub async fn default_route_interface() -> Result<Option<String>> {
    Netlink::current()
        .await
        .map_err(err)?
        .default_route_interface()
        .await
        .map_err(err)
}

/// Makes (or finds) a network's host interface and forwarding.
pub async fn ensure_interface(n: &Network) -> Result<()> {
    let nl = Netlink::current().await.map_err(err)?;
    if n.spec.kind == NetworkType::Custom {
        if !nl.link_exists(n.interface()).await.map_err(err)? {
            return Err(CoreError::Network(format!(
                "custom network {}: interface {} does not exist",
                n.name,
                n.interface()
            )));
        }
    } else {
        nl.ensure_bridge(n.interface(), &interface_addresses(n))
            .await
            .map_err(err)?;
    }
    linux::enable_forwarding(None).map_err(err)
}

/// Removes a network's host interface (a custom one is the user's and stays).
pub async fn remove_interface(n: &Network) -> Result<()> {
    if n.spec.kind == NetworkType::Custom {
        return Ok(());
    }
    let nl = Netlink::current().await.map_err(err)?;
    nl.remove_link(n.interface()).await.map_err(err)?;
    Ok(())
}

/// The host end of a container's link in `slot`.
pub fn host_link(container: &Id, slot: u8) -> String {
    linux::veth_name(container.as_str(), usize::from(slot))
}

fn veth(c: &Id, n: &Network, e: &Endpoint, default_route: bool) -> VethSpec {
    let (gw4, gw6) = host_addresses(&n.spec);
    let addrs = with_prefixes(&n.spec, e.ipv4, e.ipv6);
    VethSpec {
        host_name: host_link(c, e.slot),
        bridge: n.interface().to_string(),
        inner_name: format!("eth{}", e.slot),
        addrs,
        gateway4: gw4.filter(|_| default_route),
        gateway6: gw6.filter(|_| default_route),
        mtu: None,
    }
}

/// What a starting container's network needs alive until its jail runs: the namespace.
pub type Hold = Sandbox;

/// A starting container's network: a namespace of its own with its links, which the
/// jail joins.
pub async fn prepare(
    owner: &Id,
    what: &str,
    links: &[(Network, Endpoint)],
) -> Result<(NetworkMode, Hold)> {
    let sandbox = sandbox(owner, links).await?;
    let fd = sandbox
        .fd()
        .try_clone_to_owned()
        .map_err(|e| CoreError::io(format!("keeping the network namespace of {what}"), e))?;
    Ok((NetworkMode::Namespace(NetNs::new(fd)), sandbox))
}

/// A new network namespace for a starting container, linked to each of its networks
/// (the first that has a gateway gives the default route).
async fn sandbox(owner: &Id, links: &[(Network, Endpoint)]) -> Result<Sandbox> {
    let sandbox = Sandbox::new().map_err(err)?;
    let host = Netlink::current().await.map_err(err)?;
    let mut routed = false;
    for (n, e) in links {
        ensure_interface(n).await?;
        let (g4, g6) = host_addresses(&n.spec);
        let route = !routed && (g4.is_some() || g6.is_some());
        routed |= route;
        linux::attach(&host, &sandbox, &veth(owner, n, e, route))
            .await
            .map_err(err)?;
    }
    Ok(sandbox)
}

/// Links a running container to one more network.
pub async fn attach_running(c: &Container, n: &Network, e: &Endpoint) -> Result<()> {
    let pid = c.runtime.pid.ok_or_else(|| CoreError::NotRunning {
        name: c.name.clone(),
    })?;
    let sandbox = Sandbox::of_process(pid as u32).map_err(err)?;
    ensure_interface(n).await?;
    let host = Netlink::current().await.map_err(err)?;
    linux::attach(&host, &sandbox, &veth(&c.id, n, e, false))
        .await
        .map_err(err)
}

/// Cuts a running container's link to a network.
pub async fn detach_running(c: &Container, e: &Endpoint) -> Result<()> {
    let host = Netlink::current().await.map_err(err)?;
    linux::detach(&host, &host_link(&c.id, e.slot))
        .await
        .map_err(err)?;
    Ok(())
}

pub fn render(input: &FirewallInput) -> Result<String> {
    kleene_net::nft::try_render_nft(input).map_err(|e| CoreError::Network(e.to_string()))
}

pub fn load(rules: &str) -> Result<()> {
    linux::apply_nft(rules).map_err(err)
}
