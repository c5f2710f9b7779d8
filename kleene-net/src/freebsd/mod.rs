//! The FreeBSD backend: interfaces with `ifconfig(8)`, the firewall with `pfctl(8)`,
//! forwarding with `sysctl(8)` and the jail parameters that put a container on a network.
//!
//! The backend is deliberately thin. Everything that can be decided without a FreeBSD
//! kernel is platform-neutral and unit-tested everywhere:
//!
//! * [`IfName`] validates interface names (FreeBSD's `IFNAMSIZ` is 16 bytes including the
//!   terminating NUL, so at most 15 characters out of `[A-Za-z0-9_.-]`);
//! * [`argv`] builds every command as a [`Command`] (program, argument vector and, for
//!   `pfctl -f -`, the text fed on stdin) — no shell is ever involved;
//! * [`parse`] reads the output of `ifconfig -l`, `ifconfig epair create`,
//!   `ifconfig BRIDGE`, `netstat -rn` and `route -n get default`;
//! * [`jail`] turns a container's network driver into `jail(8)` parameters;
//! * [`vnet`] plans a `vnet` jail's links: the host side of each epair (renamed, a member
//!   of its bridge, up) and the jail side (moved into the jail, its addresses and the
//!   default routes set inside it with `jexec`).
//!
//! Only the runner, which executes those commands with a deadline, and the small
//! functions built on it (`ensure_bridge`, `load_pf`, …) are compiled for FreeBSD alone.
//!
//! The model follows Kleene: `loopback` networks are cloned `lo` interfaces that carry the
//! `ipnet` containers' addresses as aliases, `bridge` networks are `if_bridge` interfaces whose
//! members are the host ends (`epairNa`) of the `vnet` containers' epairs, and the other end
//! (`epairNb`) is moved into the jail's own network stack (`ifconfig epairNb vnet JAIL`, what
//! jail(8)'s `vnet.interface` does), where it gets its addresses and the jail its default
//! routes.
#![deny(missing_docs)]

use std::fmt;
use std::net::IpAddr;
use std::process::ExitStatus;
use std::str::FromStr;
use std::time::Duration;

pub mod argv;
pub mod jail;
pub mod parse;
#[cfg(any(target_os = "freebsd", test))]
mod run;
pub mod vnet;

#[cfg(target_os = "freebsd")]
mod host;

#[cfg(target_os = "freebsd")]
pub use host::{
    add_alias, bridge_add_member, check_pf, create_epair, default_route_interface,
    destroy_interface, enable_forwarding, enable_pf, ensure_bridge, ensure_loopback,
    interface_addresses, interface_exists, list_interfaces, load_pf, remove_alias,
    rename_interface,
};
#[cfg(any(target_os = "freebsd", test))]
pub use run::{run, run_with_timeout};

/// `ifconfig(8)`.
pub const IFCONFIG: &str = "/sbin/ifconfig";
/// `pfctl(8)`.
pub const PFCTL: &str = "/sbin/pfctl";
/// `sysctl(8)`.
pub const SYSCTL: &str = "/sbin/sysctl";
/// `netstat(1)`.
pub const NETSTAT: &str = "/usr/bin/netstat";
/// `route(8)`.
pub const ROUTE: &str = "/sbin/route";
/// `jexec(8)`: runs a program of a jail inside it.
pub const JEXEC: &str = "/usr/sbin/jexec";

/// How long a command may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// FreeBSD's `IFNAMSIZ`: the size of an interface name buffer, terminating NUL included.
pub const IFNAMSIZ: usize = 16;

/// The longest interface name FreeBSD accepts (`IFNAMSIZ` minus the NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = IFNAMSIZ - 1;

/// What went wrong in the FreeBSD backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value (interface name, epair, address) was rejected before any command ran.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What kind of value it was, e.g. "interface name".
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The program could not be started, or waiting for it failed.
    #[error("could not run {program}: {source}")]
    Io {
        /// The program, e.g. `/sbin/ifconfig`.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("{program} {} failed with {status}: {}", args.join(" "), stderr.trim())]
    Failed {
        /// The program, e.g. `/sbin/ifconfig`.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The program did not finish in time and was killed.
    #[error("{program} {} did not finish within {}s and was killed", args.join(" "), timeout.as_secs_f64())]
    Timeout {
        /// The program, e.g. `/sbin/pfctl`.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// The deadline it exceeded.
        timeout: Duration,
    },
    /// The program succeeded but printed something this module cannot read.
    #[error("unexpected output from {program}: {output:?}")]
    UnexpectedOutput {
        /// The program whose output was unreadable.
        program: String,
        /// The output.
        output: String,
    },
}

/// The FreeBSD backend's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a FreeBSD interface name: 1 to 15 characters out of `[A-Za-z0-9_.-]`, not starting
/// with `-` (which `ifconfig` would read as an option or a negated parameter).
pub fn validate_interface_name(name: &str) -> Result<()> {
    const WHAT: &str = "interface name";
    if name.is_empty() {
        return Err(invalid(WHAT, name, "it is empty"));
    }
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(invalid(
            WHAT,
            name,
            format!("it is longer than {MAX_INTERFACE_NAME_LEN} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            WHAT,
            name,
            format!("{c:?} is not one of [A-Za-z0-9_.-]"),
        ));
    }
    if name.starts_with('-') {
        return Err(invalid(WHAT, name, "it starts with '-'"));
    }
    Ok(())
}

/// A validated FreeBSD interface name (see [`validate_interface_name`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfName(String);

impl IfName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        validate_interface_name(&name)?;
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for IfName {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for IfName {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<IfName> for String {
    fn from(name: IfName) -> Self {
        name.0
    }
}

/// Checks a jail's name or jid as `ifconfig … vnet JAIL`, `jexec JAIL` and
/// `ifconfig … -vnet JAIL` take it: not empty, not starting with `-` (an option), and no
/// white space or control characters (it is one argument, and one word of an
/// `exec.created` command, see [`jail::exec_created`]).
pub fn validate_jail_name(jail: &str) -> Result<()> {
    if jail.is_empty()
        || jail.starts_with('-')
        || jail.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "jail name",
            jail,
            "it is empty, starts with '-' or contains white space",
        ));
    }
    Ok(())
}

/// A validated jail name or jid (see [`validate_jail_name`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JailName(String);

impl JailName {
    /// Validates `jail` and wraps it.
    pub fn new(jail: impl Into<String>) -> Result<Self> {
        let jail = jail.into();
        validate_jail_name(&jail)?;
        Ok(Self(jail))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pair of connected virtual ethernet interfaces, `BASEa` and `BASEb`.
///
/// `ifconfig epair create` prints the a-side (`epair0a`); the base name is that minus the
/// trailing `a`. The host keeps the a-side (a bridge member), the jail gets the b-side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Epair {
    a: IfName,
    b: IfName,
}

impl Epair {
    /// The epair whose ends are `{base}a` and `{base}b`; the base may be at most 14 characters.
    pub fn from_base(base: &str) -> Result<Self> {
        if base.len() >= MAX_INTERFACE_NAME_LEN {
            return Err(invalid(
                "epair name",
                base,
                format!(
                    "it is longer than {} characters, leaving no room for the a/b suffix",
                    MAX_INTERFACE_NAME_LEN - 1
                ),
            ));
        }
        Ok(Self {
            a: IfName::new(format!("{base}a"))?,
            b: IfName::new(format!("{base}b"))?,
        })
    }

    /// The epair of which `a_side` (e.g. `epair0a`) is the a-side.
    pub fn from_a_side(a_side: &str) -> Result<Self> {
        match a_side.strip_suffix('a') {
            Some(base) if !base.is_empty() => Self::from_base(base),
            _ => Err(invalid("epair a-side", a_side, "it does not end in 'a'")),
        }
    }

    /// The base name, e.g. `epair0`.
    pub fn base(&self) -> &str {
        let a = self.a.as_str();
        &a[..a.len() - 1]
    }

    /// The host side, e.g. `epair0a`.
    pub fn a(&self) -> &IfName {
        &self.a
    }

    /// The jail side, e.g. `epair0b`.
    pub fn b(&self) -> &IfName {
        &self.b
    }
}

impl fmt::Display for Epair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())
    }
}

/// An address family, spelled the way `ifconfig`, `route` and pf spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`inet`).
    Inet,
    /// IPv6 (`inet6`).
    Inet6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::Inet,
            IpAddr::V6(_) => Self::Inet6,
        }
    }

    /// `inet` or `inet6`.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Inet6 => "inet6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A command to run: a program, its arguments and optionally text for its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program, an absolute path such as [`IFCONFIG`].
    pub program: String,
    /// Its arguments, without the program.
    pub args: Vec<String>,
    /// Text written to its stdin (then closed); `None` connects stdin to `/dev/null`.
    pub stdin: Option<String>,
}

impl Command {
    /// `program` with `args` and no stdin.
    pub fn new<I, S>(program: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
        }
    }

    /// The same command, fed `input` on stdin.
    pub fn with_stdin(mut self, input: impl Into<String>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The whole argument vector: the program followed by its arguments.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            write!(f, " {arg}")?;
        }
        if self.stdin.is_some() {
            f.write_str(" <stdin>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_validated() {
        for ok in [
            "kleene0",
            "bridge0",
            "lo0",
            "epair12a",
            "a",
            "a.b_c-d",
            "abcdefghijklmno",
        ] {
            assert!(IfName::new(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "abcdefghijklmnop",
            "em 0",
            "em0;",
            "kleene|0",
            "-alias",
            "ém0",
            "a/b",
            "x\n",
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn invalid_name_message_is_lower_case_and_names_the_value() {
        let e = IfName::new("abcdefghijklmnop").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid interface name \"abcdefghijklmnop\": it is longer than 15 characters")
        );
    }

    #[test]
    fn ifname_conversions() {
        let n: IfName = "kleene0".parse().expect("valid");
        assert_eq!(n.as_str(), "kleene0");
        assert_eq!(n.to_string(), "kleene0");
        assert_eq!(IfName::try_from("kleene0").ok(), Some(n.clone()));
        assert_eq!(String::from(n), "kleene0");
    }

    #[test]
    fn epair_sides() {
        let e = Epair::from_a_side("epair0a").expect("valid");
        assert_eq!(e.base(), "epair0");
        assert_eq!(e.a().as_str(), "epair0a");
        assert_eq!(e.b().as_str(), "epair0b");
        assert_eq!(e.to_string(), "epair0");
        assert_eq!(Epair::from_base("epair0").ok(), Some(e));
        assert!(Epair::from_a_side("epair0b").is_err());
        assert!(Epair::from_a_side("a").is_err());
        assert!(Epair::from_base("abcdefghijklmno").is_err());
        assert!(Epair::from_base("abcdefghijklmn").is_ok());
    }

    #[test]
    fn jail_names_are_validated() {
        for ok in ["kleene-0123456789ab", "7", "a.b"] {
            assert_eq!(
                JailName::new(ok).map(|j| j.to_string()).ok().as_deref(),
                Some(ok)
            );
        }
        for bad in ["", "-x", "a b", "a\tb", "a\nb"] {
            assert!(JailName::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            JailName::new(12.to_string())
                .map(|j| j.as_str().to_owned())
                .ok()
                .as_deref(),
            Some("12")
        );
    }

    #[test]
    fn family_keywords() {
        assert_eq!(Family::of(&"10.0.0.1".parse().expect("ip")), Family::Inet);
        assert_eq!(Family::of(&"fd00::1".parse().expect("ip")), Family::Inet6);
        assert_eq!(Family::Inet.to_string(), "inet");
        assert_eq!(Family::Inet6.keyword(), "inet6");
    }

    #[test]
    fn command_display_and_argv() {
        let c = Command::new(PFCTL, ["-f", "-"]).with_stdin("pass all\n");
        assert_eq!(c.to_string(), "/sbin/pfctl -f - <stdin>");
        assert_eq!(c.argv(), ["/sbin/pfctl", "-f", "-"]);
    }
}
