//! Resource limits of a jail: what Docker's `--memory`, `--cpus`, `--cpuset-cpus` and
//! `--pids-limit` set, and the files of a cgroup (v1 and v2) they become. Pure: the
//! cgroup backend (Linux) and rctl (FreeBSD) apply them.

use crate::error::{Error, Result};

/// The CFS period Docker uses for `--cpus`, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The least memory limit accepted, as Docker's (6 MiB).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Resource limits for a jail. Every field is optional; `None` leaves the resource
/// unlimited (at creation) or unchanged (in an update).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resources {
    /// Hard memory limit in bytes (`--memory`).
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`--memory-swap`); `-1` is unlimited swap. Without it, a
    /// memory limit allows as much swap again, as Docker's.
    pub memory_swap: Option<i64>,
    /// CPU time per period in microseconds (`--cpu-quota`; `--cpus` sets it); `-1` is
    /// unlimited.
    pub cpu_quota: Option<i64>,
    /// The period of `cpu_quota` in microseconds (`--cpu-period`, 100000 by default).
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (`--cpu-shares`, 1024 is the default weight).
    pub cpu_shares: Option<u64>,
    /// CPUs it may run on, as a list (`0-2,4`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes it may use, as a list.
    pub cpuset_mems: Option<String>,
    /// Most processes (and threads) at once (`--pids-limit`); `-1` is unlimited.
    pub pids: Option<i64>,
    /// Device access rules, applied in order over "everything allowed" (the device
    /// cgroup; cgroup v1's `devices` controller). Empty: the group's devices are not
    /// restricted (an update leaves them as they are).
    pub devices: Vec<DeviceRule>,
}

/// A device cgroup rule: allow or deny access to devices of a kind and number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (else deny).
    pub allow: bool,
    /// `'c'` (character), `'b'` (block) or `'a'` (all).
    pub kind: char,
    /// The major number; `None` is any.
    pub major: Option<u32>,
    /// The minor number; `None` is any.
    pub minor: Option<u32>,
    /// Any of `r` (read), `w` (write), `m` (mknod).
    pub access: String,
}

impl DeviceRule {
    /// Allows `access` to devices `kind` `major:minor` (`None`: any).
    pub fn allow(kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> Self {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// Denies access to every device.
    pub fn deny_all() -> Self {
        DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        }
    }

    /// The rule as `devices.allow`/`devices.deny` take it: `c 1:3 rwm`, `a *:* rwm`.
    pub fn line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    /// Docker's default rules: nothing but mknod of any device, and the standard
    /// character devices (null, zero, full, random, urandom, tty, console, ptmx, the
    /// ptys, tun).
    pub fn docker_defaults() -> Vec<DeviceRule> {
        let mut rules = vec![
            DeviceRule::deny_all(),
            DeviceRule::allow('c', None, None, "m"),
            DeviceRule::allow('b', None, None, "m"),
        ];
        for (major, minor) in [
            (1, Some(3)),
            (1, Some(5)),
            (1, Some(7)),
            (1, Some(8)),
            (1, Some(9)),
            (5, Some(0)),
            (5, Some(1)),
            (5, Some(2)),
            (136, None),
            (10, Some(200)),
        ] {
            rules.push(DeviceRule::allow('c', Some(major), minor, "rwm"));
        }
        rules
    }

    fn validate(&self) -> Result<()> {
        let ok_access =
            !self.access.is_empty() && self.access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
        if !matches!(self.kind, 'a' | 'b' | 'c') || !ok_access {
            return Err(Error::InvalidConfig(format!(
                "invalid device rule {:?}: the type is a, b or c and the access r, w, m",
                self.line()
            )));
        }
        Ok(())
    }
}

impl Resources {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the hard memory limit in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// Sets memory plus swap in bytes (`-1`: unlimited swap).
    pub fn memory_swap(mut self, bytes: i64) -> Self {
        self.memory_swap = Some(bytes);
        self
    }

    /// Limits CPU time to `cpus` CPUs (`--cpus 0.5`): a quota of that share of each
    /// 100 ms period.
    pub fn cpus(mut self, cpus: f64) -> Self {
        // Rounded as Docker's NanoCPUs: 1e9 per CPU, quota = nano * period / 1e9.
        let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
        self.cpu_quota = Some(quota);
        self.cpu_period = Some(CPU_PERIOD_US);
        self
    }

    /// Sets the CFS quota and period in microseconds.
    pub fn cpu_quota(mut self, quota: i64, period: u64) -> Self {
        self.cpu_quota = Some(quota);
        self.cpu_period = Some(period);
        self
    }

    /// Sets the relative CPU weight.
    pub fn cpu_shares(mut self, shares: u64) -> Self {
        self.cpu_shares = Some(shares);
        self
    }

    /// Sets the CPUs it may run on.
    pub fn cpuset_cpus(mut self, cpus: impl Into<String>) -> Self {
        self.cpuset_cpus = Some(cpus.into());
        self
    }

    /// Sets the memory nodes it may use.
    pub fn cpuset_mems(mut self, mems: impl Into<String>) -> Self {
        self.cpuset_mems = Some(mems.into());
        self
    }

    /// Sets the most processes at once (`-1`: unlimited).
    pub fn pids(mut self, pids: i64) -> Self {
        self.pids = Some(pids);
        self
    }

    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `other`'s fields where it has them, else this one's (an update).
    pub fn merged(&self, other: &Resources) -> Resources {
        Resources {
            memory: other.memory.or(self.memory),
            memory_swap: other.memory_swap.or(self.memory_swap),
            cpu_quota: other.cpu_quota.or(self.cpu_quota),
            cpu_period: other.cpu_period.or(self.cpu_period),
            cpu_shares: other.cpu_shares.or(self.cpu_shares),
            cpuset_cpus: other
                .cpuset_cpus
                .clone()
                .or_else(|| self.cpuset_cpus.clone()),
            cpuset_mems: other
                .cpuset_mems
                .clone()
                .or_else(|| self.cpuset_mems.clone()),
            pids: other.pids.or(self.pids),
            devices: if other.devices.is_empty() {
                self.devices.clone()
            } else {
                other.devices.clone()
            },
        }
    }

    /// Refuses values no kernel takes, naming the limit.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, reason: String| {
            Err(Error::InvalidConfig(format!("invalid {what}: {reason}")))
        };
        if let Some(m) = self.memory {
            if m < MIN_MEMORY {
                return bad(
                    "memory limit",
                    format!("{m} bytes is below the minimum of 6MiB"),
                );
            }
        }
        if let Some(s) = self.memory_swap {
            if s != -1 {
                let Some(m) = self.memory else {
                    return bad(
                        "memory-swap limit",
                        "it needs a memory limit too".to_string(),
                    );
                };
                if s < 0 || (s as u64) < m {
                    return bad(
                        "memory-swap limit",
                        format!("{s} must be -1 or at least the memory limit ({m})"),
                    );
                }
            }
        }
        if let Some(p) = self.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return bad(
                    "cpu period",
                    format!("{p}us is not between 1000 and 1000000"),
                );
            }
        }
        if let Some(q) = self.cpu_quota {
            if q != -1 && q < 1000 {
                return bad(
                    "cpu quota",
                    format!("{q}us is below 1000us (--cpus below 0.01)"),
                );
            }
        }
        if let Some(s) = self.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return bad("cpu shares", format!("{s} is not between 2 and 262144"));
            }
        }
        for (what, list) in [
            ("cpuset-cpus", &self.cpuset_cpus),
            ("cpuset-mems", &self.cpuset_mems),
        ] {
            if let Some(list) = list {
                if parse_list(list).is_none() {
                    return bad(what, format!("{list:?} is not a list like 0-2,4"));
                }
            }
        }
        if let Some(p) = self.pids {
            if p == 0 || p < -1 {
                return bad("pids limit", format!("{p} must be -1 or positive"));
            }
        }
        for d in &self.devices {
            d.validate()?;
        }
        Ok(())
    }

    /// The writes to a v1 hierarchy, in order: controller, file, value. `memsw` says
    /// whether the memory controller accounts swap (`memory.memsw.*` exists).
    pub fn cgroup_v1(&self, memsw: bool) -> Vec<(Controller, &'static str, String)> {
        let mut w = Vec::new();
        if let Some(m) = self.memory {
            w.push((Controller::Memory, "memory.limit_in_bytes", m.to_string()));
            if memsw {
                let total = self.swap_total(m);
                w.push((Controller::Memory, "memory.memsw.limit_in_bytes", total));
            }
        }
        if let Some(s) = self.cpu_shares {
            w.push((Controller::Cpu, "cpu.shares", s.to_string()));
        }
        if let Some(p) = self.cpu_period {
            w.push((Controller::Cpu, "cpu.cfs_period_us", p.to_string()));
        }
        if let Some(q) = self.cpu_quota {
            w.push((Controller::Cpu, "cpu.cfs_quota_us", q.to_string()));
        }
        if let Some(c) = &self.cpuset_cpus {
            w.push((Controller::Cpuset, "cpuset.cpus", c.clone()));
        }
        if let Some(m) = &self.cpuset_mems {
            w.push((Controller::Cpuset, "cpuset.mems", m.clone()));
        }
        if let Some(p) = self.pids {
            let v = if p < 0 {
                "max".to_string()
            } else {
                p.to_string()
            };
            w.push((Controller::Pids, "pids.max", v));
        }
        for d in &self.devices {
            let file = if d.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            w.push((Controller::Devices, file, d.line()));
        }
        w
    }

    /// The writes to a v2 group, in order: file, value.
    pub fn cgroup_v2(&self) -> Vec<(&'static str, String)> {
        let mut w = Vec::new();
        if let Some(m) = self.memory {
            w.push(("memory.max", m.to_string()));
            let swap = match self.memory_swap {
                Some(-1) => "max".to_string(),
                Some(total) => (total as u64).saturating_sub(m).to_string(),
                None => m.to_string(),
            };
            w.push(("memory.swap.max", swap));
        }
        if let Some(s) = self.cpu_shares {
            w.push(("cpu.weight", shares_to_weight(s).to_string()));
        }
        if self.cpu_quota.is_some() || self.cpu_period.is_some() {
            let quota = match self.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let period = self.cpu_period.unwrap_or(CPU_PERIOD_US);
            w.push(("cpu.max", format!("{quota} {period}")));
        }
        if let Some(c) = &self.cpuset_cpus {
            w.push(("cpuset.cpus", c.clone()));
        }
        if let Some(m) = &self.cpuset_mems {
            w.push(("cpuset.mems", m.clone()));
        }
        if let Some(p) = self.pids {
            let v = if p < 0 {
                "max".to_string()
            } else {
                p.to_string()
            };
            w.push(("pids.max", v));
        }
        w
    }

    /// memory.memsw's value for memory limit `m`.
    fn swap_total(&self, m: u64) -> String {
        match self.memory_swap {
            Some(-1) => "-1".to_string(),
            Some(total) => total.to_string(),
            // Docker's default: as much swap as memory.
            None => m.saturating_mul(2).to_string(),
        }
    }
}

/// A v1 controller the engine manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Controller {
    /// `memory`: limits and usage.
    Memory,
    /// `pids`: the process count.
    Pids,
    /// `cpu`: quota, period and shares.
    Cpu,
    /// `cpuacct`: CPU time used.
    Cpuacct,
    /// `cpuset`: CPUs and memory nodes.
    Cpuset,
    /// `devices`: which device nodes may be used (v1).
    Devices,
    /// `freezer`: pausing every process of the group (v1).
    Freezer,
}

impl Controller {
    /// Every controller a container's group joins.
    pub const ALL: [Controller; 7] = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Devices,
        Controller::Freezer,
    ];

    /// Its name in `/proc/self/cgroup` and mount options.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
        }
    }
}

/// cgroup v2's `cpu.weight` for v1 shares, as runc and crun convert.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// The CPUs or nodes of a list like `0-2,4`; `None` if it is malformed.
pub fn parse_list(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let n: u32 = part.trim().parse().ok()?;
                (n, n)
            }
        };
        if a > b || b - a > 65_536 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// A byte size as Docker's options take it: a number with an optional unit `b`, `k`,
/// `m`, `g` (powers of 1024, either case, an optional trailing `b`): `256m`, `1g`.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    // "256mb" is 256 MiB; a bare trailing "b" is bytes.
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {text:?}: use a number with k, m or g"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid size {text:?}: must not be negative"));
    }
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_sizes_parse() {
        assert_eq!(parse_bytes("256m"), Ok(256 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512mb"), Ok(512 << 20));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("100b"), Ok(100));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn cpus_become_a_quota_of_the_100ms_period() {
        let r = Resources::new().cpus(0.5);
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.cgroup_v2(), vec![("cpu.max", "50000 100000".to_string())]);
        let v1 = r.cgroup_v1(false);
        assert_eq!(
            v1,
            vec![
                (Controller::Cpu, "cpu.cfs_period_us", "100000".to_string()),
                (Controller::Cpu, "cpu.cfs_quota_us", "50000".to_string()),
            ]
        );
    }

    #[test]
    fn memory_allows_as_much_swap_again_unless_told() {
        let r = Resources::new().memory(64 << 20);
        assert_eq!(
            r.cgroup_v1(true),
            vec![
                (
                    Controller::Memory,
                    "memory.limit_in_bytes",
                    "67108864".into()
                ),
                (
                    Controller::Memory,
                    "memory.memsw.limit_in_bytes",
                    "134217728".into()
                ),
            ]
        );
        assert_eq!(
            r.cgroup_v2(),
            vec![
                ("memory.max", "67108864".into()),
                ("memory.swap.max", "67108864".into())
            ]
        );
        let no_swap = r.clone().memory_swap(64 << 20);
        assert_eq!(no_swap.cgroup_v2()[1], ("memory.swap.max", "0".into()));
        let unlimited = r.memory_swap(-1);
        assert_eq!(unlimited.cgroup_v2()[1], ("memory.swap.max", "max".into()));
        assert_eq!(unlimited.cgroup_v1(true)[1].2, "-1");
        assert_eq!(unlimited.cgroup_v1(false).len(), 1);
    }

    #[test]
    fn pids_shares_and_cpusets() {
        let r = Resources::new()
            .pids(20)
            .cpu_shares(512)
            .cpuset_cpus("0")
            .cpuset_mems("0");
        assert_eq!(
            r.cgroup_v2(),
            vec![
                ("cpu.weight", "20".into()),
                ("cpuset.cpus", "0".into()),
                ("cpuset.mems", "0".into()),
                ("pids.max", "20".into()),
            ]
        );
        assert_eq!(Resources::new().pids(-1).cgroup_v1(false)[0].2, "max");
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn bad_limits_are_refused_by_name() {
        let e = |r: Resources| r.validate().expect_err("refused").to_string();
        assert!(e(Resources::new().memory(1024)).contains("memory limit"));
        assert!(e(Resources::new().memory_swap(1 << 30)).contains("memory-swap"));
        assert!(e(Resources::new().memory(64 << 20).memory_swap(1 << 20)).contains("memory-swap"));
        assert!(e(Resources::new().cpus(0.001)).contains("cpu quota"));
        assert!(e(Resources::new().cpu_shares(1)).contains("cpu shares"));
        assert!(e(Resources::new().cpuset_cpus("0-x")).contains("cpuset-cpus"));
        assert!(e(Resources::new().cpuset_cpus("3-1")).contains("cpuset-cpus"));
        assert!(e(Resources::new().pids(0)).contains("pids limit"));
        assert!(Resources::new()
            .memory(64 << 20)
            .memory_swap(-1)
            .cpus(1.5)
            .pids(-1)
            .cpuset_cpus("0-1,3")
            .validate()
            .is_ok());
        assert_eq!(parse_list("0-2,4"), Some(vec![0, 1, 2, 4]));
    }

    #[test]
    fn device_rules_become_allow_and_deny_lines_in_order() {
        let mut r = Resources::new();
        r.devices = DeviceRule::docker_defaults();
        let w = r.cgroup_v1(false);
        assert_eq!(
            w[0],
            (Controller::Devices, "devices.deny", "a *:* rwm".into())
        );
        assert_eq!(
            w[1],
            (Controller::Devices, "devices.allow", "c *:* m".into())
        );
        assert!(w.contains(&(Controller::Devices, "devices.allow", "c 136:* rwm".into())));
        assert!(w.contains(&(Controller::Devices, "devices.allow", "c 1:3 rwm".into())));
        assert!(r.validate().is_ok());
        r.devices.push(DeviceRule::allow('x', None, None, "rwm"));
        assert!(r.validate().is_err());
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let old = Resources::new().memory(64 << 20).pids(10);
        let new = old.merged(&Resources::new().pids(20));
        assert_eq!(new, Resources::new().memory(64 << 20).pids(20));
    }
}
