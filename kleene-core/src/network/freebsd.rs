//! FreeBSD: cloned loopback and bridge interfaces, aliases for `ipnet` containers, pf.
//!
//! Kleene's model, through kleene-net's FreeBSD backend (`ifconfig`, `pfctl`, `sysctl`,
//! each run with a deadline, never through a shell):
//! - a loopback network is a cloned `lo` interface, a bridge network an `if_bridge` with
//!   its gateway addresses (if any) as aliases, a custom network an existing interface
//!   that is neither made nor destroyed here;
//! - an `ipnet` container's addresses are aliases on its networks' interfaces (a host
//!   route on loopback and custom networks, the subnet's prefix on bridges), added before
//!   its jail starts, and its jail's `ip4.addr`/`ip6.addr` (the decisions are in
//!   `freebsd_plan.rs`, tested on every system);
//! - the firewall is pf, rendered from [`plan::PF_TEMPLATE_PATH`] when that file exists,
//!   else from kleene-net's default template; pf and IP forwarding are turned on with
//!   the first network interface a process makes sure of.
//!
//! Not supported in this version:
//! - `vnet` containers on networks: the jail side of an epair loses its addresses when
//!   it moves into the jail, so its address and default route must be set inside the jail
//!   before the container's command runs, and kleene-jail cannot run a command in a jail
//!   before it. [`prepare`] is not told the driver and treats every link as `ipnet`'s: the
//!   caller must refuse a `vnet` container with networks (`freebsd_plan::container_plan`
//!   says why, `freebsd_plan::vnet_unsupported`). A `vnet` container without networks
//!   gets no addresses here (`ip4`/`ip6` disabled); the plan would give it a stack of its
//!   own (`vnet=new`) once the driver is passed.
//! - connecting or disconnecting a running container (an error says so): its jail's
//!   address list would have to be changed (`jail -m`), which kleene-net has no command
//!   for; the container is stopped, connected or disconnected, and started again.
//!
//! An `ipnet` container's aliases stay on the interfaces after it stops (the engine has
//! no stop hook for the platform yet; [`release`] is that hook): they go with the
//! network's interface, are taken again by the container's next start, and adding one
//! that is there already succeeds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use kleene_jail::NetworkMode;
use kleene_net::freebsd::jail::IpnetAddress;
use kleene_net::freebsd::{parse, Error as NetError, Family, IfName};
use kleene_net::model::FirewallInput;

use super::freebsd_plan as plan;
use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Container, Driver, Endpoint, Network, NetworkType};

#[cfg(target_os = "freebsd")]
use kleene_net::freebsd as sys;

/// Neither Linux nor FreeBSD: there is no host backend, and every host operation fails
/// saying so (the plan above is the same everywhere).
#[cfg(not(target_os = "freebsd"))]
mod sys {
    use std::net::IpAddr;

    use ipnet::IpNet;
    use kleene_net::freebsd::{Error, Family, IfName, Result, IFCONFIG};

    fn none<T>() -> Result<T> {
        Err(Error::Io {
            program: IFCONFIG.to_string(),
            args: Vec::new(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "networks are set up on FreeBSD and Linux only",
            ),
        })
    }

    pub fn list_interfaces() -> Result<Vec<String>> {
        none()
    }
    pub fn interface_exists(_: &IfName) -> Result<bool> {
        none()
    }
    pub fn default_route_interface(_: Family) -> Result<Option<String>> {
        none()
    }
    pub fn ensure_loopback(_: &IfName) -> Result<bool> {
        none()
    }
    pub fn ensure_bridge(_: &IfName) -> Result<bool> {
        none()
    }
    pub fn add_alias(_: &IfName, _: &IpNet) -> Result<()> {
        none()
    }
    pub fn remove_alias(_: &IfName, _: &IpAddr) -> Result<()> {
        none()
    }
    pub fn destroy_interface(_: &IfName) -> Result<()> {
        none()
    }
    pub fn enable_forwarding() -> Result<()> {
        none()
    }
    pub fn enable_pf() -> Result<()> {
        none()
    }
    pub fn load_pf(_: &str) -> Result<()> {
        none()
    }
}

/// A backend error as this crate's, after `op` (what was being done, naming the
/// interface or address).
fn failed(op: impl Into<String>) -> impl FnOnce(NetError) -> CoreError {
    let op = op.into();
    move |e| CoreError::Network(format!("{op}: {e}"))
}

/// Runs host commands off the async runtime (each waits for its program).
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        CoreError::Internal(format!("the thread running network commands failed: {e}"))
    })?
}

/// The host's interface names.
pub async fn interfaces() -> Result<Vec<String>> {
    blocking(|| sys::list_interfaces().map_err(failed("listing the host's interfaces"))).await
}

/// The interface of the host's IPv4 default route, else of its IPv6 one.
pub async fn default_route_interface() -> Result<Option<String>> {
    blocking(|| {
        for family in [Family::Inet, Family::Inet6] {
            let found = sys::default_route_interface(family)
                .map_err(failed(format!("reading the {family} default route")))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    })
    .await
}

/// Whether pf and forwarding were turned on by this process.
static HOST_READY: AtomicBool = AtomicBool::new(false);

/// Turns on IP forwarding and pf, once per process (again after a failure).
fn prepare_host() -> Result<()> {
    if HOST_READY.load(Ordering::Acquire) {
        return Ok(());
    }
    sys::enable_forwarding().map_err(failed("turning on ip forwarding"))?;
    sys::enable_pf().map_err(failed("enabling pf"))?;
    HOST_READY.store(true, Ordering::Release);
    Ok(())
}

/// `ensure` once more when it fails: two processes making one interface at once, the
/// loser's `create` fails and its second look finds the interface there.
fn ensure_twice(
    ensure: impl Fn() -> std::result::Result<bool, NetError>,
) -> std::result::Result<(), NetError> {
    ensure().or_else(|_| ensure()).map(drop)
}

/// Adds `addr` to `iface`; an address that is there already is success.
fn add_alias(iface: &IfName, addr: &IpNet) -> Result<()> {
    match sys::add_alias(iface, addr) {
        Err(NetError::Failed { ref stderr, .. }) if plan::alias_exists(stderr) => Ok(()),
        other => other.map_err(failed(format!(
            "adding address {addr} to interface {iface}"
        ))),
    }
}

/// Removes `addr` from `iface`; an address or an interface that is gone is success.
fn remove_alias(iface: &IfName, addr: &IpAddr) -> Result<()> {
    match sys::remove_alias(iface, addr) {
        Err(NetError::Failed { ref stderr, .. }) if parse::interface_does_not_exist(stderr) => {
            Ok(())
        }
        other => other.map_err(failed(format!(
            "removing address {addr} from interface {iface}"
        ))),
    }
}

/// Makes (or finds) a network's interface, then pf and forwarding; blocking.
fn ensure_interface_now(n: &Network) -> Result<()> {
    let name = plan::interface_name(n)?;
    match n.spec.kind {
        NetworkType::Custom => {
            let exists = sys::interface_exists(&name)
                .map_err(failed(format!("looking for interface {name}")))?;
            if !exists {
                return Err(CoreError::Network(format!(
                    "custom network {}: interface {name} does not exist",
                    n.name
                )));
            }
        }
        NetworkType::Loopback => ensure_twice(|| sys::ensure_loopback(&name)).map_err(failed(
            format!("creating loopback interface {name} of network {}", n.name),
        ))?,
        NetworkType::Bridge => {
            ensure_twice(|| sys::ensure_bridge(&name)).map_err(failed(format!(
                "creating bridge {name} of network {}",
                n.name
            )))?;
            for addr in super::interface_addresses(n) {
                add_alias(&name, &addr)?;
            }
        }
    }
    prepare_host()
}

/// Makes (or finds) a network's host interface, and turns on pf and forwarding.
pub async fn ensure_interface(n: &Network) -> Result<()> {
    let n = n.clone();
    blocking(move || ensure_interface_now(&n)).await
}

/// Removes a network's host interface, with the aliases on it (a custom network's
/// interface is the user's and stays).
pub async fn remove_interface(n: &Network) -> Result<()> {
    if n.spec.kind == NetworkType::Custom {
        return Ok(());
    }
    let name = plan::interface_name(n)?;
    blocking(move || {
        sys::destroy_interface(&name).map_err(failed(format!("destroying interface {name}")))
    })
    .await
}

/// The host end of a container's link in `slot`: its epair's `a` side (an `ipnet`
/// container has none; the firewall's rules on that name then match nothing).
pub fn host_link(container: &Id, slot: u8) -> String {
    plan::host_link(container, slot)
}

/// What a starting container's network needs alive until its jail runs: nothing (the
/// aliases live on the host's interfaces, the parameters go to the jail).
pub type Hold = ();

/// Adds a container's aliases; on a failure, removes the ones it added.
fn add_aliases(aliases: &[IpnetAddress]) -> Result<()> {
    for (i, a) in aliases.iter().enumerate() {
        if let Err(e) = add_alias(&a.interface, &a.address) {
            if let Err(undo) = remove_aliases(&aliases[..i]) {
                log::warn!("{undo}");
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Removes aliases, every one tried; the first failure is returned.
fn remove_aliases(aliases: &[IpnetAddress]) -> Result<()> {
    let mut first = None;
    for a in aliases {
        if let Err(e) = remove_alias(&a.interface, &a.address.addr()) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// A starting container's (or a build's) network: its networks' interfaces made sure of,
/// its aliases added, and its jail parameters (`ip4.addr`/`ip6.addr`; a family without
/// addresses disabled).
///
/// Every caller with links is taken for an `ipnet` one: this signature does not carry the
/// container's driver, so a `vnet` container on networks must be refused by the caller
/// (`freebsd_plan::container_plan` has that refusal, with its reason, for when it does).
pub async fn prepare(
    _owner: &Id,
    what: &str,
    links: &[(Network, Endpoint)],
) -> Result<(NetworkMode, Hold)> {
    let plan = plan::container_plan(what, Driver::Ipnet, links)?;
    let networks: Vec<Network> = links.iter().map(|(n, _)| n.clone()).collect();
    let aliases = plan.aliases;
    blocking(move || {
        for n in &networks {
            ensure_interface_now(n)?;
        }
        add_aliases(&aliases)
    })
    .await?;
    Ok((NetworkMode::JailParams(plan.params), ()))
}

/// Links a running container to one more network: not supported on FreeBSD in this
/// version (see the module docs); the engine then forgets the new endpoint.
pub async fn attach_running(c: &Container, n: &Network, _: &Endpoint) -> Result<()> {
    Err(match c.config.network {
        Driver::Vnet => plan::vnet_unsupported(&c.name, &[n.name.as_str()]),
        _ => plan::live_connect_unsupported(&c.name, &n.name),
    })
}

/// Cuts a running container's link to a network: not supported on FreeBSD in this
/// version (see the module docs).
pub async fn detach_running(c: &Container, e: &Endpoint) -> Result<()> {
    Err(plan::live_disconnect_unsupported(&c.name, &e.network_name))
}

/// The pf ruleset of `input`, from [`plan::PF_TEMPLATE_PATH`] when it exists, else from
/// kleene-net's default template.
pub fn render(input: &FirewallInput) -> Result<String> {
    let template = plan::pf_template(std::fs::read_to_string(plan::PF_TEMPLATE_PATH))?;
    kleene_net::pf::render_pf(input, &template)
        .map_err(|e| CoreError::Network(format!("rendering the pf ruleset: {e}")))
}

/// Loads a pf ruleset, replacing the loaded one atomically (`pfctl -f -`).
pub fn load(rules: &str) -> Result<()> {
    sys::load_pf(rules).map_err(failed("loading the pf ruleset"))
}
