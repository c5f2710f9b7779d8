//! `klee image ...`: base images, listing, inspection, tags, removal; builds.

use std::sync::Arc;

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{BaseSource, CreateImage, Events};

use crate::backend::Backend;
use crate::cli::{
    ImageCreateArgs, ImageLoadArgs, ImagePruneArgs, InspectArgs, ListArgs, ListFormat, PullArgs,
    PushArgs, SaveArgs,
};
use crate::cli::{Method, RmArgs, TagArgs};
use crate::failure::{Failure, Outcome};
use crate::output::{image_row, now, table, Progress, IMAGE_COLUMNS};
use crate::{confirm_prune, each, print_json, print_pruned, Ctx};

/// `klee image create METHOD [SOURCE]`.
pub async fn create(ctx: &Ctx, a: ImageCreateArgs) -> Outcome {
    // Through kleened, its host decides.
    if a.update && !a.no_update && !cfg!(target_os = "freebsd") && !ctx.remote() {
        return Err(Failure::usage(format!(
            "--update runs freebsd-update(8) on the new image, which only a FreeBSD host has (this one runs {})",
            std::env::consts::OS
        )));
    }
    let source = match a.method {
        Method::FetchAuto => {
            if !a.source.is_empty() {
                return Err(Failure::usage("fetch-auto takes no SOURCE"));
            }
            BaseSource::FetchAuto
        }
        m => {
            let [src] = a.source.as_slice() else {
                return Err(Failure::usage(format!(
                    "{} takes exactly one SOURCE",
                    match m {
                        Method::Fetch => "fetch",
                        Method::ZfsCopy => "zfs-copy",
                        _ => "zfs-clone",
                    }
                )));
            };
            match m {
                Method::Fetch => BaseSource::Fetch {
                    url: src.clone(),
                    sha256: a.sha256.clone(),
                },
                _ => {
                    let dataset = DatasetName::new(src.as_str()).map_err(|e| {
                        Failure::usage(format!("invalid source dataset {src:?}: {e}"))
                    })?;
                    if m == Method::ZfsCopy {
                        BaseSource::ZfsCopy(dataset)
                    } else {
                        BaseSource::ZfsClone(dataset)
                    }
                }
            }
        }
    };
    if a.sha256.is_some() && !matches!(source, BaseSource::Fetch { .. }) {
        return Err(Failure::usage("--sha256 is for the fetch method only"));
    }
    let mut req = CreateImage::new(source)
        .dns(!a.no_dns)
        .localtime(!a.no_localtime)
        .autotag(!a.no_autotag)
        .update(a.update && !a.no_update);
    if let Some(tag) = a.tag {
        req = req.tag(tag);
    }
    if let Some(client) = ctx.client()? {
        return crate::remote::image_create(&client, &req).await;
    }
    make(ctx, req).await
}

/// `klee image load PATH[:NAME]`: an image of an OCI image layout directory.
pub async fn load(ctx: &Ctx, a: ImageLoadArgs) -> Outcome {
    // PATH:NAME, where a name has no '/' (a path may have ':' in a directory name).
    let (dir, name) = match a.source.rsplit_once(':') {
        Some((d, n)) if !n.contains('/') && !d.is_empty() => (d.to_string(), Some(n.to_string())),
        _ => (a.source.clone(), None),
    };
    let mut req = CreateImage::new(BaseSource::OciLayout {
        dir: dir.into(),
        name,
        platform: a.platform,
    })
    .dns(!a.no_dns)
    .localtime(!a.no_localtime)
    .autotag(false);
    if let Some(tag) = a.tag {
        req = req.tag(tag);
    }
    if ctx.client()?.is_some() {
        return Err(Failure::usage(
            "loading an OCI image is not in kleened's API: it works on the engine itself (drop --host)",
        ));
    }
    make(ctx, req).await
}

/// `klee pull`: an image from a registry, its layers shared with the images here.
pub async fn pull(ctx: &Ctx, a: PullArgs) -> Outcome {
    ctx.local_only("pulling from a registry")?;
    let engine = ctx.engine().await?;
    let mut req = kleene_core::PullImage::new(a.reference)
        .dns(!a.no_dns)
        .localtime(!a.no_localtime);
    if let Some(p) = a.platform {
        req = req.platform(p);
    }
    if let Some(t) = a.tag {
        req = req.tag(t);
    }
    for k in a.verify_keys {
        req = req.verify_key(k);
    }
    if let Some(l) = a.lookaside {
        req = req.lookaside(l);
    }
    let interrupt = crate::signals::watch("the pull");
    let req = req.interrupt(interrupt.clone());
    let stopped = "klee: pull stopped; the layers pulled so far are kept for the next pull";
    with_progress(interrupt, stopped, |events| engine.pull_image(req, events)).await
}

/// Runs an image-making operation with klee's progress and transcript: progress lines,
/// then kleened's closing lines (`image created`, the id). An interrupted operation that
/// answers `Cancelled` ends with `stopped` on stderr and the aborted status.
async fn with_progress<F>(
    interrupt: kleene_core::Interrupt,
    stopped: &str,
    op: impl FnOnce(Events) -> F,
) -> Outcome
where
    F: std::future::Future<Output = kleene_core::Result<kleene_core::Image>>,
{
    let progress = Arc::new(Progress::new());
    let events = {
        let p = Arc::clone(&progress);
        Events::new(move |e| p.event(e))
    };
    let result = op(events).await;
    progress.finish();
    if interrupt.is_interrupted() && matches!(result, Err(kleene_core::CoreError::Cancelled)) {
        eprintln!("{stopped}");
        return Ok(crate::signals::ABORTED);
    }
    let image = result?;
    // klee ends the transcript with an empty line, then kleened's closing message.
    println!();
    println!("image created");
    println!("{}", image.id);
    Ok(0)
}

/// `klee push IMAGE [IMAGE...] REFERENCE`.
pub async fn push(ctx: &Ctx, a: PushArgs) -> Outcome {
    ctx.local_only("pushing to a registry")?;
    let engine = ctx.engine().await?;
    let mut args = a.args;
    let target = args.pop().unwrap_or_default();
    let events = Events::new(|e| {
        if let kleene_core::Event::Status(t) = e {
            println!("{t}");
        }
    });
    let sign = match a.sign_key {
        None => None,
        Some(key) => {
            let passphrase = match &a.sign_passphrase_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| Failure::failed(format!("cannot read {}: {e}", f.display())))?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                None => None,
            };
            let head = std::fs::read(&key)
                .map_err(|e| Failure::failed(format!("cannot read {}: {e}", key.display())))?;
            // OpenPGP keys are armored ("-----BEGIN PGP") or binary (a packet tag with
            // its high bit set); PEM keys are cosign's.
            let pgp =
                head.starts_with(b"-----BEGIN PGP") || head.first().is_some_and(|b| b & 0x80 != 0);
            Some(if pgp {
                let lookaside = a.lookaside.clone().ok_or_else(|| {
                    Failure::usage(
                        "an OpenPGP key signs into a lookaside store: give --lookaside DIR",
                    )
                })?;
                kleene_core::SignWith::Gpg {
                    key,
                    passphrase,
                    lookaside,
                }
            } else {
                kleene_core::SignWith::Cosign { key, passphrase }
            })
        }
    };
    let pushed = engine
        .push_images_signed(&args, &target, sign.as_ref(), events)
        .await?;
    println!("{}", pushed.digest);
    Ok(0)
}

/// `klee image save IMAGE -o PATH`.
pub async fn save(ctx: &Ctx, a: SaveArgs) -> Outcome {
    ctx.local_only("saving an image")?;
    let engine = ctx.engine().await?;
    let mut options = kleene_core::SaveOptions::default();
    match a.name {
        Some(n) => options = options.name(n),
        None => {
            let image = engine.image(&a.image).await?;
            if !image.tag.is_empty() {
                options = options.name(image.tag.clone());
            }
        }
    }
    if let Some(epoch) = a.source_date_epoch {
        options = options.clamp_mtime(epoch);
    }
    let events = Events::new(|e| {
        if let kleene_core::Event::Status(t) = e {
            println!("{t}");
        }
    });
    let saved = engine
        .save_image(&a.image, &a.output, options, events)
        .await?;
    println!("{}", saved.manifest.digest());
    Ok(0)
}

/// Makes a base image with klee's transcript: progress, then kleened's closing lines.
async fn make(ctx: &Ctx, req: CreateImage) -> Outcome {
    let engine = ctx.engine().await?;
    // What kleened says before it clones or copies a dataset.
    if let Some(line) = kleene_api::transcript::create_intro(&req.source) {
        println!("{line}");
    }
    // Ctrl-C removes the partial image (the engine answers Cancelled once it is gone).
    let interrupt = crate::signals::watch("image creation");
    let req = req.interrupt(interrupt.clone());
    let stopped = "klee: image creation stopped; the partial image was removed";
    with_progress(interrupt, stopped, |events| {
        engine.create_base_image(req, events)
    })
    .await
}

/// `klee image ls`.
pub async fn ls(ctx: &Ctx, a: ListArgs) -> Outcome {
    let backend = ctx.backend().await?;
    if a.format == ListFormat::Json {
        // The engine's whole records, embedded; kleened's `Image`s through it.
        if let Backend::Local(engine) = &backend {
            return print_json(ctx.theme, &engine.images().await?);
        }
        return print_json(ctx.theme, &backend.images().await?);
    }
    let now = now();
    let rows: Vec<Vec<String>> = backend
        .images()
        .await?
        .iter()
        .map(|i| image_row(i, now))
        .collect();
    print!("{}", table(ctx.theme, &IMAGE_COLUMNS, &rows));
    Ok(0)
}

/// `klee image inspect IMAGE`: the image in kleened's shape.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> Outcome {
    let backend = ctx.backend().await?;
    print_json(ctx.theme, &backend.image(&a.target).await?)
}

/// `klee image rm IMAGES...`.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> Outcome {
    let backend = ctx.backend().await?;
    each(&a.targets, |t| {
        let backend = backend.clone();
        async move { backend.remove_image(&t).await }
    })
    .await
}

/// `klee image prune [-a] [-f]`.
pub async fn prune(ctx: &Ctx, a: ImagePruneArgs) -> Outcome {
    // klee asks before it contacts kleened, and warns the same with and without --all.
    confirm_prune(a.force, "WARNING! This will remove all unused images.")?;
    let backend = ctx.backend().await?;
    print_pruned(&backend.prune_images(a.all).await?);
    Ok(0)
}

/// `klee image tag SOURCE_IMAGE NAMETAG`.
pub async fn tag(ctx: &Ctx, a: TagArgs) -> Outcome {
    let backend = ctx.backend().await?;
    println!("{}", backend.tag_image(&a.source_image, &a.nametag).await?);
    Ok(0)
}
