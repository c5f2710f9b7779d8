//! FreeBSD: cloned loopback and bridge interfaces, aliases for `ipnet` containers, epairs
//! for `vnet` containers, pf.
//!
//! Kleene's model, through kleene-net's FreeBSD backend (`ifconfig`, `route`, `jexec`,
//! `pfctl`, `sysctl`, each run with a deadline, never through a shell); every decision is
//! in `freebsd_plan.rs` (and kleene-net's `freebsd::vnet`), tested on every system:
//! - a loopback network is a cloned `lo` interface, a bridge network an `if_bridge` with
//!   its gateway addresses (if any) as aliases, a custom network an existing interface
//!   that is neither made nor destroyed here;
//! - an `ipnet` container's addresses are aliases on its networks' interfaces (a host
//!   route on loopback and custom networks, the subnet's prefix on bridges), added before
//!   its jail starts, and its jail's `ip4.addr`/`ip6.addr`;
//! - a `vnet` container (bridge networks only) gets an epair per network: the host side
//!   joins the bridge before the jail starts; the jail is created with `vnet=new` and
//!   `exec.created` commands, which kleene-jail runs once the jail exists and before its
//!   command: each jail side is moved in (`ifconfig EPAIRb vnet JAIL`), given its
//!   addresses inside the jail (`jexec JAIL /sbin/ifconfig …`), and the first network
//!   with a gateway gives the default routes (`jexec JAIL /sbin/route add …`). The jail's
//!   root must have `/sbin/ifconfig` and `/sbin/route` (a FreeBSD base system has);
//! - a running container is connected or disconnected in place: an `ipnet` jail's alias
//!   is added (removed) and its address lists updated with jail_set(2) (`JAIL_UPDATE`,
//!   through kleene-jail); a `vnet` jail gets a new epair (no default route: it keeps its
//!   routes) or loses one;
//! - what a container leaves on the host — its aliases, its epairs — is removed by
//!   [`reconcile`], which the engine runs with every firewall load: after a container
//!   stops (its monitor reloads the firewall), after every connect and disconnect, and in
//!   `Engine::open`'s repair, for containers whose monitor died. It removes the aliases
//!   and epairs of every container that does not run or start (and any address of a
//!   loopback or bridge network's subnets nobody running owns), so it repairs as well as
//!   it tears down;
//! - the firewall is pf, rendered from [`plan::PF_TEMPLATE_PATH`] when that file exists,
//!   else from kleene-net's default template; pf and IP forwarding are turned on with
//!   the first network interface a process makes sure of.
//!
//! Changes of aliases and epairs are made under the firewall's lock (the engine takes it
//! around [`prepare`], [`attach_running`], [`detach_running`] and [`release`]), so that a
//! reconciliation never removes what a concurrent start is making.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use kleene_jail::{JailHandle, NetworkMode};
use kleene_net::freebsd::jail::{IpnetAddress, JailParam};
use kleene_net::freebsd::vnet::{self, VnetLink};
use kleene_net::freebsd::{parse, Command, Epair, Error as NetError, Family, IfName};
use kleene_net::model::FirewallInput;
use kleene_net::HostError;

use super::freebsd_plan::{self as plan, Change};
use super::host_err;
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
    use kleene_net::freebsd::{Command, Epair, Error, Family, IfName, Result, IFCONFIG};

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

    pub fn run(_: &Command) -> Result<String> {
        none()
    }
    pub fn list_interfaces() -> Result<Vec<String>> {
        none()
    }
    pub fn interface_exists(_: &IfName) -> Result<bool> {
        none()
    }
    pub fn interface_addresses(_: &IfName) -> Result<Option<Vec<IpAddr>>> {
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
    pub fn create_epair() -> Result<Epair> {
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

/// Whether containers leave network state on the host (aliases, epairs) that is changed
/// under the firewall's lock and reconciled: on FreeBSD they do.
pub const HOST_STATE: bool = true;

/// A backend error as this crate's, after `op` (what was being done, naming the
/// interface or address).
fn failed(op: impl Into<String>) -> impl FnOnce(NetError) -> CoreError {
    let op = op.into();
    move |e| host_err(op, e)
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
                return Err(host_err(
                    format!("custom network {}", n.name),
                    HostError::MissingInterface {
                        name: name.to_string(),
                    },
                ));
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
/// aliases and epairs live on the host, the parameters go to the jail).
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

/// Runs `cmds` in order; the first failure stops them.
fn run_all(cmds: &[Command], what: &str) -> Result<()> {
    for cmd in cmds {
        sys::run(cmd).map_err(failed(what))?;
    }
    Ok(())
}

/// Destroys an epair from its host side; one that is gone is success.
fn destroy_epair(epair: &Epair) -> Result<()> {
    sys::destroy_interface(epair.a()).map_err(failed(format!("destroying epair {epair}")))
}

/// Makes a link's epair on the host: one left by a crash is destroyed first, a new one
/// created, renamed to the link's names, added to the bridge and brought up; on a failure
/// it is destroyed again.
fn make_epair(link: &VnetLink) -> Result<()> {
    destroy_epair(&link.epair)?;
    let created = sys::create_epair().map_err(failed("creating an epair"))?;
    let what = format!("setting up epair {} on bridge {}", link.epair, link.bridge);
    if let Err(e) = run_all(&vnet::host_side(&created, link), &what) {
        // Whichever names it has by now.
        for name in [&created, &link.epair] {
            if let Err(undo) = destroy_epair(name) {
                log::warn!("{undo}");
            }
        }
        return Err(e);
    }
    Ok(())
}

/// Makes every link's epair; on a failure, destroys the ones made.
fn make_epairs(links: &[VnetLink]) -> Result<()> {
    for (i, link) in links.iter().enumerate() {
        if let Err(e) = make_epair(link) {
            for made in &links[..i] {
                if let Err(undo) = destroy_epair(&made.epair) {
                    log::warn!("{undo}");
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A starting container's (or a build's) network: its networks' interfaces made sure of,
/// then for `ipnet` its aliases added and its jail's addresses (`ip4.addr`/`ip6.addr`; a
/// family without addresses disabled), for `vnet` its epairs made and its jail's
/// parameters (`vnet=new` and the `exec.created` commands that give the jail its side of
/// each epair); `jail` is the name the jail is created with.
pub async fn prepare(
    owner: &Id,
    what: &str,
    jail: &str,
    driver: Driver,
    links: &[(Network, Endpoint)],
) -> Result<(NetworkMode, Hold)> {
    let jail = plan::jail_name(jail)?;
    let plan = plan::container_plan(what, owner, &jail, driver, links)?;
    let networks: Vec<Network> = links.iter().map(|(n, _)| n.clone()).collect();
    let (aliases, epairs) = (plan.aliases, plan.vnet);
    blocking(move || {
        for n in &networks {
            ensure_interface_now(n)?;
        }
        add_aliases(&aliases)?;
        if let Err(e) = make_epairs(&epairs) {
            if let Err(undo) = remove_aliases(&aliases) {
                log::warn!("{undo}");
            }
            return Err(e);
        }
        Ok(())
    })
    .await?;
    Ok((NetworkMode::JailParams(plan.params), ()))
}

/// Updates a running jail's network parameters (jail_set(2) with `JAIL_UPDATE`).
fn update_jail(jail: Option<&JailHandle>, params: &[JailParam], c: &Container) -> Result<()> {
    let jail = jail.ok_or_else(|| CoreError::NotRunning {
        name: c.name.clone(),
    })?;
    let params: Vec<kleene_jail::JailParam> = params
        .iter()
        .map(|(k, v)| kleene_jail::JailParam::with_value(k.clone(), v.clone()))
        .collect();
    jail.update_params(&params).map_err(|e| {
        CoreError::jail(
            format!("updating the addresses of running container {}", c.name),
            e,
        )
    })
}

/// The jail of a running container, for the commands that take it (its jid).
fn running_jail_name(c: &Container) -> Result<kleene_net::freebsd::JailName> {
    let jid = c.runtime.jid.ok_or_else(|| CoreError::NotRunning {
        name: c.name.clone(),
    })?;
    plan::jail_name(&jid.to_string())
}

/// Links a running container to one more network: an `ipnet` jail gets the alias and its
/// new address lists, a `vnet` jail a new epair (its side moved in and configured, no
/// default route). `after` is every link it has once connected; `jail` its jail.
pub async fn attach_running(
    c: &Container,
    n: &Network,
    e: &Endpoint,
    after: &[(Network, Endpoint)],
    jail: Option<&JailHandle>,
) -> Result<()> {
    let jail_name = running_jail_name(c)?;
    let change = plan::connect_plan(&c.name, &c.id, &jail_name, c.config.network, (n, e), after)?;
    let (n, c, jail) = (n.clone(), c.clone(), jail.cloned());
    blocking(move || {
        ensure_interface_now(&n)?;
        match change {
            Change::Ipnet { aliases, params } => {
                add_aliases(&aliases)?;
                if let Err(e) = update_jail(jail.as_ref(), &params, &c) {
                    if let Err(undo) = remove_aliases(&aliases) {
                        log::warn!("{undo}");
                    }
                    return Err(e);
                }
                Ok(())
            }
            Change::VnetAttach { link, commands } => {
                make_epair(&link)?;
                let what = format!("connecting container {} to network {}", c.name, n.name);
                if let Err(e) = run_all(&commands, &what) {
                    if let Err(undo) = destroy_epair(&link.epair) {
                        log::warn!("{undo}");
                    }
                    return Err(e);
                }
                Ok(())
            }
            Change::VnetDetach { .. } => {
                Err(CoreError::Internal("a connect planned a disconnect".into()))
            }
        }
    })
    .await
}

/// Cuts a running container's link to network `n` (endpoint `e`): an `ipnet` jail's
/// address lists lose the address first, then the alias goes; a `vnet` jail's epair is
/// destroyed. `after` is every link it keeps.
pub async fn detach_running(
    c: &Container,
    n: &Network,
    e: &Endpoint,
    after: &[(Network, Endpoint)],
    jail: Option<&JailHandle>,
) -> Result<()> {
    let change = plan::disconnect_plan(&c.name, &c.id, c.config.network, (n, e), after)?;
    let (c, jail) = (c.clone(), jail.cloned());
    blocking(move || match change {
        Change::Ipnet { aliases, params } => {
            update_jail(jail.as_ref(), &params, &c)?;
            remove_aliases(&aliases)
        }
        Change::VnetDetach { epair } => destroy_epair(&epair),
        Change::VnetAttach { .. } => {
            Err(CoreError::Internal("a disconnect planned a connect".into()))
        }
    })
    .await
}

/// Removes a build's aliases (its links are `ipnet`'s).
pub async fn release(links: &[(Network, Endpoint)]) -> Result<()> {
    let aliases = plan::all_aliases(links)?;
    blocking(move || remove_aliases(&aliases)).await
}

/// Removes what containers that no longer run left on the host (see
/// [`plan::cleanup_plan`]): `live` are the owners that run, with their drivers. Every
/// removal is tried; the first failure is returned. Blocking.
pub fn reconcile(
    networks: &[Network],
    endpoints: &[Endpoint],
    live: &BTreeMap<Id, Driver>,
) -> Result<()> {
    let interfaces = sys::list_interfaces().map_err(failed("listing the host's interfaces"))?;
    let mut host = plan::HostView {
        interfaces,
        addresses: BTreeMap::new(),
    };
    for n in networks {
        let Ok(name) = IfName::new(n.interface()) else {
            continue;
        };
        if !host.interfaces.iter().any(|i| i == name.as_str()) {
            continue;
        }
        let found = sys::interface_addresses(&name)
            .map_err(failed(format!("reading the addresses of interface {name}")))?;
        if let Some(addresses) = found {
            host.addresses.insert(name.into_string(), addresses);
        }
    }
    let cleanup = plan::cleanup_plan(networks, endpoints, live, &host);
    if cleanup.is_empty() {
        return Ok(());
    }
    let mut first = None;
    for (iface, addr) in &cleanup.aliases {
        log::info!("removing address {addr} of a container that does not run from {iface}");
        if let Err(e) = remove_alias(iface, addr) {
            first.get_or_insert(e);
        }
    }
    for epair in &cleanup.epairs {
        log::info!("destroying epair {epair} of a container that does not run");
        if let Err(e) = destroy_epair(epair) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The pf ruleset of `input`, from [`plan::PF_TEMPLATE_PATH`] when it exists, else from
/// kleene-net's default template.
pub fn render(input: &FirewallInput) -> Result<String> {
    let template = plan::pf_template(std::fs::read_to_string(plan::PF_TEMPLATE_PATH))?;
    kleene_net::pf::render_pf(input, &template)
        .map_err(|e| host_err("rendering the pf ruleset", HostError::Render(e)))
}

/// Loads a pf ruleset, replacing the loaded one atomically (`pfctl -f -`).
pub fn load(rules: &str) -> Result<()> {
    sys::load_pf(rules).map_err(failed("loading the pf ruleset"))
}
