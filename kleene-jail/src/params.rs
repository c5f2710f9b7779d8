//! Jail parameters in FreeBSD's `jail(8)` syntax, as `klee -J` takes them.
//!
//! A parameter is `key=value`, `key` (a boolean set to true) or `nokey` (a boolean set to
//! false; the `no` goes in front of the last dotted component, as in `allow.noraw_sockets`).
//! This module parses them, decides which of them mean something on Linux, and builds the
//! name/value list FreeBSD's `jail_set(2)` expects. All of it is platform-neutral.

use std::ffi::CString;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The value of a jail parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// `key` (true) or `nokey` (false).
    Bool(bool),
    /// `key=value`.
    Value(String),
}

/// One jail parameter, e.g. `allow.raw_sockets` or `host.hostname=web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailParam {
    name: String,
    value: ParamValue,
}

impl JailParam {
    /// Parses `key=value`, `key` or `nokey`.
    pub fn parse(text: &str) -> Result<Self> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        if name.is_empty() {
            return Err(Error::invalid_param(text, "empty name"));
        }
        let valid = name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !valid {
            return Err(Error::invalid_param(
                text,
                "a name is dotted words of letters, digits, '_' and '-'",
            ));
        }
        if let Some(value) = value {
            if value.contains('\0') {
                return Err(Error::invalid_param(text, "value contains a NUL byte"));
            }
            return Ok(JailParam {
                name: name.to_owned(),
                value: ParamValue::Value(value.to_owned()),
            });
        }
        let (prefix, last) = match name.rsplit_once('.') {
            Some((prefix, last)) => (Some(prefix), last),
            None => (None, name),
        };
        match last.strip_prefix("no") {
            Some(rest) if !rest.is_empty() => {
                let name = match prefix {
                    Some(prefix) => format!("{prefix}.{rest}"),
                    None => rest.to_owned(),
                };
                Ok(JailParam {
                    name,
                    value: ParamValue::Bool(false),
                })
            }
            _ => Ok(JailParam {
                name: name.to_owned(),
                value: ParamValue::Bool(true),
            }),
        }
    }

    /// A parameter with a value.
    pub fn with_value(name: impl Into<String>, value: impl Into<String>) -> Self {
        JailParam {
            name: name.into(),
            value: ParamValue::Value(value.into()),
        }
    }

    /// A boolean parameter.
    pub fn with_bool(name: impl Into<String>, value: bool) -> Self {
        JailParam {
            name: name.into(),
            value: ParamValue::Bool(value),
        }
    }

    /// The name without a `no` prefix, e.g. `allow.raw_sockets`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &ParamValue {
        &self.value
    }

    /// The value as a boolean: `key`, `nokey`, or `key=true|false|yes|no|on|off|1|0`.
    pub fn as_bool(&self) -> Result<bool> {
        match &self.value {
            ParamValue::Bool(b) => Ok(*b),
            ParamValue::Value(v) => parse_bool(v)
                .ok_or_else(|| Error::invalid_param(self.to_string(), "expected true or false")),
        }
    }

    /// The value as a string; a bare boolean has none.
    pub fn as_str(&self) -> Result<&str> {
        match &self.value {
            ParamValue::Value(v) => Ok(v),
            ParamValue::Bool(_) => Err(Error::invalid_param(
                self.to_string(),
                "expected name=value",
            )),
        }
    }
}

impl FromStr for JailParam {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        JailParam::parse(s)
    }
}

impl fmt::Display for JailParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            ParamValue::Value(v) => write!(f, "{}={}", self.name, v),
            ParamValue::Bool(true) => f.write_str(&self.name),
            ParamValue::Bool(false) => f.write_str(&negated_name(&self.name)),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// `allow.raw_sockets` -> `allow.noraw_sockets`.
fn negated_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((prefix, last)) => format!("{prefix}.no{last}"),
        None => format!("no{name}"),
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
/// What the parameters mean on Linux. The last occurrence of a parameter wins.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LinuxParams {
    pub hostname: Option<String>,
    pub devfs: Option<bool>,
    pub clean: Option<bool>,
    pub user: Option<String>,
    /// `allow.sysvipc`: true shares the host's System V IPC (no IPC namespace).
    pub sysvipc: Option<bool>,
    /// `persist`: with [`crate::Lifetime::Processes`], the jail runs on with no process.
    pub persist: Option<bool>,
}

/// The parameters with a meaning on Linux, in the order of the platform table of the README.
pub const LINUX_PARAMS: &[&str] = &[
    "host.hostname",
    "mount.devfs",
    "exec.clean",
    "exec.jail_user",
    "allow.sysvipc",
    "exec.stop",
    "persist",
];

/// `exec.stop`: the command `stop` runs in the jail (with `/bin/sh -c`, as jail(8) does)
/// before signalling it; `exec.nostop` or an empty value: none. The last one given wins.
pub(crate) fn stop_command(params: &[JailParam]) -> Result<Option<String>> {
    let mut out = None;
    for p in params.iter().filter(|p| p.name() == "exec.stop") {
        out = match p.value() {
            ParamValue::Bool(false) => None,
            ParamValue::Bool(true) => {
                return Err(Error::invalid_param(
                    p.to_string(),
                    "expected exec.stop=command",
                ))
            }
            ParamValue::Value(v) if v.trim().is_empty() => None,
            ParamValue::Value(v) => Some(v.clone()),
        };
    }
    Ok(out)
}

/// The parameters a running jail takes on Linux: those read when they are used
/// (`exec.stop`, by `stop`). Any other is refused by name.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn linux_live_update(params: &[JailParam]) -> Result<()> {
    for p in params {
        match p.name() {
            "exec.stop" => {
                stop_command(std::slice::from_ref(p))?;
            }
            other => {
                return Err(Error::UnsupportedParameter {
                    name: other.to_owned(),
                    platform: "Linux",
                })
            }
        }
    }
    Ok(())
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn linux_params(params: &[JailParam]) -> Result<LinuxParams> {
    let mut out = LinuxParams::default();
    for p in params {
        match p.name() {
            "host.hostname" => out.hostname = Some(p.as_str()?.to_owned()),
            "mount.devfs" => out.devfs = Some(p.as_bool()?),
            "exec.clean" => out.clean = Some(p.as_bool()?),
            "exec.jail_user" => out.user = Some(p.as_str()?.to_owned()),
            "allow.sysvipc" => out.sysvipc = Some(p.as_bool()?),
            "persist" => out.persist = Some(p.as_bool()?),
            "exec.stop" => {
                stop_command(std::slice::from_ref(p))?;
            }
            other => {
                return Err(Error::UnsupportedParameter {
                    name: other.to_owned(),
                    platform: "Linux",
                })
            }
        }
    }
    Ok(out)
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// How FreeBSD's kernel expects a parameter's value in `jail_set(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelType {
    /// No value; `name` for true, `noname` for false.
    Bool,
    /// A native `int`.
    Int,
    /// A native `unsigned long`.
    ULong,
    /// A NUL-terminated string.
    Str,
    /// `disable`, `new` or `inherit`, as a native `int` 0, 1 or 2.
    JailSys,
    /// A packed array of `struct in_addr`.
    Ip4List,
    /// A packed array of `struct in6_addr`.
    Ip6List,
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// The type of a kernel jail parameter of FreeBSD 13/14 (see jail(8)).
pub(crate) fn kernel_type(name: &str) -> Option<KernelType> {
    use KernelType::*;
    Some(match name {
        "name" | "path" | "host.hostname" | "host.domainname" | "host.hostuuid" | "osrelease"
        | "linux.osname" | "linux.osrelease" => Str,
        "jid" | "securelevel" | "devfs_ruleset" | "children.max" | "enforce_statfs"
        | "osreldate" | "linux.oss_version" | "zfs.mount_snapshot" | "parent" | "cpuset.id" => Int,
        "host.hostid" => ULong,
        "persist" | "ip4.saddrsel" | "ip6.saddrsel" | "dying" => Bool,
        "ip4" | "ip6" | "vnet" | "host" | "linux" | "sysvmsg" | "sysvsem" | "sysvshm" => JailSys,
        "ip4.addr" => Ip4List,
        "ip6.addr" => Ip6List,
        n if n.starts_with("allow.") => Bool,
        _ => return None,
    })
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// Parameters that `jail(8)` handles itself rather than the kernel; the FreeBSD backend does
/// the same for the ones it knows and refuses the others.
pub(crate) fn is_pseudo_param(name: &str) -> bool {
    name.starts_with("exec.")
        || name.starts_with("mount.")
        || matches!(
            name,
            "command" | "depend" | "interface" | "ip_hostname" | "vnet.interface" | "allow.dying"
        )
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// One name/value pair of a `jail_set(2)` iovec list. An empty `value` is sent as a null
/// pointer with length 0 (how booleans are given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelParam {
    pub name: CString,
    pub value: Vec<u8>,
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
fn cstring(text: &str, param: &JailParam) -> Result<CString> {
    CString::new(text).map_err(|_| Error::invalid_param(param.to_string(), "contains a NUL byte"))
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// Builds the kernel's name/value list for `params` (pseudo parameters must be taken out
/// first). A parameter the table does not know is sent as a boolean when it has no value and
/// as a string otherwise.
pub(crate) fn kernel_params(params: &[JailParam]) -> Result<Vec<KernelParam>> {
    let mut out = Vec::with_capacity(params.len());
    for p in params {
        let ty = kernel_type(p.name()).unwrap_or(match p.value() {
            ParamValue::Bool(_) => KernelType::Bool,
            ParamValue::Value(_) => KernelType::Str,
        });
        let bad = |reason: &str| Error::invalid_param(p.to_string(), reason);
        let (name, value) = match ty {
            KernelType::Bool => {
                let name = if p.as_bool()? {
                    p.name().to_owned()
                } else {
                    negated_name(p.name())
                };
                (name, Vec::new())
            }
            KernelType::Int => {
                let v: i32 = p
                    .as_str()?
                    .trim()
                    .parse()
                    .map_err(|_| bad("expected an integer"))?;
                (p.name().to_owned(), v.to_ne_bytes().to_vec())
            }
            KernelType::ULong => {
                let v: u64 = p
                    .as_str()?
                    .trim()
                    .parse()
                    .map_err(|_| bad("expected an unsigned integer"))?;
                (p.name().to_owned(), v.to_ne_bytes().to_vec())
            }
            KernelType::Str => {
                let mut v = p.as_str()?.as_bytes().to_vec();
                v.push(0);
                (p.name().to_owned(), v)
            }
            KernelType::JailSys => {
                let v: i32 = match p.value() {
                    ParamValue::Bool(true) => 1,
                    ParamValue::Bool(false) => 0,
                    ParamValue::Value(v) => match v.as_str() {
                        "disable" | "0" => 0,
                        "new" | "1" => 1,
                        "inherit" | "2" => 2,
                        _ => return Err(bad("expected disable, new or inherit")),
                    },
                };
                (p.name().to_owned(), v.to_ne_bytes().to_vec())
            }
            KernelType::Ip4List => {
                let mut v = Vec::new();
                for addr in address_list(p)? {
                    let a: Ipv4Addr = addr.parse().map_err(|_| bad("expected IPv4 addresses"))?;
                    v.extend_from_slice(&a.octets());
                }
                (p.name().to_owned(), v)
            }
            KernelType::Ip6List => {
                let mut v = Vec::new();
                for addr in address_list(p)? {
                    let a: Ipv6Addr = addr.parse().map_err(|_| bad("expected IPv6 addresses"))?;
                    v.extend_from_slice(&a.octets());
                }
                (p.name().to_owned(), v)
            }
        };
        out.push(KernelParam {
            name: cstring(&name, p)?,
            value,
        });
    }
    Ok(out)
}

#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
/// `1.2.3.4,5.6.7.8/24` -> `["1.2.3.4", "5.6.7.8"]` (a netmask is for jail(8)'s interface
/// aliases, which this crate does not make).
fn address_list(p: &JailParam) -> Result<Vec<&str>> {
    let text = p.as_str()?;
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.contains('|') {
            return Err(Error::invalid_param(
                p.to_string(),
                "interface aliases (iface|addr) are not made by kleene-jail",
            ));
        }
        out.push(item.split('/').next().unwrap_or(item));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let p = JailParam::parse("host.hostname=web").unwrap();
        assert_eq!(p.name(), "host.hostname");
        assert_eq!(p.value(), &ParamValue::Value("web".into()));
        let p = JailParam::parse("allow.raw_sockets").unwrap();
        assert_eq!(p.value(), &ParamValue::Bool(true));
        let p = JailParam::parse("allow.noraw_sockets").unwrap();
        assert_eq!(p.name(), "allow.raw_sockets");
        assert_eq!(p.value(), &ParamValue::Bool(false));
        let p = JailParam::parse("nopersist").unwrap();
        assert_eq!(p.name(), "persist");
        assert!(!p.as_bool().unwrap());
        let p = JailParam::parse("exec.stop=").unwrap();
        assert_eq!(p.value(), &ParamValue::Value(String::new()));
        let p = JailParam::parse("exec.stop=/bin/sh /etc/rc.shutdown").unwrap();
        assert_eq!(p.as_str().unwrap(), "/bin/sh /etc/rc.shutdown");
    }

    #[test]
    fn booleans_with_values() {
        assert!(JailParam::parse("mount.devfs=true")
            .unwrap()
            .as_bool()
            .unwrap());
        assert!(!JailParam::parse("exec.clean=false")
            .unwrap()
            .as_bool()
            .unwrap());
        assert!(JailParam::parse("exec.clean=maybe")
            .unwrap()
            .as_bool()
            .is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(JailParam::parse("").is_err());
        assert!(JailParam::parse("=x").is_err());
        assert!(JailParam::parse("a..b").is_err());
        assert!(JailParam::parse("a b=c").is_err());
        assert!(JailParam::parse("a=b\0c").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "allow.noraw_sockets",
            "persist",
            "nopersist",
            "ip4=inherit",
            "a.b=c=d",
        ] {
            assert_eq!(JailParam::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn linux_honours_its_parameters() {
        let ps: Vec<JailParam> = [
            "host.hostname=box",
            "mount.nodevfs",
            "exec.clean=false",
            "exec.jail_user=alice",
            "allow.sysvipc",
            "persist",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let l = linux_params(&ps).unwrap();
        assert_eq!(l.persist, Some(true));
        assert_eq!(l.hostname.as_deref(), Some("box"));
        assert_eq!(l.devfs, Some(false));
        assert_eq!(l.clean, Some(false));
        assert_eq!(l.user.as_deref(), Some("alice"));
        assert_eq!(l.sysvipc, Some(true));
    }

    #[test]
    fn linux_refuses_the_rest() {
        for s in [
            "allow.raw_sockets",
            "ip4=inherit",
            "securelevel=3",
            "exec.start=x",
        ] {
            let err = linux_params(&[s.parse().unwrap()]).unwrap_err();
            let name = s.split('=').next().unwrap();
            assert_eq!(
                err.to_string(),
                format!("jail parameter {name} is not supported on Linux")
            );
        }
        // A boolean given a string value is an error, not a silent default.
        assert!(linux_params(&["mount.devfs=sometimes".parse().unwrap()]).is_err());
        assert!(linux_params(&["host.hostname".parse().unwrap()]).is_err());
    }

    #[test]
    fn a_running_linux_jail_takes_only_what_is_read_when_used() {
        assert!(linux_live_update(&["exec.stop=/bin/true".parse().unwrap()]).is_ok());
        for s in ["host.hostname=x", "persist", "allow.raw_sockets"] {
            let err = linux_live_update(&[s.parse().unwrap()]).unwrap_err();
            let name = s.split('=').next().unwrap();
            assert_eq!(
                err.to_string(),
                format!("jail parameter {name} is not supported on Linux")
            );
        }
    }

    #[test]
    fn stop_commands() {
        let ps = |l: &[&str]| -> Vec<JailParam> { l.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(stop_command(&ps(&[])).unwrap(), None);
        assert_eq!(
            stop_command(&ps(&["exec.stop=/bin/sh /etc/rc.shutdown"]))
                .unwrap()
                .as_deref(),
            Some("/bin/sh /etc/rc.shutdown")
        );
        assert_eq!(
            stop_command(&ps(&["exec.stop=x", "exec.nostop"])).unwrap(),
            None
        );
        assert_eq!(stop_command(&ps(&["exec.stop="])).unwrap(), None);
        assert!(stop_command(&ps(&["exec.stop"])).is_err());
        assert!(linux_params(&ps(&["exec.stop=true"])).is_ok());
    }

    fn kp(s: &str) -> KernelParam {
        kernel_params(&[s.parse().unwrap()]).unwrap().remove(0)
    }

    #[test]
    fn kernel_booleans_have_no_value() {
        let p = kp("allow.raw_sockets");
        assert_eq!(p.name.as_bytes(), b"allow.raw_sockets");
        assert!(p.value.is_empty());
        let p = kp("allow.raw_sockets=false");
        assert_eq!(p.name.as_bytes(), b"allow.noraw_sockets");
        let p = kp("persist");
        assert_eq!(p.name.as_bytes(), b"persist");
        // Unknown names without a value are booleans too.
        let p = kp("allow.nosomething_new");
        assert_eq!(p.name.as_bytes(), b"allow.nosomething_new");
        assert!(p.value.is_empty());
    }

    #[test]
    fn kernel_ints_are_native() {
        assert_eq!(kp("securelevel=3").value, 3i32.to_ne_bytes().to_vec());
        assert_eq!(kp("devfs_ruleset=4").value, 4i32.to_ne_bytes().to_vec());
        assert_eq!(kp("host.hostid=7").value, 7u64.to_ne_bytes().to_vec());
        assert!(kernel_params(&["securelevel=high".parse().unwrap()]).is_err());
    }

    #[test]
    fn kernel_strings_are_nul_terminated() {
        let p = kp("host.hostname=web");
        assert_eq!(p.value, b"web\0".to_vec());
        let p = kp("some.future_string=x");
        assert_eq!(p.value, b"x\0".to_vec());
    }

    #[test]
    fn kernel_jailsys() {
        assert_eq!(kp("ip4=inherit").value, 2i32.to_ne_bytes().to_vec());
        assert_eq!(kp("ip6=disable").value, 0i32.to_ne_bytes().to_vec());
        assert_eq!(kp("vnet=new").value, 1i32.to_ne_bytes().to_vec());
        assert!(kernel_params(&["ip4=sometimes".parse().unwrap()]).is_err());
    }

    #[test]
    fn kernel_addresses() {
        let p = kp("ip4.addr=10.0.0.1,10.0.0.2/24");
        assert_eq!(p.value, vec![10, 0, 0, 1, 10, 0, 0, 2]);
        let p = kp("ip6.addr=::1");
        assert_eq!(p.value.len(), 16);
        assert_eq!(p.value[15], 1);
        assert!(kernel_params(&["ip4.addr=em0|10.0.0.1".parse().unwrap()]).is_err());
        assert!(kernel_params(&["ip4.addr=::1".parse().unwrap()]).is_err());
    }

    #[test]
    fn pseudo_params() {
        for n in [
            "exec.clean",
            "mount.devfs",
            "exec.jail_user",
            "command",
            "vnet.interface",
        ] {
            assert!(is_pseudo_param(n), "{n}");
        }
        for n in ["allow.raw_sockets", "host.hostname", "ip4"] {
            assert!(!is_pseudo_param(n), "{n}");
        }
    }
}
