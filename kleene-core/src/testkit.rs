//! What the unit tests share: an engine on kleene-zfs's in-memory ZFS (its `testing`
//! feature) with [`FakeJails`], which records every RUN instead of running it, so builds,
//! lookups and `Engine::open`'s repair are tested without root or a pool.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kleene_jail::ExitStatus;
use kleene_zfs::{DatasetName, Properties, Zfs};
use tokio::sync::watch;

use crate::jails::{EndFuture, JailRun, Jails, RunEnd, RunFuture};
use crate::{
    BaseSource, BuildOutcome, BuildRequest, Config, CoreError, CreateImage, Engine, Event, Events,
};

/// The pool of the memory backend.
pub(crate) const POOL: &str = "tank";

/// The engine's root dataset.
pub(crate) fn root() -> DatasetName {
    DatasetName::new("tank/kleene").unwrap()
}

/// What a fake command does: its exit code, and the files it writes.
type Behaviour = dyn Fn(&JailRun) -> i32 + Send + Sync;

/// Jails that run nothing: each [`JailRun`] is recorded and "runs" by [`simulate`] (or a
/// test's own behaviour).
pub(crate) struct FakeJails {
    runs: Mutex<Vec<JailRun>>,
    ended: Mutex<Vec<String>>,
    behaviour: Box<Behaviour>,
}

impl std::fmt::Debug for FakeJails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeJails").finish_non_exhaustive()
    }
}

impl Default for FakeJails {
    fn default() -> Self {
        Self::new(simulate)
    }
}

impl FakeJails {
    /// Jails whose commands do what `behaviour` does.
    pub fn new(behaviour: impl Fn(&JailRun) -> i32 + Send + Sync + 'static) -> Self {
        Self {
            runs: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
            behaviour: Box::new(behaviour),
        }
    }

    /// Every run so far, in order.
    pub fn runs(&self) -> Vec<JailRun> {
        self.runs.lock().unwrap().clone()
    }

    /// The script (last argument) of every run so far.
    pub fn scripts(&self) -> Vec<String> {
        self.runs()
            .iter()
            .map(|r| r.argv.last().cloned().unwrap_or_default())
            .collect()
    }

    /// The build containers ended so far, in order.
    pub fn ended(&self) -> Vec<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Forgets the runs so far.
    pub fn clear(&self) {
        self.runs.lock().unwrap().clear();
        self.ended.lock().unwrap().clear();
    }
}

impl Jails for FakeJails {
    fn run<'a>(
        &'a self,
        run: JailRun,
        _events: &'a Events,
        _cancel: watch::Receiver<()>,
    ) -> RunFuture<'a> {
        let code = (self.behaviour)(&run);
        self.runs.lock().unwrap().push(run);
        Box::pin(async move { Ok(RunEnd::Exited(ExitStatus::Exited(code))) })
    }

    fn end<'a>(&'a self, name: &'a str) -> EndFuture<'a> {
        self.ended.lock().unwrap().push(name.to_string());
        Box::pin(async {})
    }
}

/// A tiny stand-in for the shell: the script's `;`-separated commands, `echo WORDS >
/// /PATH` (writes `WORDS\n` into the root) and `exit N`; anything else succeeds.
pub(crate) fn simulate(run: &JailRun) -> i32 {
    let script = run.argv.last().cloned().unwrap_or_default();
    for cmd in script.split(';').map(str::trim) {
        if let Some(code) = cmd.strip_prefix("exit ") {
            return code.trim().parse().unwrap_or(1);
        }
        if let Some((words, path)) = cmd.strip_prefix("echo ").and_then(|c| c.split_once('>')) {
            let target = run.root.join(path.trim().trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, format!("{}\n", words.trim())).unwrap();
        }
    }
    0
}

/// An engine on a fresh memory pool, with [`FakeJails`], and a base image `base` (a
/// passwd, a group and a shell-less `/bin`).
pub(crate) struct TestEngine {
    pub engine: Engine,
    pub jails: Arc<FakeJails>,
    pub dir: tempfile::TempDir,
}

/// The config of a test engine. Unit tests start no containers: the monitor is named, so
/// that `open` does not ask for `crate::init`, and never run.
pub fn config() -> Config {
    let mut config = Config::new(root());
    config.monitor = Some("/nonexistent/kleene-monitor".into());
    config
}

impl TestEngine {
    /// With the default fake jails.
    pub async fn new() -> Self {
        Self::with_jails(FakeJails::default()).await
    }

    /// With these fake jails.
    pub async fn with_jails(jails: FakeJails) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let zfs = Zfs::memory(dir.path().join("zfs"), POOL).unwrap();
        let jails = Arc::new(jails);
        let engine = Engine::builder(config())
            .zfs(zfs)
            .jails(Arc::clone(&jails) as Arc<dyn Jails>)
            .open()
            .await
            .unwrap();
        let t = TestEngine { engine, jails, dir };
        t.base_image("base").await;
        t
    }

    /// Makes image `tag` by zfs-clone of a fresh dataset with a minimal root.
    pub async fn base_image(&self, tag: &str) -> crate::Image {
        let src = DatasetName::new(format!("{POOL}/src-{}", tag.replace(':', "-"))).unwrap();
        let zfs = self.engine.zfs();
        zfs.create(&src, &Properties::new()).unwrap();
        let root = zfs.mountpoint(&src).unwrap().unwrap();
        write(
            &root,
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        );
        write(&root, "etc/group", "root:x:0:\napp:x:1000:\n");
        write(&root, "bin/.keep", "");
        let mut req = CreateImage::new(BaseSource::ZfsClone(src.clone())).tag(tag);
        req.dns = false;
        req.localtime = false;
        self.engine
            .create_base_image(req, Events::none())
            .await
            .unwrap()
    }

    /// A context directory `name` with a Dockerfile and files (path, contents).
    pub fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join("contexts").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        for (p, c) in files {
            write(&dir, p, c);
        }
        dir
    }

    /// Builds `req`, collecting its events.
    pub async fn build(&self, req: BuildRequest) -> (Result<BuildOutcome, CoreError>, Log) {
        let log = Log::default();
        (self.engine.build(req, log.events()).await, log)
    }

    /// Builds context `ctx` tagged `tag`; the outcome must be a success.
    pub async fn build_ok(&self, ctx: &Path, tag: &str) -> (BuildOutcome, Log) {
        let (r, log) = self.build(BuildRequest::new(ctx).tag(tag)).await;
        match r {
            Ok(o) => (o, log),
            Err(e) => panic!("build of {tag} failed: {e}\n{:#?}", log.all()),
        }
    }

    /// The root directory of image `reference`'s dataset.
    pub async fn image_root(&self, reference: &str) -> PathBuf {
        let image = self.engine.image(reference).await.unwrap();
        self.engine
            .zfs()
            .mountpoint(&image.dataset)
            .unwrap()
            .unwrap()
    }
}

/// Writes `contents` to `rel` below `dir`, making directories.
pub(crate) fn write(dir: &Path, rel: &str, contents: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
}

/// Collects events.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    pub fn events(&self) -> Events {
        let l = Arc::clone(&self.0);
        Events::new(move |e| l.lock().unwrap().push(e))
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// `Step n/m : text` of each step.
    pub fn steps(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::BuildStep { n, total, text } => Some(format!("Step {n}/{total} : {text}")),
                _ => None,
            })
            .collect()
    }

    /// How many events `f` accepts.
    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.all().iter().filter(|e| f(e)).count()
    }
}

/// A loopback HTTP server answering `body` to every request; its URL (`/payload`).
pub(crate) fn serve(body: &'static [u8]) -> String {
    serve_chunks(body, 1)
}

/// [`serve`], writing the body in `chunks` pieces.
pub(crate) fn serve_chunks(body: &'static [u8], chunks: usize) -> String {
    serve_paced(
        body.to_vec(),
        body.len().div_ceil(chunks),
        std::time::Duration::ZERO,
    )
}

/// A loopback HTTP server answering `body` to every request, `chunk` bytes at a time with
/// `pause` between them (a slow download; it gives up after 20 s); its URL (`/payload`).
pub(crate) fn serve_paced(body: Vec<u8>, chunk: usize, pause: std::time::Duration) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            for part in body.chunks(chunk.max(1)) {
                if stream.write_all(part).is_err() || std::time::Instant::now() > deadline {
                    break;
                }
                let _ = stream.flush();
                std::thread::sleep(pause);
            }
        }
    });
    format!("http://127.0.0.1:{port}/payload")
}

/// A container row as the metadata holds it, for pure tests (nothing is made).
pub(crate) fn container(name: &str) -> crate::Container {
    let id = crate::Id::generate().unwrap();
    crate::Container {
        name: name.into(),
        image_id: id.clone(),
        snapshot: kleene_zfs::SnapshotName::new(format!("pool/kleene/image/{id}@s")).unwrap(),
        dataset: kleene_zfs::DatasetName::new(format!("pool/kleene/container/{id}")).unwrap(),
        config: crate::ContainerConfig::default(),
        created: 0,
        runtime: crate::Runtime::default(),
        id,
    }
}
