//! Seccomp filters for Linux jails: profiles in Docker's (and the OCI runtime
//! specification's) sense, Docker's default profile, and a compiler of profiles to the
//! classic BPF programs `seccomp(2)` installs, in pure Rust (no libseccomp).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kleene_jail::{default_capability_mask, SeccompProfile};
//!
//! let program = SeccompProfile::docker_default(default_capability_mask()).compile()?;
//! assert!(program.len() < 4096);
//! # Ok(()) }
//! ```
//!
//! Everything but installing compiles on every platform; the installer is Linux's.

use std::collections::BTreeMap;

mod arch;
mod bpf;
mod default;
mod json;
mod profile;

pub use arch::Arch;
pub use bpf::{SockFilter, BPF_MAXINSNS};
pub use profile::{Action, ArgCondition, CompareOp, RuleFilter, SeccompProfile, SyscallRule};

/// What can be wrong with a seccomp profile, or with compiling it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The text is not JSON.
    #[error("malformed seccomp profile: {0}")]
    Json(String),
    /// A field is missing or has a value of the wrong kind.
    #[error("invalid seccomp profile: {place}: {reason}")]
    Field {
        /// Where, e.g. `syscalls[3].args[0].index`.
        place: String,
        /// What is wrong.
        reason: String,
    },
    /// An action that is not one of `SCMP_ACT_*`.
    #[error("unknown action \"{action}\" in {place}")]
    UnknownAction {
        /// The action as given.
        action: String,
        /// Where, e.g. `syscalls[3]` or `defaultAction`.
        place: String,
    },
    /// An action this implementation does not offer (`SCMP_ACT_NOTIFY`).
    #[error("action {action} is not supported, in {place}")]
    UnsupportedAction {
        /// The action as given.
        action: String,
        /// Where.
        place: String,
    },
    /// An operator that is not one of `SCMP_CMP_*`.
    #[error("unknown operator \"{op}\" in {place}")]
    UnknownOperator {
        /// The operator as given.
        op: String,
        /// Where, e.g. `syscalls[3].args[0]`.
        place: String,
    },
    /// An architecture that is not one of `SCMP_ARCH_*`.
    #[error("unknown architecture \"{arch}\" in {place}")]
    UnknownArchitecture {
        /// The architecture as given.
        arch: String,
        /// Where, e.g. `architectures[1]`.
        place: String,
    },
    /// A capability Linux does not have.
    #[error("unknown capability \"{cap}\" in {place}")]
    UnknownCapability {
        /// The capability as given.
        cap: String,
        /// Where, e.g. `syscalls[3].includes.caps[0]`.
        place: String,
    },
    /// A system call no architecture has.
    #[error("unknown system call \"{name}\" in {place}")]
    UnknownSyscall {
        /// The name as given.
        name: String,
        /// Where, e.g. `syscalls[3]`.
        place: String,
    },
    /// An argument index beyond the six a system call has.
    #[error("argument index {index} out of range (0 to 5) in {place}")]
    ArgIndex {
        /// The index as given.
        index: u64,
        /// Where, e.g. `syscalls[3].args[0]`.
        place: String,
    },
    /// Filters are not compiled for this architecture.
    #[error("unsupported architecture {0} for seccomp filters")]
    UnsupportedArchitecture(String),
    /// The program would be longer than the kernel takes.
    #[error("seccomp program of {len} instructions exceeds the kernel's limit of 4096")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

/// A compiled filter: a classic BPF program for `seccomp(2)`, for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    insns: Vec<SockFilter>,
    flags: u32,
    arch: Arch,
}

impl SeccompProgram {
    /// The instructions.
    pub fn instructions(&self) -> &[SockFilter] {
        &self.insns
    }

    /// The number of instructions (never more than [`BPF_MAXINSNS`]).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program is empty (never: it returns at least the default action).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The architecture the program filters for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits it is installed with.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

impl SeccompProfile {
    /// Compiles the profile for the architecture this program runs on ([`Arch::native`]).
    pub fn compile(&self) -> Result<SeccompProgram, SeccompError> {
        let arch = Arch::native().ok_or_else(|| {
            SeccompError::UnsupportedArchitecture(std::env::consts::ARCH.to_owned())
        })?;
        self.compile_for(arch)
    }

    /// Compiles the profile for `arch` (x86_64, aarch64 or riscv64).
    ///
    /// Rules whose `includes`/`excludes` do not match `arch` and
    /// [`SeccompProfile::capabilities`] are left out; names `arch` lacks are skipped; a
    /// name no architecture has is an error. Calls of another ABI (another
    /// `seccomp_data.arch`, or x32's numbers on x86_64) get the default action, unless it
    /// lets calls through ([`Action::Allow`], [`Action::Log`]): then they kill the
    /// process, so that a denylist cannot be bypassed through a 32-bit ABI.
    pub fn compile_for(&self, arch: Arch) -> Result<SeccompProgram, SeccompError> {
        let target = arch
            .target()
            .ok_or_else(|| SeccompError::UnsupportedArchitecture(arch.name().to_owned()))?;
        let mut rules: BTreeMap<u32, Vec<bpf::Clause>> = BTreeMap::new();
        for (i, rule) in self.syscalls.iter().enumerate() {
            for (j, a) in rule.args.iter().enumerate() {
                if a.index > 5 {
                    return Err(SeccompError::ArgIndex {
                        index: u64::from(a.index),
                        place: format!("syscalls[{i}].args[{j}]"),
                    });
                }
            }
            let mut numbers = Vec::new();
            for name in &rule.names {
                match arch.syscall_number(name) {
                    Some(nr) => numbers.push(nr),
                    None if arch::known_anywhere(name) => {}
                    None => {
                        return Err(SeccompError::UnknownSyscall {
                            name: name.clone(),
                            place: format!("syscalls[{i}]"),
                        })
                    }
                }
            }
            if !rule.applies(arch, self.capabilities) {
                continue;
            }
            let alternatives = rule.alternatives();
            for nr in numbers {
                let clauses = rules.entry(nr).or_default();
                for conds in &alternatives {
                    clauses.push(bpf::Clause {
                        conds: conds.clone(),
                        ret: rule.action.seccomp_ret(),
                    });
                }
            }
        }
        let default = self.default_action.seccomp_ret();
        let bad_arch = if self.default_action.lets_through() {
            Action::Kill.seccomp_ret()
        } else {
            default
        };
        let insns = bpf::compile(&target, &rules, default, bad_arch)?;
        Ok(SeccompProgram {
            insns,
            flags: self.flags,
            arch,
        })
    }
}

#[cfg(target_os = "linux")]
#[allow(unused_imports)]
pub(crate) use self::linux::install_prepared;
#[cfg(target_os = "linux")]
pub use self::linux::PreparedFilter;

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt;
    use std::io;
    use std::marker::PhantomData;

    use super::{SeccompProgram, SockFilter};

    // The kernel reads our instructions as its `struct sock_filter`: same layout.
    const _: () = assert!(
        std::mem::size_of::<SockFilter>() == std::mem::size_of::<libc::sock_filter>()
            && std::mem::align_of::<SockFilter>() == std::mem::align_of::<libc::sock_filter>()
    );

    /// A program ready for `seccomp(2)`: the `struct sock_fprog` pointing at it, made in
    /// the parent so that the child installs it without allocating. It borrows the
    /// program, which must outlive it (and the child's use of it).
    #[derive(Clone, Copy)]
    pub struct PreparedFilter<'a> {
        fprog: libc::sock_fprog,
        flags: u32,
        _prog: PhantomData<&'a SeccompProgram>,
    }

    // SAFETY: a PreparedFilter is a shared borrow of the program's instructions (which
    // nothing mutates while it lives), like `&SeccompProgram`, which is Send and Sync.
    unsafe impl Send for PreparedFilter<'_> {}
    // SAFETY: as above.
    unsafe impl Sync for PreparedFilter<'_> {}

    impl fmt::Debug for PreparedFilter<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PreparedFilter")
                .field("len", &self.fprog.len)
                .field("flags", &self.flags)
                .finish()
        }
    }

    impl SeccompProgram {
        /// The program as `seccomp(2)` takes it, for [`PreparedFilter::install`].
        pub fn prepare(&self) -> PreparedFilter<'_> {
            PreparedFilter {
                fprog: libc::sock_fprog {
                    // compile() keeps programs within BPF_MAXINSNS (4096)
                    len: self.insns.len() as u16,
                    filter: self.insns.as_ptr() as *mut libc::sock_filter,
                },
                flags: self.flags,
                _prog: PhantomData,
            }
        }

        /// Installs the filter on the calling thread (and what it starts or executes
        /// from then on). Needs `no_new_privs` (`prctl(PR_SET_NO_NEW_PRIVS, 1)`) or
        /// `CAP_SYS_ADMIN`. Filters stack: one installed cannot be removed.
        pub fn install_current_thread(&self) -> io::Result<()> {
            self.prepare()
                .install()
                .map_err(io::Error::from_raw_os_error)
        }
    }

    impl PreparedFilter<'_> {
        /// Installs the filter on the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`
        /// (`prctl(PR_SET_SECCOMP)` on kernels without it); `Err(errno)` if the kernel
        /// refuses (`EACCES`: neither `no_new_privs` nor `CAP_SYS_ADMIN`; `EINVAL`: a flag
        /// or action the kernel does not know). Makes only the system call: it neither
        /// allocates nor takes locks, so a child between `clone` and `execve` may call it.
        pub fn install(&self) -> Result<(), i32> {
            install_prepared(self)
        }
    }

    /// See [`PreparedFilter::install`].
    pub(crate) fn install_prepared(f: &PreparedFilter<'_>) -> Result<(), i32> {
        let prog: *const libc::sock_fprog = &f.fprog;
        // SAFETY: `prog` points at a sock_fprog whose filter pointer and length describe
        // the borrowed program's instructions (alive for 'a), laid out as the kernel's
        // sock_filter; the kernel copies them and keeps no pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                f.flags as libc::c_ulong,
                prog,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = errno();
        if e != libc::ENOSYS || f.flags != 0 {
            return Err(e);
        }
        // SAFETY: as above; prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog).
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                prog,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    }

    fn errno() -> i32 {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    }
}

#[cfg(test)]
mod tests;
