//! `klee network ...`.

use kleene_core::{Addresses, Gateway, Nat, NetworkSpec};

use crate::backend::Backend;
use crate::cli::{ConnectArgs, DisconnectArgs, InspectArgs, ListArgs, ListFormat};
use crate::cli::{NetworkCreateArgs, PruneArgs, RmArgs};
use crate::failure::{Failure, Outcome};
use crate::output::{network_row, table, NETWORK_COLUMNS};
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
    let backend = ctx.backend().await?;
    println!("{}", backend.create_network(spec).await?);
    Ok(0)
}

/// `klee network ls`: id, name, type and IPv4 subnet, as klee prints them.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let backend = ctx.backend().await?;
    if a.format == ListFormat::Json {
        // The engine's whole records, embedded; kleened's `Network`s through it.
        if let Backend::Local(engine) = &backend {
            return print_json(ctx.theme, &engine.networks().await?);
        }
        return print_json(ctx.theme, &backend.networks().await?);
    }
    let rows: Vec<Vec<String>> = backend.networks().await?.iter().map(network_row).collect();
    print!("{}", table(ctx.theme, &NETWORK_COLUMNS, &rows));
    Ok(0)
}

/// `klee network inspect NETWORK`: the network and its endpoints, in kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    print_json(ctx.theme, &backend.network(&a.target).await?)
}

/// `klee network rm NETWORKS...`: disconnects every container first.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> Outcome {
    let backend = ctx.backend().await?;
    each(&a.targets, |t| {
        let backend = backend.clone();
        async move { backend.remove_network(&t).await }
    })
    .await
}

/// `klee network prune [-f]`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> Outcome {
    // klee asks before it contacts kleened.
    confirm_prune(a.force, "WARNING! This will remove all unused networks.")?;
    let backend = ctx.backend().await?;
    print_pruned(&backend.prune_networks().await?);
    Ok(0)
}

/// `klee network connect NETWORK CONTAINER`.
pub async fn connect(ctx: &Ctx, a: ConnectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    backend
        .connect(&a.container, &a.network, Addresses::new(a.ip, a.ip6))
        .await?;
    Ok(0)
}

/// `klee network disconnect NETWORK CONTAINER`.
pub async fn disconnect(ctx: &Ctx, a: DisconnectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    backend.disconnect(&a.container, &a.network).await?;
    Ok(0)
}
