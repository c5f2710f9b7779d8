//! cgroup v2's device controller: an eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`) that
//! answers each device access of the group's processes, built from [`DeviceRule`]s with
//! v1's meaning (rules in order, the last that matches decides; no match is a denial),
//! and attached to the group's directory. The program is built here, pure; loading and
//! attaching are two bpf(2) calls (Linux).

use crate::resources::DeviceRule;

/// One eBPF instruction, as the kernel's `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// `bpf_cgroup_dev_ctx.access_type`'s low half.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// Its high half.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// The program for `rules`: registers r2 = type, r3 = access, r4 = major, r5 = minor;
/// then each rule from the last to the first, the first that matches returning its
/// verdict; then a denial.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        // Each check jumps past the block's end when it fails; offsets are filled once
        // the block's length is known.
        let mut checks = Vec::new();
        match r.kind {
            'b' => {
                checks.push(block.len());
                block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK));
            }
            'c' => {
                checks.push(block.len());
                block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR));
            }
            _ => {}
        }
        let mut allowed = 0;
        for c in r.access.chars() {
            allowed |= match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            };
        }
        if allowed != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every access asked must be one the rule names.
            block.push(insn(MOV_X, 1, 3, 0, 0));
            block.push(insn(AND_K, 1, 0, 0, !allowed & 0x7));
            checks.push(block.len());
            block.push(insn(JNE_K, 1, 0, 0, 0));
        }
        if let Some(major) = r.major {
            checks.push(block.len());
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            checks.push(block.len());
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(MOV_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let end = block.len();
        let unconditional = checks.is_empty();
        for at in checks {
            // From the instruction after the jump to the block's end.
            block[at].off = (end - at - 1) as i16;
        }
        p.extend(block);
        if unconditional {
            // Nothing after a rule that matches everything is reachable (the verifier
            // refuses unreachable instructions).
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Loads `rules`' program and attaches it to the cgroup v2 directory `dir` (Linux).
#[cfg(target_os = "linux")]
pub(crate) fn attach(dir: &std::path::Path, rules: &[DeviceRule]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let prog = program(rules);
    let license = c"Apache-2.0";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, the rest 0.
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        rest: [u64; 14],
    }
    let load = ProgLoad {
        prog_type: 15, // BPF_PROG_TYPE_CGROUP_DEVICE
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        rest: [0; 14],
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `load` (its size given) and the instructions and
    // license it points to, all alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5, // BPF_PROG_LOAD
            &load as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor bpf(2) just returned is ours.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let group = std::fs::File::open(dir)?;
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        rest: [u64; 14],
    }
    let attach = ProgAttach {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: 6,  // BPF_CGROUP_DEVICE
        attach_flags: 2, // BPF_F_ALLOW_MULTI: a parent's program still answers too
        rest: [0; 14],
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads `attach` (its size given); both descriptors are
    // open for the call. The attachment holds the program once its descriptor closes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            8, // BPF_PROG_ATTACH
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one access, as the kernel would.
    fn run(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access << 16) | kind) as u32, major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = i64::from(ctx[(i.off / 4) as usize]),
                AND_K => r[dst] &= i64::from(i.imm),
                RSH_K => r[dst] >>= i.imm,
                MOV_K => r[dst] = i64::from(i.imm),
                MOV_X => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i64::from(i.imm) {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unknown instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn docker_defaults_allow_the_standard_devices_and_mknod_only() {
        let p = program(&DeviceRule::docker_defaults());
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1, "a pty");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1, "mknod of a disk");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "reading a disk");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 229), 0, "/dev/fuse");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_MKNOD, 1, 3), 1);
    }

    #[test]
    fn the_last_matching_rule_decides_and_nothing_matching_is_denied() {
        let deny_null = DeviceRule {
            allow: false,
            ..DeviceRule::allow('c', Some(1), Some(3), "w")
        };
        let p = program(&[DeviceRule::allow('a', None, None, "rwm"), deny_null]);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 1);
        assert_eq!(run(&program(&[]), DEV_CHAR, ACC_READ, 1, 3), 0);
        let read_only = program(&[DeviceRule::allow('c', Some(1), None, "r")]);
        assert_eq!(run(&read_only, DEV_CHAR, ACC_READ, 1, 9), 1);
        assert_eq!(run(&read_only, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 9), 0);
        // After a rule that matches everything, nothing more is emitted.
        let p = program(&DeviceRule::docker_defaults());
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        assert_eq!(p[p.len() - 2], insn(MOV_K, 0, 0, 0, 0));
    }
}
