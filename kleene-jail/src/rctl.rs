//! FreeBSD's resource limits (rctl(8)) for a jail, from [`Resources`]: the rule strings
//! `rctl_add_rule(2)` takes, the filter that removes them, and the parse of
//! `rctl_get_racct(2)`'s usage report. Pure and platform-neutral (tested on Linux); the
//! system calls are in the FreeBSD backend.
//!
//! Docker's limits map onto RCTL as FreeBSD users write them by hand:
//!
//! | Docker              | rule                                  |
//! |---------------------|---------------------------------------|
//! | `--memory 256m`     | `jail:NAME:memoryuse:deny=268435456`  |
//! | `--memory-swap`     | `jail:NAME:swapuse:deny=SWAP-MEMORY`  |
//! | `--cpus 0.5`        | `jail:NAME:pcpu:deny=50`              |
//! | `--pids-limit 20`   | `jail:NAME:maxproc:deny=20`           |
//!
//! `--cpuset-cpus` is not a rule but the jail's cpuset ([`cpuset_list`]); `--cpu-shares`
//! and `--cpuset-mems` have no FreeBSD equivalent and are refused rather than ignored.

use crate::resources::{parse_list, Resources, CPU_PERIOD_US};

/// The longest jail name RCTL takes (`MAXHOSTNAMELEN` less the terminating NUL).
const MAX_NAME_LEN: usize = 255;

/// Why limits cannot become RCTL rules, or a usage report cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RctlError {
    /// The jail name cannot stand as the subject of a rule.
    #[error("invalid jail name {name:?} for rctl: {reason}")]
    InvalidJailName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--cpu-shares`: RCTL has no relative CPU weight.
    #[error("cpu shares have no rctl equivalent on FreeBSD: limit the jail with --cpus instead")]
    CpuShares,
    /// `--cpuset-mems`: FreeBSD's memory domains are not mapped.
    #[error("cpuset-mems is not supported on FreeBSD: memory domains are not mapped")]
    CpusetMems,
    /// A limit that has no sensible rule (swap below memory, a negative quota, ...).
    #[error("invalid {limit} limit for rctl: {reason}")]
    InvalidLimit {
        /// The limit, as Docker's options name it (`memory-swap`, `cpu quota`, ...).
        limit: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--cpuset-cpus` list that is not like `0-2,4`.
    #[error("invalid cpuset-cpus list {list:?}: use a list like 0-2,4")]
    InvalidCpuList {
        /// The list as given.
        list: String,
    },
    /// `rctl_get_racct(2)`'s output is not a list of `resource=amount`.
    #[error("malformed racct usage {entry:?}: {reason}")]
    MalformedRacct {
        /// The offending entry (or the whole text when it is empty).
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<RctlError> for crate::Error {
    fn from(e: RctlError) -> Self {
        match e {
            RctlError::MalformedRacct { .. } => crate::Error::Io {
                context: "read the jail's resource usage".to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            },
            RctlError::CpuShares => crate::Error::LimitUnavailable {
                limit: "cpu shares".to_string(),
                reason: "FreeBSD's rctl has no relative cpu weight: limit the jail with --cpus \
                         instead"
                    .to_string(),
            },
            RctlError::CpusetMems => crate::Error::LimitUnavailable {
                limit: "cpuset-mems".to_string(),
                reason: "FreeBSD's memory domains are not mapped".to_string(),
            },
            e => crate::Error::InvalidConfig(e.to_string()),
        }
    }
}

/// A jail's resource usage, as `rctl_get_racct(2)` (and `rctl -u jail:NAME`) reports it.
///
/// Amounts RACCT keeps in millionths (`cputime`, `wallclock`, `pcpu`) are reported, as
/// the kernel prints them, in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RacctUsage {
    /// CPU time used, in seconds (`cputime`).
    pub cpu_time_secs: u64,
    /// Resident memory, in bytes (`memoryuse`).
    pub memory_bytes: u64,
    /// Swap used, in bytes (`swapuse`).
    pub swap_bytes: u64,
    /// Address space, in bytes (`vmemoryuse`).
    pub virtual_memory_bytes: u64,
    /// Locked memory, in bytes (`memorylocked`).
    pub memory_locked_bytes: u64,
    /// Processes (`maxproc`).
    pub processes: u64,
    /// Threads (`nthr`).
    pub threads: u64,
    /// Open file descriptors (`openfiles`).
    pub open_files: u64,
    /// Pseudo-terminals (`pseudoterminals`).
    pub pseudo_terminals: u64,
    /// CPU use, in percent of one CPU (`pcpu`: 200 is two CPUs busy).
    pub pcpu_percent: u64,
    /// Wall-clock time the jail has existed, in seconds (`wallclock`).
    pub wallclock_secs: u64,
    /// Bytes read per second (`readbps`).
    pub read_bps: u64,
    /// Bytes written per second (`writebps`).
    pub write_bps: u64,
    /// Read operations per second (`readiops`).
    pub read_iops: u64,
    /// Write operations per second (`writeiops`).
    pub write_iops: u64,
    /// Every resource reported, by RACCT's name, including the ones above and any a
    /// newer kernel adds.
    pub all: Vec<(String, u64)>,
}

impl RacctUsage {
    /// The amount of the resource RACCT calls `name` (`nthr`, `shmsize`, ...), if reported.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.all.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// Refuses a jail name that cannot be the subject of a rule: empty, too long, or holding
/// a character the rule syntax (`subject:id:resource:action=amount/per`) or the
/// comma-separated rule lists give a meaning to.
pub fn check_jail_name(jail_name: &str) -> Result<(), RctlError> {
    let bad = |reason| {
        Err(RctlError::InvalidJailName {
            name: jail_name.to_string(),
            reason,
        })
    };
    if jail_name.is_empty() {
        return bad("it is empty");
    }
    if jail_name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if let Some(c) = jail_name
        .chars()
        .find(|&c| matches!(c, ':' | '/' | ',' | '=') || c.is_whitespace() || c.is_control())
    {
        return match c {
            ':' => bad("it contains ':'"),
            '/' => bad("it contains '/'"),
            ',' => bad("it contains ','"),
            '=' => bad("it contains '='"),
            _ if c.is_whitespace() => bad("it contains white space"),
            _ => bad("it contains a control character"),
        };
    }
    Ok(())
}

/// The filter that names every rule of the jail, and its usage: `jail:NAME` (for
/// `rctl_remove_rule(2)` and `rctl_get_racct(2)`). The name is not checked: see
/// [`check_jail_name`].
pub fn rctl_filter(jail_name: &str) -> String {
    format!("jail:{jail_name}")
}

/// The RCTL rules that enforce `r` on the jail named `jail_name`, in a fixed order:
/// memory, swap, CPU, processes. Each is one `rctl_add_rule(2)` (or `rctl -a`).
///
/// - `memory` becomes `memoryuse:deny=BYTES`.
/// - `memory_swap` (memory plus swap, as Docker's) becomes `swapuse:deny=SWAP-MEMORY`;
///   without it a memory limit allows as much swap again, and `-1` leaves swap unlimited.
/// - `cpu_quota`/`cpu_period` become `pcpu:deny=PERCENT` of one CPU, rounded up (`--cpus
///   0.5` is 50, `--cpus 2` is 200); a quota of `-1` is unlimited.
/// - `pids` becomes `maxproc:deny=N`; `-1` is unlimited.
/// - `cpuset_cpus` is no rule: it is applied as the jail's cpuset ([`cpuset_list`]).
///
/// `cpu_shares` and `cpuset_mems` have no RCTL equivalent and are refused, as are a jail
/// name unfit for a rule ([`check_jail_name`]) and limits no rule can express (swap
/// below memory, a zero quota or pids limit).
pub fn rctl_rules(jail_name: &str, r: &Resources) -> Result<Vec<String>, RctlError> {
    check_jail_name(jail_name)?;
    if r.cpu_shares.is_some() {
        return Err(RctlError::CpuShares);
    }
    if r.cpuset_mems.is_some() {
        return Err(RctlError::CpusetMems);
    }
    let invalid = |limit, reason: String| RctlError::InvalidLimit { limit, reason };
    let mut rules = Vec::new();
    let mut rule = |resource: &str, amount: u64| {
        rules.push(format!("jail:{jail_name}:{resource}:deny={amount}"));
    };

    match (r.memory, r.memory_swap) {
        (Some(memory), swap) => {
            rule("memoryuse", memory);
            let swap = match swap {
                Some(-1) => None,
                // Docker's default: as much swap again as memory.
                None => Some(memory),
                Some(total) => match u64::try_from(total) {
                    Ok(total) if total >= memory => Some(total - memory),
                    _ => {
                        return Err(invalid(
                            "memory-swap",
                            format!("{total} must be -1 or at least the memory limit ({memory})"),
                        ))
                    }
                },
            };
            if let Some(swap) = swap {
                rule("swapuse", swap);
            }
        }
        (None, Some(-1) | None) => {}
        (None, Some(total)) => {
            return Err(invalid(
                "memory-swap",
                format!("{total} needs a memory limit too"),
            ))
        }
    }

    if let Some(quota) = r.cpu_quota {
        if quota != -1 {
            let period = r.cpu_period.unwrap_or(CPU_PERIOD_US);
            if quota <= 0 {
                return Err(invalid(
                    "cpu quota",
                    format!("{quota}us must be -1 or positive"),
                ));
            }
            if period == 0 {
                return Err(invalid("cpu period", "0us must be positive".to_string()));
            }
            // Percent of one CPU, rounded up so that a small quota is never no CPU.
            let percent = (u128::from(quota.unsigned_abs()) * 100).div_ceil(u128::from(period));
            let percent = u64::try_from(percent).map_err(|_| {
                invalid(
                    "cpu quota",
                    format!("{quota}us per {period}us is too large"),
                )
            })?;
            rule("pcpu", percent);
        }
    }

    if let Some(pids) = r.pids {
        match pids {
            -1 => {}
            n if n > 0 => rule("maxproc", n.unsigned_abs()),
            n => return Err(invalid("pids", format!("{n} must be -1 or positive"))),
        }
    }
    Ok(rules)
}

/// The filters of the rules an update lifts: a limit set to unlimited (`-1` for
/// `memory_swap`, `cpu_quota` or `pids`) removes the rule an earlier limit added, as
/// `rctl -r jail:NAME:RESOURCE:deny` would. Removing a rule that does not exist is
/// harmless (`ESRCH`).
pub fn rctl_lifted(jail_name: &str, r: &Resources) -> Result<Vec<String>, RctlError> {
    check_jail_name(jail_name)?;
    let lifted = [
        ("swapuse", r.memory_swap),
        ("pcpu", r.cpu_quota),
        ("maxproc", r.pids),
    ];
    Ok(lifted
        .into_iter()
        .filter(|&(_, limit)| limit == Some(-1))
        .map(|(resource, _)| format!("jail:{jail_name}:{resource}:deny"))
        .collect())
}

/// The CPUs of a `--cpuset-cpus` list (`0-2,4`), for the jail's cpuset.
pub fn cpuset_list(list: &str) -> Result<Vec<u32>, RctlError> {
    parse_list(list).ok_or_else(|| RctlError::InvalidCpuList {
        list: list.to_string(),
    })
}

/// Parses `rctl_get_racct(2)`'s report (`cputime=12,datasize=4096,...,pcpu=5,...`):
/// comma-separated `resource=amount`, as `rctl -u jail:NAME` prints one a line. Unknown
/// resources are kept in [`RacctUsage::all`]; a negative amount (never reported by a sane
/// kernel) reads as 0.
pub fn parse_racct(text: &str) -> Result<RacctUsage, RctlError> {
    // The kernel's buffer ends in NUL; rctl(8) output in a newline per entry.
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if text.is_empty() {
        return Err(RctlError::MalformedRacct {
            entry: String::new(),
            reason: "it is empty",
        });
    }
    let mut usage = RacctUsage::default();
    for entry in text.split([',', '\n']).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let malformed = |reason| RctlError::MalformedRacct {
            entry: entry.to_string(),
            reason,
        };
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| malformed("expected resource=amount"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(malformed("the resource name is empty"));
        }
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| malformed("the amount is not an integer"))?;
        let value = u64::try_from(value).unwrap_or(0);
        let field = match key {
            "cputime" => Some(&mut usage.cpu_time_secs),
            "memoryuse" => Some(&mut usage.memory_bytes),
            "swapuse" => Some(&mut usage.swap_bytes),
            "vmemoryuse" => Some(&mut usage.virtual_memory_bytes),
            "memorylocked" => Some(&mut usage.memory_locked_bytes),
            "maxproc" => Some(&mut usage.processes),
            "nthr" => Some(&mut usage.threads),
            "openfiles" => Some(&mut usage.open_files),
            "pseudoterminals" => Some(&mut usage.pseudo_terminals),
            "pcpu" => Some(&mut usage.pcpu_percent),
            "wallclock" => Some(&mut usage.wallclock_secs),
            "readbps" => Some(&mut usage.read_bps),
            "writebps" => Some(&mut usage.write_bps),
            "readiops" => Some(&mut usage.read_iops),
            "writeiops" => Some(&mut usage.write_iops),
            _ => None,
        };
        if let Some(field) = field {
            *field = value;
        }
        usage.all.push((key.to_string(), value));
    }
    Ok(usage)
}

/// The amounts of the rules in `rctl_get_rules(2)`'s output
/// (`jail:web:memoryuse:deny=268435456,...`), skipping what is not a rule with one.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub(crate) fn rule_amounts(text: &str) -> Vec<u64> {
    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .split([',', '\n'])
        .filter_map(|rule| {
            let (_, amount) = rule.trim().rsplit_once('=')?;
            // A `/per` suffix (`deny=10/process`) is not ours: its amount is per process.
            amount.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rules(r: &Resources) -> Vec<String> {
        rctl_rules("web", r).expect("limits map onto rules")
    }

    fn refusal(name: &str, r: &Resources) -> String {
        rctl_rules(name, r).expect_err("refused").to_string()
    }

    #[test]
    fn memory_alone_allows_as_much_swap_again() {
        assert_eq!(
            rules(&Resources::new().memory(256 * MIB)),
            [
                "jail:web:memoryuse:deny=268435456",
                "jail:web:swapuse:deny=268435456",
            ]
        );
    }

    #[test]
    fn memory_swap_is_memory_plus_swap() {
        assert_eq!(
            rules(&Resources::new().memory(256 * MIB).memory_swap(1 << 30)),
            [
                "jail:web:memoryuse:deny=268435456",
                "jail:web:swapuse:deny=805306368",
            ]
        );
        // Equal to memory: no swap at all.
        assert_eq!(
            rules(&Resources::new().memory(64 * MIB).memory_swap(64 << 20)),
            [
                "jail:web:memoryuse:deny=67108864",
                "jail:web:swapuse:deny=0",
            ]
        );
    }

    #[test]
    fn unlimited_swap_has_no_swap_rule() {
        assert_eq!(
            rules(&Resources::new().memory(256 * MIB).memory_swap(-1)),
            ["jail:web:memoryuse:deny=268435456"]
        );
        assert_eq!(
            rules(&Resources::new().memory_swap(-1)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn cpus_are_percent_of_one_cpu() {
        assert_eq!(
            rules(&Resources::new().cpus(0.5)),
            ["jail:web:pcpu:deny=50"]
        );
        assert_eq!(
            rules(&Resources::new().cpus(1.5)),
            ["jail:web:pcpu:deny=150"]
        );
        assert_eq!(
            rules(&Resources::new().cpus(2.0)),
            ["jail:web:pcpu:deny=200"]
        );
        // Rounded up: 0.011 CPUs of a 100ms period is 1.1%, allowed 2%.
        assert_eq!(
            rules(&Resources::new().cpu_quota(1100, 100_000)),
            ["jail:web:pcpu:deny=2"]
        );
        // Another period, the same share.
        assert_eq!(
            rules(&Resources::new().cpu_quota(25_000, 50_000)),
            ["jail:web:pcpu:deny=50"]
        );
        // A quota without a period uses Docker's 100ms.
        let mut quota_only = Resources::new();
        quota_only.cpu_quota = Some(150_000);
        assert_eq!(rules(&quota_only), ["jail:web:pcpu:deny=150"]);
        // Unlimited.
        assert!(rules(&Resources::new().cpu_quota(-1, 100_000)).is_empty());
    }

    #[test]
    fn pids_limit_processes() {
        assert_eq!(
            rules(&Resources::new().pids(20)),
            ["jail:web:maxproc:deny=20"]
        );
        assert!(rules(&Resources::new().pids(-1)).is_empty());
    }

    #[test]
    fn all_limits_in_a_fixed_order() {
        let r = Resources::new()
            .pids(100)
            .cpus(1.5)
            .cpuset_cpus("0-1")
            .memory_swap(768 << 20)
            .memory(512 * MIB);
        assert_eq!(
            rctl_rules("kleene-3f2a", &r).expect("rules"),
            [
                "jail:kleene-3f2a:memoryuse:deny=536870912",
                "jail:kleene-3f2a:swapuse:deny=268435456",
                "jail:kleene-3f2a:pcpu:deny=150",
                "jail:kleene-3f2a:maxproc:deny=100",
            ]
        );
        assert!(rules(&Resources::new()).is_empty());
        // A cpuset alone is no rule: it is the jail's cpuset.
        assert!(rules(&Resources::new().cpuset_cpus("0-2,4")).is_empty());
    }

    #[test]
    fn limits_without_an_equivalent_are_refused_by_name() {
        let shares = refusal("web", &Resources::new().memory(64 * MIB).cpu_shares(512));
        assert!(shares.contains("cpu shares"), "{shares}");
        assert_eq!(
            rctl_rules("web", &Resources::new().cpu_shares(1024)),
            Err(RctlError::CpuShares)
        );
        let mems = refusal("web", &Resources::new().cpuset_mems("0"));
        assert!(mems.contains("cpuset-mems"), "{mems}");
    }

    #[test]
    fn limits_no_rule_can_express_are_refused_by_name() {
        let e = refusal(
            "web",
            &Resources::new().memory(64 * MIB).memory_swap(MIB as i64),
        );
        assert!(e.contains("memory-swap"), "{e}");
        let e = refusal("web", &Resources::new().memory_swap(1 << 30));
        assert!(
            e.contains("memory-swap") && e.contains("memory limit"),
            "{e}"
        );
        let e = refusal("web", &Resources::new().cpu_quota(0, 100_000));
        assert!(e.contains("cpu quota"), "{e}");
        let e = refusal("web", &Resources::new().cpu_quota(50_000, 0));
        assert!(e.contains("cpu period"), "{e}");
        let e = refusal("web", &Resources::new().pids(0));
        assert!(e.contains("pids"), "{e}");
    }

    #[test]
    fn jail_names_must_be_safe_in_a_rule() {
        let r = Resources::new().pids(10);
        for name in [
            "", "a:b", "a/b", "a,b", "a=b", "a b", "a\tb", "a\nb", "a\0b",
        ] {
            let e = refusal(name, &r);
            assert!(e.starts_with("invalid jail name"), "{name:?}: {e}");
        }
        assert!(refusal(&"x".repeat(256), &r).contains("255"));
        assert!(rctl_rules(&"x".repeat(255), &r).is_ok());
        // Hierarchical names are fine.
        assert_eq!(
            rctl_rules("host.web_1", &r).expect("rules"),
            ["jail:host.web_1:maxproc:deny=10"]
        );
        // Even without limits: the name is refused before anything is applied.
        assert!(rctl_rules("a:b", &Resources::new()).is_err());
        assert_eq!(rctl_filter("web"), "jail:web");
    }

    #[test]
    fn error_texts_are_lower_case_without_a_period() {
        let errors = [
            refusal("a:b", &Resources::new()),
            refusal("web", &Resources::new().cpu_shares(2)),
            refusal("web", &Resources::new().cpuset_mems("0")),
            refusal("web", &Resources::new().pids(-2)),
            cpuset_list("x").expect_err("refused").to_string(),
            parse_racct("").expect_err("refused").to_string(),
        ];
        for e in errors {
            assert!(e.starts_with(|c: char| c.is_lowercase()), "{e}");
            assert!(!e.ends_with('.'), "{e}");
        }
    }

    #[test]
    fn an_update_to_unlimited_lifts_the_rule() {
        let r = Resources::new()
            .memory(64 * MIB)
            .memory_swap(-1)
            .cpus(1.0)
            .pids(-1);
        assert_eq!(
            rctl_lifted("web", &r).expect("filters"),
            ["jail:web:swapuse:deny", "jail:web:maxproc:deny"]
        );
        assert_eq!(
            rctl_lifted("web", &Resources::new().cpu_quota(-1, 100_000)).expect("filters"),
            ["jail:web:pcpu:deny"]
        );
        assert!(rctl_lifted("web", &Resources::new().pids(5))
            .expect("filters")
            .is_empty());
        assert!(rctl_lifted("a:b", &Resources::new()).is_err());
    }

    #[test]
    fn refusals_are_invalid_configurations() {
        let e = crate::Error::from(RctlError::CpuShares);
        assert!(matches!(e, crate::Error::LimitUnavailable { .. }), "{e}");
        assert!(
            e.to_string().starts_with("cpu shares cannot be enforced"),
            "{e}"
        );
        let e = crate::Error::from(RctlError::CpusetMems);
        assert!(
            e.to_string().starts_with("cpuset-mems cannot be enforced"),
            "{e}"
        );
        let e = crate::Error::from(cpuset_list("x").expect_err("refused"));
        assert!(matches!(e, crate::Error::InvalidConfig(_)), "{e}");
        let e = crate::Error::from(parse_racct("x").expect_err("refused"));
        assert!(matches!(e, crate::Error::Io { .. }), "{e}");
    }

    #[test]
    fn rule_amounts_read_rctl_get_rules() {
        assert_eq!(
            rule_amounts("jail:web:memoryuse:deny=268435456,jail:web:maxproc:deny=20\0"),
            [268_435_456, 20]
        );
        assert_eq!(
            rule_amounts("jail:web:openfiles:deny=10/process"),
            Vec::<u64>::new()
        );
        assert!(rule_amounts("").is_empty());
    }

    #[test]
    fn cpuset_lists() {
        assert_eq!(cpuset_list("0-2,4"), Ok(vec![0, 1, 2, 4]));
        assert_eq!(cpuset_list("3"), Ok(vec![3]));
        assert!(matches!(
            cpuset_list("2-1"),
            Err(RctlError::InvalidCpuList { .. })
        ));
        assert!(cpuset_list("").is_err());
    }

    /// `rctl -u jail:web` on FreeBSD 14 (one line per resource), as the system call
    /// returns it: comma-separated.
    const RACCT: &str = "cputime=12,datasize=2580480,stacksize=1052672,coredumpsize=0,\
        memoryuse=47316992,memorylocked=0,maxproc=3,openfiles=384,vmemoryuse=97660928,\
        pseudoterminals=1,swapuse=0,nthr=4,msgqqueued=0,msgqsize=0,nmsgq=0,nsem=0,\
        nsemop=0,nshm=0,shmsize=0,wallclock=3601,pcpu=5,readbps=0,writebps=16384,\
        readiops=0,writeiops=2";

    #[test]
    fn racct_usage_parses() {
        let u = parse_racct(RACCT).expect("parses");
        assert_eq!(u.cpu_time_secs, 12);
        assert_eq!(u.memory_bytes, 47_316_992);
        assert_eq!(u.processes, 3);
        assert_eq!(u.pcpu_percent, 5);
        assert_eq!(u.threads, 4);
        assert_eq!(u.open_files, 384);
        assert_eq!(u.virtual_memory_bytes, 97_660_928);
        assert_eq!(u.swap_bytes, 0);
        assert_eq!(u.pseudo_terminals, 1);
        assert_eq!(u.wallclock_secs, 3601);
        assert_eq!(u.write_bps, 16384);
        assert_eq!(u.write_iops, 2);
        assert_eq!(u.all.len(), 25);
        assert_eq!(u.get("datasize"), Some(2_580_480));
        assert_eq!(u.get("stacksize"), Some(1_052_672));
        assert_eq!(u.get("nope"), None);
        // The kernel's NUL, or rctl(8)'s lines, change nothing.
        assert_eq!(parse_racct(&format!("{RACCT}\0")), Ok(u.clone()));
        assert_eq!(parse_racct(&RACCT.replace(',', "\n")), Ok(u));
    }

    #[test]
    fn racct_usage_keeps_unknown_resources_and_refuses_garbage() {
        let u = parse_racct("maxproc=1,newthing=7,pcpu=-1").expect("parses");
        assert_eq!(u.processes, 1);
        assert_eq!(u.get("newthing"), Some(7));
        assert_eq!(u.pcpu_percent, 0);
        for bad in ["", "\0", "maxproc", "maxproc=x", "=3", "maxproc=1,pcpu"] {
            let e = parse_racct(bad).expect_err("refused");
            assert!(
                matches!(e, RctlError::MalformedRacct { .. }),
                "{bad:?}: {e}"
            );
        }
    }
}
