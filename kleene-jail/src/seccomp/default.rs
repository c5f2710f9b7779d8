//! Docker's default profile.

use super::profile::{Action, ArgCondition, CompareOp, RuleFilter, SeccompProfile, SyscallRule};

const EPERM: u16 = 1;
const ENOSYS: u16 = 38;
const AF_VSOCK: u64 = 40;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`: the flags that make namespaces.
pub(crate) const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The personalities a process may set: `PER_LINUX` (0), `PER_LINUX32` (8),
/// `UNAME26` (0x20000), `PER_LINUX32 | UNAME26`, and 0xffffffff (which only queries).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Calls every container may make. Names an architecture lacks are skipped there.
const ALLOWED: &[&str] = &[
    // files, directories and their metadata
    "access",
    "faccessat",
    "faccessat2",
    "chdir",
    "fchdir",
    "getcwd",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "chown32",
    "fchown",
    "fchown32",
    "fchownat",
    "lchown",
    "lchown32",
    "creat",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "mknod",
    "mknodat",
    "readlink",
    "readlinkat",
    "stat",
    "stat64",
    "lstat",
    "lstat64",
    "fstat",
    "fstat64",
    "fstatat64",
    "newfstatat",
    "statx",
    "statfs",
    "statfs64",
    "fstatfs",
    "fstatfs64",
    "getdents",
    "getdents64",
    "truncate",
    "truncate64",
    "ftruncate",
    "ftruncate64",
    "fallocate",
    "umask",
    "utime",
    "utimes",
    "utimensat",
    "utimensat_time64",
    "futimesat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "flock",
    "fcntl",
    "fcntl64",
    "fadvise64",
    "fadvise64_64",
    "readahead",
    "sync",
    "syncfs",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "cachestat",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    "fanotify_mark",
    // reading and writing
    "read",
    "readv",
    "pread64",
    "preadv",
    "preadv2",
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "lseek",
    "_llseek",
    "sendfile",
    "sendfile64",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "dup",
    "dup2",
    "dup3",
    "pipe",
    "pipe2",
    "ioctl",
    // waiting for descriptors
    "select",
    "_newselect",
    "pselect6",
    "pselect6_time64",
    "poll",
    "ppoll",
    "ppoll_time64",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_wait",
    "epoll_wait_old",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_settime64",
    "timerfd_gettime",
    "timerfd_gettime64",
    // asynchronous I/O (not io_uring: Docker blocks it since 25.0)
    "io_setup",
    "io_destroy",
    "io_submit",
    "io_cancel",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    // memory
    "brk",
    "mmap",
    "mmap2",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    "msync",
    "mlock",
    "mlock2",
    "mlockall",
    "munlock",
    "munlockall",
    "remap_file_pages",
    "memfd_create",
    "memfd_secret",
    "membarrier",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "map_shadow_stack",
    // processes, threads, programs
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "waitpid",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "restart_syscall",
    "prctl",
    "get_thread_area",
    "set_thread_area",
    "pidfd_open",
    "pidfd_send_signal",
    "process_mrelease",
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "capget",
    "capset",
    "uname",
    "sysinfo",
    "getrandom",
    "getcpu",
    // futexes
    "futex",
    "futex_time64",
    "futex_waitv",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    // signals
    "kill",
    "tkill",
    "tgkill",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "pause",
    // users, groups, limits, priorities
    "getuid",
    "getuid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getegid",
    "getegid32",
    "getresuid",
    "getresuid32",
    "getresgid",
    "getresgid32",
    "getgroups",
    "getgroups32",
    "setuid",
    "setuid32",
    "setgid",
    "setgid32",
    "setreuid",
    "setreuid32",
    "setregid",
    "setregid32",
    "setresuid",
    "setresuid32",
    "setresgid",
    "setresgid32",
    "setfsuid",
    "setfsuid32",
    "setfsgid",
    "setfsgid32",
    "setgroups",
    "setgroups32",
    "getrlimit",
    "ugetrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getattr",
    "sched_setattr",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    // time and timers
    "time",
    "gettimeofday",
    "clock_gettime",
    "clock_gettime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "nanosleep",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "times",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    // sockets (socket itself: below, not AF_VSOCK)
    "socketpair",
    "bind",
    "connect",
    "listen",
    "accept",
    "accept4",
    "getsockname",
    "getpeername",
    "getsockopt",
    "setsockopt",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "recvmmsg_time64",
    "shutdown",
    "socketcall",
    // System V and POSIX IPC
    "ipc",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "semctl",
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_notify",
    "mq_getsetattr",
];

/// Calls allowed with a capability (numbers as in [`crate::capability_number`]).
const BY_CAPABILITY: &[(u32, &[&str])] = &[
    // CAP_DAC_READ_SEARCH
    (2, &["open_by_handle_at"]),
    // CAP_SYS_ADMIN: mounts, namespaces, and the rest of what it alone allows
    (
        21,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    // CAP_SYS_BOOT
    (22, &["reboot"]),
    // CAP_SYS_CHROOT
    (18, &["chroot"]),
    // CAP_SYS_MODULE
    (16, &["init_module", "finit_module", "delete_module"]),
    // CAP_SYS_PACCT
    (20, &["acct"]),
    // CAP_SYS_PTRACE
    (
        19,
        &[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
        ],
    ),
    // CAP_SYS_RAWIO
    (17, &["iopl", "ioperm"]),
    // CAP_SYS_TIME
    (
        25,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    // CAP_SYS_TTY_CONFIG
    (26, &["vhangup"]),
    // CAP_SYS_NICE
    (
        23,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    // CAP_SYSLOG
    (34, &["syslog"]),
    // CAP_BPF
    (39, &["bpf"]),
    // CAP_PERFMON
    (38, &["perf_event_open"]),
];

const CAP_SYS_ADMIN: u64 = 1 << 21;

impl SeccompProfile {
    /// Docker's default profile for a container whose effective capabilities are `caps`
    /// (a bit mask, bit `n` capability `n`; [`crate::default_capability_mask`] for
    /// Docker's default set). An allowlist: calls it does not name fail with `EPERM`.
    ///
    /// Always blocked: among others `acct`, `add_key`, `keyctl`, `request_key`,
    /// `kexec_load`, `kexec_file_load`, `create_module`, `get_kernel_syms`,
    /// `query_module`, `nfsservctl`, `swapon`, `swapoff`, `sysfs`, `_sysctl`, `uselib`,
    /// `userfaultfd`, `ustat`, `vm86`, `vm86old`, `move_pages`, the `io_uring` calls and
    /// `socket(AF_VSOCK, ...)`; `personality` allows only `PER_LINUX`, `PER_LINUX32`,
    /// `UNAME26` (and the query 0xffffffff).
    ///
    /// Allowed only with a capability, as in Docker: `CAP_SYS_ADMIN` (`mount`,
    /// `umount2`, `unshare`, `setns`, `clone` with namespace flags, `clone3`, `bpf`,
    /// `perf_event_open`, `name_to_handle_at`, ...), `CAP_SYS_BOOT` (`reboot`),
    /// `CAP_SYS_CHROOT` (`chroot`, in Docker's default set), `CAP_SYS_MODULE`,
    /// `CAP_SYS_PACCT`, `CAP_SYS_PTRACE` (`ptrace`, `process_vm_readv`/`writev`, `kcmp`,
    /// `pidfd_getfd`, `process_madvise`), `CAP_SYS_RAWIO` (`iopl`, `ioperm`),
    /// `CAP_SYS_TIME` (`settimeofday`, `clock_settime`, `stime`), `CAP_SYS_TTY_CONFIG`
    /// (`vhangup`), `CAP_SYS_NICE` (the NUMA policy calls), `CAP_SYSLOG` (`syslog`),
    /// `CAP_BPF` (`bpf`), `CAP_PERFMON` (`perf_event_open`), `CAP_DAC_READ_SEARCH`
    /// (`open_by_handle_at`). Without `CAP_SYS_ADMIN`, `clone` is allowed only without
    /// namespace flags, and `clone3` fails with `ENOSYS` so that C libraries fall back to
    /// `clone`, whose flags the filter can see.
    ///
    /// One difference from Docker on kernels 4.8 and later: Docker allows `ptrace` and
    /// `process_vm_readv`/`writev` to every container there; this profile keeps them
    /// behind `CAP_SYS_PTRACE`.
    pub fn docker_default(caps: u64) -> Self {
        let mut p = SeccompProfile::new(Action::Errno(EPERM)).with_capabilities(caps);
        p.syscalls.push(SyscallRule::new(ALLOWED, Action::Allow));
        p.syscalls.push(
            SyscallRule::new(&["socket"], Action::Allow).arg(ArgCondition::new(
                0,
                CompareOp::NotEqual,
                AF_VSOCK,
            )),
        );
        for persona in PERSONALITIES {
            p.syscalls.push(
                SyscallRule::new(&["personality"], Action::Allow).arg(ArgCondition::new(
                    0,
                    CompareOp::EqualTo,
                    persona,
                )),
            );
        }
        // Architecture-specific calls.
        p.syscalls.push(
            SyscallRule::new(&["arch_prctl"], Action::Allow)
                .includes(RuleFilter::arches(&["amd64", "x32"])),
        );
        p.syscalls.push(
            SyscallRule::new(&["modify_ldt"], Action::Allow)
                .includes(RuleFilter::arches(&["amd64", "x32", "x86"])),
        );
        p.syscalls.push(
            SyscallRule::new(
                &[
                    "arm_fadvise64_64",
                    "arm_sync_file_range",
                    "sync_file_range2",
                    "breakpoint",
                    "cacheflush",
                    "set_tls",
                ],
                Action::Allow,
            )
            .includes(RuleFilter::arches(&["arm", "arm64"])),
        );
        p.syscalls.push(
            SyscallRule::new(&["riscv_flush_icache"], Action::Allow)
                .includes(RuleFilter::arches(&["riscv64"])),
        );
        for (cap, names) in BY_CAPABILITY {
            p.syscalls
                .push(SyscallRule::new(names, Action::Allow).includes(RuleFilter::caps(1 << cap)));
        }
        // Without CAP_SYS_ADMIN: threads and processes, but no namespaces.
        p.syscalls.push(
            SyscallRule::new(&["clone"], Action::Allow)
                .arg(ArgCondition::masked_equal(0, CLONE_NAMESPACE_FLAGS, 0))
                .excludes(RuleFilter {
                    caps: CAP_SYS_ADMIN,
                    arches: vec!["s390".to_owned(), "s390x".to_owned()],
                    min_kernel: None,
                }),
        );
        p.syscalls.push(
            SyscallRule::new(&["clone3"], Action::Errno(ENOSYS))
                .excludes(RuleFilter::caps(CAP_SYS_ADMIN)),
        );
        p
    }
}
