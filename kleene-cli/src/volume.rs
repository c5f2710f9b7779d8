//! `klee volume ...`.

use crate::cli::{InspectArgs, ListArgs, ListFormat, PruneArgs, RmArgs, VolumeCreateArgs};
use crate::failure::Outcome;
use crate::output::{ago, now, table, volume_inspect, VOLUME_COLUMNS};
use crate::{confirm_prune, each, print_json, print_pruned, Ctx};

/// `klee volume create NAME`.
pub async fn create(ctx: &Ctx, a: VolumeCreateArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let v = engine.create_volume(&a.volume_name).await?;
    println!("{}", v.name);
    Ok(0)
}

/// `klee volume ls`.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let volumes = engine.volumes().await?;
    if a.format == ListFormat::Json {
        return print_json(ctx.theme, &volumes);
    }
    let now = now();
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| vec![v.name.clone(), ago(v.created, now)])
        .collect();
    print!("{}", table(ctx.theme, &VOLUME_COLUMNS, &rows));
    Ok(0)
}

/// `klee volume inspect NAME`: the volume and the containers' mounts of it, in
/// kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let volume = engine.volume(&a.target).await?;
    let containers = engine.containers().await?;
    print_json(ctx.theme, &volume_inspect(&volume, &containers))
}

/// `klee volume rm VOLUMES...`.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> Outcome {
    let engine = ctx.engine().await?;
    each(&a.targets, |t| {
        let engine = engine.clone();
        async move {
            engine.remove_volume(&t).await?;
            Ok(t)
        }
    })
    .await
}

/// `klee volume prune [-f]`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> Outcome {
    // klee asks before it contacts kleened.
    confirm_prune(a.force, "WARNING! This will remove all unused volumes.")?;
    let engine = ctx.engine().await?;
    print_pruned(&engine.prune_volumes().await?);
    Ok(0)
}
