#![doc = include_str!("../README.md")]

mod caps;
mod config;
mod error;
mod freebsd_plan;
mod jail;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod mountpoint;
mod orphans;
mod params;
mod passwd;
mod process;
mod report;

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
    capabilities_to_drop, default_mask as default_capability_mask, DEFAULT_CAPABILITIES,
};
pub use config::{
    ExecConfig, JailConfig, Lifetime, Mount, NetNs, NetworkMode, Stdio, WinSize, DEFAULT_PATH,
};
pub use error::{Error, Result};
pub use jail::{CommandEnd, Jail, JailHandle, JailId};
pub use nix::sys::signal::Signal;
pub use orphans::{processes_under, stop_processes_under, KILL_TIMEOUT};
pub use params::{JailParam, ParamValue, LINUX_PARAMS};
pub use passwd::{parse_group, parse_passwd, resolve_user, GroupEntry, PasswdEntry, ResolvedUser};
pub use process::{ChildOutput, ChildStdin, ExitStatus, Output, Process, Pty};

/// The platform the backend of this build isolates with.
pub const PLATFORM: &str = sys::PLATFORM;
