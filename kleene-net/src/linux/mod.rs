//! The Linux backend: container networks built through route netlink and nftables.
//!
//! Each non-host container gets its own network namespace, held by a file descriptor
//! ([`Sandbox`]); no `/run/netns` bind mount is made, so a crash leaks nothing: once the
//! container's processes and our descriptor are gone, the kernel frees the namespace and
//! the veth end inside it (which takes the host end with it).
//!
//! A network is a Linux bridge ([`Netlink::ensure_bridge`]); a container joins it by a veth
//! pair ([`attach`] / [`detach`]). Firewalling and NAT are nftables scripts
//! ([`apply_nft`]). Nothing here runs `ip(8)` or `sysctl(8)`: links, addresses and routes
//! go through netlink ([`rtnetlink`]), sysctls are plain writes under `/proc/sys`.
//!
//! Namespace switches never move the calling thread: work that must happen "inside" a
//! namespace (creating a socket, writing a per-namespace sysctl, spawning `nft`) runs in a
//! short-lived thread that `setns(2)`'d into it.

mod error;
mod netlink;
mod nft;
mod sandbox;
mod veth;

pub use error::{Error, Result};
pub use netlink::Netlink;
pub use nft::{apply_nft, nft_available, nft_command, NFT_TIMEOUT};
pub use sandbox::{enable_forwarding, Sandbox};
pub use veth::{attach, detach, veth_name, VethSpec, IFNAMSIZ_MAX, VETH_PREFIX};
