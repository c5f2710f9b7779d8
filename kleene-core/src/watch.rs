//! Blocking engine work under a watch: a filesystem below the pool whose daemon wedged
//! (zfs-fuse stopped, a FUSE request never answered) makes every access there hang for
//! good, in the kernel, where no thread can be interrupted. The work runs on a thread of
//! its own; while it runs, the pool's root is asked, on yet another thread, whether it
//! still answers. When it does not within the deadline, the caller gets
//! [`CoreError::NotAnswering`] and the stuck thread is left behind (it does not keep a
//! program from exiting); what the work left half-done is an interrupted operation,
//! repaired by the next [`crate::Engine::open`] once the filesystem answers again.
//!
//! Slow work on a healthy filesystem (a large copy, a long `zfs receive`) is never cut
//! short: only a root that stops answering ends the wait. zfs(8) calls have deadlines of
//! their own (kleene-zfs's `Deadlines`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{CoreError, Result};

/// How long the pool's root gets to answer one probe (by default;
/// [`crate::Config::fs_deadline`]). A healthy zfs-fuse on a loaded machine has taken over
/// ten seconds to answer a directory read; a wedged one never does.
pub const FS_DEADLINE: Duration = Duration::from_secs(30);

/// How often a running task probes: every ten seconds, or every `deadline` when that is
/// shorter.
fn interval(deadline: Duration) -> Duration {
    deadline.min(Duration::from_secs(10))
}

/// Where a watch probes: set once the pool's root is known (open learns it half-way).
pub(crate) type ProbeAt = Arc<OnceLock<PathBuf>>;

/// Runs `f` on a thread of its own; every [`interval`] that it has not finished, probes
/// the filesystem at `probe` (when known) and gives up with `NotAnswering` when that does
/// not answer within `deadline`.
pub(crate) async fn watched<T: Send + 'static>(
    probe: &ProbeAt,
    deadline: Duration,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    until(probe, deadline, on_a_thread(f)).await
}

/// Awaits `work` (engine work on a thread, or a wait on another process such as a
/// container's monitor) under the watch of [`watched`].
pub(crate) async fn until<T>(
    probe: &ProbeAt,
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    watch_with(deadline, work, || {
        probe.get().map(|p| (p.clone(), probe_thread(p, ask)))
    })
    .await
}

/// `f` on a thread of its own (not tokio's blocking pool: a thread stuck in the kernel
/// must not keep the runtime, or the program, from ending).
async fn on_a_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kleene-engine".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| CoreError::io("starting an engine thread", e))?;
    rx.await
        .map_err(|_| CoreError::Internal("an engine task panicked".into()))?
}

/// The watch, its probe given: `probe` names the path and starts one asking of it.
async fn watch_with<T>(
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T>>,
    probe: impl Fn() -> Option<(PathBuf, Result<Answer>)>,
) -> Result<T> {
    tokio::pin!(work);
    loop {
        match tokio::time::timeout(interval(deadline), &mut work).await {
            Ok(result) => return result,
            Err(_) => {
                if let Some((path, answer)) = probe() {
                    match tokio::time::timeout(deadline, answer?).await {
                        // A filesystem that errors answers: the work will see the error.
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) | Err(_) => return Err(not_answering(&path, deadline)),
                    }
                }
            }
        }
    }
}

/// The answer of one probe, when it comes.
type Answer = tokio::sync::oneshot::Receiver<std::io::Result<()>>;

/// Asks `path` once, blocking for at most `deadline` (the open's first probe).
pub(crate) fn answers(path: &Path, deadline: Duration) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("kleene-fs-probe".into())
        .spawn(move || {
            let _ = tx.send(ask(&p));
        })
        .map_err(|e| CoreError::io("starting a thread", e))?;
    match rx.recv_timeout(deadline) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CoreError::io(format!("reading {}", path.display()), e)),
        Err(_) => Err(not_answering(path, deadline)),
    }
}

fn probe_thread(path: &Path, ask: fn(&Path) -> std::io::Result<()>) -> Result<Answer> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("kleene-fs-probe".into())
        .spawn(move || {
            let _ = tx.send(ask(&p));
        })
        .map_err(|e| CoreError::io("starting a thread", e))?;
    Ok(rx)
}

/// One round trip to the filesystem's daemon: opening and reading a directory is not
/// answered from the kernel's attribute cache, as a stat can be.
fn ask(path: &Path) -> std::io::Result<()> {
    let mut dir = std::fs::read_dir(path)?;
    dir.next().transpose()?;
    Ok(())
}

fn not_answering(path: &Path, after: Duration) -> CoreError {
    CoreError::NotAnswering {
        path: path.to_path_buf(),
        after,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(path: &Path) -> ProbeAt {
        let p = ProbeAt::default();
        p.set(path.to_path_buf()).unwrap();
        p
    }

    #[tokio::test]
    async fn slow_work_on_an_answering_filesystem_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let r = watched(&at(dir.path()), Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(7)
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }

    /// A FIFO stands in for a wedged daemon: opening it blocks, as a FUSE request that
    /// is never answered does.
    #[tokio::test]
    async fn a_root_that_does_not_answer_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("wedged");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let f = fifo.clone();
        let start = std::time::Instant::now();
        let open = |p: &Path| std::fs::File::open(p).map(drop);
        let err = watch_with(
            Duration::from_millis(200),
            // Stuck, as a walk below a wedged mount is.
            on_a_thread(move || {
                let _ = std::fs::File::open(&f);
                Ok(())
            }),
            || Some((fifo.clone(), probe_thread(&fifo, open))),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CoreError::NotAnswering { .. }), "{err}");
        assert!(err.to_string().contains("wedged"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // Unblock the stuck threads (the work and the probes) before the test ends.
        use std::os::unix::fs::OpenOptionsExt;
        for _ in 0..3 {
            let _w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&fifo);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn an_erring_root_answers() {
        let dir = tempfile::tempdir().unwrap();
        let gone = at(&dir.path().join("missing"));
        let r = watched(&gone, Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(1)
        })
        .await;
        assert_eq!(r.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_panic_is_an_error() {
        let err = watched(
            &ProbeAt::default(),
            Duration::from_secs(1),
            || -> Result<()> { panic!("deliberately") },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
    }
}
