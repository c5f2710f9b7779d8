//! The failure record a child sends its parent before exec, on a close-on-exec pipe:
//! what it was doing, the errno and an index (of the mount). EOF means the exec succeeded.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use crate::error::Error;

/// What failed in the child, sent to the parent with the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    MountPrivate = 1,
    BindRoot,
    OpenRoot,
    OpenBindTarget,
    Bind,
    Pivot,
    UmountOldRoot,
    RemountReadOnly,
    Proc,
    Dev,
    Hostname,
    Loopback,
    Workdir,
    Capabilities,
    Groups,
    Gid,
    Uid,
    NoNewPrivs,
    Stdio,
    Terminal,
    Exec,
    Setns,
    Fork,
    Signals,
    OwnerDeath,
    JoinNetwork,
}

impl Stage {
    pub fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 26] = [
            MountPrivate,
            BindRoot,
            OpenRoot,
            OpenBindTarget,
            Bind,
            Pivot,
            UmountOldRoot,
            RemountReadOnly,
            Proc,
            Dev,
            Hostname,
            Loopback,
            Workdir,
            Capabilities,
            Groups,
            Gid,
            Uid,
            NoNewPrivs,
            Stdio,
            Terminal,
            Exec,
            Setns,
            Fork,
            Signals,
            OwnerDeath,
            JoinNetwork,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub fn describe(self) -> &'static str {
        use Stage::*;
        match self {
            MountPrivate => "making mounts private",
            BindRoot => "binding the root onto itself",
            OpenRoot => "opening the root",
            OpenBindTarget => "opening a mount target",
            Bind => "bind mount",
            Pivot => "pivot_root",
            UmountOldRoot => "detaching the old root",
            RemountReadOnly => "read-only remount",
            Proc => "mounting /proc",
            Dev => "making /dev",
            Hostname => "setting the host name",
            Loopback => "bringing up lo",
            Workdir => "changing to the working directory",
            Capabilities => "limiting capabilities",
            Groups => "setgroups",
            Gid => "setgid",
            Uid => "setuid",
            NoNewPrivs => "no_new_privs",
            Stdio => "setting up stdio",
            Terminal => "making the controlling terminal",
            Exec => "execve",
            Setns => "entering the jail's namespaces",
            Fork => "forking",
            Signals => "resetting signals",
            OwnerDeath => "tying the process to its owner",
            JoinNetwork => "joining the container's network namespace",
        }
    }
}

/// The size of a failure record: stage, errno, index (of the mount, or 0).
pub(crate) const RECORD: usize = 12;

pub(crate) fn decode(record: &[u8; RECORD]) -> (u32, i32, u32) {
    let w = |i: usize| [record[i], record[i + 1], record[i + 2], record[i + 3]];
    (
        u32::from_ne_bytes(w(0)),
        i32::from_ne_bytes(w(4)),
        u32::from_ne_bytes(w(8)),
    )
}

/// Encodes a failure record.
pub(crate) fn encode(stage: Stage, errno: i32, index: u32) -> [u8; RECORD] {
    let mut rec = [0u8; RECORD];
    let parts = [
        (stage as u32).to_ne_bytes(),
        errno.to_ne_bytes(),
        index.to_ne_bytes(),
    ];
    for (slot, b) in rec.iter_mut().zip(parts.iter().flatten()) {
        *slot = *b;
    }
    rec
}

/// The error a failure record stands for.
pub(crate) fn failure_error(
    rec: &[u8; RECORD],
    argv0: &OsString,
    workdir: Option<&Path>,
    binds: &[crate::config::Mount],
) -> Error {
    let (stage, errno, index) = decode(rec);
    let source = io::Error::from_raw_os_error(errno);
    let Some(stage) = Stage::from_u32(stage) else {
        return Error::Setup {
            step: format!("unknown step {stage}"),
            source,
        };
    };
    let command = argv0.to_string_lossy().into_owned();
    match stage {
        Stage::Exec if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            Error::CommandNotFound { command }
        }
        Stage::Exec => Error::Exec { command, source },
        Stage::Workdir if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            Error::WorkdirNotFound {
                path: workdir.unwrap_or(Path::new("/")).to_owned(),
            }
        }
        Stage::OpenBindTarget | Stage::Bind | Stage::RemountReadOnly => {
            let what = binds
                .get(index as usize)
                .map(|m| format!(" of {} at {}", m.source.display(), m.target.display()))
                .unwrap_or_default();
            Error::Setup {
                step: format!("{}{what}", stage.describe()),
                source,
            }
        }
        _ => Error::Setup {
            step: stage.describe().to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip() {
        for v in 1..=26 {
            let s = Stage::from_u32(v).expect("every code names a stage");
            assert_eq!(s as u32, v);
        }
        assert!(Stage::from_u32(0).is_none());
        assert!(Stage::from_u32(27).is_none());
    }

    #[test]
    fn records_round_trip() {
        let rec = encode(Stage::Bind, libc::EPERM, 3);
        assert_eq!(decode(&rec), (Stage::Bind as u32, libc::EPERM, 3));
        let err = failure_error(
            &encode(Stage::Exec, libc::ENOENT, 0),
            &"x".into(),
            None,
            &[],
        );
        assert!(matches!(err, Error::CommandNotFound { .. }));
        let err = failure_error(&encode(Stage::Uid, libc::EPERM, 0), &"x".into(), None, &[]);
        assert_eq!(
            err.to_string(),
            format!(
                "jail set-up failed at setuid: {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
    }
}
