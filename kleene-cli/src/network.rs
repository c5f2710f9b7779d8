//! `klee network ...`.

use kleene_core::{Addresses, Gateway, Nat, NetworkSpec};
use serde::Serialize;

use crate::cli::{ConnectArgs, DisconnectArgs, InspectArgs, ListArgs, ListFormat};
use crate::cli::{NetworkCreateArgs, PruneArgs, RmArgs};
use crate::failure::{Failure, Outcome};
use crate::output::table;
use crate::{confirm_prune, each, print_json, Ctx};

/// A gateway as `--gw` takes it: `auto`, `""` or an address.
fn gateway(flag: &str, text: &str) -> Result<Gateway, Failure> {
    match text {
        "auto" | "<auto>" => Ok(Gateway::Auto),
        "" => Ok(Gateway::None),
        other => other.parse().map(Gateway::Addr).map_err(|_| {
            Failure::usage(format!(
                "invalid {flag} {other:?}: use auto, \"\" or an address"
            ))
        }),
    }
}

/// The engine's spec from `network create` options.
fn spec(a: NetworkCreateArgs) -> Result<NetworkSpec, Failure> {
    let mut s = NetworkSpec::new(a.name, a.kind);
    s.interface = a.interface;
    s.subnet = a.subnet;
    s.subnet6 = a.subnet6;
    s.gateway = gateway("--gw", &a.gw)?;
    s.gateway6 = gateway("--gw6", &a.gw6)?;
    s.nat = match (a.no_nat, a.nat_if) {
        (true, _) => Nat::None,
        (false, Some(i)) => Nat::Interface(i),
        (false, None) => Nat::HostGateway,
    };
    s.icc = a.icc;
    s.internal = a.internal;
    Ok(s)
}

/// `klee network create NAME`: prints the new network's id.
pub async fn create(ctx: &Ctx, a: NetworkCreateArgs) -> Outcome {
    let spec = spec(a)?;
    let engine = ctx.engine().await?;
    let n = engine.create_network(spec).await?;
    println!("{}", n.id);
    Ok(0)
}

/// `klee network ls`: id, name, type and subnet, as klee prints them.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let networks = engine.networks().await?;
    if a.format == ListFormat::Json {
        return print_json(&networks);
    }
    let rows: Vec<Vec<String>> = networks
        .iter()
        .map(|n| {
            let subnets: Vec<String> = n
                .spec
                .subnet
                .map(|s| s.to_string())
                .into_iter()
                .chain(n.spec.subnet6.map(|s| s.to_string()))
                .collect();
            vec![
                n.id.to_string(),
                n.name.clone(),
                n.spec.kind.to_string(),
                subnets.join(", "),
            ]
        })
        .collect();
    print!(
        "{}",
        table(ctx.theme, &["ID", "NAME", "TYPE", "SUBNET"], &rows)
    );
    Ok(0)
}

#[derive(Debug, Serialize)]
struct NetworkInspect {
    network: kleene_core::Network,
    /// The host interface.
    interface: String,
    endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
struct EndpointView {
    container_id: String,
    container_name: String,
    ip_address: Option<std::net::Ipv4Addr>,
    ip_address6: Option<std::net::Ipv6Addr>,
    running: bool,
}

/// `klee network inspect NETWORK`: the network and its endpoints.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let network = engine.network(&a.target).await?;
    let mut endpoints = Vec::new();
    for e in engine.endpoints(Some(&network.id), None).await? {
        // A container being made (or a build) has an endpoint but no ready row yet.
        let c = match engine.container(e.container.as_str()).await {
            Ok(c) => c,
            Err(kleene_core::CoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        endpoints.push(EndpointView {
            container_id: c.id.to_string(),
            container_name: c.name.clone(),
            ip_address: e.ipv4,
            ip_address6: e.ipv6,
            running: c.runtime.state == kleene_core::RunState::Running,
        });
    }
    print_json(&NetworkInspect {
        interface: network.interface().to_string(),
        network,
        endpoints,
    })
}

/// `klee network rm NETWORKS...`: disconnects every container first.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> Outcome {
    let engine = ctx.engine().await?;
    each(&a.targets, |t| {
        let engine = engine.clone();
        async move { Ok(engine.remove_network(&t).await?.to_string()) }
    })
    .await
}

/// `klee network prune [-f]`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> Outcome {
    let engine = ctx.engine().await?;
    confirm_prune(a.force, "This will remove all unused networks.")?;
    for id in engine.prune_networks().await? {
        println!("{id}");
    }
    Ok(0)
}

/// `klee network connect NETWORK CONTAINER`.
pub async fn connect(ctx: &Ctx, a: ConnectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    engine
        .connect(&a.container, &a.network, Addresses::new(a.ip, a.ip6))
        .await?;
    Ok(0)
}

/// `klee network disconnect NETWORK CONTAINER`.
pub async fn disconnect(ctx: &Ctx, a: DisconnectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    engine.disconnect(&a.container, &a.network).await?;
    Ok(0)
}
