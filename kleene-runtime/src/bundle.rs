//! A bundle's config.json, read and checked: every field the runtime honours is turned
//! into kleene-jail's settings, and every field it cannot honour here is refused by its
//! JSON path, never ignored where ignoring it would weaken isolation.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use kleene_jail::{
    Capabilities, ExecConfig, JailConfig, Mount, MountFlags, Namespace, NamespaceMode, NetNs,
    NetworkMode, Propagation, Rlimit, WinSize,
};
use oci_spec::runtime::{
    Hooks, LinuxCapabilities, LinuxNamespaceType, Mount as OciMount, Process, Spec,
};

use crate::error::{Error, Result};

/// The runtime spec versions read (1.0.0 up to 1.2.x).
fn version_supported(v: &str) -> bool {
    let mut parts = v.split('.');
    matches!(
        (parts.next(), parts.next()),
        (Some("1"), Some("0" | "1" | "2"))
    )
}

/// A bundle ready to start.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory (absolute).
    pub dir: PathBuf,
    /// Its root filesystem (absolute).
    pub rootfs: PathBuf,
    pub oci_version: String,
    /// What the first process runs in: namespaces, mounts, paths, sysctls.
    pub jail: JailConfig,
    /// Whether the first process has a terminal (sent over the console socket).
    pub terminal: bool,
    pub hooks: Hooks,
    pub annotations: BTreeMap<String, String>,
    /// config.json's process, as written.
    pub process: Process,
    /// config.json's `linux` (its cgroupsPath is read at create, with the id).
    pub linux: oci_spec::runtime::Linux,
    /// The limits of `linux.resources`, given to the container's cgroup.
    pub resources: kleene_jail::Resources,
    /// `linux.seccomp`, as config.json has it (for the processes of `exec`).
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// config.json as read: FreeBSD maps it to a jail at create, with the container's id
    /// ([`crate::freebsd::jail_config_for`]).
    pub spec: Spec,
    /// config.json's `freebsd` section (runtime-spec 1.3), which [`Spec`] drops: read from
    /// the document on FreeBSD, `None` elsewhere.
    pub freebsd: Option<crate::freebsd::FreebsdSection>,
    /// The first process, as kleene-jail's (outliving the runtime).
    pub exec: ExecConfig,
}

/// Reads `<dir>/config.json`.
pub fn load(dir: &Path) -> Result<Bundle> {
    let dir =
        std::path::absolute(dir).map_err(|e| Error::io(format!("bundle {}", dir.display()), e))?;
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::Config {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Config {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    #[cfg(target_os = "freebsd")]
    {
        let raw: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let section = crate::freebsd::freebsd_section(&raw)?;
        from_spec_freebsd(&dir, spec, section)
    }
    #[cfg(not(target_os = "freebsd"))]
    from_spec(&dir, &spec)
}

/// Checks a spec whose bundle directory is `dir` for a FreeBSD jail: what is common to
/// both platforms (version, root, process, hooks); the jail itself is mapped at create,
/// when the container's id (its name) is known ([`Bundle::for_freebsd_jail`]). The Linux
/// mapping is not applied: `jail` is the root and the first process only, until then.
pub fn from_spec_freebsd(
    dir: &Path,
    spec: Spec,
    section: Option<crate::freebsd::FreebsdSection>,
) -> Result<Bundle> {
    if !version_supported(spec.version()) {
        return Err(Error::invalid(
            "ociVersion",
            format!(
                "{:?} is not a version 1.0 to 1.2 of the runtime spec",
                spec.version()
            ),
        ));
    }
    let (rootfs, _readonly) = rootfs_of(dir, &spec)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing: the container needs a process"))?
        .clone();
    let (exec, terminal) = process_config(&process, "process")?;
    // The caller (conmon, containerd's shim) reaps the process once the runtime has
    // exited: it must outlive the runtime.
    let exec = exec.kill_with_owner(false);
    let hooks = hooks_of(&spec)?;
    Ok(Bundle {
        dir: dir.to_path_buf(),
        jail: JailConfig::new(&rootfs).process(exec.clone()),
        rootfs,
        oci_version: spec.version().clone(),
        terminal,
        hooks,
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        process,
        // The FreeBSD mapping takes linux.resources as RCTL rules and refuses
        // linux.seccomp.
        linux: oci_spec::runtime::Linux::default(),
        resources: kleene_jail::Resources::new(),
        seccomp: None,
        spec,
        freebsd: section,
        exec,
    })
}

impl Bundle {
    /// The bundle's jail on FreeBSD, named `id`: config.json and its `freebsd` section
    /// mapped by [`crate::freebsd::jail_config_for`] (the jail's parameters, network,
    /// mounts, RCTL limits), running the first process. Refuses what the mapping refuses.
    pub fn for_freebsd_jail(mut self, id: &str) -> Result<Bundle> {
        self.jail = crate::freebsd::jail_config_for(
            id,
            &self.spec,
            self.freebsd.as_ref(),
            &self.rootfs,
            self.exec.clone(),
        )?;
        Ok(self)
    }
}

/// Checks and converts a spec whose bundle directory is `dir`.
pub fn from_spec(dir: &Path, spec: &Spec) -> Result<Bundle> {
    if !version_supported(spec.version()) {
        return Err(Error::invalid(
            "ociVersion",
            format!(
                "{:?} is not a version 1.0 to 1.2 of the runtime spec",
                spec.version()
            ),
        ));
    }
    let (rootfs, readonly) = rootfs_of(dir, spec)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing: the container needs a process"))?;
    let (exec, terminal) = process_config(process, "process")?;
    // The caller (conmon, containerd's shim) reaps the process once the runtime has
    // exited: it must outlive the runtime.
    let exec = exec.kill_with_owner(false);
    let mut jail = JailConfig::new(&rootfs)
        .standard_mounts(false)
        .readonly_root(readonly)
        .process(exec.clone());
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        jail = jail.hostname(h);
    }
    if spec.domainname().as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(Error::unsupported(
            "domainname",
            "setting the NIS domain name",
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let at = format!("mounts[{i}]");
        let copy_up = parse_options(m.options().as_deref().unwrap_or_default()).copy_up;
        if copy_up {
            check_copy_up(&rootfs, m.destination(), &at)?;
        }
        jail = jail.mount(mount(m, &at)?);
    }
    jail = linux(jail, spec)?;
    let l = spec.linux().clone().unwrap_or_default();
    let resources = match l.resources() {
        Some(r) => crate::limits::resources(r)?,
        None => kleene_jail::Resources::new(),
    };
    if let Some(profile) = crate::limits::seccomp(&l)? {
        jail = jail.seccomp(profile);
    }
    let hooks = hooks_of(spec)?;
    Ok(Bundle {
        dir: dir.to_path_buf(),
        rootfs,
        oci_version: spec.version().clone(),
        jail,
        terminal,
        hooks,
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        process: process.clone(),
        seccomp: l.seccomp().clone(),
        resources,
        linux: l,
        spec: spec.clone(),
        freebsd: None,
        exec,
    })
}

/// The root file system (absolute, a directory) and whether it is read-only.
fn rootfs_of(dir: &Path, spec: &Spec) -> Result<(PathBuf, bool)> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(Error::invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    Ok((rootfs, root.readonly().unwrap_or(false)))
}

/// The hooks this runtime runs; those that run inside the container's namespaces are
/// refused.
fn hooks_of(spec: &Spec) -> Result<Hooks> {
    let hooks = spec.hooks().clone().unwrap_or_default();
    if hooks
        .create_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(Error::unsupported(
            "hooks.createContainer",
            "hooks run in the container's namespaces before pivot_root",
        ));
    }
    if hooks
        .start_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(Error::unsupported(
            "hooks.startContainer",
            "hooks run in the container's namespaces",
        ));
    }
    Ok(hooks)
}

/// A process (the first one, or one for `exec`) as kleene-jail's: argv, env, cwd, user,
/// capabilities, rlimits, no_new_privileges, oom_score_adj; and whether it has a terminal.
pub fn process_config(p: &Process, at: &str) -> Result<(ExecConfig, bool)> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid(
            format!("{at}.args"),
            "empty: nothing to run",
        ));
    }
    if p.command_line().is_some() {
        return Err(Error::unsupported(
            format!("{at}.commandLine"),
            "a Windows field",
        ));
    }
    let cwd = p.cwd();
    if !cwd.is_absolute() {
        return Err(Error::invalid(
            format!("{at}.cwd"),
            format!("{} is not absolute", cwd.display()),
        ));
    }
    let user = p.user();
    let mut exec = ExecConfig::new(args)
        .exact_env(true)
        .workdir(cwd)
        .user(format!("{}:{}", user.uid(), user.gid()));
    for (i, kv) in p.env().iter().flatten().enumerate() {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Error::invalid(format!("{at}.env[{i}]"), format!("{kv:?} is not KEY=VALUE"))
        })?;
        exec = exec.env(k, v);
    }
    // Exactly these groups, none when not given (runc's setgroups).
    exec = exec.additional_gids(user.additional_gids().clone().unwrap_or_default());
    if let Some(umask) = user.umask() {
        exec = exec.umask(umask);
    }
    if let Some(caps) = p.capabilities() {
        exec = exec.capabilities(capabilities(caps, &format!("{at}.capabilities"))?);
    }
    exec = limits(exec, p, at)?;
    refuse_unsupported_process_fields(p, at)?;
    let terminal = p.terminal().unwrap_or(false);
    if terminal {
        let size = p
            .console_size()
            .map(|b| WinSize {
                rows: b.height() as u16,
                cols: b.width() as u16,
            })
            .unwrap_or(WinSize { rows: 24, cols: 80 });
        // As runc: the terminal of the container's own devpts (Linux).
        exec = exec.tty(size).jail_terminal(cfg!(target_os = "linux"));
    }
    Ok((exec, terminal))
}

/// rlimits, no_new_privileges and oomScoreAdj.
fn limits(mut exec: ExecConfig, p: &Process, at: &str) -> Result<ExecConfig> {
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        // The spec's name, RLIMIT_NOFILE, as serde writes it.
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let resource = Rlimit::from_name(&name)
            .ok_or_else(|| Error::unsupported(format!("{at}.rlimits[{i}].type"), name.clone()))?;
        if r.soft() > r.hard() {
            return Err(Error::invalid(
                format!("{at}.rlimits[{i}]"),
                format!(
                    "soft limit {} is over the hard limit {}",
                    r.soft(),
                    r.hard()
                ),
            ));
        }
        exec = exec.rlimit(resource, r.soft(), r.hard());
    }
    if let Some(nnp) = p.no_new_privileges() {
        exec = exec.no_new_privileges(nnp);
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::invalid(
                format!("{at}.oomScoreAdj"),
                format!("{adj} is not in -1000..=1000"),
            ));
        }
        exec = exec.oom_score_adj(adj);
    }
    Ok(exec)
}

/// The process fields this runtime cannot honour: refused, never ignored.
fn refuse_unsupported_process_fields(p: &Process, at: &str) -> Result<()> {
    for (field, set) in [
        (
            "apparmorProfile",
            p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "selinuxLabel",
            p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()),
        ),
        ("ioPriority", p.io_priority().is_some()),
        ("scheduler", p.scheduler().is_some()),
        ("execCPUAffinity", p.exec_cpu_affinity().is_some()),
    ] {
        if set {
            return Err(Error::unsupported(
                format!("{at}.{field}"),
                "not implemented",
            ));
        }
    }
    Ok(())
}

/// The five capability sets, each a bit mask (bit N = capability N).
fn capabilities(c: &LinuxCapabilities, at: &str) -> Result<Capabilities> {
    let mask = |set: &Option<oci_spec::runtime::Capabilities>, name: &str| -> Result<u64> {
        let mut m = 0u64;
        for cap in set.iter().flatten() {
            let text = cap.to_string();
            let n = kleene_jail::capability_number(&text).ok_or_else(|| {
                Error::unsupported(
                    format!("{at}.{name}"),
                    format!("{text} is unknown to this kernel"),
                )
            })?;
            m |= 1u64 << n;
        }
        Ok(m)
    };
    Ok(Capabilities {
        bounding: mask(c.bounding(), "bounding")?,
        effective: mask(c.effective(), "effective")?,
        permitted: mask(c.permitted(), "permitted")?,
        inheritable: mask(c.inheritable(), "inheritable")?,
        ambient: mask(c.ambient(), "ambient")?,
    })
}

/// A destination inside the root: absolute, without `..` (symlinks in it are resolved
/// by kleene-jail inside the root, never out of it).
fn destination(p: &Path, field: &str) -> Result<PathBuf> {
    if !p.is_absolute() {
        return Err(Error::invalid(
            field,
            format!("{} is not absolute", p.display()),
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid(field, format!("{} holds '..'", p.display())));
    }
    Ok(p.to_path_buf())
}

/// The mount options of config.json: flags, propagation, and the rest as the file
/// system's data (`mode=755,size=65536k`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: MountFlags,
    pub bind: bool,
    pub recursive: bool,
    pub propagation: Option<Propagation>,
    pub data: Vec<String>,
    /// `tmpcopyup` (runc's and crun's extension, podman's `--read-only`): the tmpfs starts
    /// with what the image has at its destination.
    pub copy_up: bool,
}

/// Parses mount options as runc does (`ro`, `nosuid`, `bind`, `rbind`, `rprivate`, ...).
pub fn parse_options(options: &[String]) -> Options {
    let mut o = Options::default();
    for opt in options {
        let f = &mut o.flags;
        match opt.as_str() {
            "ro" => f.read_only = true,
            "rw" => f.read_only = false,
            "nosuid" => f.nosuid = true,
            "suid" => f.nosuid = false,
            "nodev" => f.nodev = true,
            "dev" => f.nodev = false,
            "noexec" => f.noexec = true,
            "exec" => f.noexec = false,
            "noatime" => f.noatime = true,
            "atime" => f.noatime = false,
            "nodiratime" => f.nodiratime = true,
            "diratime" => f.nodiratime = false,
            "relatime" => f.relatime = true,
            "norelatime" => f.relatime = false,
            "strictatime" => f.strictatime = true,
            "nostrictatime" => f.strictatime = false,
            "sync" => f.sync = true,
            "async" => f.sync = false,
            "dirsync" => f.dirsync = true,
            "defaults" => {}
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" => o.propagation = Some(Propagation::Private),
            "rprivate" => o.propagation = Some(Propagation::RPrivate),
            "slave" => o.propagation = Some(Propagation::Slave),
            "rslave" => o.propagation = Some(Propagation::RSlave),
            "shared" => o.propagation = Some(Propagation::Shared),
            "rshared" => o.propagation = Some(Propagation::RShared),
            "unbindable" => o.propagation = Some(Propagation::Unbindable),
            "runbindable" => o.propagation = Some(Propagation::RUnbindable),
            "tmpcopyup" => o.copy_up = true,
            other => o.data.push(other.to_string()),
        }
    }
    o
}

/// `tmpcopyup` of what the image has at `dest`: nothing there (no directory, or an empty
/// one) is a plain tmpfs; content there is refused by name (copying it up is not done by
/// this version).
fn check_copy_up(rootfs: &Path, dest: &Path, at: &str) -> Result<()> {
    let root = kleene_rootfs::RootDir::open(rootfs)
        .map_err(|e| Error::invalid("root.path", e.to_string()))?;
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    let fd = match root.open_dir(rel, kleene_rootfs::Symlinks::FollowInRoot, false) {
        Ok(fd) => fd,
        // Missing: the mount point is made, empty.
        Err(_) => return Ok(()),
    };
    let dir = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    let has_files = std::fs::read_dir(&dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_files {
        return Err(Error::unsupported(
            format!("{at}.options"),
            format!(
                "tmpcopyup over {}, which has files in the image (copying them up)",
                dest.display()
            ),
        ));
    }
    Ok(())
}

fn mount(m: &OciMount, at: &str) -> Result<Mount> {
    let dest = destination(m.destination(), &format!("{at}.destination"))?;
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    if options.bind || typ == "bind" {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::invalid(format!("{at}.source"), "a bind mount needs one"))?;
        if !options.data.is_empty() {
            return Err(Error::unsupported(
                format!("{at}.options"),
                format!("{} on a bind mount", options.data.join(",")),
            ));
        }
        let mut mount = Mount::bind(source, dest)
            .recursive(options.recursive)
            .flags(options.flags);
        if let Some(p) = options.propagation {
            mount = mount.propagation(p);
        }
        return Ok(mount);
    }
    match typ {
        "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2" => {}
        "" => return Err(Error::invalid(format!("{at}.type"), "missing")),
        other => {
            return Err(Error::unsupported(
                format!("{at}.type"),
                format!("file system {other:?}"),
            ))
        }
    }
    let source = m
        .source()
        .as_ref()
        .map_or_else(|| PathBuf::from(typ), |s| s.clone());
    let mut mount = Mount::filesystem(typ, source, dest)
        .flags(options.flags)
        .data(options.data.join(","));
    if let Some(p) = options.propagation {
        mount = mount.propagation(p);
    }
    Ok(mount)
}

/// The `linux` object: namespaces, sysctls, masked and read-only paths, propagation; the
/// parts this runtime cannot honour yet are refused by name.
fn linux(mut jail: JailConfig, spec: &Spec) -> Result<JailConfig> {
    let Some(l) = spec.linux() else {
        return Err(Error::invalid(
            "linux",
            "missing: a Linux container needs its namespaces",
        ));
    };
    jail = namespaces(jail, l.namespaces().as_deref().unwrap_or_default())?;
    jail = user_namespace(jail, l)?;
    for (i, d) in l.devices().iter().flatten().enumerate() {
        let at = format!("linux.devices[{i}]");
        let kind = match d.typ().as_str() {
            "c" | "u" => 'c',
            "b" => 'b',
            "p" => 'p',
            other => {
                return Err(Error::invalid(
                    format!("{at}.type"),
                    format!("{other:?} is not c, u, b or p"),
                ))
            }
        };
        let path = destination(d.path(), &format!("{at}.path"))?;
        jail = jail.device(kleene_jail::DeviceNode {
            path,
            kind,
            major: u32::try_from(d.major())
                .map_err(|_| Error::invalid(format!("{at}.major"), "not a device number"))?,
            minor: u32::try_from(d.minor())
                .map_err(|_| Error::invalid(format!("{at}.minor"), "not a device number"))?,
            // The spec's fileMode may carry the type bits too (S_IFCHR).
            mode: d.file_mode().map_or(0o666, |m| m & 0o7777),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    refuse_unsupported_linux_fields(l)?;
    match l.rootfs_propagation().as_deref().unwrap_or("") {
        "" => {}
        p => {
            let o = parse_options(&[p.to_string()]);
            let Some(prop) = o.propagation else {
                return Err(Error::invalid(
                    "linux.rootfsPropagation",
                    format!("{p:?} is not a propagation"),
                ));
            };
            jail = jail.root_propagation(prop);
        }
    }
    for (i, p) in l.masked_paths().iter().flatten().enumerate() {
        jail = jail.masked_path(destination(
            Path::new(p),
            &format!("linux.maskedPaths[{i}]"),
        )?);
    }
    for (i, p) in l.readonly_paths().iter().flatten().enumerate() {
        jail = jail.readonly_path(destination(
            Path::new(p),
            &format!("linux.readonlyPaths[{i}]"),
        )?);
    }
    let mut sysctls: Vec<_> = l.sysctl().iter().flatten().collect();
    sysctls.sort();
    for (k, v) in sysctls {
        check_sysctl(k, l.namespaces().as_deref().unwrap_or_default())?;
        jail = jail.sysctl(k, v);
    }
    Ok(jail)
}

/// A new user namespace (`linux.namespaces` lists `user`) with `linux.uidMappings` and
/// `gidMappings`, as runc makes it: the root file system is used as it is (its owner
/// ids are the caller's business, as under runc).
fn user_namespace(jail: JailConfig, l: &oci_spec::runtime::Linux) -> Result<JailConfig> {
    let listed = l
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    let maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<kleene_jail::IdMapping> {
        m.iter()
            .flatten()
            .map(|m| kleene_jail::IdMapping::new(m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let (uids, gids) = (maps(l.uid_mappings()), maps(l.gid_mappings()));
    match (listed, uids.is_empty() && gids.is_empty()) {
        (false, true) => Ok(jail),
        (false, false) => Err(Error::invalid(
            "linux.uidMappings",
            "mappings without a user namespace in linux.namespaces",
        )),
        (true, _) if uids.is_empty() || gids.is_empty() => Err(Error::invalid(
            "linux.uidMappings",
            "a user namespace needs both uidMappings and gidMappings",
        )),
        (true, _) => Ok(jail.user_namespace(uids, gids)),
    }
}

/// The `linux` fields this runtime cannot honour yet: refused by name.
fn refuse_unsupported_linux_fields(l: &oci_spec::runtime::Linux) -> Result<()> {
    for (field, set) in [
        (
            "mountLabel",
            l.mount_label().as_ref().is_some_and(|s| !s.is_empty()),
        ),
        ("intelRdt", l.intel_rdt().is_some()),
        ("personality", l.personality().is_some()),
        ("timeOffsets", l.time_offsets().is_some()),
        ("memoryPolicy", l.memory_policy().is_some()),
        (
            "netDevices",
            l.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
    ] {
        if set {
            return Err(Error::unsupported(
                format!("linux.{field}"),
                "not implemented",
            ));
        }
    }
    Ok(())
}

/// runc's rule: only sysctls of a namespace the container has of its own.
fn check_sysctl(key: &str, ns: &[oci_spec::runtime::LinuxNamespace]) -> Result<()> {
    let has = |t: LinuxNamespaceType| ns.iter().any(|n| n.typ() == t && n.path().is_none());
    let field = format!("linux.sysctl.{key}");
    let ipc = matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || key.starts_with("fs.mqueue.");
    if ipc {
        return if has(LinuxNamespaceType::Ipc) {
            Ok(())
        } else {
            Err(Error::invalid(field, "needs a new ipc namespace"))
        };
    }
    if key.starts_with("net.") {
        return if ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network) {
            Ok(())
        } else {
            Err(Error::invalid(
                field,
                "needs a network namespace of the container's own",
            ))
        };
    }
    if matches!(key, "kernel.hostname" | "kernel.domainname") {
        return Err(Error::invalid(field, "set hostname and domainname instead"));
    }
    Err(Error::invalid(field, "not a namespaced sysctl"))
}

fn namespaces(
    mut jail: JailConfig,
    list: &[oci_spec::runtime::LinuxNamespace],
) -> Result<JailConfig> {
    let mut seen = std::collections::HashSet::new();
    let mut has_mount = false;
    for (i, n) in list.iter().enumerate() {
        let at = format!("linux.namespaces[{i}]");
        if !seen.insert(n.typ()) {
            return Err(Error::invalid(at, format!("{:?} is listed twice", n.typ())));
        }
        let mode = match n.path() {
            Some(p) => NamespaceMode::Join(p.clone()),
            None => NamespaceMode::New,
        };
        let kind = match n.typ() {
            LinuxNamespaceType::Mount => {
                if n.path().is_some() {
                    return Err(Error::unsupported(
                        format!("{at}.path"),
                        "joining a mount namespace",
                    ));
                }
                has_mount = true;
                continue;
            }
            LinuxNamespaceType::Network => {
                jail = jail.network(match n.path() {
                    None => NetworkMode::Disabled,
                    Some(p) => NetworkMode::Namespace(open_netns(p, &at)?),
                });
                continue;
            }
            LinuxNamespaceType::Pid => Namespace::Pid,
            LinuxNamespaceType::Ipc => Namespace::Ipc,
            LinuxNamespaceType::Uts => Namespace::Uts,
            LinuxNamespaceType::Cgroup => Namespace::Cgroup,
            LinuxNamespaceType::User => {
                if n.path().is_some() {
                    return Err(Error::unsupported(
                        format!("{at}.path"),
                        "joining a user namespace (a new one is made from linux.uidMappings)",
                    ));
                }
                // Made with linux.uidMappings (see `user_namespace`).
                continue;
            }
            LinuxNamespaceType::Time => {
                return Err(Error::unsupported(format!("{at}.type"), "time namespaces"))
            }
        };
        jail = jail.namespace(kind, mode);
    }
    if !has_mount {
        return Err(Error::unsupported(
            "linux.namespaces",
            "a container without a mount namespace of its own",
        ));
    }
    // Those not listed are the host's, as the spec says.
    for (t, kind) in [
        (LinuxNamespaceType::Pid, Namespace::Pid),
        (LinuxNamespaceType::Ipc, Namespace::Ipc),
        (LinuxNamespaceType::Uts, Namespace::Uts),
        (LinuxNamespaceType::Cgroup, Namespace::Cgroup),
    ] {
        if !seen.contains(&t) {
            jail = jail.namespace(kind, NamespaceMode::Host);
        }
    }
    if !seen.contains(&LinuxNamespaceType::Network) {
        jail = jail.network(NetworkMode::Inherit);
    }
    Ok(jail)
}

fn open_netns(path: &Path, at: &str) -> Result<NetNs> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::invalid(format!("{at}.path"), format!("{}: {e}", path.display())))?;
    Ok(NetNs::new(f.into()))
}

#[cfg(test)]
mod freebsd_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bundle(extra: serde_json::Value) -> (tempfile::TempDir, Result<Bundle>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let mut doc = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let spec: Spec = serde_json::from_value(doc.clone()).unwrap();
        let section = crate::freebsd::freebsd_section(&doc).unwrap();
        let b = from_spec_freebsd(dir.path(), spec, section);
        (dir, b)
    }

    /// The FreeBSD path: common checks at load, the jail mapped with the id at create.
    #[test]
    fn a_freebsd_bundle_is_mapped_with_its_id() {
        let (dir, b) = bundle(serde_json::json!({
            "hostname": "h",
            "freebsd": {"jail": {"ip4": "inherit"}},
            "linux": {"resources": {"memory": {"limit": 268435456}}},
        }));
        let b = b.unwrap();
        assert_eq!(b.rootfs, dir.path().join("rootfs"));
        assert!(b.freebsd.is_some());
        assert!(b.resources.is_empty());
        assert!(b.seccomp.is_none());
        let b = b.for_freebsd_jail("c1").unwrap();
        assert_eq!(b.jail.root_path(), dir.path().join("rootfs"));
        // A `.` names a parent jail on FreeBSD.
        let (_dir, b) = bundle(serde_json::json!({}));
        assert!(b.unwrap().for_freebsd_jail("a.b").is_err());
        // What the mapping refuses is refused at create, before anything is made.
        let (_dir, b) = bundle(serde_json::json!({"root": {"path": "rootfs", "readonly": true}}));
        let err = b.unwrap().for_freebsd_jail("c1").unwrap_err().to_string();
        assert!(err.contains("root.readonly"), "{err}");
        // The common checks come first.
        let (_dir, b) = bundle(serde_json::json!({"ociVersion": "2.0.0"}));
        assert!(b.is_err());
    }
}
