//! The build cache: every key is hashed here. A stage's chain hashes the snapshot it
//! stands on and everything since (instruction texts, ENV and ARG values, WORKDIRs); a
//! RUN's key adds its command, environment, user, workdir, network and jail parameters; a
//! COPY/ADD's key adds its sources' contents and destination options. A step whose key
//! was recorded reuses that snapshot instead of running.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kleene_zfs::Properties;
use sha2::{Digest, Sha256};

use super::copy::{CopyRequest, Source};
use super::glob::Ignore;
use super::state::StageState;
use super::Builder;
use crate::error::{CoreError, Result};
use crate::event::Event;
use crate::fetch::hex;
use crate::id::Id;
use crate::jails::JailRun;
use crate::model::ImageSnapshot;
use crate::vars;

/// A running hash: a stage's state since its last snapshot, or a step's key.
#[derive(Clone)]
pub(super) struct Chain(Sha256);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chain")
    }
}

impl Chain {
    /// A chain standing on `snapshot` (`<image id>@<snapshot>`).
    pub fn start(snapshot: &str) -> Chain {
        let mut c = Chain(Sha256::new());
        c.field(snapshot.as_bytes());
        c
    }

    /// Adds `bytes` and a separator.
    pub fn field(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
        self.0.update([0]);
    }

    /// Adds `bytes` as they are.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash, in hex.
    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// The key of a RUN: the chain, then the command, environment (`KEY=value`), jail
/// parameters, user, workdir and network, each with a separator.
pub(super) fn run_key(chain: &Chain, run: &JailRun) -> String {
    let mut key = chain.clone();
    let env = vars::to_env(&run.env);
    let params: Vec<String> = run.params.iter().map(|p| p.to_string()).collect();
    // Stable words (the names the key had before networks), not the namespace's
    // descriptor, which differs each build: as for docker, which network a step ran on
    // is not part of its key, only whether it had one.
    let network = match &run.network {
        kleene_jail::NetworkMode::Inherit => "Host".to_string(),
        kleene_jail::NetworkMode::Disabled => "Disabled".to_string(),
        kleene_jail::NetworkMode::Namespace(_) => "Network".to_string(),
        other => format!("{other:?}"),
    };
    // What is mounted where (not its content, as for docker's RUN --mount).
    let mounts: String = run.mounts.iter().map(|m| format!("{:?};", m)).collect();
    let tail = [
        run.user.as_deref().unwrap_or(""),
        run.workdir.as_deref().unwrap_or(""),
        network.as_str(),
    ];
    for part in run
        .argv
        .iter()
        .chain(&env)
        .chain(&params)
        .map(String::as_str)
        .chain(tail)
    {
        key.field(part.as_bytes());
    }
    // Only with mounts, so that keys of builds without stay what they were.
    if !mounts.is_empty() {
        key.field(mounts.as_bytes());
    }
    key.finish()
}

/// The key of a COPY/ADD: the chain, the digest of its sources (see [`hash_sources`]),
/// each inline file's name and sha256, then where the sources come from, the destination,
/// the workdir, `--chown`, `--chmod` and unpacking, each with a separator.
pub(super) fn copy_key(chain: &Chain, req: &CopyRequest, sources_digest: &str) -> String {
    let mut key = chain.clone();
    key.raw(sources_digest.as_bytes());
    for file in &req.inline {
        key.raw(file.name.as_bytes());
        key.raw(&file.sha256());
    }
    for part in [
        req.from.what,
        &req.dest_abs(),
        &req.workdir,
        req.chown.as_deref().unwrap_or(""),
        &format!("{:?}{}", req.chmod, req.unpack),
    ] {
        key.field(part.as_bytes());
    }
    key.finish()
}

/// A digest of the sources' names, types, modes, contents and link targets (not their
/// times), in hex.
pub(super) fn hash_sources(sources: &[Source], ignore: Option<&Ignore>) -> Result<String> {
    let mut h = Sha256::new();
    for s in sources {
        hash_tree(&mut h, &s.host, &s.rel, ignore)?;
    }
    Ok(hex(&h.finalize()))
}

fn hash_tree(h: &mut Sha256, p: &Path, rel: &str, ignore: Option<&Ignore>) -> Result<()> {
    let io_err = |e| CoreError::io(format!("reading {}", p.display()), e);
    let meta = std::fs::symlink_metadata(p).map_err(io_err)?;
    let ft = meta.file_type();
    h.update(rel.as_bytes());
    h.update([0]);
    h.update((meta.mode() & 0o7777).to_le_bytes());
    if ft.is_symlink() {
        h.update(b"l");
        h.update(
            std::fs::read_link(p)
                .map_err(io_err)?
                .as_os_str()
                .as_encoded_bytes(),
        );
    } else if ft.is_dir() {
        h.update(b"d");
        let mut names: Vec<_> = std::fs::read_dir(p)
            .map_err(io_err)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            if ignore.is_some_and(|i| i.excluded(&child)) {
                continue;
            }
            hash_tree(h, &p.join(&n), &child, ignore)?;
        }
    } else if ft.is_file() {
        h.update(b"f");
        h.update(meta.len().to_le_bytes());
        let mut f = std::fs::File::open(p).map_err(io_err)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    h.update([0xff]);
    Ok(())
}

impl Builder {
    /// Looks a step up in the cache: on a hit (its image and snapshot still exist), the
    /// stage continues from that snapshot. Only while the stage has written nothing.
    pub(super) async fn try_cache(&mut self, st: &mut StageState, key: &str) -> Result<bool> {
        if self.req.no_cache || st.root.is_some() {
            return Ok(false);
        }
        let key = key.to_string();
        let me = st.id.clone();
        let hit = self
            .engine
            .blocking(move |inner| {
                let Some((image_id, snap)) = inner.store().cache_lookup(&key)? else {
                    return Ok(None);
                };
                // A ready image's snapshots go only with it (and its cache rows with its
                // row): the metadata answers, no zfs(8) run is needed.
                let image = inner.store().image(&image_id)?;
                let alive = match image {
                    Some(image) => Some(image.dataset.snapshot(&snap)?),
                    None => None,
                };
                let Some(s) = alive else {
                    inner.store().cache_delete(&key)?;
                    return Ok(None);
                };
                // Our row names it as parent at once: the image cannot go now.
                let parent = ImageSnapshot {
                    image: image_id.clone(),
                    snapshot: snap,
                };
                inner.store().set_image_parent(&me, &parent)?;
                Ok(Some((image_id, s)))
            })
            .await?;
        let Some((owner, snap)) = hit else {
            return Ok(false);
        };
        let shown = format!("{owner}@{}", snap.snapshot());
        self.events.emit(Event::StepCached {
            snapshot: shown.clone(),
        });
        st.continue_from(owner, snap, shown);
        self.cached += 1;
        Ok(true)
    }

    /// Snapshots the stage after a step, records it in the cache under `key` (unless the
    /// cache is off), tells the user; the snapshot as shown (`@<id>`).
    pub(super) async fn snapshot(&self, st: &mut StageState, key: String) -> Result<String> {
        let key = (!self.req.no_cache).then_some(key);
        let snap = Id::generate()?;
        let name = st.dataset.snapshot(snap.as_str())?;
        let (id, s) = (st.id.clone(), snap.to_string());
        self.engine
            .blocking(move |inner| {
                inner.zfs.snapshot(&name, &Properties::new())?;
                if let Some(k) = key {
                    inner.store().cache_insert(&k, &id, &s)?;
                }
                crate::failpoint("build-after-snapshot");
                Ok(())
            })
            .await?;
        st.snapshotted(&snap);
        let shown = format!("@{snap}");
        self.events.emit(Event::SnapshotCreated {
            snapshot: shown.clone(),
        });
        Ok(shown)
    }
}
