//! Linux: bridges, veths into per-container namespaces, nftables.
//!
//! `ipnet` and `vnet` containers are alike here: each gets a namespace of its own with a
//! veth to each of its networks' bridges. Nothing of a container is left on the host once
//! its namespace is gone ([`HOST_STATE`] is false), but for a pair whose set-up was
//! killed before its peer moved: the repair sweeps those ([`orphan_links`]).

use std::collections::BTreeMap;

use kleene_jail::{JailHandle, NetNs, NetworkMode};
use kleene_net::linux::{self, Netlink, Sandbox, VethSpec};
use kleene_net::model::FirewallInput;
use kleene_net::HostError;

use super::{host_addresses, host_err, interface_addresses, with_prefixes};
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Container, Driver, Endpoint, Network, NetworkType};

/// Whether containers leave network state on the host that is changed under the firewall's
/// lock and reconciled: not on Linux (a container's links live and die with its namespace).
pub const HOST_STATE: bool = false;

/// A backend error as the engine's, after `context` (what was being done).
fn err(context: impl Into<String>) -> impl FnOnce(linux::Error) -> CoreError {
    let context = context.into();
    move |e| host_err(context, e)
}

/// The host's interface names.
pub async fn interfaces() -> Result<Vec<String>> {
    const WHAT: &str = "listing the host's interfaces";
    Netlink::current()
        .await
        .map_err(err(WHAT))?
        .links_with_prefix("")
        .await
        .map_err(err(WHAT))
}

pub async fn default_route_interface() -> Result<Option<String>> {
    const WHAT: &str = "reading the default route";
    Netlink::current()
        .await
        .map_err(err(WHAT))?
        .default_route_interface()
        .await
        .map_err(err(WHAT))
}

/// Makes (or finds) a network's host interface and forwarding.
pub async fn ensure_interface(n: &Network) -> Result<()> {
    let what = format!("network {}", n.name);
    let nl = Netlink::current().await.map_err(err(&what))?;
    if n.spec.kind == NetworkType::Custom {
        if !nl.link_exists(n.interface()).await.map_err(err(&what))? {
            return Err(host_err(
                format!("custom network {}", n.name),
                HostError::MissingInterface {
                    name: n.interface().to_string(),
                },
            ));
        }
    } else {
        nl.ensure_bridge(n.interface(), &interface_addresses(n))
            .await
            .map_err(err(format!("making the bridge of network {}", n.name)))?;
    }
    linux::enable_forwarding(None).map_err(err("turning on ip forwarding"))
}

/// Removes a network's host interface (a custom one is the user's and stays).
pub async fn remove_interface(n: &Network) -> Result<()> {
    if n.spec.kind == NetworkType::Custom {
        return Ok(());
    }
    let what = format!("removing the bridge of network {}", n.name);
    let nl = Netlink::current().await.map_err(err(&what))?;
    nl.remove_link(n.interface()).await.map_err(err(&what))?;
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
/// jail joins (the same for `ipnet` and `vnet`; the jail's name is FreeBSD's business).
pub async fn prepare(
    owner: &Id,
    what: &str,
    _jail: &str,
    _driver: Driver,
    links: &[(Network, Endpoint)],
) -> Result<(NetworkMode, Hold)> {
    let sandbox = sandbox(owner, what, links).await?;
    let fd = sandbox
        .fd()
        .try_clone_to_owned()
        .map_err(|e| CoreError::io(format!("keeping the network namespace of {what}"), e))?;
    Ok((NetworkMode::Namespace(NetNs::new(fd)), sandbox))
}

/// A new network namespace for a starting container, linked to each of its networks
/// (the first that has a gateway gives the default route).
async fn sandbox(owner: &Id, what: &str, links: &[(Network, Endpoint)]) -> Result<Sandbox> {
    let sandbox = Sandbox::new().map_err(err(format!("making the network namespace of {what}")))?;
    let host = Netlink::current()
        .await
        .map_err(err(format!("connecting {what} to its networks")))?;
    let mut routed = false;
    for (n, e) in links {
        ensure_interface(n).await?;
        let (g4, g6) = host_addresses(&n.spec);
        let route = !routed && (g4.is_some() || g6.is_some());
        routed |= route;
        linux::attach(&host, &sandbox, &veth(owner, n, e, route))
            .await
            .map_err(err(format!("connecting {what} to network {}", n.name)))?;
    }
    Ok(sandbox)
}

/// Links a running container to one more network (the same for `ipnet` and `vnet`; the
/// container's other links and its jail need no change).
pub async fn attach_running(
    c: &Container,
    n: &Network,
    e: &Endpoint,
    _after: &[(Network, Endpoint)],
    _jail: Option<&JailHandle>,
) -> Result<()> {
    let pid = c.runtime.pid.ok_or_else(|| CoreError::NotRunning {
        name: c.name.clone(),
    })?;
    let what = format!("connecting container {} to network {}", c.name, n.name);
    let sandbox = Sandbox::of_process(pid as u32).map_err(err(&what))?;
    ensure_interface(n).await?;
    let host = Netlink::current().await.map_err(err(&what))?;
    linux::attach(&host, &sandbox, &veth(&c.id, n, e, false))
        .await
        .map_err(err(&what))
}

/// Cuts a running container's link to a network.
pub async fn detach_running(
    c: &Container,
    n: &Network,
    e: &Endpoint,
    _after: &[(Network, Endpoint)],
    _jail: Option<&JailHandle>,
) -> Result<()> {
    let what = format!("disconnecting container {} from network {}", c.name, n.name);
    let host = Netlink::current().await.map_err(err(&what))?;
    linux::detach(&host, &host_link(&c.id, e.slot))
        .await
        .map_err(err(&what))?;
    Ok(())
}

/// A build's links need no release: they go with its namespace.
pub async fn release(_links: &[(Network, Endpoint)]) -> Result<()> {
    Ok(())
}

/// Runs netlink work to its end on a runtime of its own: for the repair, which runs on an
/// engine thread outside tokio (blocking).
fn block_on<T>(what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CoreError::io(format!("{what}: starting a runtime"), e))?
        .block_on(work)
}

/// The host-side ends of container veths ([`host_link`]) in the host namespace; blocking.
///
/// A container's links go with its namespace, except in one window: a monitor killed
/// between making a pair and moving its peer into the namespace leaves both ends here.
pub fn container_links() -> Result<Vec<String>> {
    const WHAT: &str = "listing the host's container links";
    block_on(WHAT, async {
        Netlink::current()
            .await
            .map_err(err(WHAT))?
            .links_with_prefix(linux::VETH_PREFIX)
            .await
            .map_err(err(WHAT))
    })
}

/// Whether `link` is a host link of container `id`, whatever its slot.
pub fn is_link_of(link: &str, id: &Id) -> bool {
    let any = host_link(id, 0);
    link.len() == any.len() && link.as_bytes()[..any.len() - 2] == any.as_bytes()[..any.len() - 2]
}

/// Of the `listed` links, those of `known` owners that are not `live`: what killed
/// set-ups left (see [`container_links`]). Links of owners this engine does not know are
/// another engine's, and are kept.
pub fn orphan_links(listed: &[String], known: &[Id], live: &BTreeMap<Id, Driver>) -> Vec<String> {
    listed
        .iter()
        .filter(|link| {
            known
                .iter()
                .any(|id| is_link_of(link, id) && !live.contains_key(id))
                && !live.keys().any(|id| is_link_of(link, id))
        })
        .cloned()
        .collect()
}

/// Removes host links (the pair goes with its host end); blocking. Every removal is tried;
/// the first failure is returned.
pub fn remove_links(links: &[String]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    const WHAT: &str = "removing the links of containers that no longer run";
    block_on(WHAT, async {
        let host = Netlink::current().await.map_err(err(WHAT))?;
        let mut first = None;
        for link in links {
            match host.remove_link(link).await {
                Ok(_) => log::info!("removed link {link}, left by a container that no longer runs"),
                Err(e) => {
                    first.get_or_insert(err(format!("removing link {link}"))(e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    })
}

/// Nothing else to reconcile on Linux (see [`HOST_STATE`] and [`orphan_links`]).
pub fn reconcile(
    _networks: &[Network],
    _endpoints: &[Endpoint],
    _live: &BTreeMap<Id, Driver>,
) -> Result<()> {
    Ok(())
}

pub fn render(input: &FirewallInput) -> Result<String> {
    kleene_net::nft::try_render_nft(input)
        .map_err(|e| host_err("rendering the nftables ruleset", HostError::Render(e)))
}

pub fn load(rules: &str) -> Result<()> {
    linux::apply_nft(rules).map_err(err("loading the nftables ruleset"))
}

#[cfg(test)]
mod sweep_tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).expect("a valid id")
    }

    #[test]
    fn orphans_are_links_of_known_owners_that_do_not_run() {
        let dead = id("f420ea564510");
        let running = id("0123456789a0");
        let stranger = id("bbbbbbbbbbb0");
        let listed = vec![
            host_link(&dead, 0),
            host_link(&dead, 3),
            host_link(&running, 0),
            host_link(&stranger, 0),
            "kvshort".to_string(),
        ];
        let live = BTreeMap::from([(running.clone(), Driver::Ipnet)]);
        let orphans = orphan_links(&listed, &[dead.clone(), running.clone()], &live);
        assert_eq!(orphans, [host_link(&dead, 0), host_link(&dead, 3)]);
        assert!(is_link_of(&host_link(&dead, 255), &dead));
        assert!(!is_link_of(&host_link(&running, 1), &dead));
        // nothing known: nothing removed
        assert!(orphan_links(&listed, &[], &BTreeMap::new()).is_empty());
    }
}
