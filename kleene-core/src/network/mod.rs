//! Networks: objects in the metadata, addresses handed out by kleene-net's IPAM (made
//! race-free across processes by a unique index per network), host interfaces and the
//! firewall through kleene-net's platform backend.
//!
//! What lives where, so that a crash anywhere leaks nothing:
//! - a network's row is written before its host interface is made, and removed after it
//!   is gone: a crash between leaves a row whose interface is made again on first use;
//! - a container's links live in its own network namespace (Linux), held by the monitor
//!   until the jail runs and then by the jail's processes: when they end, the kernel frees
//!   the namespace and both ends of every veth;
//! - on FreeBSD they are on the host (an `ipnet` container's aliases, a `vnet` container's
//!   epairs): they are made and changed under the firewall's lock, and the reconciliation
//!   that runs with every firewall load (after every change, at every container's stop, and
//!   in `Engine::open`'s repair) removes those of containers that no longer run;
//! - the firewall is one table of the engine's own, rendered whole from the metadata and
//!   loaded in one transaction, after every change and by `Engine::open`'s repair; the
//!   last ruleset loaded is kept in the root (`firewall.rules`) so that an unchanged
//!   state loads nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use kleene_net::model::{EndpointRules, FirewallInput, PublishRules};
use kleene_net::HostError;

use crate::engine::{Engine, Inner};
use crate::error::{CoreError, Object, Result};
use crate::id::Id;
use crate::meta::now;
use crate::model::{
    Container, Driver, Endpoint, Gateway, Network, NetworkSpec, NetworkType, RunState,
};

/// Addresses asked for on a connection (`--ip`, `--ip6`); free ones are picked otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Addresses {
    /// The IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// The IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

impl Addresses {
    /// These addresses.
    pub fn new(ipv4: Option<Ipv4Addr>, ipv6: Option<Ipv6Addr>) -> Self {
        Self { ipv4, ipv6 }
    }
}

/// The ruleset loaded last, in the root.
const LAST_RULES: &str = "firewall.rules";

/// The prefix of generated interface names (`kleene0`, `kleene1`, ...), as Kleene's.
const INTERFACE_PREFIX: &str = "kleene";

impl Engine {
    /// Creates a network (`klee network create`): its row, then its host interface (a
    /// bridge; on Linux a loopback network is a bridge with no uplink), then the firewall.
    pub async fn create_network(&self, mut spec: NetworkSpec) -> Result<Network> {
        spec.validate()?;
        let taken = platform::interfaces().await?;
        let network = self
            .blocking(move |inner| {
                let store = inner.store();
                if store.networks()?.iter().any(|n| n.name == spec.name) {
                    return Err(CoreError::AlreadyExists {
                        kind: Object::Network,
                        name: spec.name.clone(),
                    });
                }
                let existing = store.networks()?;
                if let Some(clash) = overlap(&spec, &existing) {
                    return Err(CoreError::InvalidInput(clash));
                }
                let used: BTreeSet<String> = existing
                    .iter()
                    .map(|n| n.interface().to_string())
                    .chain(taken)
                    .collect();
                let generated = spec.interface.is_none();
                match &spec.interface {
                    None => {
                        let free = (0..)
                            .map(|n| format!("{INTERFACE_PREFIX}{n}"))
                            .find(|i| !used.contains(i))
                            .expect("an unbounded range has a free name");
                        spec.interface = Some(free);
                    }
                    Some(i) if spec.kind != NetworkType::Custom && used.contains(i) => {
                        return Err(CoreError::InvalidInput(format!(
                            "interface {i} exists already: choose another name for network {}",
                            spec.name
                        )))
                    }
                    Some(i) if spec.kind == NetworkType::Custom && !used.contains(i) => {
                        return Err(CoreError::InvalidInput(format!(
                            "custom network {}: interface {i} does not exist on the host",
                            spec.name
                        )))
                    }
                    Some(_) => {}
                }
                let mut n = Network {
                    id: Id::generate()?,
                    name: spec.name.clone(),
                    spec,
                    created: now(),
                };
                // Another process may take a generated name first: the next one is tried.
                let mut next = used.len();
                loop {
                    match store.insert_network(&n) {
                        Err(CoreError::InvalidInput(_)) if generated && next < used.len() + 64 => {
                            next += 1;
                            n.spec.interface = (next..)
                                .map(|k| format!("{INTERFACE_PREFIX}{k}"))
                                .find(|i| !used.contains(i));
                        }
                        other => return other.map(|()| n),
                    }
                }
            })
            .await?;
        if let Err(e) = platform::ensure_interface(&network).await {
            let id = network.id.clone();
            let _ = self
                .blocking(move |inner| inner.store().delete_network(&id))
                .await;
            return Err(e);
        }
        self.apply_firewall().await?;
        Ok(network)
    }

    /// Every network, oldest first.
    pub async fn networks(&self) -> Result<Vec<Network>> {
        self.blocking(|inner| inner.store().networks()).await
    }

    /// One network by id, unique id prefix or name.
    pub async fn network(&self, reference: &str) -> Result<Network> {
        let reference = reference.to_string();
        self.blocking(move |inner| inner.resolve_network(&reference))
            .await
    }

    /// The endpoints of a network, or of a container.
    pub async fn endpoints(
        &self,
        network: Option<&Id>,
        container: Option<&Id>,
    ) -> Result<Vec<Endpoint>> {
        let (n, c) = (network.cloned(), container.cloned());
        self.blocking(move |inner| inner.store().endpoints(c.as_ref(), n.as_ref()))
            .await
    }

    /// Removes a network: every container is disconnected first (running ones at once),
    /// their addresses released, then the host interface (not a custom network's) and the
    /// row go.
    pub async fn remove_network(&self, reference: &str) -> Result<Id> {
        let n = self.network(reference).await?;
        for e in self.endpoints(Some(&n.id), None).await? {
            self.disconnect_endpoint(&e).await?;
        }
        platform::remove_interface(&n).await?;
        let id = n.id.clone();
        self.blocking(move |inner| inner.store().delete_network(&id))
            .await?;
        self.apply_firewall().await?;
        Ok(n.id)
    }

    /// Removes every network no container is connected to; their ids.
    pub async fn prune_networks(&self) -> Result<Vec<Id>> {
        let mut removed = Vec::new();
        for n in self.networks().await? {
            if self.endpoints(Some(&n.id), None).await?.is_empty() {
                removed.push(self.remove_network(n.id.as_str()).await?);
            }
        }
        Ok(removed)
    }

    /// Connects a container to a network (`klee network connect`), with the addresses
    /// asked for or free ones. A running container gets its link at once.
    pub async fn connect(
        &self,
        container: &str,
        network: &str,
        want: Addresses,
    ) -> Result<Endpoint> {
        let c = self.container(container).await?;
        let n = self.network(network).await?;
        match c.config.network {
            Driver::Host | Driver::Disabled => {
                return Err(CoreError::InvalidInput(format!(
                    "container {} uses the {} network driver: it cannot connect to networks",
                    c.name, c.config.network
                )))
            }
            Driver::Vnet if n.spec.kind != NetworkType::Bridge => {
                return Err(CoreError::InvalidInput(format!(
                    "container {} uses the vnet driver, which connects to bridge networks only, not to {} network {}",
                    c.name, n.spec.kind, n.name
                )))
            }
            _ => {}
        }
        let (cid, net) = (c.id.clone(), n.clone());
        let e = self
            .blocking(move |inner| inner.allocate_endpoint(&cid, &net, want))
            .await?;
        if matches!(c.runtime.state, RunState::Running) {
            let attached = async {
                let _lock = host_lock(self).await?;
                let after = container_links(self, &c.id).await?;
                let jail = running_jail(self, &c).await?;
                platform::attach_running(&c, &n, &e, &after, jail.as_ref()).await
            }
            .await;
            if let Err(err) = attached {
                let (cid, nid) = (e.container.clone(), e.network.clone());
                let _ = self
                    .blocking(move |inner| inner.store().delete_endpoint(&cid, &nid))
                    .await;
                return Err(err);
            }
            self.apply_firewall().await?;
        }
        Ok(e)
    }

    /// Disconnects a container from a network; a running container loses the link at once
    /// and the firewall is reloaded.
    pub async fn disconnect(&self, container: &str, network: &str) -> Result<()> {
        let c = self.container(container).await?;
        let n = self.network(network).await?;
        let e = self
            .endpoints(Some(&n.id), Some(&c.id))
            .await?
            .pop()
            .ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "container {} is not connected to network {}",
                    c.name, n.name
                ))
            })?;
        self.disconnect_endpoint(&e).await?;
        self.apply_firewall().await
    }

    async fn disconnect_endpoint(&self, e: &Endpoint) -> Result<()> {
        // A build's endpoint (or a container's still being made) has no container to cut.
        match self.container(e.container.as_str()).await {
            Ok(c) if matches!(c.runtime.state, RunState::Running) => {
                let _lock = host_lock(self).await?;
                let n = self.network(e.network.as_str()).await?;
                let mut after = container_links(self, &c.id).await?;
                after.retain(|(_, other)| other.network != e.network);
                let jail = running_jail(self, &c).await?;
                platform::detach_running(&c, &n, e, &after, jail.as_ref()).await?;
            }
            Ok(_) | Err(CoreError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        let (cid, nid) = (e.container.clone(), e.network.clone());
        self.blocking(move |inner| inner.store().delete_endpoint(&cid, &nid).map(drop))
            .await
    }

    /// Renders the firewall from the metadata and loads it, unless it is what was loaded
    /// last. Serialized by a lock in the root, so that two processes cannot load in the
    /// wrong order.
    pub(crate) async fn apply_firewall(&self) -> Result<()> {
        let needed = self
            .blocking(|inner| {
                Ok(!inner.store().networks()?.is_empty()
                    || inner.root_mount.join(LAST_RULES).exists())
            })
            .await?;
        if !needed {
            return Ok(());
        }
        let host_gateway = platform::default_route_interface().await?;
        self.blocking(move |inner| inner.apply_firewall(host_gateway))
            .await
    }
}

/// A starting container's network: what its jail is given, and what must live until
/// the jail runs (Linux: the namespace its links are in).
pub(crate) struct ContainerNet {
    pub mode: kleene_jail::NetworkMode,
    _hold: Option<platform::Hold>,
}

/// Sets up a starting container's network (see [`ContainerNet`]).
pub(crate) async fn container_network(engine: &Engine, c: &Container) -> Result<ContainerNet> {
    use kleene_jail::NetworkMode;
    let plain = |mode| ContainerNet { mode, _hold: None };
    match c.config.network {
        Driver::Host => return Ok(plain(NetworkMode::Inherit)),
        Driver::Disabled => return Ok(plain(NetworkMode::Disabled)),
        _ => {}
    }
    let links = container_links(engine, &c.id).await?;
    let jail = crate::container::jail_name(&c.id);
    let _lock = host_lock(engine).await?;
    let (mode, hold) = platform::prepare(&c.id, &c.name, &jail, c.config.network, &links).await?;
    Ok(ContainerNet {
        mode,
        _hold: Some(hold),
    })
}

/// The links of `owner` (a container or a build): each endpoint with its network, in
/// slot order.
async fn container_links(engine: &Engine, owner: &Id) -> Result<Vec<(Network, Endpoint)>> {
    let endpoints = engine.endpoints(None, Some(owner)).await?;
    let networks = engine.networks().await?;
    Ok(endpoints
        .into_iter()
        .filter_map(|e| {
            let n = networks.iter().find(|n| n.id == e.network)?.clone();
            Some((n, e))
        })
        .collect())
}

/// The firewall's lock, held while the host's per-container network state changes
/// (FreeBSD's aliases and epairs), so that the reconciliation of a concurrent firewall
/// load (another container's stop, say) never reads the containers' states before the
/// change and removes what it made. `None` where that state lives in the containers'
/// own namespaces (Linux). It must be dropped before the firewall is applied.
async fn host_lock(engine: &Engine) -> Result<Option<std::fs::File>> {
    if !platform::HOST_STATE {
        return Ok(None);
    }
    engine
        .blocking(|inner| inner.network_lock().map(Some))
        .await
}

/// A running container's jail, where the platform changes it in place (FreeBSD's
/// jail_set(2) updates of an `ipnet` jail's addresses); `None` elsewhere.
async fn running_jail(engine: &Engine, c: &Container) -> Result<Option<kleene_jail::JailHandle>> {
    if !platform::HOST_STATE {
        return Ok(None);
    }
    let (Some(pid), Some(jid)) = (c.runtime.pid, c.runtime.jid) else {
        return Err(CoreError::NotRunning {
            name: c.name.clone(),
        });
    };
    let (dataset, name) = (c.dataset.clone(), crate::container::jail_name(&c.id));
    let root = engine
        .blocking(move |inner| inner.mountpoint(&dataset))
        .await?;
    Ok(Some(kleene_jail::JailHandle::new(
        Some(name),
        kleene_jail::JailId(jid),
        pid,
        root,
    )))
}

/// A failure of the host's network backend, with what the engine was doing.
pub(crate) fn host_err(context: impl Into<String>, source: impl Into<HostError>) -> CoreError {
    CoreError::Network {
        context: context.into(),
        source: source.into(),
    }
}

/// A build's network: its endpoints on `networks` (kept with the build's operation token,
/// so that a crash leaves nothing the repair does not remove), and the namespace its RUN
/// steps join. `Ok(None)` without networks.
pub(crate) async fn build_network(
    engine: &Engine,
    build: &Id,
    op: &str,
    networks: &[(String, Addresses)],
) -> Result<Option<kleene_jail::NetworkMode>> {
    if networks.is_empty() {
        return Ok(None);
    }
    let mut links = Vec::new();
    for (reference, want) in networks {
        let n = engine.network(reference).await?;
        let (b, net, token, want) = (build.clone(), n.clone(), op.to_string(), *want);
        let e = engine
            .blocking(move |inner| inner.allocate_endpoint_for(&b, &net, want, Some(&token)))
            .await?;
        links.push((n, e));
    }
    // The namespace lives as long as the mode's descriptor: the build's RUN steps.
    let _lock = host_lock(engine).await?;
    let (mode, _hold) = platform::prepare(
        build,
        &format!("build {build}"),
        &crate::build::jail_name(build),
        Driver::Ipnet,
        &links,
    )
    .await?;
    Ok(Some(mode))
}

/// Releases a build's endpoints (its namespace goes with the last descriptor; FreeBSD's
/// aliases are removed here, or by the next reconciliation if that fails).
pub(crate) async fn release_build_network(engine: &Engine, build: &Id) -> Result<()> {
    let links = container_links(engine, build).await?;
    if !links.is_empty() {
        let _lock = host_lock(engine).await?;
        if let Err(e) = platform::release(&links).await {
            log::warn!("build {build}: {e}");
        }
    }
    let b = build.clone();
    engine
        .blocking(move |inner| inner.store().delete_endpoints_of(&b).map(drop))
        .await
}

impl Inner {
    pub(crate) fn resolve_network(&self, reference: &str) -> Result<Network> {
        let all = self.store().networks()?;
        if let Some(n) = all
            .iter()
            .find(|n| n.id.as_str() == reference || n.name == reference)
        {
            return Ok(n.clone());
        }
        let found: Vec<&Network> = if Id::is_prefix(reference) {
            all.iter()
                .filter(|n| n.id.as_str().starts_with(reference))
                .collect()
        } else {
            Vec::new()
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(CoreError::NotFound {
                kind: Object::Network,
                reference: reference.to_string(),
            }),
            many => Err(CoreError::Ambiguous {
                kind: Object::Network,
                reference: reference.to_string(),
                candidates: many
                    .iter()
                    .map(|n| format!("{} ({})", n.id, n.name))
                    .collect(),
            }),
        }
    }

    /// A new endpoint of `container` on `network`, its addresses from IPAM; retried when
    /// another process took an address meanwhile.
    pub(crate) fn allocate_endpoint(
        &self,
        container: &Id,
        network: &Network,
        want: Addresses,
    ) -> Result<Endpoint> {
        self.allocate_endpoint_for(container, network, want, None)
    }

    /// [`Inner::allocate_endpoint`] for a container or, with `op`, for a build.
    pub(crate) fn allocate_endpoint_for(
        &self,
        container: &Id,
        network: &Network,
        want: Addresses,
        op: Option<&str>,
    ) -> Result<Endpoint> {
        let spec = &network.spec;
        if want.ipv4.is_some() && spec.subnet.is_none() {
            return Err(CoreError::InvalidInput(format!(
                "network {} has no IPv4 subnet: --ip cannot be given",
                network.name
            )));
        }
        if want.ipv6.is_some() && spec.subnet6.is_none() {
            return Err(CoreError::InvalidInput(format!(
                "network {} has no IPv6 subnet: --ip6 cannot be given",
                network.name
            )));
        }
        let (host4, host6) = host_addresses(spec);
        for _ in 0..16 {
            let (taken, slots) = {
                let store = self.store();
                let on_net = store.endpoints(None, Some(&network.id))?;
                if on_net.iter().any(|e| &e.container == container) {
                    return Err(CoreError::InvalidInput(format!(
                        "container {container} is already connected to network {}",
                        network.name
                    )));
                }
                let slots: BTreeSet<u8> = store
                    .endpoints(Some(container), None)?
                    .iter()
                    .map(|e| e.slot)
                    .collect();
                (on_net, slots)
            };
            let used4: BTreeSet<Ipv4Addr> = taken.iter().filter_map(|e| e.ipv4).collect();
            let used6: BTreeSet<Ipv6Addr> = taken.iter().filter_map(|e| e.ipv6).collect();
            let ipv4 = spec
                .subnet
                .map(|s| kleene_net::ipam::allocate_v4(s, host4, &used4, want.ipv4))
                .transpose()?;
            let ipv6 = spec
                .subnet6
                .map(|s| kleene_net::ipam::allocate_v6(s, host6, &used6, want.ipv6))
                .transpose()?;
            let slot = (0..=u8::MAX).find(|s| !slots.contains(s)).ok_or_else(|| {
                CoreError::InvalidInput(format!("container {container} has 256 networks"))
            })?;
            let e = Endpoint {
                container: container.clone(),
                network: network.id.clone(),
                network_name: network.name.clone(),
                ipv4,
                ipv6,
                slot,
            };
            if self.store().insert_endpoint(&e, op)? {
                return Ok(e);
            }
        }
        Err(CoreError::Internal(format!(
            "no address could be taken on network {}: others took each one first",
            network.name
        )))
    }

    /// The containers that run or are starting.
    fn live_containers(&self) -> Result<Vec<Container>> {
        let all = self.store().containers_said_running()?;
        // A container whose monitor died is not running, whatever its row said.
        let mut running = Vec::new();
        for c in all {
            let c = self.refresh(c)?;
            if matches!(c.runtime.state, RunState::Running | RunState::Starting) {
                running.push(c);
            }
        }
        Ok(running)
    }

    /// Removes from the host what containers that no longer run left there (FreeBSD: the
    /// aliases of `ipnet` containers, the epairs of `vnet` ones; nothing on Linux, where
    /// a container's links go with its namespace). Builds in progress count as running
    /// `ipnet` owners. Called with the firewall's lock held.
    fn reconcile_host(&self, running: &[Container]) -> Result<()> {
        let store = self.store();
        let networks = store.networks()?;
        let endpoints = store.endpoints(None, None)?;
        let mut live: BTreeMap<Id, Driver> = running
            .iter()
            .map(|c| (c.id.clone(), c.config.network))
            .collect();
        for (owner, _) in store.build_endpoints()? {
            if let Ok(id) = Id::parse(&owner) {
                live.insert(id, Driver::Ipnet);
            }
        }
        drop(store);
        platform::reconcile(&networks, &endpoints, &live)
    }

    /// Removes the `listed` host links of this engine's containers and builds that do not
    /// run (Linux: what a set-up killed before its peer moved left). Called with the
    /// firewall's lock held, after listing, before reading the states.
    #[cfg(target_os = "linux")]
    fn sweep_links(&self, running: &[Container], listed: &[String]) -> Result<()> {
        if listed.is_empty() {
            return Ok(());
        }
        let store = self.store();
        let mut known: Vec<Id> = store.containers()?.into_iter().map(|c| c.id).collect();
        let mut live: BTreeMap<Id, Driver> = running
            .iter()
            .map(|c| (c.id.clone(), c.config.network))
            .collect();
        for e in store.endpoints(None, None)? {
            known.push(e.container);
        }
        for (owner, _) in store.build_endpoints()? {
            if let Ok(id) = Id::parse(&owner) {
                live.insert(id, Driver::Ipnet);
            }
        }
        drop(store);
        platform::remove_links(&platform::orphan_links(listed, &known, &live))
    }

    /// The firewall's lock (a file lock in the root): serializes firewall loads, and on
    /// FreeBSD every change of the host's per-container network state, across processes.
    pub(crate) fn network_lock(&self) -> Result<std::fs::File> {
        let lock_path = self.root_mount.join("firewall.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CoreError::io(format!("opening {}", lock_path.display()), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| CoreError::io(format!("locking {}", lock_path.display()), e.into()))?;
        Ok(lock)
    }

    /// What the firewall is rendered from: every network, the endpoints and published
    /// ports of the `running` containers.
    fn firewall_input(
        &self,
        running: &[Container],
        host_gateway: Option<String>,
    ) -> Result<FirewallInput> {
        let store = self.store();
        let networks = store.networks()?;
        let mut input = FirewallInput {
            networks: networks
                .iter()
                .map(|n| n.spec.to_rules(n.interface(), host_gateway.as_deref()))
                .collect(),
            host_gateway: host_gateway.clone(),
            ..FirewallInput::default()
        };
        for c in running {
            let endpoints = store.endpoints(Some(&c.id), None)?;
            for e in &endpoints {
                input.endpoints.push(EndpointRules {
                    container: c.id.to_string(),
                    network: e.network_name.clone(),
                    ipv4: e.ipv4,
                    ipv6: e.ipv6,
                    host_interface: Some(platform::host_link(&c.id, e.slot)),
                });
            }
            // Published ports go to the container's first network.
            let Some(first) = endpoints.first() else {
                continue;
            };
            for p in &c.config.publish {
                let Some(interface) = p.interface.clone().or_else(|| host_gateway.clone()) else {
                    continue;
                };
                input.published.push(PublishRules {
                    container: c.id.to_string(),
                    network: first.network_name.clone(),
                    ipv4: first.ipv4,
                    ipv6: first.ipv6,
                    port: p.clone(),
                    interface,
                });
            }
        }
        Ok(input)
    }

    /// Loads the firewall (see [`Engine::apply_firewall`]), after the reconciliation of
    /// the host's per-container network state ([`Inner::reconcile_host`], whose failures
    /// are logged: they must not keep the rules from loading); blocking.
    pub(crate) fn apply_firewall(&self, host_gateway: Option<String>) -> Result<()> {
        let _lock = self.network_lock()?;
        // Listed before the states are read: a link made after this by a starting
        // container is not looked at, one made before it is by a container seen starting.
        #[cfg(target_os = "linux")]
        let listed = platform::container_links();
        let running = self.live_containers()?;
        if platform::HOST_STATE {
            if let Err(e) = self.reconcile_host(&running) {
                log::warn!("{e}");
            }
        }
        #[cfg(target_os = "linux")]
        if let Err(e) = listed.and_then(|listed| self.sweep_links(&running, &listed)) {
            log::warn!("{e}");
        }
        let input = self.firewall_input(&running, host_gateway)?;
        let last_path = self.root_mount.join(LAST_RULES);
        // Set while rules are being loaded: a process killed between the load and the
        // record below leaves the host's rules unknown, and the next application must
        // load what it renders even when the record says it is loaded.
        let loading = last_path.with_extension("loading");
        let unknown = loading.exists();
        let last = (!unknown)
            .then(|| std::fs::read_to_string(&last_path).ok())
            .flatten();
        let rules = platform::render(&input)?;
        if last.as_deref() == Some(rules.as_str()) {
            return Ok(());
        }
        if input.networks.is_empty() && last.is_none() && !unknown && !last_path.exists() {
            // Never had networks: nothing to load, nothing to clear.
            return Ok(());
        }
        let io = |e| CoreError::io(format!("writing {}", last_path.display()), e);
        std::fs::write(&loading, b"").map_err(io)?;
        platform::load(&rules)?;
        let new = last_path.with_extension("new");
        std::fs::write(&new, &rules)
            .and_then(|()| std::fs::rename(&new, &last_path))
            .and_then(|()| std::fs::remove_file(&loading))
            .map_err(io)?;
        Ok(())
    }
}

/// Why `c` cannot start beside the `running` containers: a host port it publishes is
/// published by one of them already (same protocol, the same or an unnamed interface,
/// overlapping ranges), as docker's "port is already allocated".
pub(crate) fn port_conflict(c: &Container, running: &[Container]) -> Option<String> {
    for p in &c.config.publish {
        for other in running.iter().filter(|o| o.id != c.id) {
            for q in &other.config.publish {
                let same_if =
                    p.interface.is_none() || q.interface.is_none() || p.interface == q.interface;
                let overlap = p.host.start() <= q.host.end() && q.host.start() <= p.host.end();
                if p.protocol == q.protocol && same_if && overlap {
                    return Some(format!(
                        "container {}: host port {} is already published by container {} ({})",
                        c.name, p, other.name, q
                    ));
                }
            }
        }
    }
    None
}

/// Why `spec`'s subnets cannot be used beside `existing` networks' (overlapping subnets
/// would make the host's routes ambiguous), if they cannot.
fn overlap(spec: &NetworkSpec, existing: &[Network]) -> Option<String> {
    for n in existing {
        if let (Some(a), Some(b)) = (spec.subnet, n.spec.subnet) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Some(format!(
                    "subnet {a} of network {} overlaps subnet {b} of network {}",
                    spec.name, n.name
                ));
            }
        }
        if let (Some(a), Some(b)) = (spec.subnet6, n.spec.subnet6) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Some(format!(
                    "subnet {a} of network {} overlaps subnet {b} of network {}",
                    spec.name, n.name
                ));
            }
        }
    }
    None
}

/// The addresses the host itself takes on a network's interface (the containers'
/// gateway): a bridge network's gateways (the subnet's first addresses by default). On
/// Linux a loopback network's bridge takes the subnet's *last* usable addresses instead:
/// its containers have their own stacks and need a way to the host and beyond, while
/// Kleene hands a loopback network's first address to the first container (its
/// get-started guide runs a database at `--ip 10.13.37.1`). `--gw ""` leaves a loopback
/// network's bridge without an address. None on a custom network.
pub(crate) fn host_addresses(spec: &NetworkSpec) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    match spec.kind {
        NetworkType::Bridge => (spec.gateway_v4(), spec.gateway_v6()),
        NetworkType::Loopback if cfg!(target_os = "linux") => (
            spec.subnet
                .filter(|s| spec.gateway != Gateway::None && s.prefix_len() <= 30)
                .map(|s| Ipv4Addr::from(u32::from(s.broadcast()) - 1)),
            spec.subnet6
                .filter(|s| spec.gateway6 != Gateway::None && s.prefix_len() <= 126)
                .map(|s| s.broadcast()),
        ),
        _ => (None, None),
    }
}

/// `v4` and `v6` with their network's prefixes (an address whose family the network has
/// no subnet for is left out).
pub(crate) fn with_prefixes(
    spec: &NetworkSpec,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Vec<ipnet::IpNet> {
    let v4 = v4
        .zip(spec.subnet)
        .and_then(|(a, s)| ipnet::Ipv4Net::new(a, s.prefix_len()).ok())
        .map(ipnet::IpNet::V4);
    let v6 = v6
        .zip(spec.subnet6)
        .and_then(|(a, s)| ipnet::Ipv6Net::new(a, s.prefix_len()).ok())
        .map(ipnet::IpNet::V6);
    v4.into_iter().chain(v6).collect()
}

/// The host's own addresses on a network's interface, with their prefixes.
pub(crate) fn interface_addresses(n: &Network) -> Vec<ipnet::IpNet> {
    let (v4, v6) = host_addresses(&n.spec);
    with_prefixes(&n.spec, v4, v6)
}

mod freebsd_plan;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub(crate) mod platform;

#[cfg(not(target_os = "linux"))]
#[path = "freebsd.rs"]
pub(crate) mod platform;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn net(name: &str, kind: NetworkType, subnet: &str) -> Network {
        let mut spec = NetworkSpec::new(name, kind);
        spec.subnet = Some(subnet.parse().unwrap());
        spec.interface = Some(format!("if-{name}"));
        Network {
            id: Id::generate().unwrap(),
            name: name.into(),
            spec,
            created: 0,
        }
    }

    #[test]
    fn overlapping_subnets_are_named() {
        let a = net("a", NetworkType::Bridge, "10.1.0.0/16");
        let inside = net("b", NetworkType::Bridge, "10.1.2.0/24");
        let msg = overlap(&inside.spec, std::slice::from_ref(&a)).unwrap();
        assert_eq!(
            msg,
            "subnet 10.1.2.0/24 of network b overlaps subnet 10.1.0.0/16 of network a"
        );
        let around = net("c", NetworkType::Loopback, "10.0.0.0/8");
        assert!(overlap(&around.spec, std::slice::from_ref(&a)).is_some());
        let apart = net("d", NetworkType::Bridge, "10.2.0.0/16");
        assert_eq!(overlap(&apart.spec, &[a]), None);
    }

    #[test]
    fn a_host_port_is_published_once() {
        let with = |name: &str, ports: &[&str]| {
            let mut c = crate::testkit::container(name);
            c.config.publish = ports.iter().map(|p| p.parse().unwrap()).collect();
            c
        };
        let web = with("web", &["8080:80", "5353:53/udp"]);
        let dup = with("dup", &["8080:8080"]);
        let msg = port_conflict(&dup, std::slice::from_ref(&web)).unwrap();
        assert!(msg.contains("8080") && msg.contains("web"), "{msg}");
        // Another protocol, another interface or another range is no conflict.
        for ok in [&["8080/udp"][..], &["eth9:8080:80"], &["8081-8090:81"]] {
            let c = with("ok", ok);
            let other_if = with("web2", &["eth8:8080:80"]);
            assert_eq!(port_conflict(&c, &[other_if]), None, "{ok:?}");
        }
        assert!(port_conflict(&with("r", &["8070-8080:80"]), std::slice::from_ref(&web)).is_some());
        assert!(port_conflict(&with("u", &["5353/udp"]), &[web]).is_some());
    }

    #[test]
    fn the_host_takes_the_gateway_of_bridges_and_linux_loopbacks() {
        let b = net("b", NetworkType::Bridge, "10.3.0.0/24");
        assert_eq!(host_addresses(&b.spec).0, Some("10.3.0.1".parse().unwrap()));
        let mut none = b.spec.clone();
        none.gateway = Gateway::None;
        assert_eq!(host_addresses(&none).0, None);
        let l = net("l", NetworkType::Loopback, "10.4.0.0/24");
        let want = cfg!(target_os = "linux").then(|| "10.4.0.254".parse().unwrap());
        assert_eq!(host_addresses(&l.spec).0, want);
        let c = net("c", NetworkType::Custom, "10.5.0.0/24");
        assert_eq!(host_addresses(&c.spec), (None, None));
    }
}

#[cfg(test)]
mod ipam_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testkit::TestEngine;

    /// Addresses come from the metadata: first free, never the gateway, an asked-for one
    /// checked, released with the endpoint, and a container connects once.
    #[tokio::test]
    async fn endpoints_take_free_addresses_and_give_them_back() {
        let t = TestEngine::new().await;
        let inner = &t.engine.inner;
        let mut spec = NetworkSpec::new("web", NetworkType::Bridge);
        spec.subnet = Some("10.9.0.0/29".parse().unwrap());
        spec.subnet6 = Some("fd00:9::/64".parse().unwrap());
        spec.interface = Some("kleene9".into());
        let n = Network {
            id: Id::generate().unwrap(),
            name: "web".into(),
            spec,
            created: 0,
        };
        inner.store().insert_network(&n).unwrap();
        let ids: Vec<Id> = (0..6).map(|_| Id::generate().unwrap()).collect();
        let e = inner
            .allocate_endpoint(&ids[0], &n, Addresses::default())
            .unwrap();
        assert_eq!(e.ipv4, Some("10.9.0.2".parse().unwrap()));
        assert_eq!(e.ipv6, Some("fd00:9::2".parse().unwrap()));
        assert_eq!(e.slot, 0);
        let err = inner
            .allocate_endpoint(&ids[0], &n, Addresses::default())
            .unwrap_err();
        assert!(err.to_string().contains("already connected"), "{err}");
        let err = inner
            .allocate_endpoint(
                &ids[1],
                &n,
                Addresses::new(Some("10.9.0.2".parse().unwrap()), None),
            )
            .unwrap_err();
        assert!(err.to_string().contains("10.9.0.2"), "{err}");
        let err = inner
            .allocate_endpoint(
                &ids[1],
                &n,
                Addresses::new(Some("10.9.1.2".parse().unwrap()), None),
            )
            .unwrap_err();
        assert!(err.to_string().contains("10.9.1.2"), "{err}");
        let e = inner
            .allocate_endpoint(
                &ids[1],
                &n,
                Addresses::new(Some("10.9.0.6".parse().unwrap()), None),
            )
            .unwrap();
        assert_eq!(e.ipv4, Some("10.9.0.6".parse().unwrap()));
        // /29: .1 is the gateway, .7 the broadcast: .3, .4, .5 are left.
        for (id, want) in ids[2..5].iter().zip(["10.9.0.3", "10.9.0.4", "10.9.0.5"]) {
            let e = inner
                .allocate_endpoint(id, &n, Addresses::default())
                .unwrap();
            assert_eq!(e.ipv4, Some(want.parse().unwrap()));
        }
        let err = inner
            .allocate_endpoint(&ids[5], &n, Addresses::default())
            .unwrap_err();
        assert!(err.to_string().contains("10.9.0.0/29"), "{err}");
        // Released, the address is free again.
        assert!(inner.store().delete_endpoint(&ids[3], &n.id).unwrap());
        let e = inner
            .allocate_endpoint(&ids[5], &n, Addresses::default())
            .unwrap();
        assert_eq!(e.ipv4, Some("10.9.0.4".parse().unwrap()));
        // A build's endpoints go by their owner.
        let b = Id::generate().unwrap();
        let mut spec = n.spec.clone();
        spec.name = "other".into();
        spec.interface = Some("kleene10".into());
        spec.subnet = Some("10.10.0.0/24".parse().unwrap());
        spec.subnet6 = None;
        let other = Network {
            id: Id::generate().unwrap(),
            name: "other".into(),
            spec,
            created: 0,
        };
        inner.store().insert_network(&other).unwrap();
        inner
            .allocate_endpoint_for(&b, &other, Addresses::default(), Some("token"))
            .unwrap();
        assert_eq!(
            inner.store().build_endpoints().unwrap(),
            [(b.to_string(), "token".to_string())]
        );
        assert_eq!(inner.store().delete_endpoints_of(&b).unwrap(), 1);
    }
}
