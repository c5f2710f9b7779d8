//! `klee volume ...`.

use kleene_core::MountSource;
use serde::Serialize;

use crate::cli::{InspectArgs, ListArgs, ListFormat, PruneArgs, RmArgs, VolumeCreateArgs};
use crate::failure::Outcome;
use crate::output::{ago, now, table};
use crate::{confirm_prune, each, print_json, Ctx};

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
        return print_json(&volumes);
    }
    let now = now();
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| vec![v.name.clone(), ago(v.created, now)])
        .collect();
    print!("{}", table(ctx.theme, &["VOLUME NAME", "CREATED"], &rows));
    Ok(0)
}

/// One container's mount of a volume, as klee's `volume inspect` shows it.
#[derive(Debug, Serialize)]
struct Mountpoint {
    container_id: String,
    destination: String,
    read_only: bool,
    source: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct VolumeInspect {
    mountpoints: Vec<Mountpoint>,
    volume: kleene_core::Volume,
}

/// `klee volume inspect NAME`: the volume and the containers that mount it.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let engine = ctx.engine().await?;
    let volume = engine.volume(&a.target).await?;
    let mut mountpoints = Vec::new();
    for c in engine.containers().await? {
        for m in &c.config.mounts {
            if matches!(&m.source, MountSource::Volume(n) if *n == volume.name) {
                mountpoints.push(Mountpoint {
                    container_id: c.id.to_string(),
                    destination: m.destination.clone(),
                    read_only: m.read_only,
                    source: volume.name.clone(),
                    kind: "volume",
                });
            }
        }
    }
    print_json(&VolumeInspect {
        mountpoints,
        volume,
    })
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
    let engine = ctx.engine().await?;
    confirm_prune(a.force, "This will remove all unused volumes.")?;
    for name in engine.prune_volumes().await? {
        println!("{name}");
    }
    Ok(0)
}
