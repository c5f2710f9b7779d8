//! Finding and stopping what a dead owner left running in a jail root, so that a repair can
//! unmount and destroy the dataset under it safely.
//!
//! The platforms find the processes (Linux: every host process whose root or working
//! directory is the root or below it; FreeBSD: the processes of the jails whose path is the
//! root or below it) and release what is left afterwards (FreeBSD: `jail_remove(2)` of
//! those jails); signalling, waiting and the limits are here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::sys;

/// How long processes get to end after SIGKILL before [`stop_processes_under`] gives up
/// on them (a process in uninterruptible sleep, such as one stuck on a wedged file system).
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the search is repeated for processes started while the others were stopped.
const ROUNDS: usize = 4;

fn checked_root(root: &Path) -> Result<PathBuf> {
    if !root.is_absolute() {
        return Err(Error::InvalidConfig(format!(
            "root {} is not absolute",
            root.display()
        )));
    }
    let canonical = std::fs::canonicalize(root).map_err(|_| Error::RootNotFound {
        path: root.to_owned(),
    })?;
    if !canonical.is_dir() {
        return Err(Error::RootNotFound {
            path: root.to_owned(),
        });
    }
    if canonical == Path::new("/") {
        return Err(Error::InvalidConfig(
            "refusing to stop the processes under /, which are all of them".into(),
        ));
    }
    Ok(canonical)
}

/// The host pids of the processes that live in `root` or below it: on Linux every process
/// whose root directory or working directory is there (a jail's processes, and host
/// processes whose cwd is inside), on FreeBSD the processes of the jails whose path is
/// there. The calling process and its ancestors are never listed. Blocking, but it never
/// waits on the file system (a hung FUSE mount does not hang it).
pub fn processes_under(root: &Path) -> Result<Vec<i32>> {
    let root = checked_root(root)?;
    let mut pids: Vec<i32> = sys::find_under(&root)?.iter().map(|f| f.pid()).collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Stops every process [`processes_under`] finds in `root` and returns their host pids, in
/// ascending order (empty when nothing was running there). This is what a repair calls
/// before unmounting or destroying a jail's dataset whose owner died without stopping it.
///
/// SIGTERM first (pid 1 of each pid namespace first), up to `grace` for them to end, then
/// SIGKILL to what is left (again namespace inits first: the kernel then kills the rest of
/// their namespace), up to [`KILL_TIMEOUT`]. The search is repeated for processes started
/// meanwhile (those get SIGKILL at once). On FreeBSD the jails there are then removed
/// (`jail_remove(2)`, which kills whatever still runs in them).
///
/// Blocking, bounded by `grace` + [`KILL_TIMEOUT`] per round, a few rounds at most: run it
/// on a blocking thread. Errors: [`Error::RootNotFound`], [`Error::InvalidConfig`] for a
/// relative root or `/`, [`Error::ProcessesSurvived`] naming the root and the pids that did
/// not end after SIGKILL.
pub fn stop_processes_under(root: &Path, grace: Duration) -> Result<Vec<i32>> {
    let root = checked_root(root)?;
    let mut stopped = BTreeSet::new();
    for round in 0..ROUNDS {
        let found = sys::find_under(&root)?;
        if found.is_empty() {
            sys::release_under(&root)?;
            return Ok(stopped.into_iter().collect());
        }
        // Namespace inits first.
        let mut order: Vec<&sys::Found> = found.iter().collect();
        order.sort_by_key(|f| !f.first());
        stopped.extend(order.iter().map(|f| f.pid()));
        if round == 0 && !grace.is_zero() {
            for f in &order {
                let _ = f.signal(Signal::SIGTERM);
            }
            sys::wait_exited(&order, grace);
        }
        for f in order.iter().filter(|f| !f.exited()) {
            let _ = f.signal(Signal::SIGKILL);
        }
        sys::wait_exited(&order, KILL_TIMEOUT);
        let survivors: Vec<i32> = order
            .iter()
            .filter(|f| !f.exited())
            .map(|f| f.pid())
            .collect();
        if !survivors.is_empty() {
            return Err(Error::ProcessesSurvived {
                root,
                pids: survivors,
            });
        }
    }
    let left: Vec<i32> = sys::find_under(&root)?.iter().map(|f| f.pid()).collect();
    if left.is_empty() {
        sys::release_under(&root)?;
        return Ok(stopped.into_iter().collect());
    }
    Err(Error::ProcessesSurvived { root, pids: left })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roots_are_checked() {
        assert!(matches!(
            stop_processes_under(Path::new("/"), Duration::ZERO),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            processes_under(Path::new("/tmp/../")),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            processes_under(Path::new("relative")),
            Err(Error::InvalidConfig(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            stop_processes_under(&dir.path().join("missing"), Duration::ZERO),
            Err(Error::RootNotFound { .. })
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_empty_root_has_no_processes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(processes_under(dir.path()).unwrap(), Vec::<i32>::new());
        assert_eq!(
            stop_processes_under(dir.path(), Duration::from_secs(1)).unwrap(),
            Vec::<i32>::new()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_caller_is_spared() {
        // This test process' cwd is the crate directory: under it, but never stopped.
        let cwd = std::env::current_dir().unwrap();
        assert!(!processes_under(&cwd)
            .unwrap()
            .contains(&(std::process::id() as i32)));
    }
}
