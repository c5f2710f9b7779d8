//! A route-netlink connection bound to one network namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::error::{Error, Result};

/// `ENODEV`, `EEXIST` as netlink reports them (negated errno).
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// A route-netlink connection bound to one network namespace (the namespace the socket was
/// created in). The connection is driven by a task on the tokio runtime it was made on;
/// dropping the `Netlink` stops that task and closes the socket.
pub struct Netlink {
    handle: Handle,
    ns: String,
    task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `err` is the kernel refusing with `errno`.
pub(crate) fn is_errno(err: &rtnetlink::Error, errno: i32) -> bool {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.is_some_and(|c| c.get() == -errno),
        _ => false,
    }
}

/// The label of the calling thread's network namespace, `net:[inode]`.
pub(crate) fn current_ns_label() -> String {
    match std::fs::metadata("/proc/thread-self/ns/net") {
        Ok(meta) => format!("net:[{}]", meta.ino()),
        Err(_) => "the current network namespace".to_string(),
    }
}

/// The name in a link message.
pub(crate) fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

fn is_bridge(msg: &LinkMessage) -> bool {
    msg.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    // For IPv4, IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on
    // point-to-point links); IPv6 only has IFA_ADDRESS.
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(addr)?, msg.header.prefix_len).ok()
}

impl Netlink {
    /// A connection in the caller's network namespace (the calling thread's), driven by a
    /// task spawned on the current tokio runtime.
    pub async fn current() -> Result<Netlink> {
        let ns = current_ns_label();
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| Error::Io {
            op: "open a route netlink socket in",
            path: ns.clone(),
            source,
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::NoRuntime {
            ns: ns.clone(),
            reason: e.to_string(),
        })?;
        let task = runtime.spawn(conn).abort_handle();
        Ok(Netlink { handle, ns, task })
    }

    /// Wraps a connection made elsewhere (see [`super::Sandbox::netlink`]).
    pub(crate) fn from_parts(
        handle: Handle,
        ns: String,
        task: tokio::task::AbortHandle,
    ) -> Netlink {
        Netlink { handle, ns, task }
    }

    /// The namespace label (`net:[inode]`) used in error messages.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    pub(crate) fn err(&self, op: String, source: rtnetlink::Error) -> Error {
        Error::Netlink {
            op,
            ns: self.ns.clone(),
            source,
        }
    }

    pub(crate) fn not_found(&self, name: &str) -> Error {
        Error::LinkNotFound {
            name: name.to_string(),
            ns: self.ns.clone(),
        }
    }

    /// The link called `name`, if any.
    pub(crate) async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut stream = self.handle.link().get().match_name(name).execute();
        match stream.try_next().await {
            Ok(msg) => Ok(msg),
            Err(e) if is_errno(&e, ENODEV) => Ok(None),
            Err(e) => Err(self.err(format!("look up interface {name}"), e)),
        }
    }

    /// The index of the link called `name`, if any.
    pub(crate) async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_by_name(name).await?.map(|m| m.header.index))
    }

    /// The index of the link called `name`; an error when absent.
    pub(crate) async fn require_index(&self, name: &str) -> Result<u32> {
        self.link_index(name)
            .await?
            .ok_or_else(|| self.not_found(name))
    }

    /// Sends an RTM_SETLINK; `what` describes it for errors.
    pub(crate) async fn set_link(&self, msg: LinkMessage, what: String) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| self.err(what, e))
    }

    /// Sets the link with index `index` (called `name`) up.
    pub(crate) async fn set_up(&self, index: u32, name: &str) -> Result<()> {
        self.set_link(
            LinkUnspec::new_with_index(index).up().build(),
            format!("set {name} up"),
        )
        .await
    }

    /// The addresses on the link with index `index`.
    async fn addresses_of(&self, index: u32, name: &str) -> Result<Vec<IpNet>> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err(format!("list the addresses of {name}"), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(address_of)
            .collect())
    }

    /// Adds `addr` to the link `index` (called `name`) without duplicate address detection
    /// (addresses come from our IPAM; DAD would only delay IPv6 by a second or two).
    /// An address already present is not an error.
    pub(crate) async fn add_address(&self, index: u32, name: &str, addr: IpNet) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        let msg = req.message_mut();
        msg.header.flags |= AddressHeaderFlags::Nodad;
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, EEXIST) => Ok(()),
            Err(e) => Err(self.err(format!("add address {addr} to {name}"), e)),
        }
    }

    /// Adds a default route via `gateway` out of link `index` (called `name`).
    pub(crate) async fn add_default_route(
        &self,
        index: u32,
        name: &str,
        gateway: IpAddr,
    ) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, EEXIST) => Ok(()),
            Err(e) => Err(self.err(format!("add a default route via {gateway} dev {name}"), e)),
        }
    }

    /// Creates the bridge `name` if it is missing, adds the addresses of `addrs` it does not
    /// have yet (IPv4 and IPv6, with their prefix) and sets it up. Idempotent. An existing
    /// interface of that name that is not a bridge is an error.
    pub async fn ensure_bridge(&self, name: &str, addrs: &[IpNet]) -> Result<()> {
        super::veth::check_ifname(name)?;
        let index = match self.link_by_name(name).await? {
            Some(msg) if is_bridge(&msg) => msg.header.index,
            Some(_) => {
                return Err(Error::NotABridge {
                    name: name.to_string(),
                    ns: self.ns.clone(),
                })
            }
            None => {
                let msg: LinkMessage = LinkBridge::new(name).build();
                match self.handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    // made meanwhile by someone else: fine if it is a bridge, checked below
                    Err(e) if is_errno(&e, EEXIST) => {}
                    Err(e) => return Err(self.err(format!("create bridge {name}"), e)),
                }
                match self.link_by_name(name).await? {
                    Some(msg) if is_bridge(&msg) => msg.header.index,
                    Some(_) => {
                        return Err(Error::NotABridge {
                            name: name.to_string(),
                            ns: self.ns.clone(),
                        })
                    }
                    None => return Err(self.not_found(name)),
                }
            }
        };
        let present = self.addresses_of(index, name).await?;
        for addr in addrs {
            if !present.contains(addr) {
                self.add_address(index, name, *addr).await?;
            }
        }
        self.set_up(index, name).await
    }

    /// Deletes the link `name`; `false` when there was none. Deleting one end of a veth pair
    /// deletes both.
    pub async fn remove_link(&self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            // gone meanwhile (e.g. its peer's namespace was freed)
            Err(e) if is_errno(&e, ENODEV) => Ok(false),
            Err(e) => Err(self.err(format!("delete interface {name}"), e)),
        }
    }

    /// Whether a link called `name` exists.
    pub async fn link_exists(&self, name: &str) -> Result<bool> {
        Ok(self.link_index(name).await?.is_some())
    }

    /// Whether the link `name` is administratively up (`IFF_UP`); an error when it does not
    /// exist.
    pub async fn link_is_up(&self, name: &str) -> Result<bool> {
        let msg = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| self.not_found(name))?;
        Ok(msg.header.flags.contains(LinkFlags::Up))
    }

    /// The names of the links whose names start with `prefix` (for the repair: veths named
    /// with [`super::VETH_PREFIX`]), sorted.
    pub async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list interfaces".to_string(), e))?;
        let mut names: Vec<String> = links
            .iter()
            .filter_map(link_name)
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The interface of the IPv4 default route of the main table (the lowest metric one when
    /// there are several); `None` without one. This is the `<host-gateway>` of Kleene's nat
    /// option.
    pub async fn default_route_interface(&self) -> Result<Option<String>> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(|e| self.err("list the ipv4 routes".to_string(), e))?;
        let mut best: Option<(u32, u32)> = None; // (metric, oif)
        for route in &routes {
            let table = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(route.header.table));
            if route.header.destination_prefix_length != 0
                || table != u32::from(RouteHeader::RT_TABLE_MAIN)
                || route.header.kind != RouteType::Unicast
            {
                continue;
            }
            let oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let metric = route
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            if let Some(oif) = oif {
                if best.is_none_or(|(m, _)| metric < m) {
                    best = Some((metric, oif));
                }
            }
        }
        let Some((_, oif)) = best else {
            return Ok(None);
        };
        let mut stream = self.handle.link().get().match_index(oif).execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(link_name(&msg).map(str::to_string)),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, ENODEV) => Ok(None),
            Err(e) => Err(self.err(format!("look up interface index {oif}"), e)),
        }
    }

    /// The addresses (with prefix) on the interface `name`; an error when it does not exist.
    pub async fn interface_addresses(&self, name: &str) -> Result<Vec<IpNet>> {
        let index = self.require_index(name).await?;
        self.addresses_of(index, name).await
    }
}

/// Re-exported for the veth code: a builder for a link by index.
pub(crate) fn link_by_index(index: u32) -> LinkMessageBuilder<LinkUnspec> {
    LinkUnspec::new_with_index(index)
}
