#![allow(clippy::unwrap_used)]

use super::bpf::{run, JMP_JA};
use super::*;

const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;
const KILL_PROCESS: u32 = 0x8000_0000;

const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_NEWNS: u64 = 0x0002_0000;
/// What glibc's pthread_create passes to clone.
const THREAD_FLAGS: u64 = 0x003d_0f00;

const ARCHES: [Arch; 3] = [Arch::X86_64, Arch::Aarch64, Arch::Riscv64];

fn audit(arch: Arch) -> u32 {
    arch.target().unwrap().audit_arch
}

fn call(prog: &SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
    let arch = prog.arch();
    let nr = arch.syscall_number(name).unwrap();
    run(prog.instructions(), nr, audit(arch), args)
}

fn docker(arch: Arch, caps: u64) -> SeccompProgram {
    SeccompProfile::docker_default(caps)
        .compile_for(arch)
        .unwrap()
}

fn default_caps() -> u64 {
    crate::caps::default_mask()
}

#[test]
fn allowed_and_denied() {
    for arch in ARCHES {
        let p = docker(arch, default_caps());
        assert!(p.len() < 1000, "{arch}: {} instructions", p.len());
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "getpid",
            "chroot",
        ] {
            assert_eq!(call(&p, name, [0; 6]), ALLOW, "{arch} {name}");
        }
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "ptrace",
            "reboot",
            "bpf",
            "perf_event_open",
            "pivot_root",
            "acct",
            "swapon",
            "swapoff",
            "settimeofday",
            "clock_settime",
            "userfaultfd",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "quotactl",
            "syslog",
            "mbind",
            "set_mempolicy",
            "get_mempolicy",
            "move_pages",
            "name_to_handle_at",
            "open_by_handle_at",
            "lookup_dcookie",
            "vhangup",
            "io_uring_setup",
        ] {
            assert_eq!(call(&p, name, [0; 6]), EPERM, "{arch} {name}");
        }
    }
    let p = docker(Arch::X86_64, default_caps());
    for name in ["arch_prctl", "modify_ldt", "open", "stat", "fork", "time"] {
        assert_eq!(call(&p, name, [0; 6]), ALLOW, "{name}");
    }
    for name in [
        "iopl",
        "ioperm",
        "uselib",
        "_sysctl",
        "create_module",
        "get_kernel_syms",
        "query_module",
        "nfsservctl",
        "sysfs",
        "ustat",
        "kexec_file_load",
        "afs_syscall",
    ] {
        assert_eq!(call(&p, name, [0; 6]), EPERM, "{name}");
    }
    // numbers no table has
    let a = audit(Arch::X86_64);
    assert_eq!(run(p.instructions(), 1000, a, [0; 6]), EPERM);
    assert_eq!(run(p.instructions(), 0x3fff_ffff, a, [0; 6]), EPERM);
}

#[test]
fn capabilities_open_groups() {
    let sys_admin = 1u64 << 21;
    for arch in ARCHES {
        let p = docker(
            arch,
            default_caps() | sys_admin | (1 << 19) | (1 << 25) | (1 << 16),
        );
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone3",
            "ptrace",
            "bpf",
            "clock_settime",
            "init_module",
            "process_vm_readv",
        ] {
            assert_eq!(call(&p, name, [0; 6]), ALLOW, "{arch} {name}");
        }
        assert_eq!(call(&p, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]), ALLOW);
        // chroot needs CAP_SYS_CHROOT
        let p = docker(arch, default_caps() & !(1 << 18));
        assert_eq!(call(&p, "chroot", [0; 6]), EPERM, "{arch}");
        let p = docker(arch, 1 << 39);
        assert_eq!(call(&p, "bpf", [0; 6]), ALLOW, "{arch}");
        assert_eq!(call(&p, "perf_event_open", [0; 6]), EPERM, "{arch}");
    }
}

#[test]
fn clone_and_clone3() {
    for arch in ARCHES {
        let p = docker(arch, default_caps());
        assert_eq!(
            call(&p, "clone", [THREAD_FLAGS, 1, 2, 3, 4, 5]),
            ALLOW,
            "{arch}"
        );
        assert_eq!(call(&p, "clone", [17, 0, 0, 0, 0, 0]), ALLOW, "{arch} fork");
        assert_eq!(call(&p, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            call(&p, "clone", [THREAD_FLAGS | CLONE_NEWNS, 0, 0, 0, 0, 0]),
            EPERM
        );
        // flags in the high half do not matter to the mask
        assert_eq!(call(&p, "clone", [(1 << 40) | 17, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(&p, "clone3", [0; 6]), ENOSYS, "{arch}");
    }
}

#[test]
fn personality_and_socket() {
    for arch in ARCHES {
        let p = docker(arch, default_caps());
        for ok in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(
                call(&p, "personality", [ok, 0, 0, 0, 0, 0]),
                ALLOW,
                "{ok:#x}"
            );
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, and values differing only in the high half
        for bad in [
            0x0040000,
            0x0400000,
            0x0040008,
            1 << 32,
            0x1_0000_0008,
            u64::MAX,
        ] {
            assert_eq!(
                call(&p, "personality", [bad, 0, 0, 0, 0, 0]),
                EPERM,
                "{bad:#x}"
            );
        }
        assert_eq!(call(&p, "socket", [40, 1, 0, 0, 0, 0]), EPERM, "AF_VSOCK");
        assert_eq!(call(&p, "socket", [2, 1, 0, 0, 0, 0]), ALLOW, "AF_INET");
        assert_eq!(call(&p, "socket", [1, 1, 0, 0, 0, 0]), ALLOW, "AF_UNIX");
        assert_eq!(
            call(&p, "socket", [10, 3, 58, 0, 0, 0]),
            ALLOW,
            "AF_INET6 raw"
        );
        assert_eq!(call(&p, "socket", [40 | (1 << 32), 1, 0, 0, 0, 0]), ALLOW);
    }
}

#[test]
fn other_architectures_get_the_default() {
    let p = docker(Arch::X86_64, default_caps());
    let read = 0;
    assert_eq!(
        run(p.instructions(), read, audit(Arch::X86_64), [0; 6]),
        ALLOW
    );
    // i386 and aarch64 callers
    assert_eq!(run(p.instructions(), read, 0x4000_0003, [0; 6]), EPERM);
    assert_eq!(
        run(p.instructions(), read, audit(Arch::Aarch64), [0; 6]),
        EPERM
    );
    // x32: the native arch with bit 30 in the number
    assert_eq!(
        run(p.instructions(), 0x4000_0000, audit(Arch::X86_64), [0; 6]),
        EPERM
    );
    assert_eq!(
        run(p.instructions(), 0x4000_0001, audit(Arch::X86_64), [0; 6]),
        EPERM
    );
    let p = docker(Arch::Aarch64, default_caps());
    assert_eq!(
        run(p.instructions(), 63, audit(Arch::Aarch64), [0; 6]),
        ALLOW
    );
    assert_eq!(run(p.instructions(), 63, 0x4000_0028, [0; 6]), EPERM);

    // A denylist must not be bypassed through another ABI.
    let deny = SeccompProfile::new(Action::Allow)
        .rule(SyscallRule::new(&["mount"], Action::Errno(1)))
        .compile_for(Arch::X86_64)
        .unwrap();
    assert_eq!(call(&deny, "mount", [0; 6]), EPERM);
    assert_eq!(call(&deny, "read", [0; 6]), ALLOW);
    assert_eq!(
        run(deny.instructions(), 21, 0x4000_0003, [0; 6]),
        KILL_PROCESS
    );
    assert_eq!(
        run(
            deny.instructions(),
            0x4000_00a5,
            audit(Arch::X86_64),
            [0; 6]
        ),
        KILL_PROCESS
    );
}

const EDGES: [u64; 12] = [
    0,
    1,
    7,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x1_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_ffff_0000_0000,
    0xffff_fffe_ffff_ffff,
    u64::MAX,
];

#[test]
fn comparisons_on_64_bits() {
    let ops = [
        CompareOp::NotEqual,
        CompareOp::LessThan,
        CompareOp::LessOrEqual,
        CompareOp::EqualTo,
        CompareOp::GreaterOrEqual,
        CompareOp::GreaterThan,
        CompareOp::MaskedEqual,
    ];
    for op in ops {
        for (vi, value) in EDGES.iter().enumerate() {
            let value_two = EDGES[(vi * 5 + 3) % EDGES.len()] & value;
            for index in [0u8, 3, 5] {
                let cond = ArgCondition {
                    index,
                    value: *value,
                    value_two,
                    op,
                };
                let profile = SeccompProfile::new(Action::Errno(1))
                    .rule(SyscallRule::new(&["ioctl"], Action::Allow).arg(cond));
                let p = profile.compile_for(Arch::X86_64).unwrap();
                for arg in EDGES
                    .iter()
                    .chain(&[value.wrapping_add(1), value.wrapping_sub(1)])
                {
                    let mut args = [0x5555_5555_5555_5555u64; 6];
                    args[usize::from(index)] = *arg;
                    let want = if op.holds(*arg, *value, value_two) {
                        ALLOW
                    } else {
                        EPERM
                    };
                    assert_eq!(
                        call(&p, "ioctl", args),
                        want,
                        "{op:?} arg {arg:#x} value {value:#x} two {value_two:#x}"
                    );
                    let model = profile.evaluate(Arch::X86_64, "ioctl", args);
                    assert_eq!(model.seccomp_ret(), want);
                }
            }
        }
    }
}

#[test]
fn rules_in_order_and_conditions_anded() {
    let profile = SeccompProfile::new(Action::Errno(1))
        .rule(
            SyscallRule::new(&["ioctl"], Action::Errno(22))
                .arg(ArgCondition::new(0, CompareOp::EqualTo, 3))
                .arg(ArgCondition::new(1, CompareOp::GreaterThan, 10)),
        )
        .rule(
            SyscallRule::new(&["ioctl"], Action::Allow).arg(ArgCondition::new(
                0,
                CompareOp::LessThan,
                100,
            )),
        )
        .rule(SyscallRule::new(&["ioctl"], Action::Errno(7)))
        .rule(SyscallRule::new(&["ioctl"], Action::Allow));
    let p = profile.compile_for(Arch::Aarch64).unwrap();
    assert_eq!(call(&p, "ioctl", [3, 11, 0, 0, 0, 0]), 0x0005_0016);
    assert_eq!(call(&p, "ioctl", [3, 10, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, "ioctl", [100, 0, 0, 0, 0, 0]), 0x0005_0007);
    // Same argument twice: either may hold (runc's reading).
    let either = SeccompProfile::new(Action::Errno(1)).rule(
        SyscallRule::new(&["ioctl"], Action::Allow)
            .arg(ArgCondition::new(0, CompareOp::EqualTo, 1))
            .arg(ArgCondition::new(0, CompareOp::EqualTo, 2)),
    );
    let p = either.compile_for(Arch::X86_64).unwrap();
    assert_eq!(call(&p, "ioctl", [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, "ioctl", [2, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, "ioctl", [3, 0, 0, 0, 0, 0]), EPERM);
}

/// Every name of the x86_64 table.
fn x86_64_names() -> Vec<(String, u32)> {
    (0..1024u32)
        .filter_map(|nr| {
            syscalls::x86_64::Sysno::new(nr as usize).map(|s| (s.name().to_owned(), nr))
        })
        .collect()
}

#[test]
fn long_jumps_with_a_thousand_rules() {
    let names = x86_64_names();
    assert!(names.len() > 300);
    let mut profile = SeccompProfile::new(Action::Allow);
    for i in 0..1000usize {
        let (name, _) = &names[i % names.len()];
        // distinct actions, so that neighbouring numbers do not merge
        profile = profile.rule(SyscallRule::new(&[name], Action::Errno(i as u16 + 2)));
    }
    let p = profile.compile_for(Arch::X86_64).unwrap();
    assert!(p.len() > 512, "{} instructions", p.len());
    assert!(
        p.instructions().iter().any(|i| i.code == JMP_JA),
        "no long jump"
    );
    let a = audit(Arch::X86_64);
    for (i, (_, nr)) in names.iter().enumerate() {
        // the first rule for a call decides
        let want = 0x0005_0000 | (i as u32 + 2);
        assert_eq!(run(p.instructions(), *nr, a, [0; 6]), want, "nr {nr}");
    }
    assert_eq!(run(p.instructions(), 999, a, [0; 6]), ALLOW);
    assert_eq!(run(p.instructions(), 0, 0x4000_0003, [0; 6]), KILL_PROCESS);

    // A long body of conditions in the middle of the tree.
    let mut profile = SeccompProfile::new(Action::Errno(1));
    for v in 0..300u64 {
        profile = profile.rule(
            SyscallRule::new(&["ioctl"], Action::Errno(100 + v as u16)).arg(ArgCondition::new(
                1,
                CompareOp::EqualTo,
                v << 20,
            )),
        );
    }
    for (i, (name, _)) in names.iter().enumerate() {
        if name != "ioctl" {
            profile = profile.rule(SyscallRule::new(&[name], Action::Errno(i as u16 + 2)));
        }
    }
    let p = profile.compile_for(Arch::X86_64).unwrap();
    assert!(p.len() > 1500);
    for v in [0u64, 1, 150, 299] {
        assert_eq!(
            call(&p, "ioctl", [0, v << 20, 0, 0, 0, 0]),
            0x0005_0000 | (100 + v as u32)
        );
    }
    assert_eq!(call(&p, "ioctl", [0, 300 << 20, 0, 0, 0, 0]), EPERM);
    for (i, (name, nr)) in names.iter().enumerate() {
        if name != "ioctl" {
            assert_eq!(
                run(p.instructions(), *nr, a, [0; 6]),
                0x0005_0000 | (i as u32 + 2)
            );
        }
    }
}

#[test]
fn too_long() {
    let mut profile = SeccompProfile::new(Action::Errno(1));
    for v in 0..1000u64 {
        profile = profile.rule(
            SyscallRule::new(&["ioctl"], Action::Allow).arg(ArgCondition::new(
                1,
                CompareOp::EqualTo,
                v,
            )),
        );
    }
    let err = profile.compile_for(Arch::X86_64).unwrap_err();
    assert!(
        matches!(err, SeccompError::TooLong { len } if len > 4096),
        "{err}"
    );
    assert!(err.to_string().contains("4096"));
}

#[test]
fn unsupported_architecture() {
    let err = SeccompProfile::docker_default(0)
        .compile_for(Arch::X86)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported architecture SCMP_ARCH_X86 for seccomp filters"
    );
}

#[test]
fn names_of_other_architectures_are_skipped_unknown_ones_refused() {
    // open: not on aarch64; cacheflush: ARM only
    let p = SeccompProfile::new(Action::Errno(1))
        .rule(SyscallRule::new(
            &["open", "cacheflush", "openat"],
            Action::Allow,
        ))
        .compile_for(Arch::Aarch64)
        .unwrap();
    assert_eq!(call(&p, "openat", [0; 6]), ALLOW);
    let err = SeccompProfile::new(Action::Errno(1))
        .rule(SyscallRule::new(&["read"], Action::Allow))
        .rule(SyscallRule::new(&["frobnicate"], Action::Allow))
        .compile_for(Arch::X86_64)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown system call \"frobnicate\" in syscalls[1]"
    );
}

#[test]
fn model_and_program_agree_on_the_default_profile() {
    for caps in [0, default_caps(), u64::MAX >> 23] {
        let profile = SeccompProfile::docker_default(caps);
        let p = profile.compile_for(Arch::X86_64).unwrap();
        for (name, _) in x86_64_names() {
            for args in [
                [0; 6],
                [CLONE_NEWUSER, 0, 0, 0, 0, 0],
                [40, 1, 0, 0, 0, 0],
                [8; 6],
            ] {
                assert_eq!(
                    call(&p, &name, args),
                    profile.evaluate(Arch::X86_64, &name, args).seccomp_ret(),
                    "{name} {args:?} caps {caps:#x}"
                );
            }
        }
    }
}

const SMALL: &str = r#"{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"name": "ioctl", "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"},
                  {"index": 2, "value": 4294967296, "valueTwo": 0, "op": "SCMP_CMP_LT"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_LOG", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
         "comment": "ignored"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["uname"], "action": "SCMP_ACT_TRACE", "errnoRet": 5,
         "includes": {"minKernel": "4.8"}},
        {"names": ["gettid"], "action": "SCMP_ACT_KILL"},
        {"names": ["getuid"], "action": "SCMP_ACT_TRAP"}
    ]
}"#;

#[test]
fn json_profile() {
    let profile = SeccompProfile::from_json(SMALL).unwrap();
    assert_eq!(profile.default_action, Action::Errno(38));
    assert_eq!(profile.architectures, vec![Arch::X86_64, Arch::Aarch64]);
    assert_eq!(profile.syscalls.len(), 11);
    assert_eq!(profile.syscalls[3].names, vec!["ioctl"]);
    assert_eq!(profile.syscalls[3].args[1].op, CompareOp::LessThan);
    assert_eq!(profile.syscalls[5].includes.caps, 1 << 21);
    assert_eq!(
        profile.syscalls[8].includes.min_kernel.as_deref(),
        Some("4.8")
    );

    let p = profile.compile_for(Arch::X86_64).unwrap();
    let enosys = 0x0005_0026;
    assert_eq!(call(&p, "read", [0; 6]), ALLOW);
    assert_eq!(call(&p, "getpid", [0; 6]), enosys);
    assert_eq!(call(&p, "getppid", [0; 6]), KILL_PROCESS);
    assert_eq!(call(&p, "mkdirat", [0; 6]), 0x0005_000d);
    assert_eq!(call(&p, "ioctl", [1, 21505, 5, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, "ioctl", [1, 21505, 1 << 32, 0, 0, 0]), enosys);
    assert_eq!(call(&p, "ioctl", [1, 21506, 5, 0, 0, 0]), enosys);
    assert_eq!(call(&p, "clone", [17, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&p, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]), enosys);
    assert_eq!(call(&p, "mount", [0; 6]), enosys);
    assert_eq!(call(&p, "chroot", [0; 6]), 0x7ffc_0000);
    assert_eq!(call(&p, "arch_prctl", [0; 6]), ALLOW);
    assert_eq!(call(&p, "uname", [0; 6]), 0x7ff0_0005);
    assert_eq!(call(&p, "gettid", [0; 6]), 0);
    assert_eq!(call(&p, "getuid", [0; 6]), 0x0003_0000);

    let admin = profile.clone().with_capabilities(1 << 21);
    let p = admin.compile_for(Arch::X86_64).unwrap();
    assert_eq!(call(&p, "mount", [0; 6]), ALLOW);
    assert_eq!(call(&p, "chroot", [0; 6]), enosys);
    let p = profile.compile_for(Arch::Aarch64).unwrap();
    assert_eq!(call(&p, "uname", [0; 6]), 0x7ff0_0005);
}

#[test]
fn json_arch_map_and_defaults() {
    let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}"#;
    let profile = SeccompProfile::from_json(text).unwrap();
    assert_eq!(
        profile.architectures,
        vec![Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64]
    );
    assert_eq!(profile.flags, 2);
    let p = profile.compile_for(Arch::X86_64).unwrap();
    assert_eq!(p.flags(), 2);
    assert_eq!(call(&p, "kexec_load", [0; 6]), EPERM);
    assert_eq!(call(&p, "read", [0; 6]), ALLOW);
}

fn json_err(text: &str) -> String {
    SeccompProfile::from_json(text).unwrap_err().to_string()
}

#[test]
fn json_errors_name_the_place() {
    assert!(json_err("{\"defaultAction\": ").starts_with("malformed seccomp profile: "));
    assert_eq!(
        json_err("{}"),
        "invalid seccomp profile: defaultAction: missing"
    );
    assert_eq!(
        json_err(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#),
        "unknown action \"SCMP_ACT_NOPE\" in defaultAction"
    );
    let rules = |r: &str| {
        format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {{"names": ["read"], "action": "SCMP_ACT_ALLOW"}}, {r}]}}"#
        )
    };
    assert_eq!(
        json_err(&rules(r#"{"names": ["write"], "action": "SCMP_ACT_FOO"}"#)),
        "unknown action \"SCMP_ACT_FOO\" in syscalls[1]"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["write", "foo"], "action": "SCMP_ACT_ALLOW"}"#
        )),
        "unknown system call \"foo\" in syscalls[1]"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
                         {"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}"#
        )),
        "unknown operator \"SCMP_CMP_SOMETIMES\" in syscalls[1].args[1]"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}"#
        )),
        "argument index 7 out of range (0 to 5) in syscalls[1].args[0]"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}"#
        )),
        "invalid seccomp profile: syscalls[1].args[0].value: expected an unsigned integer"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}"#
        )),
        "invalid seccomp profile: syscalls[1].errnoRet: 70000 is out of range (0 to 65535)"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                "includes": {"caps": ["CAP_SYS_WIZARD"]}}"#
        )),
        "unknown capability \"CAP_SYS_WIZARD\" in syscalls[1].includes.caps[0]"
    );
    assert_eq!(
        json_err(&rules(
            r#"{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}"#
        )),
        "action SCMP_ACT_NOTIFY is not supported, in syscalls[1]"
    );
    assert_eq!(
        json_err(&rules(r#"{"names": "mount", "action": "SCMP_ACT_ALLOW"}"#)),
        "invalid seccomp profile: syscalls[1].names: expected an array"
    );
    assert_eq!(
        json_err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#),
        "unknown architecture \"SCMP_ARCH_Z80\" in architectures[0]"
    );
}

#[test]
fn docker_names_are_all_known() {
    let profile = SeccompProfile::docker_default(u64::MAX);
    for rule in &profile.syscalls {
        for name in &rule.names {
            assert!(arch::known_anywhere(name), "{name}");
        }
    }
    for arch in ARCHES {
        for caps in [0, default_caps(), u64::MAX] {
            let p = SeccompProfile::docker_default(caps)
                .compile_for(arch)
                .unwrap();
            assert!(p.len() < BPF_MAXINSNS);
        }
    }
}
