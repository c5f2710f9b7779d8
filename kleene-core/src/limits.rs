//! Resource limits of containers (`--memory`, `--cpus`, `--cpuset-cpus`, `--pids-limit`)
//! and their usage (`container stats`): the model, and the engine's calls. The limits live
//! in the container's config and reach its jail at each start; a running container's
//! resource group (a cgroup on Linux, RCTL rules on FreeBSD) is named in its runtime
//! record, so updates, stats and the repair after a crash find it.

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{CoreError, Result};
use crate::model::{Container, RunState};
use crate::Id;

/// The parent of every container's cgroup (`/sys/fs/cgroup/<controller>/kleene/…`).
pub const CGROUP_PARENT: &str = "kleene";

/// A container's resource limits, with Docker's meanings. `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Limits {
    /// Hard memory limit in bytes (`--memory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`--memory-swap`); `-1` unlimited swap; without it, as
    /// much swap again as memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// CPUs in billionths (`--cpus 0.5` is 500000000), as Docker's `NanoCpus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<u64>,
    /// Relative CPU weight (`--cpu-shares`; 1024 is the default weight).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// CPUs it may run on (`--cpuset-cpus 0-2,4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes it may use (`--cpuset-mems`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
    /// Most processes at once (`--pids-limit`); `-1` unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

impl Limits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the memory limit in bytes.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// Sets memory plus swap in bytes (`-1`: unlimited swap).
    pub fn memory_swap(mut self, bytes: i64) -> Self {
        self.memory_swap = Some(bytes);
        self
    }

    /// Limits CPU time to `cpus` CPUs (`0.5`: half of one).
    pub fn cpus(mut self, cpus: f64) -> Self {
        self.nano_cpus = Some((cpus * 1e9).round().max(0.0) as u64);
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

    /// These limits with `update`'s where it has them.
    pub fn merged(&self, update: &Limits) -> Limits {
        Limits {
            memory: update.memory.or(self.memory),
            memory_swap: update.memory_swap.or(self.memory_swap),
            nano_cpus: update.nano_cpus.or(self.nano_cpus),
            cpu_shares: update.cpu_shares.or(self.cpu_shares),
            cpuset_cpus: update.cpuset_cpus.clone().or(self.cpuset_cpus.clone()),
            cpuset_mems: update.cpuset_mems.clone().or(self.cpuset_mems.clone()),
            pids: update.pids.or(self.pids),
        }
    }

    /// The jail's limits.
    pub fn resources(&self) -> kleene_jail::Resources {
        let mut r = kleene_jail::Resources::new();
        r.memory = self.memory;
        r.memory_swap = self.memory_swap;
        if let Some(nano) = self.nano_cpus {
            let period = kleene_jail::CPU_PERIOD_US;
            r = r.cpu_quota(
                (nano as u128 * period as u128 / 1_000_000_000) as i64,
                period,
            );
        }
        r.cpu_shares = self.cpu_shares;
        r.cpuset_cpus = self.cpuset_cpus.clone();
        r.cpuset_mems = self.cpuset_mems.clone();
        r.pids = self.pids;
        r
    }

    /// Refuses limits no host takes, naming the limit.
    pub fn validate(&self) -> Result<()> {
        if self.nano_cpus == Some(0) {
            return Err(CoreError::InvalidInput(
                "invalid cpus: must be more than 0".into(),
            ));
        }
        self.resources()
            .validate()
            .map_err(|e| CoreError::InvalidInput(limit_text(e)))
    }
}

fn limit_text(e: kleene_jail::Error) -> String {
    match e {
        kleene_jail::Error::InvalidConfig(text) => text,
        other => other.to_string(),
    }
}

/// A running container's use of resources, from its group's own accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerStats {
    /// The container.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// When the figures were read (Unix time in milliseconds).
    pub read_ms: i64,
    /// CPU time used since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Its memory limit (`None`: unlimited).
    pub memory_limit: Option<u64>,
    /// Processes (and threads).
    pub pids: u64,
    /// Its process limit (`None`: unlimited).
    pub pids_limit: Option<u64>,
    /// Processes killed for want of memory.
    pub oom_kills: u64,
    /// Forks refused at the process limit.
    pub pids_limit_hits: u64,
    /// Periods in which it ran out of CPU quota.
    pub cpu_throttled_periods: u64,
}

impl Engine {
    /// The resource use of a running container (`klee container stats`).
    pub async fn container_stats(&self, reference: &str) -> Result<ContainerStats> {
        let c = self.container(reference).await?;
        let group = running_group(&c)?;
        let usage = tokio::task::spawn_blocking(move || group.usage())
            .await
            .map_err(|e| CoreError::Internal(format!("reading stats: {e}")))?
            .map_err(|e| {
                CoreError::jail(
                    format!("reading the resource use of container {}", c.name),
                    e,
                )
            })?;
        Ok(ContainerStats {
            id: c.id.clone(),
            name: c.name.clone(),
            read_ms: now_ms(),
            cpu_ns: usage.cpu_ns,
            memory_bytes: usage.memory_bytes,
            memory_limit: usage.memory_limit,
            pids: usage.pids,
            pids_limit: usage.pids_limit,
            oom_kills: usage.oom_kills,
            pids_limit_hits: usage.pids_limit_hits,
            cpu_throttled_periods: usage.cpu_throttled_periods,
        })
    }
}

/// The resource group of a running container.
fn running_group(c: &Container) -> Result<kleene_jail::ResourceGroup> {
    if c.runtime.state != RunState::Running {
        return Err(CoreError::NotRunning {
            name: c.name.clone(),
        });
    }
    let Some(locator) = &c.runtime.resource_group else {
        return Err(CoreError::Unsupported(format!(
            "container {} has no resource group (the host mounts no cgroup hierarchy)",
            c.name
        )));
    };
    kleene_jail::ResourceGroup::from_locator(locator)
        .map_err(|e| CoreError::jail(format!("finding the resource group of {}", c.name), e))
}

/// Applies `limits` to a running container's group now.
pub(crate) fn apply_live(c: &Container, limits: &Limits) -> Result<()> {
    let group = running_group(c)?;
    group.update(&limits.resources()).map_err(|e| {
        CoreError::jail(
            format!(
                "updating the limits of running container {} (the update is kept and takes effect at its next start)",
                c.name
            ),
            e,
        )
    })
}

/// Removes the group a dead container left (its monitor killed): processes left in it
/// are killed first.
pub(crate) fn remove_left_group(locator: &str) {
    if let Ok(g) = kleene_jail::ResourceGroup::from_locator(locator) {
        let _ = g.remove();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_become_the_quota_of_a_100ms_period() {
        let r = Limits::new().cpus(0.5).resources();
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        let r = Limits::new().cpus(1.5).resources();
        assert_eq!(r.cpu_quota, Some(150_000));
    }

    #[test]
    fn bad_limits_name_themselves() {
        let e = Limits::new().memory(10).validate().expect_err("refused");
        assert!(e.to_string().contains("memory limit"), "{e}");
        let e = Limits::new().cpus(0.0).validate().expect_err("refused");
        assert!(e.to_string().contains("cpus"), "{e}");
        let e = Limits::new().pids(-5).validate().expect_err("refused");
        assert!(e.to_string().contains("pids limit"), "{e}");
        assert!(Limits::new()
            .memory(64 << 20)
            .cpus(0.5)
            .pids(20)
            .validate()
            .is_ok());
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name_and_json_omits_unset() {
        let l = Limits::new().memory(64 << 20).pids(10);
        let u = l.merged(&Limits::new().pids(20));
        assert_eq!(u, Limits::new().memory(64 << 20).pids(20));
        let json = serde_json::to_string(&u).expect("json");
        assert_eq!(json, r#"{"memory":67108864,"pids":20}"#);
        let back: Limits = serde_json::from_str("{}").expect("json");
        assert!(back.is_empty());
    }
}
