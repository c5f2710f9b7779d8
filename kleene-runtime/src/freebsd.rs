//! config.json as a FreeBSD jail, the way FreeBSD's OCI runtimes read it (ocijail, which
//! podman and buildah use, and runj, containerd's): pure and platform-neutral, so it is
//! unit tested everywhere.
//!
//! The bundle is first turned into a [`FreebsdPlan`] (jail parameters, network, devfs,
//! nullfs mounts, RCTL limits), then into the [`JailConfig`] kleene-jail's FreeBSD backend
//! takes. Whatever the backend cannot honour is refused by its JSON path, never ignored
//! where ignoring it would weaken isolation:
//!
//! - `hostname` is the jail's `host.hostname`, `domainname` its `host.domainname`;
//!   `root.readonly` is refused (ocijail mounts a read-only nullfs alias of the root;
//!   kleene-jail does not).
//! - `mounts`: `nullfs` and `bind` (or a type missing, ocijail's default) are nullfs mounts
//!   (`ro` honoured; `bind`, `rbind`, `private`, `rprivate`, `nodev`, `defaults` mean
//!   nothing to nullfs and are ignored as ocijail ignores them); `devfs` at `/dev` is the
//!   jail's devfs with the ruleset of its `ruleset=N` option (kleene-jail's default, the
//!   jails' ruleset 4, without one); any other file system (`tmpfs`, `fdescfs`, `procfs`,
//!   Linux's `proc`, `sysfs`, `devpts`, `mqueue`, `cgroup`) is refused.
//! - The network: `freebsd.jail` (`vnet`, `vnetInterfaces`, `ip4`, `ip4Addr`, `ip6`,
//!   `ip6Addr`), ocijail's annotations (`org.freebsd.jail.vnet`, `org.freebsd.jail.ip4.addr`,
//!   `org.freebsd.jail.ip6.addr`) and a new Linux network namespace (a `vnet` jail); the
//!   host's network (`ip4=inherit ip6=inherit`) when none says otherwise.
//! - Jail parameters: `freebsd.jail` (`sysvmsg`, `sysvsem`, `sysvshm`, `enforceStatfs`,
//!   `allow.*`) and the annotations `org.freebsd.jail.allow.*`, `org.freebsd.jail.sysv*`,
//!   `org.freebsd.jail.enforce_statfs`, `org.freebsd.jail.securelevel`,
//!   `org.freebsd.jail.children.max`; another `org.freebsd.jail.*` annotation, and
//!   `org.freebsd.parentJail`/`freebsd.jail.parent` (child jails of a pod), are refused.
//! - `linux.resources` (memory, swap, CPU quota, cpuset, pids) as RCTL rules on the jail
//!   named by the container's id; `linux.namespaces` without paths are what a jail is
//!   anyway; every other Linux-only field is refused.
//!
//! oci-spec's [`Spec`] has no `freebsd` member (runtime-spec 1.3's section is dropped
//! when config.json is read into it): read it from the document with
//! [`freebsd_section`] and give it to [`jail_config_for`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};

use kleene_jail::{ExecConfig, JailConfig, JailParam, Mount, NetworkMode, Resources};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The jails' `allow.*` parameters ocijail takes from `org.freebsd.jail.allow.*`
/// annotations (those of FreeBSD 13 and 14's jail(8)).
pub const ALLOW_PARAMS: &[&str] = &[
    "allow.adjtime",
    "allow.chflags",
    "allow.extattr",
    "allow.mlock",
    "allow.mount",
    "allow.mount.devfs",
    "allow.mount.fdescfs",
    "allow.mount.nullfs",
    "allow.mount.procfs",
    "allow.mount.tmpfs",
    "allow.mount.zfs",
    "allow.nfsd",
    "allow.quotas",
    "allow.raw_sockets",
    "allow.read_msgbuf",
    "allow.reserved_ports",
    "allow.routing",
    "allow.set_hostname",
    "allow.setaudit",
    "allow.settime",
    "allow.socket_af",
    "allow.suser",
    "allow.sysvipc",
    "allow.unprivileged_parent_tampering",
    "allow.unprivileged_proc_debug",
];

/// The file systems `freebsd.jail.allow.mount` may list (each an `allow.mount.<name>`).
const MOUNTABLE: &[&str] = &[
    "devfs",
    "fdescfs",
    "lindebugfs",
    "linprocfs",
    "linsysfs",
    "nullfs",
    "procfs",
    "tmpfs",
    "zfs",
];

/// The prefix of ocijail's jail-parameter annotations.
const ANNOTATION_PREFIX: &str = "org.freebsd.jail.";

/// ocijail's annotation naming a parent jail (a pod's).
const PARENT_ANNOTATION: &str = "org.freebsd.parentJail";

/// config.json's `freebsd` object (runtime-spec 1.3, as runj reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreebsdSection {
    /// Device nodes to expose beyond the devfs ruleset.
    #[serde(default)]
    pub devices: Vec<FreebsdDevice>,
    /// The jail's parameters.
    #[serde(default)]
    pub jail: Option<FreebsdJail>,
}

/// One entry of `freebsd.devices`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreebsdDevice {
    /// The device's path below `/dev`.
    pub path: String,
    /// Its file mode.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// `freebsd.jail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FreebsdJail {
    /// A parent jail's name.
    pub parent: Option<String>,
    /// `new` or `inherit`: the host name and domain of the jail's own, or the host's.
    pub host: Option<String>,
    /// `new`, `inherit` or `disable`.
    pub ip4: Option<String>,
    /// The jail's IPv4 addresses (runj).
    pub ip4_addr: Option<Vec<String>>,
    /// `new`, `inherit` or `disable`.
    pub ip6: Option<String>,
    /// The jail's IPv6 addresses (runj).
    pub ip6_addr: Option<Vec<String>>,
    /// `new` or `inherit`.
    pub vnet: Option<String>,
    /// Interfaces moved into a `vnet` jail (runj).
    pub vnet_interfaces: Option<Vec<String>>,
    /// jail(8)'s `interface` for the addresses (runj's draft).
    pub interface: Option<String>,
    /// `new`, `inherit` or `disable`.
    pub sysvmsg: Option<String>,
    /// `new`, `inherit` or `disable`.
    pub sysvsem: Option<String>,
    /// `new`, `inherit` or `disable`.
    pub sysvshm: Option<String>,
    /// 0, 1 or 2.
    pub enforce_statfs: Option<i64>,
    /// The `allow.*` parameters.
    pub allow: Option<FreebsdAllow>,
}

/// `freebsd.jail.allow`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FreebsdAllow {
    /// `allow.set_hostname`.
    pub set_hostname: Option<bool>,
    /// `allow.raw_sockets`.
    pub raw_sockets: Option<bool>,
    /// `allow.chflags`.
    pub chflags: Option<bool>,
    /// `allow.mount` and one `allow.mount.<fs>` for each.
    pub mount: Option<Vec<String>>,
    /// `allow.quotas`.
    pub quotas: Option<bool>,
    /// `allow.socket_af`.
    pub socket_af: Option<bool>,
    /// `allow.reserved_ports`.
    pub reserved_ports: Option<bool>,
    /// `allow.suser`.
    pub suser: Option<bool>,
    /// `allow.sysvipc`.
    pub sysvipc: Option<bool>,
    /// `allow.mlock`.
    pub mlock: Option<bool>,
}

/// The `freebsd` object of a config.json document, if it has one.
pub fn freebsd_section(config: &serde_json::Value) -> Result<Option<FreebsdSection>> {
    match config.get("freebsd") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => FreebsdSection::deserialize(v)
            .map(Some)
            .map_err(|e| Error::invalid("freebsd", e.to_string())),
    }
}

/// What a bundle becomes on FreeBSD, before it is a [`JailConfig`]: what the tests
/// check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreebsdPlan {
    /// The jail's name (the container's id).
    pub name: Option<String>,
    /// `host.hostname`.
    pub hostname: Option<String>,
    /// Jail parameters beyond kleene-jail's own (`path`, `host.hostname`, `persist`,
    /// `name`), as `klee -J` writes them.
    pub params: Vec<String>,
    /// The network's parameters ([`NetworkMode::JailParams`]): `vnet`, `ip4`, `ip6`,
    /// `ip4.addr`, `ip6.addr`, and `exec.created` commands moving interfaces in.
    pub network: Vec<(String, String)>,
    /// Whether the jail gets devfs at `/dev`.
    pub devfs: bool,
    /// Its ruleset (`ruleset=N` of the devfs mount).
    pub devfs_ruleset: Option<u32>,
    /// nullfs mounts: source on the host, destination in the jail, read-only.
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    /// The limits of `linux.resources`.
    pub resources: Resources,
    /// The RCTL rules kleene-jail adds for them (checked here, made at start).
    pub rctl_rules: Vec<String>,
}

impl FreebsdPlan {
    /// The jail: rooted at `rootfs`, running `process` (whose `kill_with_owner` and other
    /// process settings are the caller's).
    pub fn into_jail_config(self, rootfs: &Path, process: ExecConfig) -> Result<JailConfig> {
        let mut jail = JailConfig::new(rootfs)
            .process(process)
            .devfs(self.devfs)
            .network(NetworkMode::JailParams(self.network));
        if let Some(name) = &self.name {
            jail = jail.name(name.clone());
        }
        if let Some(h) = self.hostname {
            jail = jail.hostname(h);
        }
        for p in &self.params {
            jail = jail.param(JailParam::parse(p)?);
        }
        if let Some(r) = self.devfs_ruleset {
            jail = jail.param(JailParam::with_value("devfs_ruleset", r.to_string()));
        }
        for (source, target, ro) in self.mounts {
            let m = Mount::bind(source, target);
            jail = jail.mount(if ro { m.read_only() } else { m });
        }
        if !self.resources.is_empty() {
            let name = self.name.as_deref().ok_or_else(|| {
                Error::unsupported(
                    "linux.resources",
                    "rctl limits without the container's id as the jail's name",
                )
            })?;
            let group = kleene_jail::ResourceGroup::from_locator(&format!("rctl:jail:{name}"))?;
            jail = jail.resources(self.resources).resource_group(group);
        }
        Ok(jail)
    }
}

/// The jail for `spec` with the root `rootfs` and the first process `process`, without a
/// name (so without `linux.resources`) and without a `freebsd` section: see
/// [`jail_config_for`].
pub fn jail_config(spec: &Spec, rootfs: &Path, process: ExecConfig) -> Result<JailConfig> {
    plan(spec, None, None)?.into_jail_config(rootfs, process)
}

/// The jail for `spec` and its `freebsd` section ([`freebsd_section`]), named `id` (the
/// container's id: the jail's name and its RCTL rules' subject).
pub fn jail_config_for(
    id: &str,
    spec: &Spec,
    freebsd: Option<&FreebsdSection>,
    rootfs: &Path,
    process: ExecConfig,
) -> Result<JailConfig> {
    plan(spec, freebsd, Some(id))?.into_jail_config(rootfs, process)
}

/// Jail parameters gathered from several fields: one value per name, a second field
/// asking for another value is refused by name.
#[derive(Default)]
struct Params {
    list: Vec<(JailParam, String)>,
}

impl Params {
    fn set(&mut self, field: &str, text: &str) -> Result<()> {
        let p = JailParam::parse(text).map_err(|e| Error::invalid(field, e.to_string()))?;
        if let Some((q, from)) = self.list.iter().find(|(q, _)| q.name() == p.name()) {
            if q.to_string() == p.to_string() {
                return Ok(());
            }
            return Err(Error::invalid(
                field,
                format!("{p} conflicts with {q} from {from}"),
            ));
        }
        self.list.push((p, field.to_string()));
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&JailParam> {
        self.list
            .iter()
            .find(|(p, _)| p.name() == name)
            .map(|(p, _)| p)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn texts(&self) -> Vec<String> {
        self.list.iter().map(|(p, _)| p.to_string()).collect()
    }
}

/// The plan for `spec` (with its `freebsd` section, for the jail `name`).
pub fn plan(
    spec: &Spec,
    freebsd: Option<&FreebsdSection>,
    name: Option<&str>,
) -> Result<FreebsdPlan> {
    if let Some(n) = name {
        check_name(n)?;
    }
    refuse_unknown_keys(
        spec,
        "",
        &[
            "ociVersion",
            "root",
            "mounts",
            "process",
            "hostname",
            "domainname",
            "hooks",
            "annotations",
            "linux",
        ],
    )?;
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        return Err(Error::unsupported(
            "root.readonly",
            "a read-only root on FreeBSD (ocijail mounts a read-only nullfs alias of it; kleene-jail does not)",
        ));
    }
    if let Some(p) = spec.process() {
        refuse_unknown_keys(
            p,
            "process.",
            &[
                "terminal",
                "consoleSize",
                "user",
                "args",
                "env",
                "cwd",
                "rlimits",
                "noNewPrivileges",
            ],
        )?;
    }
    let mut out = FreebsdPlan {
        name: name.map(str::to_string),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        ..FreebsdPlan::default()
    };
    let mut params = Params::default();
    let mut net = Params::default();
    let mut created = Vec::new();
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        params.set("domainname", &format!("host.domainname={d}"))?;
    }
    if let Some(section) = freebsd {
        freebsd_jail(section, name, &mut params, &mut net, &mut created)?;
    }
    annotations(spec, &mut params, &mut net)?;
    linux(spec, name, &mut params, &mut net, &mut out)?;
    mounts(spec, &mut out)?;
    out.network = network(&net, created)?;
    out.params = params.texts();
    Ok(out)
}

/// A jail's name: FreeBSD reads a `.` in it as a parent jail's name.
fn check_name(name: &str) -> Result<()> {
    if name.contains('.') {
        return Err(Error::Jail(kleene_jail::Error::InvalidConfig(format!(
            "container id {name:?} holds '.', which names a child jail on FreeBSD"
        ))));
    }
    kleene_jail::check_jail_name(name)
        .map_err(|e| Error::Jail(kleene_jail::Error::InvalidConfig(e.to_string())))
}

/// Whether a JSON value asks for something (not null, false, 0-length).
fn is_set(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => false,
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Refuses the fields of `value` (serialized as config.json has them) not in `known`.
fn refuse_unknown_keys<T: serde::Serialize>(value: &T, at: &str, known: &[&str]) -> Result<()> {
    let json = serde_json::to_value(value).map_err(|e| Error::invalid(at, e.to_string()))?;
    let Some(object) = json.as_object() else {
        return Ok(());
    };
    let sorted: BTreeMap<_, _> = object.iter().collect();
    for (key, v) in sorted {
        if is_set(v) && !known.contains(&key.as_str()) {
            return Err(Error::unsupported(
                format!("{at}{key}"),
                "it has no equivalent in a FreeBSD jail",
            ));
        }
    }
    Ok(())
}

/// `new`, `inherit` or `disable` of a jailsys parameter.
fn jailsys(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

fn freebsd_jail(
    section: &FreebsdSection,
    name: Option<&str>,
    params: &mut Params,
    net: &mut Params,
    created: &mut Vec<(String, String)>,
) -> Result<()> {
    if !section.devices.is_empty() {
        return Err(Error::unsupported(
            "freebsd.devices",
            "device nodes beyond the devfs ruleset (ruleset=N of the devfs mount decides)",
        ));
    }
    let Some(j) = &section.jail else {
        return Ok(());
    };
    if j.parent.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(Error::unsupported(
            "freebsd.jail.parent",
            "a child of another jail (kleene-jail makes top-level jails)",
        ));
    }
    match j.host.as_deref() {
        None | Some("new") => {}
        Some("inherit") => {
            return Err(Error::unsupported(
                "freebsd.jail.host",
                "\"inherit\": kleene-jail gives every jail a host name of its own",
            ))
        }
        Some(other) => jailsys("freebsd.jail.host", other, &["new", "inherit"])?,
    }
    if j.interface.as_deref().is_some_and(|i| !i.is_empty()) {
        return Err(Error::unsupported(
            "freebsd.jail.interface",
            "addresses added to a host interface (jail(8)'s own parameter)",
        ));
    }
    for (field, key, value) in [
        ("freebsd.jail.sysvmsg", "sysvmsg", &j.sysvmsg),
        ("freebsd.jail.sysvsem", "sysvsem", &j.sysvsem),
        ("freebsd.jail.sysvshm", "sysvshm", &j.sysvshm),
    ] {
        if let Some(v) = value {
            jailsys(field, v, &["new", "inherit", "disable"])?;
            params.set(field, &format!("{key}={v}"))?;
        }
    }
    if let Some(v) = j.enforce_statfs {
        if !(0..=2).contains(&v) {
            return Err(Error::invalid(
                "freebsd.jail.enforceStatfs",
                format!("{v} is not 0, 1 or 2"),
            ));
        }
        params.set("freebsd.jail.enforceStatfs", &format!("enforce_statfs={v}"))?;
    }
    if let Some(a) = &j.allow {
        allow(a, params)?;
    }
    if let Some(v) = &j.vnet {
        jailsys("freebsd.jail.vnet", v, &["new", "inherit"])?;
        net.set("freebsd.jail.vnet", &format!("vnet={v}"))?;
    }
    let ifaces = j.vnet_interfaces.clone().unwrap_or_default();
    if !ifaces.is_empty() {
        // Interfaces given imply a vnet of the jail's own.
        net.set("freebsd.jail.vnetInterfaces", "vnet=new")?;
        let Some(name) = name else {
            return Err(Error::unsupported(
                "freebsd.jail.vnetInterfaces",
                "moving interfaces into a jail without the container's id as its name",
            ));
        };
        for (i, iface) in ifaces.iter().enumerate() {
            let field = format!("freebsd.jail.vnetInterfaces[{i}]");
            let ok = !iface.is_empty()
                && iface.len() < 16
                && iface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(Error::invalid(
                    field,
                    format!("{iface:?} is not an interface name"),
                ));
            }
            created.push((field, format!("/sbin/ifconfig {iface} vnet {name}")));
        }
    }
    for (mode_field, key, mode) in [
        ("freebsd.jail.ip4", "ip4", &j.ip4),
        ("freebsd.jail.ip6", "ip6", &j.ip6),
    ] {
        if let Some(v) = mode {
            jailsys(mode_field, v, &["new", "inherit", "disable"])?;
            net.set(mode_field, &format!("{key}={v}"))?;
        }
    }
    if let Some(addrs) = j.ip4_addr.as_ref().filter(|a| !a.is_empty()) {
        let list = addresses("freebsd.jail.ip4Addr", addrs, true, true)?;
        net.set("freebsd.jail.ip4Addr", &format!("ip4.addr={list}"))?;
    }
    if let Some(addrs) = j.ip6_addr.as_ref().filter(|a| !a.is_empty()) {
        let list = addresses("freebsd.jail.ip6Addr", addrs, false, true)?;
        net.set("freebsd.jail.ip6Addr", &format!("ip6.addr={list}"))?;
    }
    Ok(())
}

fn allow(a: &FreebsdAllow, params: &mut Params) -> Result<()> {
    for (field, param, value) in [
        ("setHostname", "allow.set_hostname", a.set_hostname),
        ("rawSockets", "allow.raw_sockets", a.raw_sockets),
        ("chflags", "allow.chflags", a.chflags),
        ("quotas", "allow.quotas", a.quotas),
        ("socketAf", "allow.socket_af", a.socket_af),
        ("reservedPorts", "allow.reserved_ports", a.reserved_ports),
        ("suser", "allow.suser", a.suser),
        ("sysvipc", "allow.sysvipc", a.sysvipc),
        ("mlock", "allow.mlock", a.mlock),
    ] {
        if let Some(v) = value {
            params.set(&format!("freebsd.jail.allow.{field}"), &flag(param, v))?;
        }
    }
    let fses = a.mount.clone().unwrap_or_default();
    if !fses.is_empty() {
        params.set("freebsd.jail.allow.mount", "allow.mount")?;
    }
    for (i, fs) in fses.iter().enumerate() {
        let field = format!("freebsd.jail.allow.mount[{i}]");
        if !MOUNTABLE.contains(&fs.as_str()) {
            return Err(Error::unsupported(
                field,
                format!(
                    "mounting {fs:?} in a jail (one of {})",
                    MOUNTABLE.join(", ")
                ),
            ));
        }
        params.set(&field, &format!("allow.mount.{fs}"))?;
    }
    Ok(())
}

/// A boolean parameter as jail(8) writes it: `allow.mlock`, `allow.nochflags`.
fn flag(name: &str, on: bool) -> String {
    JailParam::with_bool(name, on).to_string()
}

/// A comma-separated list of addresses, each checked.
/// A JSON list's errors name the entry (`ip4Addr[1]`), an annotation's the annotation.
fn addresses(field: &str, addrs: &[String], v4: bool, indexed: bool) -> Result<String> {
    for (i, a) in addrs.iter().enumerate() {
        let ok = if v4 {
            a.parse::<Ipv4Addr>().is_ok()
        } else {
            a.parse::<Ipv6Addr>().is_ok()
        };
        if !ok {
            return Err(Error::invalid(
                if indexed {
                    format!("{field}[{i}]")
                } else {
                    field.to_string()
                },
                format!(
                    "{a:?} is not an {} address",
                    if v4 { "IPv4" } else { "IPv6" }
                ),
            ));
        }
    }
    Ok(addrs.join(","))
}

/// ocijail's annotations.
fn annotations(spec: &Spec, params: &mut Params, net: &mut Params) -> Result<()> {
    let sorted: BTreeMap<&String, &String> = spec.annotations().iter().flatten().collect();
    for (key, value) in sorted {
        let field = format!("annotations.{key}");
        if key == PARENT_ANNOTATION {
            return Err(Error::unsupported(
                field,
                "a child of another jail, as a pod's (kleene-jail makes top-level jails)",
            ));
        }
        let Some(param) = key.strip_prefix(ANNOTATION_PREFIX) else {
            // Not the jails': unknown annotations are ignored, as the spec says.
            continue;
        };
        match param {
            "vnet" => {
                if value == "disable" {
                    return Err(Error::invalid(
                        field,
                        "\"disable\": a jail always has a network stack (new or inherited)",
                    ));
                }
                jailsys(&field, value, &["new", "inherit"])?;
                net.set(&field, &format!("vnet={value}"))?;
            }
            "sysvmsg" | "sysvsem" | "sysvshm" => {
                jailsys(&field, value, &["new", "inherit", "disable"])?;
                params.set(&field, &format!("{param}={value}"))?;
            }
            "ip4.addr" | "ip6.addr" => {
                let list: Vec<String> = value
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect();
                let list = addresses(&field, &list, param == "ip4.addr", false)?;
                net.set(&field, &format!("{param}={list}"))?;
            }
            "enforce_statfs" | "securelevel" | "children.max" => {
                let n: i32 = value
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid(&field, format!("{value:?} is not an integer")))?;
                let ok = match param {
                    "enforce_statfs" => (0..=2).contains(&n),
                    "securelevel" => (-1..=3).contains(&n),
                    _ => n >= 0,
                };
                if !ok {
                    return Err(Error::invalid(&field, format!("{n} is out of range")));
                }
                params.set(&field, &format!("{param}={n}"))?;
            }
            p if p.starts_with("allow.") => {
                if !ALLOW_PARAMS.contains(&p) {
                    return Err(Error::unsupported(
                        field,
                        format!("{p} is not a jail parameter of FreeBSD"),
                    ));
                }
                let on = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(Error::invalid(
                            field,
                            format!("{other:?} is not true, false, 1 or 0"),
                        ))
                    }
                };
                params.set(&field, &flag(p, on))?;
            }
            other => {
                return Err(Error::unsupported(
                    field,
                    format!("jail parameter {other} from an annotation"),
                ))
            }
        }
    }
    Ok(())
}

/// The `linux` object: namespaces and resources; anything else is refused.
fn linux(
    spec: &Spec,
    name: Option<&str>,
    params: &mut Params,
    net: &mut Params,
    out: &mut FreebsdPlan,
) -> Result<()> {
    let Some(l) = spec.linux() else {
        return Ok(());
    };
    // `cgroupsPath` names a cgroup: on FreeBSD the limits go with the jail's name.
    refuse_unknown_keys(l, "linux.", &["namespaces", "resources", "cgroupsPath"])?;
    if let Some(list) = l.namespaces() {
        let listed = |t: LinuxNamespaceType| list.iter().any(|n| n.typ() == t);
        for (i, n) in list.iter().enumerate() {
            let at = format!("linux.namespaces[{i}]");
            if n.path().is_some() {
                return Err(Error::unsupported(
                    format!("{at}.path"),
                    "joining a Linux namespace (a FreeBSD jail's network is freebsd.jail.vnet or the org.freebsd.jail.vnet annotation)",
                ));
            }
            match n.typ() {
                // What a jail has of its own anyway: its processes, host name, mounts.
                LinuxNamespaceType::Pid
                | LinuxNamespaceType::Uts
                | LinuxNamespaceType::Mount
                | LinuxNamespaceType::Cgroup => {}
                LinuxNamespaceType::Ipc => {
                    for key in ["sysvmsg", "sysvsem", "sysvshm"] {
                        if !params.has(key) {
                            params.set(&at, &format!("{key}=new"))?;
                        }
                    }
                }
                LinuxNamespaceType::Network => net.set(&at, "vnet=new")?,
                LinuxNamespaceType::User | LinuxNamespaceType::Time => {
                    return Err(Error::unsupported(
                        format!("{at}.type"),
                        format!("{:?} namespaces", n.typ()),
                    ))
                }
            }
        }
        for t in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
        ] {
            if !listed(t) {
                return Err(Error::unsupported(
                    "linux.namespaces",
                    format!("sharing the host's {t:?} namespace: a jail has its own"),
                ));
            }
        }
        if !listed(LinuxNamespaceType::Ipc) {
            // The host's System V IPC, as a Linux container without an ipc namespace.
            for key in ["sysvmsg", "sysvsem", "sysvshm"] {
                if !params.has(key) {
                    params.set("linux.namespaces", &format!("{key}=inherit"))?;
                }
            }
        }
    }
    if let Some(r) = l.resources() {
        out.resources = resources(r, name, &mut out.rctl_rules)?;
    }
    Ok(())
}

/// `linux.resources` as RCTL limits of the jail `name`.
fn resources(
    r: &oci_spec::runtime::LinuxResources,
    name: Option<&str>,
    rules: &mut Vec<String>,
) -> Result<Resources> {
    let res = crate::limits::resources(r)?;
    if res.cpu_shares.is_some() {
        return Err(Error::unsupported(
            "linux.resources.cpu.shares",
            "cpu shares have no rctl equivalent (use cpu.quota)",
        ));
    }
    if res.cpuset_mems.is_some() {
        return Err(Error::unsupported(
            "linux.resources.cpu.mems",
            "memory domains are not mapped",
        ));
    }
    if !res.devices.is_empty() {
        return Err(Error::unsupported(
            "linux.resources.devices",
            "device rules (the devfs ruleset, ruleset=N of the devfs mount, decides)",
        ));
    }
    if let Some(cpus) = &res.cpuset_cpus {
        kleene_jail::cpuset_list(cpus)
            .map_err(|e| Error::invalid("linux.resources.cpu.cpus", e.to_string()))?;
    }
    if res.is_empty() {
        return Ok(res);
    }
    let Some(name) = name else {
        return Err(Error::unsupported(
            "linux.resources",
            "rctl limits without the container's id as the jail's name",
        ));
    };
    *rules = kleene_jail::rctl_rules(name, &res)
        .map_err(|e| Error::invalid("linux.resources", e.to_string()))?;
    Ok(res)
}

/// The network's parameters: `vnet=new` alone (plus the commands moving interfaces in),
/// or `ip4`/`ip6` (the host's unless addresses or a mode are given).
fn network(net: &Params, created: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
    let value = |p: &JailParam| p.to_string().split_once('=').map(|(_, v)| v.to_string());
    let vnet_new = net.get("vnet").and_then(value).is_some_and(|v| v == "new");
    let mut out = Vec::new();
    if vnet_new {
        for (p, field) in &net.list {
            if p.name() != "vnet" {
                return Err(Error::invalid(
                    field,
                    format!("{p} with a vnet of the jail's own (its addresses are set inside it)"),
                ));
            }
        }
        out.push(("vnet".to_string(), "new".to_string()));
        for (_, command) in created {
            out.push(("exec.created".to_string(), command));
        }
        return Ok(out);
    }
    for (mode, addr) in [("ip4", "ip4.addr"), ("ip6", "ip6.addr")] {
        let m = net.get(mode).and_then(value);
        let a = net.get(addr).and_then(value);
        match (m.as_deref(), a) {
            (Some("disable" | "inherit"), Some(_)) => {
                let field = net
                    .list
                    .iter()
                    .find(|(p, _)| p.name() == addr)
                    .map_or(addr.to_string(), |(_, f)| f.clone());
                return Err(Error::invalid(
                    field,
                    format!("addresses with {mode}={}", m.unwrap_or_default()),
                ));
            }
            (_, Some(list)) => out.push((addr.to_string(), list)),
            (Some(m), None) => out.push((mode.to_string(), m.to_string())),
            (None, None) => out.push((mode.to_string(), "inherit".to_string())),
        }
    }
    Ok(out)
}

/// A destination inside the jail: absolute, without `..`.
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

/// `mounts`: nullfs mounts and the devfs at `/dev`.
fn mounts(spec: &Spec, out: &mut FreebsdPlan) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let at = format!("mounts[{i}]");
        let dest = destination(m.destination(), &format!("{at}.destination"))?;
        let options = m.options().clone().unwrap_or_default();
        match m.typ().as_deref().unwrap_or("") {
            // ocijail's default type is nullfs; podman still writes "bind" at times.
            "" | "none" | "nullfs" | "bind" => {
                let mut ro = false;
                for opt in &options {
                    match opt.as_str() {
                        "ro" | "rdonly" => ro = true,
                        "rw" => ro = false,
                        // What nullfs does anyway (it never crosses mount points, and
                        // FreeBSD has device nodes on devfs only): ignored, as ocijail.
                        "bind" | "rbind" | "private" | "rprivate" | "nodev" | "defaults" => {}
                        other => {
                            return Err(Error::unsupported(
                                format!("{at}.options"),
                                format!("{other:?} on a nullfs mount (kleene-jail's take ro only)"),
                            ))
                        }
                    }
                }
                let source = m
                    .source()
                    .as_ref()
                    .ok_or_else(|| Error::invalid(format!("{at}.source"), "a nullfs mount needs one"))?;
                if !source.is_absolute() {
                    return Err(Error::invalid(
                        format!("{at}.source"),
                        format!("{} is not absolute", source.display()),
                    ));
                }
                kleene_jail::check_bind_target(&dest)
                    .map_err(|e| Error::invalid(format!("{at}.destination"), e.to_string()))?;
                out.mounts.push((source.clone(), dest, ro));
            }
            "devfs" => {
                if dest != Path::new("/dev") {
                    return Err(Error::unsupported(
                        format!("{at}.destination"),
                        format!("devfs at {} (kleene-jail mounts it at /dev)", dest.display()),
                    ));
                }
                if out.devfs {
                    return Err(Error::invalid(at, "a second devfs at /dev"));
                }
                // kleene-jail mounts devfs before the nullfs mounts: one under /dev listed
                // before it would show instead of being covered.
                if let Some((_, d, _)) = out.mounts.iter().find(|(_, d, _)| d.starts_with("/dev")) {
                    return Err(Error::invalid(
                        at,
                        format!("devfs at /dev after a mount at {}, which it would cover", d.display()),
                    ));
                }
                for opt in &options {
                    if let Some(n) = opt.strip_prefix("ruleset=") {
                        let n: u32 = n.parse().map_err(|_| {
                            Error::invalid(
                                format!("{at}.options"),
                                format!("{opt:?}: the ruleset is a number"),
                            )
                        })?;
                        out.devfs_ruleset = Some(n);
                    } else if opt.starts_with("rule=") {
                        return Err(Error::unsupported(
                            format!("{at}.options"),
                            format!("{opt:?}: devfs rules of a mount (kleene-jail applies a ruleset, ruleset=N)"),
                        ));
                    } else {
                        return Err(Error::unsupported(
                            format!("{at}.options"),
                            format!("{opt:?} on devfs"),
                        ));
                    }
                }
                out.devfs = true;
            }
            t @ ("proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2") => {
                return Err(Error::unsupported(
                    format!("{at}.type"),
                    format!("{t:?} is a Linux file system"),
                ))
            }
            other => {
                return Err(Error::unsupported(
                    format!("{at}.type"),
                    format!("file system {other:?} (kleene-jail mounts devfs at /dev and nullfs on FreeBSD)"),
                ))
            }
        }
    }
    Ok(())
}

/// A process's start time from `kinfo_proc`'s `ki_start` (seconds and microseconds): in
/// microseconds, what the record keeps to tell a reused pid from the container's process.
pub fn start_time(sec: i64, usec: i64) -> u64 {
    (sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(usec.clamp(0, 999_999) as u64)
}

/// `kinfo_proc`'s `ki_stat` as the letter Linux's `/proc/PID/stat` would show (`Z` for a
/// zombie, which [`crate::state::alive`] reads as gone).
pub fn state_letter(stat: i32) -> u8 {
    match stat {
        1 => b'I', // SIDL: being made
        2 => b'R', // SRUN
        3 => b'S', // SSLEEP
        4 => b'T', // SSTOP
        5 => b'Z', // SZOMB
        6 => b'W', // SWAIT
        7 => b'L', // SLOCK
        _ => b'?',
    }
}

/// The mount points strictly below `root` (not `root` itself, which may be a mount the
/// caller made) among the host's `mounts` (in the order they were mounted), the last
/// mounted first: the order to unmount them in.
pub fn mounts_below(root: &Path, mounts: &[PathBuf]) -> Vec<PathBuf> {
    mounts
        .iter()
        .rev()
        .filter(|m| m.starts_with(root) && m.as_path() != root)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn process_start_and_state() {
        assert_eq!(start_time(1_700_000_000, 123_456), 1_700_000_000_123_456);
        assert_eq!(start_time(-1, -5), 0);
        assert_eq!(state_letter(5), b'Z');
        assert_eq!(state_letter(3), b'S');
        assert_eq!(state_letter(99), b'?');
    }

    #[test]
    fn mounts_below_the_root_last_first() {
        let m = |s: &str| PathBuf::from(s);
        let mounts = [
            m("/"),
            m("/c/rootfs"),
            m("/c/rootfs/dev"),
            m("/c/rootfsx"),
            m("/c/rootfs/data"),
            m("/c/rootfs/data/sub"),
        ];
        assert_eq!(
            mounts_below(Path::new("/c/rootfs"), &mounts),
            [
                m("/c/rootfs/data/sub"),
                m("/c/rootfs/data"),
                m("/c/rootfs/dev")
            ]
        );
    }

    fn parse(doc: serde_json::Value) -> (Spec, Option<FreebsdSection>) {
        let spec: Spec = serde_json::from_value(doc.clone()).expect("spec");
        let section = freebsd_section(&doc).expect("freebsd section");
        (spec, section)
    }

    fn plan_of(doc: serde_json::Value, name: Option<&str>) -> Result<FreebsdPlan> {
        let (spec, section) = parse(doc);
        plan(&spec, section.as_ref(), name)
    }

    fn err_of(doc: serde_json::Value) -> String {
        plan_of(doc, Some("c1")).unwrap_err().to_string()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base(extra: serde_json::Value) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    /// runj's `demo spec`, with the runtime-spec 1.3 `freebsd` section.
    #[test]
    fn runj_style_bundle() {
        let doc = base(serde_json::json!({
            "hostname": "runj",
            "mounts": [{"destination": "/dev", "type": "devfs", "source": "devfs",
                        "options": ["ruleset=4"]}],
            "freebsd": {"jail": {"ip4": "inherit", "enforceStatfs": 2,
                                 "allow": {"rawSockets": true, "mount": ["tmpfs"]}}},
        }));
        let p = plan_of(doc, Some("c1")).unwrap();
        assert_eq!(
            p,
            FreebsdPlan {
                name: Some("c1".into()),
                hostname: Some("runj".into()),
                params: vec![
                    "enforce_statfs=2".into(),
                    "allow.raw_sockets".into(),
                    "allow.mount".into(),
                    "allow.mount.tmpfs".into(),
                ],
                network: pairs(&[("ip4", "inherit"), ("ip6", "inherit")]),
                devfs: true,
                devfs_ruleset: Some(4),
                ..FreebsdPlan::default()
            }
        );
    }

    #[test]
    fn runj_vnet_interfaces_are_moved_in_after_creation() {
        let doc = base(serde_json::json!({
            "freebsd": {"jail": {"vnet": "new", "vnetInterfaces": ["epair0b"],
                                 "sysvshm": "new", "host": "new"}},
        }));
        let p = plan_of(doc.clone(), Some("web")).unwrap();
        assert_eq!(
            p.network,
            pairs(&[
                ("vnet", "new"),
                ("exec.created", "/sbin/ifconfig epair0b vnet web")
            ])
        );
        assert_eq!(p.params, vec!["sysvshm=new"]);
        assert!(!p.devfs);
        // No name, no jail to move them into.
        let e = plan_of(doc, None).unwrap_err().to_string();
        assert!(e.contains("freebsd.jail.vnetInterfaces"), "{e}");
        // runj's addresses without a vnet.
        let doc = base(serde_json::json!({
            "freebsd": {"jail": {"ip4Addr": ["10.0.0.2", "10.0.0.3"], "ip6": "disable"}},
        }));
        let p = plan_of(doc, Some("web")).unwrap();
        assert_eq!(
            p.network,
            pairs(&[("ip4.addr", "10.0.0.2,10.0.0.3"), ("ip6", "disable")])
        );
    }

    /// What podman writes for ocijail: annotations for the jail's parameters.
    #[test]
    fn ocijail_style_annotations() {
        let doc = base(serde_json::json!({
            "hostname": "pod",
            "annotations": {
                "org.freebsd.jail.vnet": "new",
                "org.freebsd.jail.allow.raw_sockets": "true",
                "org.freebsd.jail.allow.mlock": "1",
                "org.freebsd.jail.allow.chflags": "false",
                "org.freebsd.jail.sysvshm": "new",
                "org.freebsd.jail.securelevel": "2",
                "io.podman.annotations.autoremove": "TRUE",
            },
            "mounts": [{"destination": "/dev", "type": "devfs", "source": "devfs",
                        "options": ["ruleset=4"]}],
        }));
        let p = plan_of(doc, Some("abc123")).unwrap();
        assert_eq!(
            p.params,
            vec![
                "allow.nochflags",
                "allow.mlock",
                "allow.raw_sockets",
                "securelevel=2",
                "sysvshm=new",
            ]
        );
        assert_eq!(p.network, pairs(&[("vnet", "new")]));
        assert_eq!(p.devfs_ruleset, Some(4));
        // Addresses in the host's stack.
        let doc = base(serde_json::json!({
            "annotations": {"org.freebsd.jail.ip4.addr": "10.88.0.5,10.88.0.6"},
        }));
        let p = plan_of(doc, Some("abc123")).unwrap();
        assert_eq!(
            p.network,
            pairs(&[("ip4.addr", "10.88.0.5,10.88.0.6"), ("ip6", "inherit")])
        );
    }

    /// A podman-on-FreeBSD-like bundle: devfs, fdescfs refused, nullfs volumes, limits.
    #[test]
    fn podman_like_bundle() {
        let doc = base(serde_json::json!({
            "hostname": "web",
            "process": {"args": ["/bin/sh"], "cwd": "/", "env": ["PATH=/bin"],
                        "user": {"uid": 80, "gid": 80, "additionalGids": [0]},
                        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                        "noNewPrivileges": true, "terminal": false},
            "mounts": [
                {"destination": "/dev", "type": "devfs", "source": "devfs",
                 "options": ["ruleset=4"]},
                {"destination": "/data", "type": "nullfs", "source": "/var/db/vol1",
                 "options": ["rbind", "ro", "nodev"]},
                {"destination": "/etc/resolv.conf", "type": "bind",
                 "source": "/var/run/c/resolv.conf", "options": ["bind", "rprivate"]},
            ],
            "annotations": {"org.freebsd.jail.vnet": "new"},
            "linux": {"resources": {"memory": {"limit": 268435456},
                                    "cpu": {"quota": 50000, "period": 100000},
                                    "pids": {"limit": 100}}},
        }));
        let p = plan_of(doc.clone(), Some("web1")).unwrap();
        assert_eq!(
            p.mounts,
            vec![
                ("/var/db/vol1".into(), "/data".into(), true),
                (
                    "/var/run/c/resolv.conf".into(),
                    "/etc/resolv.conf".into(),
                    false
                ),
            ]
        );
        assert!(p.devfs);
        assert_eq!(p.resources.memory, Some(268435456));
        assert_eq!(p.resources.pids, Some(100));
        assert_eq!(
            p.rctl_rules,
            vec![
                "jail:web1:memoryuse:deny=268435456",
                "jail:web1:swapuse:deny=268435456",
                "jail:web1:pcpu:deny=50",
                "jail:web1:maxproc:deny=100",
            ]
        );
        // The JailConfig carries it all.
        let root = tempfile::tempdir().unwrap();
        let (spec, section) = parse(doc);
        let jail = jail_config_for(
            "web1",
            &spec,
            section.as_ref(),
            root.path(),
            ExecConfig::new(["/bin/sh"]),
        )
        .unwrap();
        let text = format!("{jail:?}");
        for needle in [
            "name: Some(\"web1\")",
            "hostname: Some(\"web\")",
            "JailParams([(\"vnet\", \"new\")])",
            "name: \"devfs_ruleset\", value: Value(\"4\")",
            "source: \"/var/db/vol1\", target: \"/data\", read_only: true",
            "memory: Some(268435456)",
            "Rctl(\"web1\")",
            "standard_mounts: true",
            "readonly_root: false",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        // Without the id, limits cannot be named.
        let e = jail_config(&spec, root.path(), ExecConfig::new(["/bin/sh"])).unwrap_err();
        assert!(e.to_string().contains("linux.resources"), "{e}");
    }

    #[test]
    fn linux_namespaces_map_onto_the_jail() {
        let ns = |list: serde_json::Value| base(serde_json::json!({"linux": {"namespaces": list}}));
        let p = plan_of(
            ns(
                serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                  {"type": "ipc"}, {"type": "network"}, {"type": "cgroup"}]),
            ),
            Some("c1"),
        )
        .unwrap();
        assert_eq!(p.params, vec!["sysvmsg=new", "sysvsem=new", "sysvshm=new"]);
        assert_eq!(p.network, pairs(&[("vnet", "new")]));
        let e = err_of(ns(serde_json::json!([{"type": "pid"}, {"type": "mount"},
            {"type": "uts"}, {"type": "network", "path": "/var/run/netns/x"}])));
        assert_eq!(
            e,
            "config.json: linux.namespaces[3].path is not supported: joining a Linux namespace (a FreeBSD jail's network is freebsd.jail.vnet or the org.freebsd.jail.vnet annotation)"
        );
        let e = err_of(ns(serde_json::json!([{"type": "mount"}, {"type": "uts"}])));
        assert!(
            e.starts_with("config.json: linux.namespaces is not supported"),
            "{e}"
        );
        let e = err_of(ns(serde_json::json!([{"type": "pid"}, {"type": "mount"},
            {"type": "uts"}, {"type": "user"}])));
        assert!(e.contains("linux.namespaces[3].type"), "{e}");
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                serde_json::json!({"root": {"path": "rootfs", "readonly": true}}),
                "root.readonly",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/proc", "type": "proc",
                                               "source": "proc"}]}),
                "mounts[0].type",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/dev/fd", "type": "fdescfs",
                                               "source": "fdesc"}]}),
                "mounts[0].type",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/tmp", "type": "tmpfs",
                                               "source": "tmpfs"}]}),
                "mounts[0].type",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/dev", "type": "devfs",
                    "options": ["ruleset=4", "rule=path shm unhide mode 1777"]}]}),
                "mounts[0].options",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/d", "type": "nullfs",
                    "source": "/v", "options": ["nosuid"]}]}),
                "mounts[0].options",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/proc/x", "type": "nullfs",
                    "source": "/v"}]}),
                "mounts[0].destination",
            ),
            (
                serde_json::json!({"mounts": [
                    {"destination": "/dev/x", "type": "nullfs", "source": "/v"},
                    {"destination": "/dev", "type": "devfs"}]}),
                "mounts[1]",
            ),
            (
                serde_json::json!({"linux": {"maskedPaths": ["/proc/kcore"]}}),
                "linux.maskedPaths",
            ),
            (
                serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}}),
                "linux.seccomp",
            ),
            (
                serde_json::json!({"linux": {"sysctl": {"net.ipv4.ip_forward": "1"}}}),
                "linux.sysctl",
            ),
            (
                serde_json::json!({"linux": {"uidMappings": [{"containerID": 0,
                    "hostID": 1000, "size": 1}]}}),
                "linux.uidMappings",
            ),
            (
                serde_json::json!({"linux": {"resources": {"cpu": {"shares": 512}}}}),
                "linux.resources.cpu.shares",
            ),
            (
                serde_json::json!({"linux": {"resources": {"devices": [
                    {"allow": false, "access": "rwm"}]}}}),
                "linux.resources.devices",
            ),
            (
                serde_json::json!({"process": {"args": ["sh"], "cwd": "/",
                    "user": {"uid": 0, "gid": 0},
                    "capabilities": {"bounding": ["CAP_KILL"]}}}),
                "process.capabilities",
            ),
            (
                serde_json::json!({"process": {"args": ["sh"], "cwd": "/",
                    "user": {"uid": 0, "gid": 0}, "oomScoreAdj": 100}}),
                "process.oomScoreAdj",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.parentJail": "pod1"}}),
                "annotations.org.freebsd.parentJail",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.jail.allow.everything": "true"}}),
                "annotations.org.freebsd.jail.allow.everything",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.jail.vnet": "disable"}}),
                "annotations.org.freebsd.jail.vnet",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.jail.osrelease": "15.0"}}),
                "annotations.org.freebsd.jail.osrelease",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.jail.vnet": "new",
                    "org.freebsd.jail.ip4.addr": "10.0.0.1"}}),
                "annotations.org.freebsd.jail.ip4.addr",
            ),
            (
                serde_json::json!({"annotations": {"org.freebsd.jail.ip4.addr": "10.0.0.300"}}),
                "annotations.org.freebsd.jail.ip4.addr",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"parent": "pod"}}}),
                "freebsd.jail.parent",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"host": "inherit"}}}),
                "freebsd.jail.host",
            ),
            (
                serde_json::json!({"freebsd": {"devices": [{"path": "pf", "mode": 448}]}}),
                "freebsd.devices",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"enforceStatfs": 3}}}),
                "freebsd.jail.enforceStatfs",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"allow": {"mount": ["ext2fs"]}}}}),
                "freebsd.jail.allow.mount[0]",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"vnet": "new", "ip4": "inherit"}}}),
                "freebsd.jail.ip4",
            ),
            (
                serde_json::json!({"freebsd": {"jail": {"vnet": "new"}},
                    "annotations": {"org.freebsd.jail.vnet": "inherit"}}),
                "annotations.org.freebsd.jail.vnet",
            ),
            (
                serde_json::json!({"windows": {"layerFolders": ["c:\\l"]}}),
                "windows",
            ),
        ];
        for (extra, field) in cases {
            let e = err_of(base(extra.clone()));
            assert!(
                e.starts_with(&format!("config.json: {field}: "))
                    || e.starts_with(&format!("config.json: {field} is not supported: ")),
                "{extra}: {e}"
            );
        }
        // Unknown members of the freebsd section are refused, not ignored.
        let e = freebsd_section(&serde_json::json!({"freebsd": {"jail": {"vnett": "new"}}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config.json: freebsd: unknown field `vnett`"),
            "{e}"
        );
    }

    #[test]
    fn runc_default_spec_is_refused_by_field() {
        let e = err_of(crate::default_spec());
        assert_eq!(
            e,
            "config.json: root.readonly is not supported: a read-only root on FreeBSD (ocijail mounts a read-only nullfs alias of it; kleene-jail does not)"
        );
        let mut doc = crate::default_spec();
        doc["root"]["readonly"] = serde_json::json!(false);
        let e = err_of(doc);
        assert!(e.starts_with("config.json: process.capabilities "), "{e}");
    }

    #[test]
    fn domainname_and_names() {
        let doc = base(serde_json::json!({"domainname": "example.org"}));
        let p = plan_of(doc.clone(), Some("c1")).unwrap();
        assert_eq!(p.params, vec!["host.domainname=example.org"]);
        let e = plan_of(doc, Some("a.b")).unwrap_err().to_string();
        assert!(e.contains("child jail"), "{e}");
        // A bundle without network settings gets the host's stack, as under ocijail.
        let p = plan_of(base(serde_json::json!({})), None).unwrap();
        assert_eq!(p.network, pairs(&[("ip4", "inherit"), ("ip6", "inherit")]));
        assert!(!p.devfs);
    }
}
