//! `klee network ...`.

use kleene_core::{Addresses, Gateway, Nat, NetworkSpec};

use crate::cli::{ConnectArgs, DisconnectArgs, InspectArgs, ListArgs, ListFormat};
use crate::cli::{NetworkCreateArgs, PruneArgs, RmArgs};
use crate::failure::{Failure, Outcome};
use crate::output::{network_inspect, network_row, table, NETWORK_COLUMNS};
use crate::{confirm_prune, each, print_json, print_pruned, Ctx};

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

/// `klee network ls`: id, name, type and IPv4 subnet, as klee prints them.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let networks = engine.networks().await?;
    if a.format == ListFormat::Json {
        return print_json(ctx.theme, &networks);
    }
    let rows: Vec<Vec<String>> = networks.iter().map(network_row).collect();
    print!("{}", table(ctx.theme, &NETWORK_COLUMNS, &rows));
    Ok(0)
}

/// `klee network inspect NETWORK`: the network and its endpoints, in kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let network = engine.network(&a.target).await?;
    let mut endpoints = Vec::new();
    for e in engine.endpoints(Some(&network.id), None).await? {
        // A container being made (or a build) has an endpoint but no ready row yet.
        match engine.container(e.container.as_str()).await {
            Ok(_) => endpoints.push(e),
            Err(kleene_core::CoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    print_json(ctx.theme, &network_inspect(&network, &endpoints))
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
    // klee asks before it contacts kleened.
    confirm_prune(a.force, "WARNING! This will remove all unused networks.")?;
    let engine = ctx.engine().await?;
    let ids: Vec<String> = engine
        .prune_networks()
        .await?
        .iter()
        .map(|id| id.to_string())
        .collect();
    print_pruned(&ids);
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
