//! The profile model: what a seccomp profile says, before it is compiled.

use super::arch::Arch;

/// What the kernel does with a system call a rule (or the default) matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Let the call through (`SCMP_ACT_ALLOW`).
    Allow,
    /// Fail the call with this errno, without running it (`SCMP_ACT_ERRNO`).
    Errno(u16),
    /// Kill the whole process with `SIGSYS` (`SCMP_ACT_KILL_PROCESS`, Linux 4.14).
    Kill,
    /// Kill only the calling thread with `SIGSYS` (`SCMP_ACT_KILL_THREAD`, and
    /// `SCMP_ACT_KILL` as libseccomp and runc read it).
    KillThread,
    /// Send the thread `SIGSYS` (`SCMP_ACT_TRAP`).
    Trap,
    /// Let the call through and log it (`SCMP_ACT_LOG`, Linux 4.14).
    Log,
    /// Stop at a `ptrace` tracer with this event message (`SCMP_ACT_TRACE`); without a
    /// tracer the call fails with `ENOSYS`.
    Trace(u16),
}

impl Action {
    /// The filter's return value for the action (`SECCOMP_RET_*`).
    pub fn seccomp_ret(self) -> u32 {
        match self {
            Action::Kill => 0x8000_0000,
            Action::KillThread => 0,
            Action::Trap => 0x0003_0000,
            Action::Errno(e) => 0x0005_0000 | u32::from(e),
            Action::Trace(m) => 0x7ff0_0000 | u32::from(m),
            Action::Log => 0x7ffc_0000,
            Action::Allow => 0x7fff_0000,
        }
    }

    /// Whether the call runs (possibly logged).
    pub(crate) fn lets_through(self) -> bool {
        matches!(self, Action::Allow | Action::Log)
    }
}

/// How an argument is compared, all unsigned and on the full 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompareOp {
    /// `arg != value` (`SCMP_CMP_NE`).
    NotEqual,
    /// `arg < value` (`SCMP_CMP_LT`).
    LessThan,
    /// `arg <= value` (`SCMP_CMP_LE`).
    LessOrEqual,
    /// `arg == value` (`SCMP_CMP_EQ`).
    EqualTo,
    /// `arg >= value` (`SCMP_CMP_GE`).
    GreaterOrEqual,
    /// `arg > value` (`SCMP_CMP_GT`).
    GreaterThan,
    /// `arg & value == value_two` (`SCMP_CMP_MASKED_EQ`: `value` is the mask).
    MaskedEqual,
}

impl CompareOp {
    /// Parses a profile's operator (`SCMP_CMP_EQ`, ...).
    pub fn from_scmp(s: &str) -> Option<Self> {
        Some(match s {
            "SCMP_CMP_NE" => CompareOp::NotEqual,
            "SCMP_CMP_LT" => CompareOp::LessThan,
            "SCMP_CMP_LE" => CompareOp::LessOrEqual,
            "SCMP_CMP_EQ" => CompareOp::EqualTo,
            "SCMP_CMP_GE" => CompareOp::GreaterOrEqual,
            "SCMP_CMP_GT" => CompareOp::GreaterThan,
            "SCMP_CMP_MASKED_EQ" => CompareOp::MaskedEqual,
            _ => return None,
        })
    }

    /// Whether `arg` satisfies the comparison with `value` (and `value_two`).
    pub fn holds(self, arg: u64, value: u64, value_two: u64) -> bool {
        match self {
            CompareOp::NotEqual => arg != value,
            CompareOp::LessThan => arg < value,
            CompareOp::LessOrEqual => arg <= value,
            CompareOp::EqualTo => arg == value,
            CompareOp::GreaterOrEqual => arg >= value,
            CompareOp::GreaterThan => arg > value,
            CompareOp::MaskedEqual => arg & value == value_two,
        }
    }
}

/// A condition on one argument of a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgCondition {
    /// Which argument, 0 to 5.
    pub index: u8,
    /// The value compared with (the mask for [`CompareOp::MaskedEqual`]).
    pub value: u64,
    /// The expected masked value for [`CompareOp::MaskedEqual`]; unused otherwise.
    pub value_two: u64,
    /// The comparison.
    pub op: CompareOp,
}

impl ArgCondition {
    /// `arg[index] op value`.
    pub fn new(index: u8, op: CompareOp, value: u64) -> Self {
        ArgCondition {
            index,
            value,
            value_two: 0,
            op,
        }
    }

    /// `arg[index] & mask == value`.
    pub fn masked_equal(index: u8, mask: u64, value: u64) -> Self {
        ArgCondition {
            index,
            value: mask,
            value_two: value,
            op: CompareOp::MaskedEqual,
        }
    }
}

/// When a rule applies (`includes`) or does not (`excludes`), as Docker's profiles say:
/// by the container's capabilities and the architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleFilter {
    /// Capabilities, as a bit mask (bit `n` is capability `n`, see
    /// [`crate::capability_number`]). `includes`: all must be held; `excludes`: any held
    /// one excludes the rule.
    pub caps: u64,
    /// Architectures, by Go's names as Docker writes them (`amd64`, `arm64`, `x32`, ...;
    /// `x86_64`, `aarch64` and the `SCMP_ARCH_*` names work too). `includes`: the target
    /// must be one; `excludes`: the target must be none. Names of other architectures
    /// simply never match.
    pub arches: Vec<String>,
    /// The lowest kernel version, e.g. `"4.8"`: kept but ignored (the rule applies
    /// whatever the running kernel; kernels older than any version Docker's profiles name
    /// are not supported).
    pub min_kernel: Option<String>,
}

impl RuleFilter {
    /// A filter on capabilities only.
    pub fn caps(caps: u64) -> Self {
        RuleFilter {
            caps,
            ..RuleFilter::default()
        }
    }

    /// A filter on architectures only.
    pub fn arches(arches: &[&str]) -> Self {
        RuleFilter {
            arches: arches.iter().map(|a| (*a).to_owned()).collect(),
            ..RuleFilter::default()
        }
    }

    /// Whether the filter names nothing.
    pub fn is_empty(&self) -> bool {
        self.caps == 0 && self.arches.is_empty()
    }

    fn names_arch(&self, arch: Arch) -> bool {
        self.arches
            .iter()
            .any(|a| arch.filter_names().contains(&a.as_str()))
    }
}

/// One rule of a profile: these system calls (with these arguments) get this action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyscallRule {
    /// The system calls, by name (`read`, `clone3`, ...). Names the target architecture
    /// lacks but some other has are skipped; names no architecture has are an error.
    pub names: Vec<String>,
    /// What happens when the rule matches.
    pub action: Action,
    /// Conditions on the arguments, all of which must hold. As in runc: when two
    /// conditions name the same argument, the rule matches when any one condition holds.
    pub args: Vec<ArgCondition>,
    /// The rule only applies when this matches (nothing named: always).
    pub includes: RuleFilter,
    /// The rule does not apply when this matches (nothing named: never).
    pub excludes: RuleFilter,
}

impl SyscallRule {
    /// A rule for `names` with `action`, no conditions.
    pub fn new<S: AsRef<str>>(names: &[S], action: Action) -> Self {
        SyscallRule {
            names: names.iter().map(|n| n.as_ref().to_owned()).collect(),
            action,
            args: Vec::new(),
            includes: RuleFilter::default(),
            excludes: RuleFilter::default(),
        }
    }

    /// Adds a condition on an argument.
    pub fn arg(mut self, cond: ArgCondition) -> Self {
        self.args.push(cond);
        self
    }

    /// Sets when the rule applies.
    pub fn includes(mut self, filter: RuleFilter) -> Self {
        self.includes = filter;
        self
    }

    /// Sets when the rule does not apply.
    pub fn excludes(mut self, filter: RuleFilter) -> Self {
        self.excludes = filter;
        self
    }

    /// Whether the rule applies on `arch` to a process with capabilities `caps`: the
    /// `includes` capabilities all held and its architectures (if any) naming `arch`;
    /// none of the `excludes` capabilities held and its architectures not naming `arch`.
    pub fn applies(&self, arch: Arch, caps: u64) -> bool {
        let inc = &self.includes;
        let exc = &self.excludes;
        caps & inc.caps == inc.caps
            && (inc.arches.is_empty() || inc.names_arch(arch))
            && caps & exc.caps == 0
            && !exc.names_arch(arch)
    }

    /// The rule's conditions as alternatives: one set (all must hold), or, when an
    /// argument is named twice, each condition alone (any may hold), as runc does.
    pub(crate) fn alternatives(&self) -> Vec<Vec<ArgCondition>> {
        let repeated = self
            .args
            .iter()
            .enumerate()
            .any(|(i, a)| self.args[..i].iter().any(|b| b.index == a.index));
        if repeated {
            self.args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![self.args.clone()]
        }
    }
}

/// A seccomp profile: a default action, and rules for system calls, in Docker's (and
/// the OCI runtime specification's) sense. Rules are tried in order; the first one whose
/// system call and argument conditions match decides. Build one with
/// [`SeccompProfile::docker_default`], [`SeccompProfile::from_json`] or
/// [`SeccompProfile::new`] and [`SeccompProfile::rule`]; turn it into a BPF program with
/// [`SeccompProfile::compile`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeccompProfile {
    /// What happens to calls no rule matches. [`Action::Errno`] carries the profile's
    /// `defaultErrnoRet`.
    pub default_action: Action,
    /// The architectures the profile names (`architectures`, or `archMap`'s). Informative:
    /// the filter checks the architecture it is compiled for only, and gives calls of any
    /// other ABI (x86 or x32 on x86_64, arm on aarch64) the default action, or, when the
    /// default lets calls through, kills the process.
    pub architectures: Vec<Arch>,
    /// `SECCOMP_FILTER_FLAG_*` bits the filter is installed with (`flags`: `LOG`,
    /// `SPEC_ALLOW`, `TSYNC`).
    pub flags: u32,
    /// The rules, in order.
    pub syscalls: Vec<SyscallRule>,
    /// The capabilities (bit mask) the rules' `includes`/`excludes` are evaluated
    /// against: set it to the container's effective set. [`SeccompProfile::from_json`]
    /// and [`SeccompProfile::new`] start with Docker's default set.
    pub capabilities: u64,
}

impl SeccompProfile {
    /// An empty profile: every call gets `default_action`.
    pub fn new(default_action: Action) -> Self {
        SeccompProfile {
            default_action,
            architectures: Vec::new(),
            flags: 0,
            syscalls: Vec::new(),
            capabilities: crate::caps::default_mask(),
        }
    }

    /// Appends a rule.
    pub fn rule(mut self, rule: SyscallRule) -> Self {
        self.syscalls.push(rule);
        self
    }

    /// Sets the capabilities the rules' filters are evaluated against.
    pub fn with_capabilities(mut self, caps: u64) -> Self {
        self.capabilities = caps;
        self
    }

    /// What the filter does with system call `name` made through `arch`'s own ABI with
    /// these arguments, worked out on the model rather than the compiled program (to
    /// explain or check a profile). A name `arch` lacks gets the default action.
    pub fn evaluate(&self, arch: Arch, name: &str, args: [u64; 6]) -> Action {
        if arch.syscall_number(name).is_none() {
            return self.default_action;
        }
        for rule in &self.syscalls {
            if !rule.applies(arch, self.capabilities) || !rule.names.iter().any(|n| n == name) {
                continue;
            }
            let hit = rule.alternatives().iter().any(|alt| {
                alt.iter().all(|c| {
                    args.get(usize::from(c.index))
                        .is_some_and(|a| c.op.holds(*a, c.value, c.value_two))
                })
            });
            if hit {
                return rule.action;
            }
        }
        self.default_action
    }
}
