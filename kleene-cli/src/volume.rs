//! `klee volume ...`.

use crate::backend::Backend;
use crate::cli::{InspectArgs, ListArgs, ListFormat, PruneArgs, RmArgs, VolumeCreateArgs};
use crate::failure::Outcome;
use crate::output::{now, table, volume_row, VOLUME_COLUMNS};
use crate::{confirm_prune, each, print_json, print_pruned, Ctx};

/// `klee volume create NAME`.
pub async fn create(ctx: &Ctx, a: VolumeCreateArgs) -> Outcome {
    let backend = ctx.backend().await?;
    println!("{}", backend.create_volume(&a.volume_name).await?);
    Ok(0)
}

/// `klee volume ls`.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let backend = ctx.backend().await?;
    if a.format == ListFormat::Json {
        // The engine's whole records, embedded; kleened's `Volume`s through it.
        if let Backend::Local(engine) = &backend {
            return print_json(ctx.theme, &engine.volumes().await?);
        }
        return print_json(ctx.theme, &backend.volumes().await?);
    }
    let now = now();
    let rows: Vec<Vec<String>> = backend
        .volumes()
        .await?
        .iter()
        .map(|v| volume_row(v, now))
        .collect();
    print!("{}", table(ctx.theme, &VOLUME_COLUMNS, &rows));
    Ok(0)
}

/// `klee volume inspect NAME`: the volume and the containers' mounts of it, in
/// kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    print_json(ctx.theme, &backend.volume(&a.target).await?)
}

/// `klee volume rm VOLUMES...`.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> Outcome {
    let backend = ctx.backend().await?;
    each(&a.targets, |t| {
        let backend = backend.clone();
        async move { backend.remove_volume(&t).await }
    })
    .await
}

/// `klee volume prune [-f]`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> Outcome {
    // klee asks before it contacts kleened.
    confirm_prune(a.force, "WARNING! This will remove all unused volumes.")?;
    let backend = ctx.backend().await?;
    print_pruned(&backend.prune_volumes().await?);
    Ok(0)
}
