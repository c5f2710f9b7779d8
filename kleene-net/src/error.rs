//! The crate's errors.

use std::net::IpAddr;

use ipnet::IpNet;

/// What went wrong in kleene-net.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from a user or a caller: the message names the thing and the value.
    #[error("{0}")]
    Invalid(String),

    /// A name (network, interface) breaks the naming rules.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidName {
        /// What kind of name: "network name", "interface name", ...
        what: &'static str,
        /// The rejected name.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A network specification breaks one of Kleene's rules.
    #[error("invalid network '{network}': {reason}")]
    InvalidNetwork {
        /// The network's name.
        network: String,
        /// Which rule it breaks, naming the offending value.
        reason: String,
    },

    /// An address that was asked for is not inside the network's subnet.
    #[error("address {address} is outside network {subnet}")]
    AddressOutsideSubnet {
        /// The requested address.
        address: IpAddr,
        /// The network's subnet.
        subnet: IpNet,
    },

    /// An address that was asked for is reserved in the network.
    #[error("address {address} is the {role} of network {subnet}")]
    AddressReserved {
        /// The requested address.
        address: IpAddr,
        /// The network's subnet.
        subnet: IpNet,
        /// What the address is reserved as: "network address", "broadcast address", "gateway", ...
        role: &'static str,
    },

    /// An address that was asked for is already used by another endpoint.
    #[error("address {address} is already in use in network {subnet}")]
    AddressInUse {
        /// The requested address.
        address: IpAddr,
        /// The network's subnet.
        subnet: IpNet,
    },

    /// No free address is left in the network.
    #[error("network {subnet} has no free address left")]
    SubnetFull {
        /// The network's subnet.
        subnet: IpNet,
    },

    /// The search for a free address gave up after scanning this many candidates
    /// (only huge IPv6 subnets that are used densely get here).
    #[error("no free address found in the first {scanned} addresses of network {subnet}")]
    ScanLimit {
        /// The network's subnet.
        subnet: IpNet,
        /// How many candidates were looked at.
        scanned: u128,
    },

    /// A published-port specification (`-p`) could not be parsed or is out of range.
    #[error("invalid published port '{value}': {reason}")]
    InvalidPort {
        /// The specification as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A firewall template or input could not be rendered.
    #[error("cannot render the {what} ruleset: {reason}")]
    Render {
        /// Which renderer: "pf" or "nftables".
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// An I/O operation failed; `what` says which and on what.
    #[error("{what}: {source}")]
    Io {
        /// The operation and its object, e.g. "cannot write /etc/pf.conf".
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// kleene-net's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
