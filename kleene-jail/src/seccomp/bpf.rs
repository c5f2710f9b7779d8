//! The compiler of profiles to classic BPF programs, as `seccomp(2)` runs them.
//!
//! The program checks the architecture, then finds the call's number in a binary search
//! tree over ranges of numbers (neighbouring numbers with the same unconditional action
//! share a range), and for a number with argument conditions runs its rules in order.
//! Conditional jumps reach 255 instructions at most: farther targets go through `BPF_JA`.

use std::collections::BTreeMap;

use super::arch::Target;
use super::profile::{ArgCondition, CompareOp};
use super::SeccompError;

/// The kernel's limit on the length of a program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockFilter {
    /// The operation.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// The operand.
    pub k: u32,
}

pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(crate) const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
pub(crate) const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// One rule for one system call number, as the compiler sees it: conditions that must
/// all hold, and the `SECCOMP_RET_*` value then.
#[derive(Debug, Clone)]
pub(crate) struct Clause {
    pub(crate) conds: Vec<ArgCondition>,
    pub(crate) ret: u32,
}

#[derive(Debug, Clone, Copy)]
enum Tgt {
    /// The instruction after this one (with its trampolines).
    Next,
    Label(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Ld(u32),
    And(u32),
    Ret(u32),
    Jump { code: u16, k: u32, jt: Tgt, jf: Tgt },
    Label(usize),
}

#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }

    fn put(&mut self, op: Op) {
        self.ops.push(op);
    }

    fn jump(&mut self, code: u16, k: u32, jt: Tgt, jf: Tgt) {
        self.put(Op::Jump { code, k, jt, jf });
    }

    /// Lays the program out: conditional jumps whose target is farther than 255
    /// instructions get a `BPF_JA` after them (recomputed until nothing changes, as each
    /// one added moves what follows).
    fn assemble(self) -> Result<Vec<SockFilter>, SeccompError> {
        let n = self.ops.len();
        // per op: (far jt, far jf)
        let mut far = vec![(false, false); n];
        let mut pos = vec![0usize; n];
        let mut label_pos = vec![0usize; self.labels];
        let size = |op: &Op, f: (bool, bool)| match op {
            Op::Label(_) => 0,
            Op::Jump { .. } => 1 + usize::from(f.0) + usize::from(f.1),
            _ => 1,
        };
        loop {
            let mut p = 0;
            for (i, op) in self.ops.iter().enumerate() {
                pos[i] = p;
                if let Op::Label(l) = op {
                    label_pos[*l] = p;
                }
                p += size(op, far[i]);
            }
            if p > BPF_MAXINSNS {
                return Err(SeccompError::TooLong { len: p });
            }
            let mut changed = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Jump { jt, jf, .. } = op {
                    let end = pos[i] + size(op, far[i]);
                    let at = |t: &Tgt| match t {
                        Tgt::Next => end,
                        Tgt::Label(l) => label_pos[*l],
                    };
                    let near = |t: &Tgt| at(t) - (pos[i] + 1) <= usize::from(u8::MAX);
                    if !far[i].0 && !near(jt) {
                        far[i].0 = true;
                        changed = true;
                    }
                    if !far[i].1 && !near(jf) {
                        far[i].1 = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut out = Vec::with_capacity(n);
        for (i, op) in self.ops.iter().enumerate() {
            match op {
                Op::Label(_) => {}
                Op::Ld(off) => out.push(stmt(LD_W_ABS, *off)),
                Op::And(k) => out.push(stmt(ALU_AND_K, *k)),
                Op::Ret(k) => out.push(stmt(RET_K, *k)),
                Op::Jump { code, k, jt, jf } => {
                    let p = pos[i];
                    let end = p + size(op, far[i]);
                    let at = |t: &Tgt| match t {
                        Tgt::Next => end,
                        Tgt::Label(l) => label_pos[*l],
                    };
                    // Offsets count from the instruction after the jump.
                    let rel = |t: usize| (t - (p + 1)) as u8;
                    let (t, f) = (at(jt), at(jf));
                    match far[i] {
                        (false, false) => out.push(jump(*code, *k, rel(t), rel(f))),
                        (true, false) => {
                            out.push(jump(*code, *k, 0, rel(f)));
                            out.push(stmt(JMP_JA, (t - (p + 2)) as u32));
                        }
                        (false, true) => {
                            out.push(jump(*code, *k, rel(t), 0));
                            out.push(stmt(JMP_JA, (f - (p + 2)) as u32));
                        }
                        (true, true) => {
                            out.push(jump(*code, *k, 0, 1));
                            out.push(stmt(JMP_JA, (t - (p + 2)) as u32));
                            out.push(stmt(JMP_JA, (f - (p + 3)) as u32));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Emits a check of one condition: falls through when it holds, jumps to `fail` when
/// not. The argument's two 32-bit halves are compared high first.
fn emit_cond(asm: &mut Asm, target: &Target, c: &ArgCondition, fail: Tgt) {
    let base = OFF_ARGS + 8 * u32::from(c.index);
    let (lo_off, hi_off) = if target.big_endian {
        (base + 4, base)
    } else {
        (base, base + 4)
    };
    let hi = |v: u64| (v >> 32) as u32;
    let lo = |v: u64| v as u32;
    let v = c.value;
    let pass = asm.label();
    let p = Tgt::Label(pass);
    let next = Tgt::Next;
    match c.op {
        CompareOp::EqualTo => {
            asm.put(Op::Ld(hi_off));
            asm.jump(JMP_JEQ_K, hi(v), next, fail);
            asm.put(Op::Ld(lo_off));
            asm.jump(JMP_JEQ_K, lo(v), next, fail);
        }
        CompareOp::NotEqual => {
            asm.put(Op::Ld(hi_off));
            asm.jump(JMP_JEQ_K, hi(v), next, p);
            asm.put(Op::Ld(lo_off));
            asm.jump(JMP_JEQ_K, lo(v), fail, next);
        }
        CompareOp::GreaterThan | CompareOp::GreaterOrEqual => {
            asm.put(Op::Ld(hi_off));
            asm.jump(JMP_JGT_K, hi(v), p, next);
            asm.jump(JMP_JEQ_K, hi(v), next, fail);
            asm.put(Op::Ld(lo_off));
            let code = if c.op == CompareOp::GreaterThan {
                JMP_JGT_K
            } else {
                JMP_JGE_K
            };
            asm.jump(code, lo(v), next, fail);
        }
        CompareOp::LessThan | CompareOp::LessOrEqual => {
            // a < v is !(a >= v); a <= v is !(a > v)
            asm.put(Op::Ld(hi_off));
            asm.jump(JMP_JGT_K, hi(v), fail, next);
            asm.jump(JMP_JEQ_K, hi(v), next, p);
            asm.put(Op::Ld(lo_off));
            let code = if c.op == CompareOp::LessThan {
                JMP_JGE_K
            } else {
                JMP_JGT_K
            };
            asm.jump(code, lo(v), fail, next);
        }
        CompareOp::MaskedEqual => {
            let want = c.value_two;
            asm.put(Op::Ld(hi_off));
            asm.put(Op::And(hi(v)));
            asm.jump(JMP_JEQ_K, hi(want), next, fail);
            asm.put(Op::Ld(lo_off));
            asm.put(Op::And(lo(v)));
            asm.jump(JMP_JEQ_K, lo(want), next, fail);
        }
    }
    asm.put(Op::Label(pass));
}

/// What a range of system call numbers leads to.
#[derive(Debug, Clone)]
enum Leaf {
    /// The same return, whatever the arguments.
    Ret(u32),
    /// Rules with conditions, then the default.
    Rules(Vec<Clause>),
}

fn emit_leaf(asm: &mut Asm, target: &Target, leaf: &Leaf, default: u32) {
    match leaf {
        Leaf::Ret(r) => asm.put(Op::Ret(*r)),
        Leaf::Rules(clauses) => {
            for cl in clauses {
                if cl.conds.is_empty() {
                    asm.put(Op::Ret(cl.ret));
                    return;
                }
                let next_rule = asm.label();
                for c in &cl.conds {
                    emit_cond(asm, target, c, Tgt::Label(next_rule));
                }
                asm.put(Op::Ret(cl.ret));
                asm.put(Op::Label(next_rule));
            }
            asm.put(Op::Ret(default));
        }
    }
}

/// Emits the search over `ranges` (sorted, the first starting at 0), the call's number
/// in the accumulator.
fn emit_tree(asm: &mut Asm, target: &Target, ranges: &[(u32, Leaf)], default: u32) {
    match ranges {
        [] => asm.put(Op::Ret(default)),
        [(_, leaf)] => emit_leaf(asm, target, leaf, default),
        _ => {
            let mid = ranges.len() / 2;
            let right = asm.label();
            asm.jump(JMP_JGE_K, ranges[mid].0, Tgt::Label(right), Tgt::Next);
            emit_tree(asm, target, &ranges[..mid], default);
            asm.put(Op::Label(right));
            emit_tree(asm, target, &ranges[mid..], default);
        }
    }
}

/// Compiles the rules by system call number (each number's rules in profile order) to a
/// program: calls of another architecture (or of x32 on x86_64) get `bad_arch`, calls no
/// rule matches `default`.
pub(crate) fn compile(
    target: &Target,
    rules: &BTreeMap<u32, Vec<Clause>>,
    default: u32,
    bad_arch: u32,
) -> Result<Vec<SockFilter>, SeccompError> {
    // Ranges of numbers [start, next start), merged where the return is the same.
    let mut ranges: Vec<(u32, Leaf)> = Vec::new();
    let push = |ranges: &mut Vec<(u32, Leaf)>, start: u32, leaf: Leaf| {
        if let (Some((_, Leaf::Ret(prev))), Leaf::Ret(r)) = (ranges.last(), &leaf) {
            if prev == r {
                return;
            }
        }
        ranges.push((start, leaf));
    };
    let mut next: u64 = 0;
    for (nr, clauses) in rules {
        if u64::from(*nr) > next {
            push(&mut ranges, next as u32, Leaf::Ret(default));
        }
        let leaf = match clauses.first() {
            None => Leaf::Ret(default),
            Some(c) if c.conds.is_empty() => Leaf::Ret(c.ret),
            Some(_) => Leaf::Rules(clauses.clone()),
        };
        push(&mut ranges, *nr, leaf);
        next = u64::from(*nr) + 1;
    }
    if next <= u64::from(u32::MAX) {
        push(&mut ranges, next as u32, Leaf::Ret(default));
    }

    let mut asm = Asm::default();
    let bad = asm.label();
    asm.put(Op::Ld(OFF_ARCH));
    asm.jump(JMP_JEQ_K, target.audit_arch, Tgt::Next, Tgt::Label(bad));
    asm.put(Op::Ld(OFF_NR));
    if target.x32_bit {
        asm.jump(JMP_JGE_K, 0x4000_0000, Tgt::Label(bad), Tgt::Next);
    }
    emit_tree(&mut asm, target, &ranges, default);
    asm.put(Op::Label(bad));
    asm.put(Op::Ret(bad_arch));
    asm.assemble()
}

/// A classic BPF interpreter for seccomp programs, for tests: runs `prog` on a
/// `seccomp_data` and returns what it returns. Panics on anything the kernel's checker
/// would refuse (a jump out of the program, an unknown instruction, no return).
#[cfg(test)]
pub(crate) fn run(prog: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    assert!(prog.len() <= BPF_MAXINSNS, "program too long");
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = prog
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the program at {pc}"));
        pc += 1;
        let cond = |c: bool| {
            if c {
                insn.jt as usize
            } else {
                insn.jf as usize
            }
        };
        match insn.code {
            LD_W_ABS => {
                let o = insn.k as usize;
                assert!(o.is_multiple_of(4) && o + 4 <= 64, "bad load offset {o}");
                let mut w = [0u8; 4];
                w.copy_from_slice(&data[o..o + 4]);
                acc = u32::from_le_bytes(w);
            }
            ALU_AND_K => acc &= insn.k,
            RET_K => return insn.k,
            JMP_JA => pc += insn.k as usize,
            JMP_JEQ_K => pc += cond(acc == insn.k),
            JMP_JGT_K => pc += cond(acc > insn.k),
            JMP_JGE_K => pc += cond(acc >= insn.k),
            c => panic!("unknown instruction {c:#x}"),
        }
        assert!(pc < prog.len(), "jump out of the program");
    }
}
