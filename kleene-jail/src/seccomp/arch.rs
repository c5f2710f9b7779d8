//! Architectures, as seccomp profiles name them, and their system call tables.

use std::fmt;
use std::str::FromStr;

/// An architecture (an ABI) as seccomp profiles name it (`SCMP_ARCH_X86_64`, ...).
///
/// Every one of libseccomp's names parses; filters can be compiled for
/// [`Arch::X86_64`], [`Arch::Aarch64`] and [`Arch::Riscv64`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arch {
    /// `SCMP_ARCH_X86`: 32-bit x86 (i386).
    X86,
    /// `SCMP_ARCH_X86_64`: 64-bit x86 (amd64).
    X86_64,
    /// `SCMP_ARCH_X32`: the x32 ABI of x86_64.
    X32,
    /// `SCMP_ARCH_ARM`: 32-bit ARM (EABI).
    Arm,
    /// `SCMP_ARCH_AARCH64`: 64-bit ARM (arm64).
    Aarch64,
    /// `SCMP_ARCH_MIPS`.
    Mips,
    /// `SCMP_ARCH_MIPS64`.
    Mips64,
    /// `SCMP_ARCH_MIPS64N32`.
    Mips64N32,
    /// `SCMP_ARCH_MIPSEL`.
    Mipsel,
    /// `SCMP_ARCH_MIPSEL64`.
    Mipsel64,
    /// `SCMP_ARCH_MIPSEL64N32`.
    Mipsel64N32,
    /// `SCMP_ARCH_PPC`.
    Ppc,
    /// `SCMP_ARCH_PPC64`.
    Ppc64,
    /// `SCMP_ARCH_PPC64LE`.
    Ppc64le,
    /// `SCMP_ARCH_S390`.
    S390,
    /// `SCMP_ARCH_S390X`.
    S390x,
    /// `SCMP_ARCH_PARISC`.
    Parisc,
    /// `SCMP_ARCH_PARISC64`.
    Parisc64,
    /// `SCMP_ARCH_RISCV64`.
    Riscv64,
    /// `SCMP_ARCH_LOONGARCH64`.
    Loongarch64,
}

/// Every architecture with its profile name.
const NAMES: &[(Arch, &str)] = &[
    (Arch::X86, "SCMP_ARCH_X86"),
    (Arch::X86_64, "SCMP_ARCH_X86_64"),
    (Arch::X32, "SCMP_ARCH_X32"),
    (Arch::Arm, "SCMP_ARCH_ARM"),
    (Arch::Aarch64, "SCMP_ARCH_AARCH64"),
    (Arch::Mips, "SCMP_ARCH_MIPS"),
    (Arch::Mips64, "SCMP_ARCH_MIPS64"),
    (Arch::Mips64N32, "SCMP_ARCH_MIPS64N32"),
    (Arch::Mipsel, "SCMP_ARCH_MIPSEL"),
    (Arch::Mipsel64, "SCMP_ARCH_MIPSEL64"),
    (Arch::Mipsel64N32, "SCMP_ARCH_MIPSEL64N32"),
    (Arch::Ppc, "SCMP_ARCH_PPC"),
    (Arch::Ppc64, "SCMP_ARCH_PPC64"),
    (Arch::Ppc64le, "SCMP_ARCH_PPC64LE"),
    (Arch::S390, "SCMP_ARCH_S390"),
    (Arch::S390x, "SCMP_ARCH_S390X"),
    (Arch::Parisc, "SCMP_ARCH_PARISC"),
    (Arch::Parisc64, "SCMP_ARCH_PARISC64"),
    (Arch::Riscv64, "SCMP_ARCH_RISCV64"),
    (Arch::Loongarch64, "SCMP_ARCH_LOONGARCH64"),
];

/// What the filter compiler needs to know of an architecture it supports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// `AUDIT_ARCH_*`, as the kernel puts it in `seccomp_data.arch`.
    pub(crate) audit_arch: u32,
    /// Whether system call numbers at or above 0x40000000 belong to another ABI (x32).
    pub(crate) x32_bit: bool,
    /// Whether the 64-bit arguments are stored big-endian.
    pub(crate) big_endian: bool,
}

impl Arch {
    /// The architecture this program was built for, `None` where Linux seccomp filters
    /// are not compiled for it.
    pub fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else if cfg!(target_arch = "riscv64") {
            Some(Arch::Riscv64)
        } else {
            None
        }
    }

    /// The profile's name of the architecture, e.g. `SCMP_ARCH_X86_64`.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("SCMP_ARCH_UNKNOWN", |(_, n)| n)
    }

    /// The names `includes.arches` / `excludes.arches` use for this architecture: Go's
    /// (`amd64`, `arm64`, as Docker's profiles do), the kernel's and the profile's.
    pub(crate) fn filter_names(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["amd64", "x86_64", "SCMP_ARCH_X86_64"],
            Arch::Aarch64 => &["arm64", "aarch64", "SCMP_ARCH_AARCH64"],
            Arch::Riscv64 => &["riscv64", "SCMP_ARCH_RISCV64"],
            Arch::X86 => &["x86", "386", "i386", "SCMP_ARCH_X86"],
            Arch::X32 => &["x32", "SCMP_ARCH_X32"],
            Arch::Arm => &["arm", "SCMP_ARCH_ARM"],
            Arch::Ppc64le => &["ppc64le", "SCMP_ARCH_PPC64LE"],
            Arch::S390x => &["s390x", "SCMP_ARCH_S390X"],
            Arch::S390 => &["s390", "SCMP_ARCH_S390"],
            Arch::Loongarch64 => &["loong64", "loongarch64", "SCMP_ARCH_LOONGARCH64"],
            _ => &[],
        }
    }

    /// The compiler's facts, `None` for an architecture filters are not compiled for.
    pub(crate) fn target(self) -> Option<Target> {
        // AUDIT_ARCH_* = EM_* | __AUDIT_ARCH_64BIT (0x80000000) | __AUDIT_ARCH_LE (0x40000000)
        let target = |audit_arch, x32_bit| Target {
            audit_arch,
            x32_bit,
            big_endian: false,
        };
        match self {
            Arch::X86_64 => Some(target(0xC000_003E, true)),
            Arch::Aarch64 => Some(target(0xC000_00B7, false)),
            Arch::Riscv64 => Some(target(0xC000_00F3, false)),
            _ => None,
        }
    }

    /// The number of system call `name` on this architecture, from the `syscalls`
    /// crate's tables (generated from the kernel's); `None` if it has no such call.
    pub(crate) fn syscall_number(self, name: &str) -> Option<u32> {
        fn id<T: FromStr>(name: &str, f: impl Fn(T) -> i32) -> Option<u32> {
            T::from_str(name).ok().map(|s| f(s) as u32)
        }
        use syscalls as s;
        match self {
            Arch::X86_64 => id(name, |s: s::x86_64::Sysno| s.id()),
            Arch::X86 => id(name, |s: s::x86::Sysno| s.id()),
            Arch::Arm => id(name, |s: s::arm::Sysno| s.id()),
            Arch::Aarch64 => id(name, |s: s::aarch64::Sysno| s.id()),
            Arch::Riscv64 => id(name, |s: s::riscv64::Sysno| s.id()),
            Arch::Loongarch64 => id(name, |s: s::loongarch64::Sysno| s.id()),
            Arch::Mips | Arch::Mipsel => id(name, |s: s::mips::Sysno| s.id()),
            Arch::Mips64 | Arch::Mipsel64 => id(name, |s: s::mips64::Sysno| s.id()),
            Arch::Ppc => id(name, |s: s::powerpc::Sysno| s.id()),
            Arch::Ppc64 | Arch::Ppc64le => id(name, |s: s::powerpc64::Sysno| s.id()),
            Arch::S390x => id(name, |s: s::s390x::Sysno| s.id()),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ();

    /// Parses a profile's name (`SCMP_ARCH_X86_64`).
    fn from_str(s: &str) -> Result<Self, ()> {
        NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or(())
    }
}

/// Names of system calls that libseccomp knows (and Docker's profiles use) but that are
/// missing from the `syscalls` crate's tables: ARM's private calls, the s390, PowerPC and
/// RISC-V specific ones, and multiplexed or obsolete calls.
const OTHER_KNOWN: &[&str] = &[
    "breakpoint",
    "cacheflush",
    "set_tls",
    "usr26",
    "usr32",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "s390_guarded_storage",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
    "s390_sthyi",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "spu_create",
    "spu_run",
    "subpage_prot",
    "swapcontext",
    "switch_endian",
    "sys_debug_setcontext",
    "multiplexer",
    "rtas",
    "sysmips",
    "_llseek",
    "_newselect",
    "_sysctl",
    "umount",
    "stime",
    "vm86",
    "vm86old",
    "socketcall",
    "ipc",
    "waitpid",
    "ugetrlimit",
    "send",
    "recv",
    "timerfd",
    "readdir",
    "sigaction",
    "sigpending",
    "sigsuspend",
    "sigprocmask",
    "sigreturn",
    "oldfstat",
    "oldlstat",
    "oldstat",
    "olduname",
    "oldolduname",
    "mmap2",
    "fadvise64_64",
];

/// Whether `name` is a system call of any architecture Linux has.
pub(crate) fn known_anywhere(name: &str) -> bool {
    OTHER_KNOWN.contains(&name)
        || [
            Arch::X86_64,
            Arch::X86,
            Arch::Arm,
            Arch::Aarch64,
            Arch::Riscv64,
            Arch::Loongarch64,
            Arch::Mips,
            Arch::Mips64,
            Arch::Ppc,
            Arch::Ppc64,
            Arch::S390x,
        ]
        .iter()
        .any(|a| a.syscall_number(name).is_some())
        || syscalls::riscv32::Sysno::from_str(name).is_ok()
        || syscalls::sparc::Sysno::from_str(name).is_ok()
        || syscalls::sparc64::Sysno::from_str(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (a, n) in NAMES {
            assert_eq!(n.parse::<Arch>(), Ok(*a));
            assert_eq!(a.name(), *n);
        }
        assert!("SCMP_ARCH_NOPE".parse::<Arch>().is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(Arch::X86_64.syscall_number("read"), Some(0));
        assert_eq!(Arch::X86_64.syscall_number("clone3"), Some(435));
        assert_eq!(Arch::Aarch64.syscall_number("read"), Some(63));
        assert_eq!(Arch::Aarch64.syscall_number("open"), None);
        assert_eq!(Arch::Riscv64.syscall_number("openat"), Some(56));
        assert!(known_anywhere("open"));
        assert!(known_anywhere("cacheflush"));
        assert!(!known_anywhere("frobnicate"));
    }
}
