//! The one thread of the process that clones jailed processes.
//!
//! `PR_SET_PDEATHSIG` fires when the parent *thread* of a process exits, not its parent
//! process: a jail cloned from one of tokio's blocking-pool threads (which end after some
//! seconds idle) would be killed with that thread. So every clone happens on a thread that
//! this crate owns, started at the first use and never ending while the process lives: its
//! exit is the process' death, and then the kernel kills the jails that asked for it.
//!
//! The spawner runs jobs one at a time: the clone and, for an exec, the few microseconds
//! of its helper. Each job owns everything its child uses (the plan and the descriptors),
//! so a caller that gives up (a dropped future) cannot close them under the clone; a child
//! started for a caller that is gone is killed and reaped.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Mutex, OnceLock, PoisonError};

use super::child::{parse_stat_ppid, read_host_ppid, OwnerLink};
use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&OwnerLink) + Send>;

struct Spawner {
    /// The process that started the thread: a forked child has no such thread and starts
    /// its own.
    pid: u32,
    jobs: mpsc::Sender<Job>,
}

static SPAWNER: Mutex<Option<Spawner>> = Mutex::new(None);

fn gone() -> Error {
    Error::io(
        "run on the jail spawner thread",
        std::io::Error::other("the spawner thread failed"),
    )
}

fn jobs() -> Result<mpsc::Sender<Job>> {
    let mut guard = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    if let Some(s) = guard.as_ref().filter(|s| s.pid == pid) {
        return Ok(s.jobs.clone());
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("kleene-jail-spawner".into())
        .spawn(move || serve(rx))
        .map_err(|e| Error::io("start the jail spawner thread", e))?;
    *guard = Some(Spawner {
        pid,
        jobs: tx.clone(),
    });
    Ok(tx)
}

fn serve(rx: mpsc::Receiver<Job>) {
    // No signal handler runs here, and a child starts with every signal blocked until it
    // sets up its own mask.
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only touch it and this
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let link = owner_link();
    // The static keeps a sender, so this ends only in a forked child (which has no use for
    // it); a job that panics is caught, for the thread must not end.
    while let Ok(job) = rx.recv() {
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&link)));
    }
    loop {
        std::thread::park();
    }
}

/// The owner's pid and its `/proc`, checked to be the instance of its own pid namespace
/// (else the children only arm the signal, without the check of a reparenting).
fn owner_link() -> OwnerLink {
    let pid = std::process::id() as libc::pid_t;
    let proc_fd = open_proc().filter(|fd| {
        let mut stat = Vec::new();
        let own = File::open("/proc/self/stat").and_then(|mut f| f.read_to_end(&mut stat));
        own.is_ok()
            && stat.split(|b| *b == b' ').next() == Some(pid.to_string().as_bytes())
            && parse_stat_ppid(&stat).is_some()
            && read_host_ppid(fd.as_raw_fd()) == Ok(nix::unistd::getppid().as_raw())
    });
    OwnerLink {
        pid,
        proc_fd: proc_fd.map_or(-1, |fd| {
            static KEEP: OnceLock<OwnedFd> = OnceLock::new();
            KEEP.get_or_init(|| fd).as_raw_fd()
        }),
    }
}

fn open_proc() -> Option<OwnedFd> {
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a new descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `job` on the spawner thread and returns what it returns. When the caller is gone by
/// then (its future was dropped), `orphaned` gets the result instead, to undo it.
pub(crate) async fn run<R, F>(job: F, orphaned: fn(R)) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&OwnerLink) -> R + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |link| {
        if let Err(r) = tx.send(job(link)) {
            orphaned(r);
        }
    });
    jobs()?.send(job).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())
}
