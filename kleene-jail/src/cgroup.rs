//! Linux control groups, v1 and v2, through the cgroup filesystem: a group per jail under
//! an engine-owned parent at the root of each hierarchy (`/sys/fs/cgroup/memory/kleene/ID`
//! on v1, `/sys/fs/cgroup/kleene/ID` on v2), its limits written from [`Resources`], its
//! usage read back. Only `std::fs` is used, so the logic runs (and is tested) against any
//! directory tree laid out like the cgroup filesystem.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::resources::{Controller, Resources};

/// How long [`Cgroup::remove`] waits for the group's processes to die.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cgroup hierarchies of the host, as `/proc/self/mountinfo` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: each managed controller's mount point (co-mounted controllers share one).
    V1(Vec<(Controller, PathBuf)>),
    /// cgroup v2 (unified): its mount point.
    V2(PathBuf),
}

impl Hierarchy {
    /// The host's hierarchy: v2 where its mount has the memory or pids controller, else
    /// the v1 controllers mounted; `None` when neither is.
    pub fn detect() -> Result<Option<Hierarchy>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
        Ok(Self::from_mountinfo(&text, |p| {
            std::fs::read_to_string(p.join("cgroup.controllers")).ok()
        }))
    }

    /// The hierarchy `mountinfo` describes; `controllers` reads a v2 mount's
    /// `cgroup.controllers`.
    pub fn from_mountinfo(
        mountinfo: &str,
        controllers: impl Fn(&Path) -> Option<String>,
    ) -> Option<Hierarchy> {
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = match left.split(' ').nth(4) {
                Some(p) => PathBuf::from(unescape(p)),
                None => continue,
            };
            let mut right = right.split(' ');
            let (fstype, _source, options) = (right.next(), right.next(), right.next());
            match fstype {
                Some("cgroup2") => {
                    let usable = controllers(&mount_point).is_some_and(|c| {
                        c.split_whitespace().any(|c| c == "memory" || c == "pids")
                    });
                    if usable && v2.is_none() {
                        v2 = Some(mount_point);
                    }
                }
                Some("cgroup") => {
                    let options = options.unwrap_or("");
                    for c in Controller::ALL {
                        if options.split(',').any(|o| o == c.name())
                            && !v1.iter().any(|(have, _)| *have == c)
                        {
                            v1.push((c, mount_point.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2 {
            return Some(Hierarchy::V2(root));
        }
        (!v1.is_empty()).then_some(Hierarchy::V1(v1))
    }

    fn version(&self) -> u8 {
        match self {
            Hierarchy::V1(_) => 1,
            Hierarchy::V2(_) => 2,
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// A group's name relative to the hierarchy roots: `parent/name`, each a plain name.
fn relative(parent: &str, name: &str) -> Result<PathBuf> {
    let plain = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0', '\n', ' ', ':'])
    };
    for part in parent.split('/').chain([name]) {
        if !plain(part) {
            return Err(Error::InvalidConfig(format!(
                "invalid cgroup name {parent}/{name}: each part must be a plain name"
            )));
        }
    }
    Ok(Path::new(parent).join(name))
}

/// A jail's control group: the same relative path in each hierarchy it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    path: PathBuf,
}

impl Cgroup {
    /// The group `parent/name` (not made yet) in `hierarchy`.
    pub fn new(hierarchy: Hierarchy, parent: &str, name: &str) -> Result<Cgroup> {
        Ok(Cgroup {
            hierarchy,
            path: relative(parent, name)?,
        })
    }

    /// The group a [`Cgroup::locator`] names, in the host's hierarchy.
    pub fn from_locator(locator: &str) -> Result<Cgroup> {
        let bad = || Error::InvalidConfig(format!("invalid cgroup locator {locator:?}"));
        let (version, path) = locator.split_once(':').ok_or_else(bad)?;
        let (parent, name) = path.rsplit_once('/').ok_or_else(bad)?;
        let hierarchy = Hierarchy::detect()?.ok_or_else(|| Error::LimitUnavailable {
            limit: format!("cgroup {path}"),
            reason: "no cgroup hierarchy is mounted".into(),
        })?;
        let want = match version {
            "cgroup1" => 1,
            "cgroup2" => 2,
            _ => return Err(bad()),
        };
        if hierarchy.version() != want {
            return Err(Error::InvalidConfig(format!(
                "cgroup {path} was made on cgroup v{want}; this host mounts v{}",
                hierarchy.version()
            )));
        }
        Cgroup::new(hierarchy, parent, name)
    }

    /// Names the group across processes: `cgroup1:kleene/ID` or `cgroup2:kleene/ID`.
    pub fn locator(&self) -> String {
        format!("cgroup{}:{}", self.hierarchy.version(), self.path.display())
    }

    /// Its directories: one per distinct mount point (v1), or the one (v2).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(root) => vec![root.join(&self.path)],
            Hierarchy::V1(mounts) => {
                let mut out: Vec<PathBuf> = Vec::new();
                for (_, m) in mounts {
                    let d = m.join(&self.path);
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
                out
            }
        }
    }

    /// The directory of `c` (v1) or the group's (v2); `None` when `c` is not mounted.
    fn dir_of(&self, c: Controller) -> Option<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2(root) => Some(root.join(&self.path)),
            Hierarchy::V1(mounts) => mounts
                .iter()
                .find(|(have, _)| *have == c)
                .map(|(_, m)| m.join(&self.path)),
        }
    }

    /// The hierarchy it is in.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Whether it is a cgroup v2 group.
    pub fn is_v2(&self) -> bool {
        matches!(self.hierarchy, Hierarchy::V2(_))
    }

    /// Whether the v1 controller `c` is mounted (always false on v2, whose controllers
    /// are not the same set).
    pub fn has_controller(&self, c: Controller) -> bool {
        match &self.hierarchy {
            Hierarchy::V1(m) => m.iter().any(|(have, _)| *have == c),
            Hierarchy::V2(_) => false,
        }
    }

    /// The `cgroup.procs` files a process writes `0` to in order to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Makes the group (and its parent) and writes `limits`. A limit whose controller is
    /// not mounted is an error naming it. On failure nothing new is left behind.
    pub fn create(&self, limits: &Resources) -> Result<()> {
        limits.validate()?;
        self.check_controllers(limits)?;
        match &self.hierarchy {
            Hierarchy::V2(root) => self.create_v2(root)?,
            Hierarchy::V1(_) => self.create_v1()?,
        }
        if let Err(e) = self.update(limits) {
            let _ = self.remove();
            return Err(e);
        }
        Ok(())
    }

    fn check_controllers(&self, limits: &Resources) -> Result<()> {
        let needs = [
            (limits.memory.is_some(), Controller::Memory),
            (limits.pids.is_some(), Controller::Pids),
            (
                limits.cpu_quota.is_some() || limits.cpu_shares.is_some(),
                Controller::Cpu,
            ),
            (
                limits.cpuset_cpus.is_some() || limits.cpuset_mems.is_some(),
                Controller::Cpuset,
            ),
            (
                !limits.devices.is_empty() && matches!(self.hierarchy, Hierarchy::V1(_)),
                Controller::Devices,
            ),
        ];
        for (needed, c) in needs {
            let mounted = match &self.hierarchy {
                Hierarchy::V1(m) => m.iter().any(|(have, _)| *have == c),
                Hierarchy::V2(root) => std::fs::read_to_string(root.join("cgroup.controllers"))
                    .map(|s| s.split_whitespace().any(|x| x == c.name()))
                    .unwrap_or(false),
            };
            if needed && !mounted {
                return Err(Error::LimitUnavailable {
                    limit: format!("{} limit", c.name()),
                    reason: format!("the {} cgroup controller is not available", c.name()),
                });
            }
        }
        Ok(())
    }

    fn create_v1(&self) -> Result<()> {
        let Hierarchy::V1(mounts) = &self.hierarchy else {
            return Ok(());
        };
        let mut made = Vec::new();
        for (c, m) in mounts {
            let dir = m.join(&self.path);
            if made.contains(&dir) {
                continue;
            }
            let result = make_dirs(m, &self.path, |level, parent| {
                if *c == Controller::Cpuset {
                    // A new cpuset group has no CPUs or memory nodes until given its
                    // parent's.
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        copy_if_empty(parent, level, file)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                let _ = self.remove();
                return Err(e);
            }
            made.push(dir);
        }
        Ok(())
    }

    fn create_v2(&self, root: &Path) -> Result<()> {
        let available = std::fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(|e| Error::io(format!("read {}", root.display()), e))?;
        let enable: Vec<String> = ["cpu", "cpuset", "memory", "pids"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        let result = make_dirs(root, &self.path, |_level, parent| {
            // Controllers reach a group only through each ancestor's subtree_control.
            let control = parent.join("cgroup.subtree_control");
            let on = std::fs::read_to_string(&control).unwrap_or_default();
            for e in &enable {
                if !on.split_whitespace().any(|c| c == &e[1..]) {
                    write_file(&control, e)?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = self.remove();
            return Err(e);
        }
        Ok(())
    }

    /// Writes `limits` to the running group (`container update`): only the limits given
    /// change.
    pub fn update(&self, limits: &Resources) -> Result<()> {
        limits.validate()?;
        self.check_controllers(limits)?;
        match &self.hierarchy {
            Hierarchy::V2(root) => {
                let dir = root.join(&self.path);
                if !limits.devices.is_empty() {
                    attach_device_filter(&dir, &limits.devices)?;
                }
                for (file, value) in limits.cgroup_v2() {
                    if file == "memory.swap.max" && !dir.join(file).exists() {
                        continue; // no swap accounting on this kernel
                    }
                    write_file(&dir.join(file), &value)?;
                }
            }
            Hierarchy::V1(_) => {
                let memsw = self
                    .dir_of(Controller::Memory)
                    .is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists());
                let writes = limits.cgroup_v1(memsw);
                let mut i = 0;
                while i < writes.len() {
                    let (c, file, value) = &writes[i];
                    let dir = self.dir_of(*c).ok_or_else(|| Error::LimitUnavailable {
                        limit: format!("{} limit", c.name()),
                        reason: format!("the {} cgroup controller is not mounted", c.name()),
                    })?;
                    let next_is_memsw = writes
                        .get(i + 1)
                        .is_some_and(|w| w.1 == "memory.memsw.limit_in_bytes");
                    if *file == "memory.limit_in_bytes" && next_is_memsw {
                        // memsw may never be below memory: raise it first when growing.
                        let (_, f2, v2) = &writes[i + 1];
                        if write_file(&dir.join(file), value).is_err() {
                            write_file(&dir.join(f2), v2)?;
                            write_file(&dir.join(file), value)?;
                        } else {
                            write_file(&dir.join(f2), v2)?;
                        }
                        i += 2;
                        continue;
                    }
                    write_file(&dir.join(file), value)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// What the group's processes use now.
    pub fn usage(&self) -> Result<Usage> {
        let mut u = Usage::default();
        let read = |c: Controller, file: &str| -> Option<String> {
            let d = self.dir_of(c)?;
            std::fs::read_to_string(d.join(file)).ok()
        };
        let num = |text: Option<String>| -> Option<u64> { text?.trim().parse().ok() };
        let limit = |text: Option<String>| -> Option<u64> {
            let t = text?;
            let t = t.trim();
            // v1 reports "unlimited" as a huge page-aligned number.
            match t.parse::<u64>() {
                Ok(v) if v < (1u64 << 62) => Some(v),
                _ => None,
            }
        };
        if self.dirs().iter().all(|d| !d.exists()) {
            return Err(Error::io(
                format!("read the cgroup {}", self.path.display()),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        u.pids = num(read(Controller::Pids, "pids.current")).unwrap_or(0);
        u.pids_limit = limit(read(Controller::Pids, "pids.max"));
        u.pids_limit_hits = field(read(Controller::Pids, "pids.events"), "max").unwrap_or(0);
        match &self.hierarchy {
            Hierarchy::V1(_) => {
                u.memory_bytes =
                    num(read(Controller::Memory, "memory.usage_in_bytes")).unwrap_or(0);
                u.memory_limit = limit(read(Controller::Memory, "memory.limit_in_bytes"));
                u.memory_peak = num(read(Controller::Memory, "memory.max_usage_in_bytes"));
                u.oom_kills =
                    field(read(Controller::Memory, "memory.oom_control"), "oom_kill").unwrap_or(0);
                u.cpu_ns = num(read(Controller::Cpuacct, "cpuacct.usage")).unwrap_or(0);
                let stat = read(Controller::Cpu, "cpu.stat");
                u.cpu_periods = field(stat.clone(), "nr_periods").unwrap_or(0);
                u.cpu_throttled_periods = field(stat.clone(), "nr_throttled").unwrap_or(0);
                u.cpu_throttled_ns = field(stat, "throttled_time").unwrap_or(0);
            }
            Hierarchy::V2(_) => {
                u.memory_bytes = num(read(Controller::Memory, "memory.current")).unwrap_or(0);
                u.memory_limit = limit(read(Controller::Memory, "memory.max"));
                u.memory_peak = num(read(Controller::Memory, "memory.peak"));
                u.oom_kills =
                    field(read(Controller::Memory, "memory.events"), "oom_kill").unwrap_or(0);
                let stat = read(Controller::Cpu, "cpu.stat");
                u.cpu_ns = field(stat.clone(), "usage_usec").unwrap_or(0) * 1000;
                u.cpu_periods = field(stat.clone(), "nr_periods").unwrap_or(0);
                u.cpu_throttled_periods = field(stat.clone(), "nr_throttled").unwrap_or(0);
                u.cpu_throttled_ns = field(stat, "throttled_usec").unwrap_or(0) * 1000;
            }
        }
        Ok(u)
    }

    /// The pids of the group's processes.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in self.dirs() {
            if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in text.lines().filter_map(|l| l.trim().parse().ok()) {
                    if !out.contains(&pid) {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }

    /// Kills what is left in the group and removes it from every hierarchy. A group that
    /// is already gone is fine.
    pub fn remove(&self) -> Result<()> {
        if self.is_frozen() {
            // A frozen task dies only once thawed.
            let _ = self.freeze(false);
        }
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        // A group is usually empty a moment after its last process was reaped: asked again
        // soon, then less and less often.
        let mut pause = Duration::from_micros(250);
        let mut backoff = || {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        };
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SIGKILL to a pid read from the group; a pid reused meanwhile would have
                // to have been moved into this group, which only the engine does.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if Instant::now() > deadline {
                return Err(Error::io(
                    format!("empty the cgroup {}", self.path.display()),
                    io::Error::from(io::ErrorKind::TimedOut),
                ));
            }
            backoff();
        }
        for d in self.dirs() {
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // A task that just died can hold the group a moment longer.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        backoff();
                    }
                    Err(e) => {
                        return Err(Error::io(format!("remove the cgroup {}", d.display()), e))
                    }
                }
            }
        }
        Ok(())
    }

    /// Freezes (pauses) or thaws every process of the group, and waits until the kernel
    /// says it is done: v1's freezer controller, v2's `cgroup.freeze`.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let (file, value, state_file, done): (PathBuf, &str, PathBuf, &str) = match &self.hierarchy
        {
            Hierarchy::V1(_) => {
                let dir =
                    self.dir_of(Controller::Freezer)
                        .ok_or_else(|| Error::LimitUnavailable {
                            limit: "pausing".into(),
                            reason: "the freezer cgroup controller is not mounted".into(),
                        })?;
                let v = if frozen { "FROZEN" } else { "THAWED" };
                (dir.join("freezer.state"), v, dir.join("freezer.state"), v)
            }
            Hierarchy::V2(root) => {
                let dir = root.join(&self.path);
                let (v, d) = if frozen {
                    ("1", "frozen 1")
                } else {
                    ("0", "frozen 0")
                };
                (dir.join("cgroup.freeze"), v, dir.join("cgroup.events"), d)
            }
        };
        loop {
            write_file(&file, value)?;
            let now = std::fs::read_to_string(&state_file)
                .map_err(|e| Error::io(format!("read {}", state_file.display()), e))?;
            if now.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::io(
                    format!(
                        "{} the cgroup {}",
                        if frozen { "freeze" } else { "thaw" },
                        self.path.display()
                    ),
                    io::Error::from(io::ErrorKind::TimedOut),
                ));
            }
            // v1 answers FREEZING while tasks are still on their way.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the group is frozen (paused).
    pub fn is_frozen(&self) -> bool {
        match &self.hierarchy {
            Hierarchy::V1(_) => self
                .dir_of(Controller::Freezer)
                .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
                .is_some_and(|s| s.trim() == "FROZEN"),
            Hierarchy::V2(root) => {
                std::fs::read_to_string(root.join(&self.path).join("cgroup.events"))
                    .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }

    /// Whether any of its directories exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }
}

/// The `cgroup.procs` files of the groups process `pid` is in, where they differ from
/// this process's own: what a process started beside it (an `exec`) joins.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn procs_files_of(pid: i32) -> Vec<PathBuf> {
    let Ok(Some(h)) = Hierarchy::detect() else {
        return Vec::new();
    };
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    groups_to_join(
        &h,
        &read(&format!("/proc/{pid}/cgroup")),
        &read("/proc/self/cgroup"),
    )
}

/// The `cgroup.procs` files of the groups in `theirs` (a `/proc/PID/cgroup`) that differ
/// from `ours`, in hierarchy `h`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn groups_to_join(h: &Hierarchy, theirs: &str, ours: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |mount: &Path, controller: Option<&str>| {
        let (Some(t), o) = (group_path(theirs, controller), group_path(ours, controller)) else {
            return;
        };
        if Some(&t) == o.as_ref() {
            return;
        }
        let file = mount.join(t.trim_start_matches('/')).join("cgroup.procs");
        if !out.contains(&file) {
            out.push(file);
        }
    };
    match h {
        Hierarchy::V2(root) => add(root, None),
        Hierarchy::V1(mounts) => {
            for (c, m) in mounts {
                add(m, Some(c.name()));
            }
        }
    }
    out
}

/// The group path a `/proc/PID/cgroup` text gives for `controller` (v1), or for the
/// unified hierarchy (`None`): its lines are "ID:controllers:path", v2's without
/// controllers. A path with `..` (which would leave the hierarchy) is none.
fn group_path(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = match controller {
                None => ctls.is_empty(),
                Some(c) => ctls.split(',').any(|x| x == c),
            };
            hit.then(|| path.to_string())
        })
        .filter(|p| !p.contains(".."))
}

/// The `cgroup.procs` file of the group `ours` (a `/proc/self/cgroup`) names in the first
/// hierarchy of `h`: where this process writes itself back into its own group.
fn own_procs_file(h: &Hierarchy, ours: &str) -> Option<PathBuf> {
    let (mount, controller) = match h {
        Hierarchy::V2(root) => (root, None),
        Hierarchy::V1(mounts) => {
            let (c, m) = mounts.first()?;
            (m, Some(c.name()))
        }
    };
    let path = group_path(ours, controller)?;
    Some(
        mount
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs"),
    )
}

/// Starts, on a thread of its own, the wait that the kernel makes the first move of a
/// process between cgroups after a quiet spell do, so that a jail joining its groups
/// within the next few milliseconds does not wait for one of its own.
///
/// Every move takes the kernel's `cgroup_threadgroup_rwsem` for writing, and the first
/// writer after a quiet spell waits for an RCU grace period (8–20 ms on a 2-CPU VM;
/// the writers that follow within about a grace period do not). The thread writes this
/// process back into its own group of one hierarchy, which moves nothing but takes the
/// lock. Best effort: a failure only means the join waits as it would have.
pub(crate) fn warm_joins(h: &Hierarchy) -> Option<std::thread::JoinHandle<io::Result<()>>> {
    let ours = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let file = own_procs_file(h, &ours)?;
    std::thread::Builder::new()
        .name("kleene-cgroup".into())
        .spawn(move || {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)?
                .write_all(b"0")
        })
        .ok()
}

/// cgroup v1's hierarchies as a jail's `/sys/fs/cgroup` shows them (runc's emulation of a
/// `cgroup` mount on v1): each hierarchy's name (its mount point's last part: `memory`,
/// `cpu`, `systemd`) and the host directory of the jail's group in it — `group`'s where
/// it has one there, else the group this process is in.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn v1_views(group: Option<&Cgroup>) -> Result<Vec<(String, PathBuf)>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("read /proc/self/cgroup", e))?;
    Ok(v1_views_of(&mountinfo, &own, group))
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn v1_views_of(mountinfo: &str, own: &str, group: Option<&Cgroup>) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let options = right.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4).map(|p| PathBuf::from(unescape(p))) else {
            continue;
        };
        let Some(name) = mount_point
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let keys: Vec<&str> = options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
            .collect();
        // The jail's own group, where it has one in this hierarchy.
        let dir = group
            .and_then(|g| {
                g.dirs()
                    .into_iter()
                    .find(|d| d.starts_with(&mount_point) && d != &mount_point)
            })
            .or_else(|| {
                // Else where this process is: the line of /proc/self/cgroup whose
                // controllers are this mount's.
                own.lines().find_map(|l| {
                    let mut p = l.splitn(3, ':');
                    let (_, ctls, path) = (p.next()?, p.next()?, p.next()?);
                    (!ctls.is_empty() && ctls.split(',').all(|c| keys.contains(&c)))
                        .then(|| mount_point.join(path.trim_start_matches('/')))
                })
            })
            .unwrap_or_else(|| mount_point.clone());
        out.push((name, dir));
    }
    out
}

/// What a group's processes use, from the group's own accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// CPU time used, in nanoseconds.
    pub cpu_ns: u64,
    /// CFS periods that passed while it had a quota.
    pub cpu_periods: u64,
    /// Periods in which it ran out of quota.
    pub cpu_throttled_periods: u64,
    /// Time it spent throttled, in nanoseconds.
    pub cpu_throttled_ns: u64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// The memory limit; `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// The most memory it used, where the kernel tells.
    pub memory_peak: Option<u64>,
    /// Processes killed for running out of memory.
    pub oom_kills: u64,
    /// Processes (and threads) now.
    pub pids: u64,
    /// The process limit; `None`: unlimited.
    pub pids_limit: Option<u64>,
    /// Forks refused at the process limit.
    pub pids_limit_hits: u64,
}

/// cgroup v2's device rules: an eBPF program attached to the group (Linux).
fn attach_device_filter(dir: &Path, rules: &[crate::DeviceRule]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        crate::devfilter::attach(dir, rules).map_err(|e| Error::LimitUnavailable {
            limit: "device rules".into(),
            reason: format!(
                "loading the cgroup v2 device filter of {}: {e}",
                dir.display()
            ),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = rules;
        Err(Error::LimitUnavailable {
            limit: "device rules".into(),
            reason: format!("{} is a cgroup v2 group, which is Linux's", dir.display()),
        })
    }
}

/// The value of `key` in a `key value` file (`memory.oom_control`, `cpu.stat`).
fn field(text: Option<String>, key: &str) -> Option<u64> {
    text?.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// Makes each level of `path` under `root` that is missing, calling `setup(level,
/// parent)` on each one made.
fn make_dirs(
    root: &Path,
    path: &Path,
    mut setup: impl FnMut(&Path, &Path) -> Result<()>,
) -> Result<()> {
    let mut parent = root.to_path_buf();
    for part in path.components() {
        let level = parent.join(part);
        match std::fs::create_dir(&level) {
            Ok(()) => setup(&level, &parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // An existing parent is set up already; an existing leaf is a group of the
                // same name left behind: reused, its limits rewritten.
                setup(&level, &parent)?;
            }
            Err(e) => return Err(Error::io(format!("make the cgroup {}", level.display()), e)),
        }
        parent = level;
    }
    Ok(())
}

fn copy_if_empty(parent: &Path, level: &Path, file: &str) -> Result<()> {
    let have = std::fs::read_to_string(level.join(file)).unwrap_or_default();
    if !have.trim().is_empty() {
        return Ok(());
    }
    let value = std::fs::read_to_string(parent.join(file))
        .map_err(|e| Error::io(format!("read {}", parent.join(file).display()), e))?;
    write_file(&level.join(file), value.trim())
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| Error::io(format!("write {value:?} to {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/cpuset rw,relatime shared:14 - cgroup cgroup rw,cpuset
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_controllers_are_found_and_an_empty_unified_mount_ignored() {
        let h = Hierarchy::from_mountinfo(V1, |_| Some("hugetlb\n".into())).expect("v1");
        let Hierarchy::V1(m) = &h else {
            panic!("not v1: {h:?}")
        };
        assert_eq!(m.len(), 5);
        assert!(m.contains(&(Controller::Memory, "/sys/fs/cgroup/memory".into())));
        let g = Cgroup::new(h, "kleene", "abc").expect("group");
        assert_eq!(g.locator(), "cgroup1:kleene/abc");
        assert!(g.procs_files().contains(&PathBuf::from(
            "/sys/fs/cgroup/pids/kleene/abc/cgroup.procs"
        )));
    }

    #[test]
    fn a_unified_mount_with_controllers_wins() {
        let info = "36 30 0:32 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_mountinfo(info, |_| Some("cpuset cpu io memory pids".into()));
        assert_eq!(h, Some(Hierarchy::V2("/sys/fs/cgroup".into())));
        let co = "31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let Some(Hierarchy::V1(m)) = Hierarchy::from_mountinfo(co, |_| None) else {
            panic!("no v1")
        };
        assert_eq!(m.len(), 2);
        let g = Cgroup::new(Hierarchy::V1(m), "kleene", "x").expect("group");
        assert_eq!(
            g.dirs().len(),
            1,
            "co-mounted controllers share a directory"
        );
    }

    #[test]
    fn names_must_be_plain() {
        let h = Hierarchy::V2("/sys/fs/cgroup".into());
        for (p, n) in [
            ("kleene", ".."),
            ("../x", "a"),
            ("kleene", "a/b"),
            ("", "a"),
        ] {
            assert!(Cgroup::new(h.clone(), p, n).is_err(), "{p}/{n} accepted");
        }
        assert!(Cgroup::new(h, "kleene/test", "a1").is_ok());
    }

    /// A fake v2 tree: a root with controllers, its files written as the kernel would
    /// take them.
    fn fake_v2() -> (tempfile::TempDir, Cgroup) {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu memory pids\n",
        )
        .expect("write");
        std::fs::write(t.path().join("cgroup.subtree_control"), "").expect("write");
        let g = Cgroup::new(Hierarchy::V2(t.path().into()), "kleene", "c1").expect("group");
        (t, g)
    }

    #[test]
    fn v2_groups_enable_controllers_and_take_limits() {
        let (t, g) = fake_v2();
        // The kernel makes a group's files; the fake makes them once the group exists.
        let dir = t.path().join("kleene/c1");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(t.path().join("kleene/cgroup.subtree_control"), "").expect("write");
        for f in [
            "memory.max",
            "memory.swap.max",
            "cpu.max",
            "pids.max",
            "cpuset.cpus",
        ] {
            std::fs::write(dir.join(f), "").expect("write");
        }
        let limits = Resources::new()
            .memory(64 << 20)
            .cpus(0.5)
            .pids(20)
            .cpuset_cpus("0");
        g.create(&limits).expect("create");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "20");
        assert_eq!(read("cpuset.cpus"), "0");
        // subtree_control got each controller enabled (the fake keeps the last write).
        assert!(
            std::fs::read_to_string(t.path().join("cgroup.subtree_control"))
                .expect("read")
                .starts_with('+')
        );
        std::fs::write(dir.join("memory.current"), "1234\n").expect("write");
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("write");
        std::fs::write(dir.join("pids.current"), "3\n").expect("write");
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 20\n",
        )
        .expect("write");
        let u = g.usage().expect("usage");
        assert_eq!(u.memory_bytes, 1234);
        assert_eq!(u.memory_limit, Some(64 << 20));
        assert_eq!(u.oom_kills, 1);
        assert_eq!(u.pids, 3);
        assert_eq!(u.pids_limit, Some(20));
        assert_eq!(u.cpu_ns, 1_500_000);
        assert_eq!((u.cpu_periods, u.cpu_throttled_periods), (10, 4));
        g.update(&Resources::new().pids(30)).expect("update");
        assert_eq!(read("pids.max"), "30");
        assert_eq!(
            read("memory.max"),
            "67108864",
            "an update keeps what it does not name"
        );
    }

    #[test]
    fn a_limit_without_its_controller_is_refused_by_name() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("cgroup.controllers"), "memory\n").expect("write");
        let g = Cgroup::new(Hierarchy::V2(t.path().into()), "kleene", "c2").expect("group");
        let e = g.create(&Resources::new().pids(5)).expect_err("refused");
        assert!(e.to_string().contains("pids cgroup controller"), "{e}");
        assert!(!t.path().join("kleene/c2").exists());
    }

    #[test]
    fn an_exec_joins_the_groups_of_the_jail_that_differ() {
        let h = Hierarchy::V1(vec![
            (Controller::Memory, "/cg/memory".into()),
            (Controller::Pids, "/cg/pids".into()),
        ]);
        let theirs = "4:memory:/kleene/a\n8:pids:/kleene/a\n1:cpu:/\n";
        let ours = "4:memory:/session\n8:pids:/kleene/a\n1:cpu:/\n";
        assert_eq!(
            groups_to_join(&h, theirs, ours),
            vec![PathBuf::from("/cg/memory/kleene/a/cgroup.procs")]
        );
        let v2 = Hierarchy::V2("/cg".into());
        assert_eq!(
            groups_to_join(&v2, "0::/kleene/b\n", "0::/\n"),
            vec![PathBuf::from("/cg/kleene/b/cgroup.procs")]
        );
        assert!(groups_to_join(&v2, "0::/\n", "0::/\n").is_empty());
    }

    #[test]
    fn warming_writes_this_process_back_into_its_own_group() {
        let h = Hierarchy::V1(vec![
            (Controller::Pids, "/cg/pids".into()),
            (Controller::Memory, "/cg/memory".into()),
        ]);
        let ours = "4:memory:/session\n8:pids:/user.slice/x\n";
        assert_eq!(
            own_procs_file(&h, ours),
            Some(PathBuf::from("/cg/pids/user.slice/x/cgroup.procs"))
        );
        let v2 = Hierarchy::V2("/cg".into());
        assert_eq!(
            own_procs_file(&v2, "0::/\n"),
            Some(PathBuf::from("/cg/cgroup.procs"))
        );
        // No line for the hierarchy, or a path leaving it: nothing is written.
        assert_eq!(own_procs_file(&v2, "4:memory:/a\n"), None);
        assert_eq!(own_procs_file(&h, "8:pids:/../x\n"), None);
        assert_eq!(own_procs_file(&Hierarchy::V1(Vec::new()), ours), None);
    }

    #[test]
    fn a_jails_cgroup_view_binds_its_own_groups() {
        let own = "9:name=systemd:/\n4:memory:/session\n8:pids:/\n1:cpu:/\n3:cpuacct:/\n5:cpuset:/\n6:devices:/\n";
        let info = format!(
            "{V1}40 30 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        );
        let h = Hierarchy::from_mountinfo(&info, |_| None).expect("v1");
        let g = Cgroup::new(h, "kleene", "c1").expect("group");
        let views = v1_views_of(&info, own, Some(&g));
        let find = |n: &str| {
            views
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, d)| d.clone())
        };
        assert_eq!(
            find("memory"),
            Some("/sys/fs/cgroup/memory/kleene/c1".into())
        );
        assert_eq!(find("systemd"), Some("/sys/fs/cgroup/systemd".into()));
        // Without a group: where this process is.
        let views = v1_views_of(&info, own, None);
        let find = |n: &str| {
            views
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, d)| d.clone())
        };
        assert_eq!(find("memory"), Some("/sys/fs/cgroup/memory/session".into()));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
