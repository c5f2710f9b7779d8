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
/// times), in hex. The tree is walked in order on this thread; the files' contents are
/// hashed on several (each file streamed through one buffer per thread), and their
/// digests go into the walk's hash where the files stand.
pub(super) fn hash_sources(sources: &[Source], ignore: Option<&Ignore>) -> Result<String> {
    let mut walk = Walk::default();
    for s in sources {
        walk.tree(&s.host, &s.rel, ignore)?;
    }
    let digests = digest_files(&walk.files)?;
    let mut h = Sha256::new();
    let mut at = 0;
    for ((offset, _), digest) in walk.files.iter().zip(&digests) {
        h.update(&walk.bytes[at..*offset]);
        h.update(digest);
        at = *offset;
    }
    h.update(&walk.bytes[at..]);
    Ok(hex(&h.finalize()))
}

/// What a walk of the sources hashes: `bytes`, with each regular file's content digest
/// to go in at its offset.
#[derive(Default)]
struct Walk {
    bytes: Vec<u8>,
    files: Vec<(usize, std::path::PathBuf)>,
}

impl Walk {
    fn tree(&mut self, p: &Path, rel: &str, ignore: Option<&Ignore>) -> Result<()> {
        let io_err = |e| CoreError::io(format!("reading {}", p.display()), e);
        let meta = std::fs::symlink_metadata(p).map_err(io_err)?;
        let ft = meta.file_type();
        self.bytes.extend_from_slice(rel.as_bytes());
        self.bytes.push(0);
        self.bytes
            .extend_from_slice(&(meta.mode() & 0o7777).to_le_bytes());
        if ft.is_symlink() {
            self.bytes.push(b'l');
            self.bytes.extend_from_slice(
                std::fs::read_link(p)
                    .map_err(io_err)?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if ft.is_dir() {
            self.bytes.push(b'd');
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
                self.tree(&p.join(&n), &child, ignore)?;
            }
        } else if ft.is_file() {
            self.bytes.push(b'f');
            self.bytes.extend_from_slice(&meta.len().to_le_bytes());
            self.files.push((self.bytes.len(), p.to_path_buf()));
        }
        self.bytes.push(0xff);
        Ok(())
    }
}

/// Below this many files, hashing them here is quicker than starting threads.
const PARALLEL_FROM: usize = 16;

/// The sha256 of each file's content, in order: on up to eight threads for many files.
fn digest_files(files: &[(usize, std::path::PathBuf)]) -> Result<Vec<[u8; 32]>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(files.len() / (PARALLEL_FROM / 2));
    if threads < 2 || files.len() < PARALLEL_FROM {
        let mut buf = vec![0u8; 1 << 16];
        return files
            .iter()
            .map(|(_, p)| digest_file(p, &mut buf))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<[u8; 32]>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 1 << 16];
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, p)) = files.get(i) else {
                            return mine;
                        };
                        mine.push((i, digest_file(p, &mut buf)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    if done.len() != files.len() {
        return Err(CoreError::Internal(
            "a thread hashing the build context panicked".into(),
        ));
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, d)| d).collect()
}

/// One file's sha256, streamed through `buf`.
fn digest_file(p: &Path, buf: &mut [u8]) -> Result<[u8; 32]> {
    let io_err = |e| CoreError::io(format!("reading {}", p.display()), e);
    let mut f = std::fs::File::open(p).map_err(io_err)?;
    let mut h = Sha256::new();
    loop {
        let n = f.read(buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn source(dir: &Path, rel: &str) -> Source {
        Source {
            rel: rel.to_string(),
            host: dir.join(rel),
            real: rel.to_string(),
        }
    }

    /// A tree of `n` files in four directories, and a symlink.
    fn tree(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for i in 0..n {
            let sub = dir.path().join(format!("ctx/d{}", i % 4));
            std::fs::create_dir_all(&sub).expect("a directory");
            std::fs::write(sub.join(format!("f{i}")), format!("{i}\n").repeat(i * 97))
                .expect("a file");
        }
        std::os::unix::fs::symlink("d0/f0", dir.path().join("ctx/link")).expect("a symlink");
        dir
    }

    fn digest(dir: &Path) -> String {
        hash_sources(&[source(dir, "ctx")], None).expect("hashing the tree")
    }

    #[test]
    fn files_hashed_on_threads_give_the_digests_of_one_thread_in_order() {
        let dir = tree(100);
        let mut walk = Walk::default();
        walk.tree(&dir.path().join("ctx"), "ctx", None)
            .expect("walking");
        assert_eq!(walk.files.len(), 100);
        let parallel = digest_files(&walk.files).expect("hashing on threads");
        let mut buf = [0u8; 7]; // a small buffer streams every file in many reads
        let one: Vec<[u8; 32]> = walk
            .files
            .iter()
            .map(|(_, p)| {
                let whole: [u8; 32] = Sha256::digest(std::fs::read(p).expect("a file")).into();
                assert_eq!(digest_file(p, &mut buf).expect("streaming"), whole);
                whole
            })
            .collect();
        assert_eq!(parallel, one);
    }

    #[test]
    fn the_digest_follows_contents_names_modes_and_links_not_times() {
        for n in [3, 100] {
            let dir = tree(n);
            let first = digest(dir.path());
            assert_eq!(digest(dir.path()), first, "{n} files: stable");
            let f = dir.path().join("ctx/d1/f1");
            // A new time only.
            let file = std::fs::File::options().write(true).open(&f).expect("open");
            file.set_modified(std::time::SystemTime::UNIX_EPOCH)
                .expect("setting mtime");
            assert_eq!(digest(dir.path()), first, "{n} files: times do not count");
            // The same length, another content.
            let mut body = std::fs::read(&f).expect("read");
            body[0] ^= 1;
            std::fs::write(&f, &body).expect("write");
            let changed = digest(dir.path());
            assert_ne!(changed, first, "{n} files: content");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let moded = digest(dir.path());
            assert_ne!(moded, changed, "{n} files: mode");
            std::fs::rename(&f, dir.path().join("ctx/d1/g1")).expect("rename");
            let renamed = digest(dir.path());
            assert_ne!(renamed, moded, "{n} files: name");
            std::fs::remove_file(dir.path().join("ctx/link")).expect("unlink");
            std::os::unix::fs::symlink("d0/f4", dir.path().join("ctx/link")).expect("symlink");
            assert_ne!(digest(dir.path()), renamed, "{n} files: link target");
        }
    }

    #[test]
    fn an_unreadable_file_is_named_in_the_error() {
        let dir = tree(40);
        let gone = dir.path().join("ctx/d2/f2");
        let mut walk = Walk::default();
        walk.tree(&dir.path().join("ctx"), "ctx", None)
            .expect("walking");
        std::fs::remove_file(&gone).expect("unlink");
        let err = digest_files(&walk.files).expect_err("a file went");
        assert!(err.to_string().contains("d2/f2"), "{err}");
    }
}
