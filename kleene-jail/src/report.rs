//! The failure record a child sends its parent before exec, on a close-on-exec pipe:
//! what it was doing, the errno and an index (of the mount). EOF means the exec succeeded.

use std::ffi::OsString;
use std::io;
use std::path::Path;

use crate::config::JailConfig;
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
    JoinNamespace,
    MountPoint,
    Mount,
    Propagation,
    DevNodes,
    Console,
    RootPropagation,
    ReadonlyRoot,
    Sysctl,
    ReadonlyPath,
    MaskedPath,
    Rlimit,
    OomScoreAdj,
    Hold,
    Held,
    Subreaper,
    Cgroup,
    Seccomp,
    Device,
    UserNamespace,
    UserNamespaceMaps,
    UserNamespaceRoot,
    Unshare,
    IdmappedRoot,
}

impl Stage {
    pub fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 50] = [
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
            JoinNamespace,
            MountPoint,
            Mount,
            Propagation,
            DevNodes,
            Console,
            RootPropagation,
            ReadonlyRoot,
            Sysctl,
            ReadonlyPath,
            MaskedPath,
            Rlimit,
            OomScoreAdj,
            Hold,
            Held,
            Subreaper,
            Cgroup,
            Seccomp,
            Device,
            UserNamespace,
            UserNamespaceMaps,
            UserNamespaceRoot,
            Unshare,
            IdmappedRoot,
        ];
        ALL.into_iter().find(|s| *s as u32 == v)
    }

    pub fn describe(self) -> &'static str {
        use Stage::*;
        match self {
            MountPrivate => "making mounts private",
            BindRoot => "binding the root onto itself",
            OpenRoot => "opening the root",
            OpenBindTarget => "opening the target",
            Bind => "bind mount",
            Pivot => "pivot_root",
            UmountOldRoot => "detaching the old root",
            RemountReadOnly => "remounting with its flags",
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
            JoinNamespace => "joining",
            MountPoint => "creating the mount point",
            Mount => "mount",
            Propagation => "setting the propagation",
            DevNodes => "filling /dev",
            Console => "binding the terminal at /dev/console",
            RootPropagation => "setting the root's propagation",
            ReadonlyRoot => "remounting the root read-only",
            Sysctl => "writing sysctl",
            ReadonlyPath => "making a path read-only",
            MaskedPath => "masking a path",
            Rlimit => "setting",
            OomScoreAdj => "writing oom_score_adj",
            Hold => "holding the process before its command (through /proc/self/fd, as its user)",
            Held => "held",
            Subreaper => "making the init a child subreaper",
            Cgroup => "joining the jail's cgroup",
            Seccomp => "installing the seccomp filter",
            Device => "making a device node",
            UserNamespace => "making the user namespace",
            UserNamespaceMaps => "waiting for the user namespace's maps",
            UserNamespaceRoot => "becoming root in the user namespace",
            Unshare => "making the namespaces of the user namespace",
            IdmappedRoot => "mounting the idmapped root",
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

/// The error a failure record stands for; `cfg` (of a start, `None` for an exec) names
/// the mount, namespace, sysctl or path a record's index points at.
pub(crate) fn failure_error(
    rec: &[u8; RECORD],
    argv0: &OsString,
    workdir: Option<&Path>,
    cfg: Option<&JailConfig>,
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
    let i = index as usize;
    let what = match stage {
        Stage::Exec if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            return Error::CommandNotFound { command }
        }
        Stage::Exec => return Error::Exec { command, source },
        Stage::Workdir if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            return Error::WorkdirNotFound {
                path: workdir.unwrap_or(Path::new("/")).to_owned(),
            }
        }
        Stage::OpenBindTarget
        | Stage::MountPoint
        | Stage::Bind
        | Stage::Mount
        | Stage::RemountReadOnly
        | Stage::Propagation
        | Stage::DevNodes
        | Stage::Console => cfg
            .and_then(|c| c.mounts.get(i))
            .map(|m| {
                let kind = m.fstype().map_or_else(String::new, |t| format!(" ({t})"));
                format!(" of {}{kind} at {}", m.source.display(), m.target.display())
            })
            .unwrap_or_default(),
        Stage::JoinNamespace => crate::config::Namespace::ALL
            .get(i)
            .map(|ns| {
                let path = cfg
                    .map(|c| c.namespaces.mode(*ns))
                    .and_then(|m| match m {
                        crate::config::NamespaceMode::Join(p) => Some(p),
                        _ => None,
                    })
                    .map(|p| format!(" {}", p.display()))
                    .unwrap_or_default();
                format!(" the {} namespace{path}", ns.name())
            })
            .unwrap_or_default(),
        Stage::Sysctl => cfg
            .and_then(|c| c.sysctls.get(i))
            .map(|(k, _)| format!(" {k}"))
            .unwrap_or_default(),
        Stage::ReadonlyPath => cfg
            .and_then(|c| c.readonly_paths.get(i))
            .map(|p| format!(" {}", p.display()))
            .unwrap_or_default(),
        Stage::MaskedPath => cfg
            .and_then(|c| c.masked_paths.get(i))
            .map(|p| format!(" {}", p.display()))
            .unwrap_or_default(),
        Stage::Rlimit => crate::rlimit::Rlimit::ALL
            .get(i)
            .map(|r| format!(" {}", r.name()))
            .unwrap_or_default(),
        Stage::Capabilities if (64..128).contains(&index) => {
            format!(
                ": raising the ambient capability {}",
                crate::caps::capability_name(index - 64).unwrap_or("unknown")
            )
        }
        _ => String::new(),
    };
    Error::Setup {
        step: format!("{}{what}", stage.describe()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip() {
        for v in 1..=50 {
            let s = Stage::from_u32(v).expect("every code names a stage");
            assert_eq!(s as u32, v);
        }
        assert!(Stage::from_u32(0).is_none());
        assert!(Stage::from_u32(51).is_none());
    }

    #[test]
    fn records_round_trip() {
        let rec = encode(Stage::Bind, libc::EPERM, 3);
        assert_eq!(decode(&rec), (Stage::Bind as u32, libc::EPERM, 3));
        let err = failure_error(
            &encode(Stage::Exec, libc::ENOENT, 0),
            &"x".into(),
            None,
            None,
        );
        assert!(matches!(err, Error::CommandNotFound { .. }));
        let err = failure_error(&encode(Stage::Uid, libc::EPERM, 0), &"x".into(), None, None);
        assert_eq!(
            err.to_string(),
            format!(
                "jail set-up failed at setuid: {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        let cfg = JailConfig::new("/r")
            .sysctl("kernel.shmmax", "1")
            .mount(crate::config::Mount::filesystem("tmpfs", "shm", "/dev/shm"))
            .namespace(
                crate::config::Namespace::Ipc,
                crate::config::NamespaceMode::Join("/proc/7/ns/ipc".into()),
            );
        let text = |stage, index| {
            failure_error(
                &encode(stage, libc::EINVAL, index),
                &"x".into(),
                None,
                Some(&cfg),
            )
            .to_string()
        };
        assert!(text(Stage::Sysctl, 0).contains("writing sysctl kernel.shmmax: "));
        assert!(text(Stage::Mount, 0).contains("mount of shm (tmpfs) at /dev/shm: "));
        assert!(
            text(Stage::JoinNamespace, 1).contains("joining the ipc namespace /proc/7/ns/ipc: ")
        );
        assert!(text(Stage::Rlimit, 7).contains("setting RLIMIT_NOFILE: "));
    }
}
