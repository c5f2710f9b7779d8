//! The FreeBSD host operations: each runs one or two commands from [`super::argv`] through
//! [`super::run`] and reads their output with [`super::parse`].
//!
//! The `ensure_*`, `destroy_*` and `remove_*` operations are idempotent, so a daemon restarting
//! over existing state, or cleaning up after a partial failure, does not trip over it.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{argv, parse, run, Epair, Error, Family, IfName, Result};

/// The names of all interfaces (`ifconfig -l`).
pub fn list_interfaces() -> Result<Vec<String>> {
    Ok(parse::interface_list(&run(&argv::list_interfaces())?))
}

/// Whether the interface `name` exists.
pub fn interface_exists(name: &IfName) -> Result<bool> {
    Ok(parse::interface_listed(
        &run(&argv::list_interfaces())?,
        name,
    ))
}

/// The addresses on the interface `name` (`ifconfig NAME`), or `None` when it does not
/// exist.
pub fn interface_addresses(name: &IfName) -> Result<Option<Vec<IpAddr>>> {
    match run(&argv::show_interface(name)) {
        Ok(out) => Ok(Some(parse::interface_addresses(&out))),
        Err(Error::Failed { ref stderr, .. }) if parse::interface_does_not_exist(stderr) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Creates the bridge `name` unless an interface of that name exists, then brings it up.
/// Returns whether it was created.
pub fn ensure_bridge(name: &IfName) -> Result<bool> {
    let created = !interface_exists(name)?;
    if created {
        run(&argv::create_bridge(name))?;
    }
    run(&argv::interface_up(name))?;
    Ok(created)
}

/// Creates the loopback interface `name` unless an interface of that name exists, then
/// brings it up. Returns whether it was created.
pub fn ensure_loopback(name: &IfName) -> Result<bool> {
    let created = !interface_exists(name)?;
    if created {
        run(&argv::create_loopback(name))?;
    }
    run(&argv::interface_up(name))?;
    Ok(created)
}

/// Adds `addr` (host address and prefix length) to `iface` as an alias.
pub fn add_alias(iface: &IfName, addr: &IpNet) -> Result<()> {
    run(&argv::add_alias(iface, addr)).map(drop)
}

/// Removes `addr` from `iface`; an address that is not there is not an error.
pub fn remove_alias(iface: &IfName, addr: &IpAddr) -> Result<()> {
    match run(&argv::remove_alias(iface, addr)) {
        Err(Error::Failed { ref stderr, .. }) if parse::address_not_assigned(stderr) => Ok(()),
        other => other.map(drop),
    }
}

/// Creates an epair and returns it (`epairNa` for the host, `epairNb` for the jail).
pub fn create_epair() -> Result<Epair> {
    parse::epair_create(&run(&argv::create_epair())?)
}

/// Renames the interface `from` to `to`.
pub fn rename_interface(from: &IfName, to: &IfName) -> Result<()> {
    run(&argv::rename_interface(from, to)).map(drop)
}

/// Adds `member` to `bridge`.
pub fn bridge_add_member(bridge: &IfName, member: &IfName) -> Result<()> {
    run(&argv::bridge_add_member(bridge, member)).map(drop)
}

/// Destroys the cloned interface `name`; one that does not exist is not an error.
pub fn destroy_interface(name: &IfName) -> Result<()> {
    match run(&argv::destroy_interface(name)) {
        Err(Error::Failed { ref stderr, .. }) if parse::interface_does_not_exist(stderr) => Ok(()),
        other => other.map(drop),
    }
}

/// Checks `ruleset` with `pfctl -n -f -` without loading it.
pub fn check_pf(ruleset: &str) -> Result<()> {
    run(&argv::pf_check(ruleset)).map(drop)
}

/// Loads `ruleset` as pf's main ruleset (`pfctl -f -`), replacing the loaded one atomically.
pub fn load_pf(ruleset: &str) -> Result<()> {
    run(&argv::pf_load(ruleset)).map(drop)
}

/// Enables pf; pf already being enabled is success.
pub fn enable_pf() -> Result<()> {
    match run(&argv::pf_enable()) {
        Err(Error::Failed { ref stderr, .. }) if parse::pf_already_enabled(stderr) => Ok(()),
        other => other.map(drop),
    }
}

/// Turns on IPv4 and IPv6 forwarding.
pub fn enable_forwarding() -> Result<()> {
    run(&argv::enable_ipv4_forwarding())?;
    run(&argv::enable_ipv6_forwarding())?;
    Ok(())
}

/// The interface of the default route of `family`, if there is one (from `netstat -rn`).
pub fn default_route_interface(family: Family) -> Result<Option<String>> {
    Ok(parse::netstat_default_interface(
        &run(&argv::routing_table())?,
        family,
    ))
}
