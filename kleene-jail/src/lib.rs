#![doc = include_str!("../README.md")]

mod caps;
mod cgroup;
mod config;
#[cfg(target_os = "linux")]
mod devfilter;
mod error;
mod freebsd_plan;
mod hold;
mod jail;
mod limits;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod mountpoint;
mod orphans;
mod params;
mod passwd;
mod process;
mod rctl;
mod report;
mod resources;
mod rlimit;
mod seccomp;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
mod unsupported;

#[cfg(target_os = "freebsd")]
use freebsd as sys;
#[cfg(target_os = "linux")]
use linux as sys;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
use unsupported as sys;

pub use caps::{
    capabilities_to_drop, capability_name, capability_number,
    default_mask as default_capability_mask, Capabilities, DEFAULT_CAPABILITIES,
};
pub use cgroup::{Cgroup, Hierarchy, Usage};
pub use config::{
    check_bind_target, DeviceNode, ExecConfig, IdMapping, JailConfig, Lifetime, Mount, MountFlags,
    Namespace, NamespaceMode, NetNs, NetworkMode, Propagation, Stdio, WinSize, DEFAULT_PATH,
    MAX_ID_MAPPINGS, MOUNT_FILESYSTEMS, PROC_BIND_TARGETS,
};
pub use error::{Error, Result};
pub use hold::{release, RELEASE_TIMEOUT};
pub use jail::{CommandEnd, Jail, JailHandle, JailId};
pub use limits::ResourceGroup;
pub use nix::sys::signal::Signal;
pub use orphans::{processes_under, stop_processes_under, KILL_TIMEOUT};
pub use params::{JailParam, ParamValue, LINUX_PARAMS};
pub use passwd::{parse_group, parse_passwd, resolve_user, GroupEntry, PasswdEntry, ResolvedUser};
pub use process::{ChildOutput, ChildStdin, ExitStatus, Output, Process, Pty};
pub use rctl::{
    check_jail_name, cpuset_list, parse_racct, rctl_filter, rctl_lifted, rctl_rules, RacctUsage,
    RctlError,
};
pub use resources::{
    parse_bytes, parse_list, shares_to_weight, Controller, DeviceRule, Resources, CPU_PERIOD_US,
    MIN_MEMORY,
};
pub use rlimit::Rlimit;
#[cfg(target_os = "linux")]
pub use seccomp::PreparedFilter;
pub use seccomp::{
    Action as SeccompAction, Arch as SeccompArch, ArgCondition, CompareOp, RuleFilter,
    SeccompError, SeccompProfile, SeccompProgram, SockFilter, SyscallRule, BPF_MAXINSNS,
};

/// The platform the backend of this build isolates with.
pub const PLATFORM: &str = sys::PLATFORM;
