//! A jail's resource group, one API over the platforms: a cgroup on Linux, the jail's
//! RCTL rules on FreeBSD. Named by a locator string that outlives the process which made
//! it, so an engine can update, read and remove it later (after a crash, too).

use crate::cgroup::{Cgroup, Hierarchy, Usage};
use crate::error::{Error, Result};
use crate::resources::Resources;

/// Where a jail's limits live and its usage is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cgroup(Cgroup),
    /// FreeBSD: the RCTL rules and racct usage of the jail with this name.
    Rctl(String),
}

impl ResourceGroup {
    /// The group for the jail `name` under `parent`: on Linux the cgroup `parent/name` in
    /// the host's hierarchy (made when the jail starts); on FreeBSD the jail's RCTL rules
    /// (`name` must then be the jail's name; `parent` is not used). `None` where the host
    /// has neither (no cgroup filesystem mounted).
    pub fn plan(parent: &str, name: &str) -> Result<Option<ResourceGroup>> {
        if cfg!(target_os = "freebsd") {
            crate::rctl::check_jail_name(name)?;
            return Ok(Some(ResourceGroup {
                kind: Kind::Rctl(name.to_string()),
            }));
        }
        match Hierarchy::detect()? {
            Some(h) => Ok(Some(ResourceGroup {
                kind: Kind::Cgroup(Cgroup::new(h, parent, name)?),
            })),
            None => Ok(None),
        }
    }

    /// The group a [`ResourceGroup::locator`] names.
    pub fn from_locator(locator: &str) -> Result<ResourceGroup> {
        if let Some(name) = locator.strip_prefix("rctl:jail:") {
            return Ok(ResourceGroup {
                kind: Kind::Rctl(name.to_string()),
            });
        }
        Ok(ResourceGroup {
            kind: Kind::Cgroup(Cgroup::from_locator(locator)?),
        })
    }

    /// Names the group across processes (`cgroup1:kleene/ID`, `rctl:jail:NAME`).
    pub fn locator(&self) -> String {
        match &self.kind {
            Kind::Cgroup(g) => g.locator(),
            Kind::Rctl(name) => format!("rctl:jail:{name}"),
        }
    }

    /// The jail whose RCTL rules it is, on FreeBSD.
    pub fn rctl_jail(&self) -> Option<&str> {
        match &self.kind {
            Kind::Rctl(name) => Some(name),
            Kind::Cgroup(_) => None,
        }
    }

    /// Whether it can restrict devices ([`crate::Resources::devices`]): a cgroup v1
    /// hierarchy with the `devices` controller, or cgroup v2 (an eBPF program).
    pub fn filters_devices(&self) -> bool {
        match &self.kind {
            Kind::Cgroup(g) => g.is_v2() || g.has_controller(crate::Controller::Devices),
            Kind::Rctl(_) => false,
        }
    }

    /// The cgroup, on Linux.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        match &self.kind {
            Kind::Cgroup(g) => Some(g),
            Kind::Rctl(_) => None,
        }
    }

    /// Makes the joins of the groups that follow within a few milliseconds quick (the jail
    /// starting in this group): on Linux, starts the wait for the RCU grace period the
    /// kernel makes the first move between cgroups after a quiet spell do (8–20 ms),
    /// on a thread, by writing this process back into its own group. Moves nothing;
    /// nothing on FreeBSD. Call it a few milliseconds before [`crate::JailConfig::start`].
    ///
    /// Returns the thread (`None` where nothing was started), which may be left to run:
    /// its result tells whether the write went through.
    pub fn warm_joins(&self) -> Option<std::thread::JoinHandle<std::io::Result<()>>> {
        match &self.kind {
            Kind::Cgroup(g) => crate::cgroup::warm_joins(g.hierarchy()),
            Kind::Rctl(_) => None,
        }
    }

    /// Makes the group with `limits` (Linux; on FreeBSD the rules are added once the jail
    /// exists, by its start).
    pub(crate) fn create(&self, limits: &Resources) -> Result<()> {
        match &self.kind {
            Kind::Cgroup(g) => g.create(limits),
            Kind::Rctl(_) => Ok(()),
        }
    }

    /// Changes the limits of a running jail: only those given change.
    pub fn update(&self, limits: &Resources) -> Result<()> {
        match &self.kind {
            Kind::Cgroup(g) => g.update(limits),
            Kind::Rctl(name) => rctl_update(name, limits),
        }
    }

    /// What the jail's processes use now.
    pub fn usage(&self) -> Result<Usage> {
        match &self.kind {
            Kind::Cgroup(g) => g.usage(),
            Kind::Rctl(name) => rctl_usage(name),
        }
    }

    /// Removes the group, killing what is left in it; one already gone is fine.
    pub fn remove(&self) -> Result<()> {
        match &self.kind {
            Kind::Cgroup(g) => g.remove(),
            Kind::Rctl(name) => rctl_remove(name),
        }
    }

    /// Pauses (`true`) or resumes every process of the jail (Linux: the freezer).
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        match &self.kind {
            Kind::Cgroup(g) => g.freeze(frozen),
            Kind::Rctl(_) => Err(Error::UnsupportedSetting {
                setting: "pausing a jail".into(),
                platform: "FreeBSD",
            }),
        }
    }

    /// Whether its processes are paused.
    pub fn is_frozen(&self) -> bool {
        match &self.kind {
            Kind::Cgroup(g) => g.is_frozen(),
            Kind::Rctl(_) => false,
        }
    }

    /// Whether it still exists (a cgroup's directory; RCTL rules are not looked up).
    pub fn exists(&self) -> bool {
        match &self.kind {
            Kind::Cgroup(g) => g.exists(),
            Kind::Rctl(_) => false,
        }
    }
}

/// RCTL, on FreeBSD; a group of that kind named elsewhere (by its locator) has no rules
/// to change or read, and none to remove.
#[cfg(target_os = "freebsd")]
use crate::sys::{rctl_remove, rctl_update, rctl_usage};

#[cfg(not(target_os = "freebsd"))]
fn rctl_update(_jail: &str, _limits: &Resources) -> Result<()> {
    Err(Error::UnsupportedSetting {
        setting: "rctl limits".into(),
        platform: crate::PLATFORM,
    })
}

#[cfg(not(target_os = "freebsd"))]
fn rctl_usage(_jail: &str) -> Result<Usage> {
    Err(Error::UnsupportedSetting {
        setting: "rctl usage".into(),
        platform: crate::PLATFORM,
    })
}

#[cfg(not(target_os = "freebsd"))]
fn rctl_remove(_jail: &str) -> Result<()> {
    Ok(())
}

/// Limits without a group to hold them are refused.
pub(crate) fn check(limits: &Resources, group: Option<&ResourceGroup>) -> Result<()> {
    limits.validate()?;
    if !limits.is_empty() && group.is_none() {
        return Err(Error::LimitUnavailable {
            limit: "resource limits".into(),
            reason: "no resource group: the host mounts no cgroup hierarchy, or none was given \
                     (JailConfig::resource_group)"
                .into(),
        });
    }
    Ok(())
}
