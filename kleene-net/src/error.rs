//! The crate's errors: [`Error`] for the pure modules (the model, IPAM, ports, the
//! renderers) and [`HostError`] for the backends that change the host.

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

/// What went wrong changing the host's network, on every platform: the error of the
/// platform's backend, kept whole, so that a caller can name one type whatever it is
/// compiled for (kleene-core's `CoreError::Network` keeps it as its source).
///
/// The Linux backend's errors exist on Linux only, so [`HostError::Linux`] does too. The
/// FreeBSD backend's pure parts (interface names, the commands and their output) compile
/// everywhere, so [`HostError::FreeBsd`] exists everywhere: a plan made on any system may
/// refuse a name with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The Linux backend: netlink, namespaces, nftables (boxed: rtnetlink's errors are
    /// large, and this one travels inside other crates' error types).
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Linux(Box<crate::linux::Error>),

    /// The FreeBSD backend: `ifconfig`, `route`, `jexec`, `pfctl`, `sysctl`, or a name or
    /// value it refused before running anything.
    #[error(transparent)]
    FreeBsd(#[from] crate::freebsd::Error),

    /// A firewall ruleset could not be rendered from the host's networks and endpoints.
    #[error(transparent)]
    Render(#[from] Error),

    /// An interface that must exist on the host does not (a custom network's, which
    /// Kleene neither creates nor destroys).
    #[error("interface {name} does not exist on the host")]
    MissingInterface {
        /// The interface's name.
        name: String,
    },
}

#[cfg(target_os = "linux")]
impl From<crate::linux::Error> for HostError {
    fn from(e: crate::linux::Error) -> Self {
        HostError::Linux(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_are_small() {
        // Kept in callers' error types (kleene-core's CoreError), which clippy wants small.
        assert!(std::mem::size_of::<HostError>() <= 96);
    }

    #[test]
    fn host_errors_keep_the_backend_error_whole() {
        let e = HostError::from(crate::freebsd::Error::Invalid {
            what: "interface name",
            value: "em 0".into(),
            reason: "it contains a space".into(),
        });
        assert_eq!(
            e.to_string(),
            "invalid interface name \"em 0\": it contains a space"
        );
        assert!(matches!(e, HostError::FreeBsd(_)));
        let e = HostError::MissingInterface { name: "em9".into() };
        assert_eq!(e.to_string(), "interface em9 does not exist on the host");
        let e = HostError::from(Error::Render {
            what: "pf",
            reason: "bad template".into(),
        });
        assert_eq!(e.to_string(), "cannot render the pf ruleset: bad template");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_errors_are_kept_typed() {
        let e = HostError::from(crate::linux::Error::LinkNotFound {
            name: "kleene0".into(),
            ns: "net:[1]".into(),
        });
        assert!(
            matches!(&e, HostError::Linux(l) if matches!(**l, crate::linux::Error::LinkNotFound { .. }))
        );
        assert_eq!(e.to_string(), "interface kleene0 not found in net:[1]");
    }
}
