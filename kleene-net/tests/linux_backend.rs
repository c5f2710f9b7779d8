//! The Linux backend against real network namespaces (root needed).
//!
//! Every test runs its whole body in a thread that entered a network namespace the test
//! created (its "host"), on a current-thread tokio runtime in that thread: the real host's
//! interfaces, routes and firewall are never touched, and every address used lives in the
//! test's own namespaces (10.231.0.0/16, fd00:231::/32). Without root (or nft, where
//! needed) a test prints "skipped: ..." and passes, unless KLEENE_REQUIRE_ZFS=1, where it
//! fails.
#![cfg(target_os = "linux")]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use kleene_net::linux::{
    apply_nft, attach, detach, nft_available, nft_command, veth_name, Error, Netlink, Sandbox,
    VethSpec, VETH_PREFIX,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Skips (or, with KLEENE_REQUIRE_ZFS=1, fails) the test when `why` is `Some`.
fn unmet(test: &str, why: Option<String>) -> bool {
    let Some(why) = why else { return false };
    if std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1") {
        panic!("{test}: prerequisites missing while KLEENE_REQUIRE_ZFS=1: {why}");
    }
    println!("skipped: {test}: {why}");
    true
}

/// Root, network namespaces and (when `need_nft`) nft; `true` when the test must stop.
fn skip(test: &str, need_nft: bool) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return unmet(test, Some("not root".to_string()));
    }
    if let Err(e) = Sandbox::new() {
        return unmet(test, Some(format!("cannot make a network namespace: {e}")));
    }
    if need_nft && !nft_available() {
        return unmet(test, Some("nft is not installed".to_string()));
    }
    false
}

fn real_ns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Runs `body` in a thread inside a fresh network namespace (the test's "host"), on a
/// current-thread runtime living in that thread.
fn with_host<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = ()>,
{
    let outside = real_ns();
    let host = Sandbox::new().expect("test host namespace");
    host.run_in(move || {
        assert_ne!(
            real_ns(),
            outside,
            "the test body must not run in the real namespace"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(body());
    })
    .expect("enter the test host namespace");
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test address")
}

fn spec(host_name: &str, bridge: &str, addrs: &[&str], gw: Option<Ipv4Addr>) -> VethSpec {
    VethSpec {
        host_name: host_name.to_string(),
        bridge: bridge.to_string(),
        inner_name: "eth0".to_string(),
        addrs: addrs.iter().map(|a| net(a)).collect(),
        gateway4: gw,
        gateway6: None,
        mtu: None,
    }
}

/// A listener bound to `addr` (port 0) inside `sb` (or the current namespace).
fn listen_in(sb: Option<&Sandbox>, addr: IpAddr) -> TcpListener {
    let bind = move || TcpListener::bind(SocketAddr::new(addr, 0)).expect("bind test listener");
    match sb {
        Some(sb) => sb.run_in(bind).expect("enter sandbox"),
        None => bind(),
    }
}

/// Connects from inside `from` to `listener` (at `to`), sends a line and checks that the
/// listener side receives it. `Err` when the connection cannot be made.
fn exchange(from: &Sandbox, listener: &TcpListener, to: IpAddr) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let target = SocketAddr::new(to, port);
    let mut stream = from
        .run_in(move || TcpStream::connect_timeout(&target, CONNECT_TIMEOUT))
        .expect("enter sandbox")?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"kleene\n")?;
    // the handshake completed, so the connection waits in the backlog: accept is immediate
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let (mut peer, _) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    peer.set_nonblocking(false)?;
    peer.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; 7];
    peer.read_exact(&mut buf)?;
    assert_eq!(&buf, b"kleene\n");
    Ok(())
}

async fn wait_gone(nl: &Netlink, name: &str, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !nl.link_exists(name).await.expect("link_exists") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn ensure_bridge_is_idempotent() {
    if skip("ensure_bridge_is_idempotent", false) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        let addrs = [net("10.231.1.1/24"), net("fd00:231:1::1/64")];
        nl.ensure_bridge("ktbr1", &addrs)
            .await
            .expect("first ensure_bridge");
        nl.ensure_bridge("ktbr1", &addrs)
            .await
            .expect("second ensure_bridge");
        assert!(nl.link_exists("ktbr1").await.expect("link_exists"));
        assert!(nl.link_is_up("ktbr1").await.expect("link_is_up"));
        let present = nl.interface_addresses("ktbr1").await.expect("addresses");
        for a in &addrs {
            assert_eq!(
                present.iter().filter(|p| *p == a).count(),
                1,
                "{a} once in {present:?}"
            );
        }
        // a third address is added to what is there
        let more = [addrs[0], addrs[1], net("10.231.9.1/24")];
        nl.ensure_bridge("ktbr1", &more)
            .await
            .expect("third ensure_bridge");
        let present = nl.interface_addresses("ktbr1").await.expect("addresses");
        assert!(more.iter().all(|a| present.contains(a)), "{present:?}");
        // an interface of that name that is not a bridge is refused
        let err = nl
            .ensure_bridge("lo", &[])
            .await
            .expect_err("lo is no bridge");
        assert!(matches!(err, Error::NotABridge { .. }), "{err}");
        assert!(nl.remove_link("ktbr1").await.expect("remove"));
        assert!(!nl.remove_link("ktbr1").await.expect("remove again"));
        assert!(matches!(
            nl.interface_addresses("ktbr1").await,
            Err(Error::LinkNotFound { .. })
        ));
    });
}

#[test]
fn sandboxes_on_one_bridge_reach_each_other_and_the_gateway() {
    if skip(
        "sandboxes_on_one_bridge_reach_each_other_and_the_gateway",
        false,
    ) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        let gw = Ipv4Addr::new(10, 231, 2, 1);
        nl.ensure_bridge("ktbr2", &[net("10.231.2.1/24"), net("fd00:231:2::1/64")])
            .await
            .expect("bridge");
        let a = Sandbox::new().expect("sandbox a");
        let b = Sandbox::new().expect("sandbox b");
        let name_a = veth_name("0123456789abcdef", 0);
        let name_b = veth_name("fedcba9876543210", 0);
        let mut spec_a = spec(
            &name_a,
            "ktbr2",
            &["10.231.2.10/24", "fd00:231:2::10/64"],
            Some(gw),
        );
        spec_a.gateway6 = Some("fd00:231:2::1".parse().expect("v6"));
        spec_a.mtu = Some(1400);
        attach(&nl, &a, &spec_a).await.expect("attach a");
        attach(
            &nl,
            &b,
            &spec(
                &name_b,
                "ktbr2",
                &["10.231.2.11/24", "fd00:231:2::11/64"],
                Some(gw),
            ),
        )
        .await
        .expect("attach b");

        let mut veths = nl
            .links_with_prefix(VETH_PREFIX)
            .await
            .expect("links_with_prefix");
        veths.sort();
        let mut expected = vec![name_a.clone(), name_b.clone()];
        expected.sort();
        assert_eq!(veths, expected);

        let inner_a = a.netlink().expect("netlink in a");
        assert!(inner_a.link_is_up("eth0").await.expect("eth0 up"));
        assert!(inner_a.link_is_up("lo").await.expect("lo up"));
        let in_a = inner_a
            .interface_addresses("eth0")
            .await
            .expect("addresses in a");
        assert!(
            in_a.contains(&net("10.231.2.10/24")) && in_a.contains(&net("fd00:231:2::10/64")),
            "{in_a:?}"
        );
        assert_eq!(
            inner_a.default_route_interface().await.expect("route"),
            Some("eth0".to_string())
        );
        drop(inner_a);

        // a <-> b over IPv4 and IPv6
        let ip_a: IpAddr = "10.231.2.10".parse().expect("ip");
        let ip_b: IpAddr = "10.231.2.11".parse().expect("ip");
        let ip6_b: IpAddr = "fd00:231:2::11".parse().expect("ip");
        exchange(&b, &listen_in(Some(&a), ip_a), ip_a).expect("b -> a");
        exchange(&a, &listen_in(Some(&b), ip_b), ip_b).expect("a -> b");
        exchange(&a, &listen_in(Some(&b), ip6_b), ip6_b).expect("a -> b over ipv6");
        // each reaches the gateway address on the bridge (the test's host namespace)
        let gw_listener = listen_in(None, IpAddr::V4(gw));
        exchange(&a, &gw_listener, IpAddr::V4(gw)).expect("a -> gateway");
        exchange(&b, &gw_listener, IpAddr::V4(gw)).expect("b -> gateway");
        let gw6: IpAddr = "fd00:231:2::1".parse().expect("ip");
        exchange(&a, &listen_in(None, gw6), gw6).expect("a -> ipv6 gateway");
    });
}

#[test]
fn detach_removes_both_ends_and_stops_traffic() {
    if skip("detach_removes_both_ends_and_stops_traffic", false) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        let gw = Ipv4Addr::new(10, 231, 3, 1);
        nl.ensure_bridge("ktbr3", &[net("10.231.3.1/24")])
            .await
            .expect("bridge");
        let a = Sandbox::new().expect("sandbox");
        let name = veth_name("detachtest0000", 1);
        attach(
            &nl,
            &a,
            &spec(&name, "ktbr3", &["10.231.3.10/24"], Some(gw)),
        )
        .await
        .expect("attach");
        let listener = listen_in(None, IpAddr::V4(gw));
        exchange(&a, &listener, IpAddr::V4(gw)).expect("before detach");
        let inner = a.netlink().expect("netlink in sandbox");
        assert!(inner.link_exists("eth0").await.expect("exists"));

        assert!(detach(&nl, &name).await.expect("detach"));
        assert!(!nl.link_exists(&name).await.expect("host end"));
        assert!(!inner.link_exists("eth0").await.expect("sandbox end"));
        assert!(!detach(&nl, &name).await.expect("detach again"));
        assert!(
            exchange(&a, &listener, IpAddr::V4(gw)).is_err(),
            "traffic after detach"
        );
    });
}

#[test]
fn dropping_the_sandbox_frees_its_veth_pair() {
    if skip("dropping_the_sandbox_frees_its_veth_pair", false) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        nl.ensure_bridge("ktbr4", &[net("10.231.4.1/24")])
            .await
            .expect("bridge");
        let a = Sandbox::new().expect("sandbox");
        let name = veth_name("droptest000000", 0);
        attach(&nl, &a, &spec(&name, "ktbr4", &["10.231.4.10/24"], None))
            .await
            .expect("attach");
        assert!(nl.link_exists(&name).await.expect("exists"));
        drop(a);
        assert!(
            wait_gone(&nl, &name, Duration::from_secs(10)).await,
            "{name} still there 10 s after the last fd went"
        );
    });
}

#[test]
fn failed_attach_leaves_nothing() {
    if skip("failed_attach_leaves_nothing", false) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        let a = Sandbox::new().expect("sandbox");
        let err = attach(
            &nl,
            &a,
            &spec("kvnobridge", "ktmissing", &["10.231.5.10/24"], None),
        )
        .await
        .expect_err("no bridge");
        assert!(matches!(err, Error::LinkNotFound { .. }), "{err}");
        nl.ensure_bridge("ktbr5", &[net("10.231.5.1/24")])
            .await
            .expect("bridge");
        // a gateway outside the sandbox's subnet: the route step fails after the pair exists
        let err = attach(
            &nl,
            &a,
            &spec(
                "kvbadgw",
                "ktbr5",
                &["10.231.5.10/24"],
                Some(Ipv4Addr::new(10, 231, 99, 1)),
            ),
        )
        .await
        .expect_err("unreachable gateway");
        assert!(err.to_string().contains("default route"), "{err}");
        assert!(!nl.link_exists("kvbadgw").await.expect("exists"));
        assert!(nl
            .links_with_prefix("kt")
            .await
            .expect("list")
            .iter()
            .all(|n| n.starts_with("ktbr")));
        let inner = a.netlink().expect("netlink in sandbox");
        assert!(!inner.link_exists("eth0").await.expect("exists"));
    });
}

#[test]
fn default_route_interface_names_the_uplink() {
    if skip("default_route_interface_names_the_uplink", false) {
        return;
    }
    with_host(|| async {
        let nl = Netlink::current().await.expect("netlink");
        assert_eq!(nl.default_route_interface().await.expect("route"), None);
        // an "outside" namespace with a bridge; this (host) namespace joins it by a veth
        // named kup0 and takes its default route through it
        let outside = Sandbox::new().expect("outside");
        let out_nl = outside.netlink().expect("netlink outside");
        out_nl
            .ensure_bridge("ktout", &[net("10.231.6.1/24")])
            .await
            .expect("outside bridge");
        let me = Sandbox::current().expect("this namespace");
        let mut uplink = spec(
            "kvuplink",
            "ktout",
            &["10.231.6.2/24"],
            Some(Ipv4Addr::new(10, 231, 6, 1)),
        );
        uplink.inner_name = "kup0".to_string();
        attach(&out_nl, &me, &uplink).await.expect("attach uplink");
        assert_eq!(
            nl.default_route_interface().await.expect("route"),
            Some("kup0".to_string())
        );
        let addrs = nl.interface_addresses("kup0").await.expect("addresses");
        assert!(addrs.contains(&net("10.231.6.2/24")), "{addrs:?}");
        // the outside sees our end's pair on its bridge
        assert!(out_nl.link_exists("kvuplink").await.expect("exists"));
    });
}

#[test]
fn forwarding_is_per_namespace() {
    if skip("forwarding_is_per_namespace", false) {
        return;
    }
    with_host(|| async {
        // A new namespace takes IPv4 forwarding from the real host's (the kernel's
        // devconf inheritance), which may have it on: each sandbox turns it off in itself
        // first, so that what is measured is enable_forwarding alone.
        let off = |sb: &Sandbox| {
            sb.run_in(|| {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").expect("forwarding off");
                std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "0")
                    .expect("ipv6 forwarding off");
            })
            .expect("run_in")
        };
        let a = Sandbox::new().expect("sandbox");
        let b = Sandbox::new().expect("sandbox");
        off(&a);
        off(&b);
        let read = |path: &'static str| {
            a.run_in(move || std::fs::read_to_string(path).expect("read sysctl"))
        };
        assert_eq!(
            read("/proc/sys/net/ipv4/ip_forward")
                .expect("run_in")
                .trim(),
            "0"
        );
        kleene_net::linux::enable_forwarding(Some(&a)).expect("enable forwarding in a");
        // b, another namespace, is not changed by it.
        assert_eq!(
            b.run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read"))
                .expect("run_in")
                .trim(),
            "0"
        );
        assert_eq!(
            read("/proc/sys/net/ipv4/ip_forward")
                .expect("run_in")
                .trim(),
            "1"
        );
        assert_eq!(
            read("/proc/sys/net/ipv6/conf/all/forwarding")
                .expect("run_in")
                .trim(),
            "1"
        );
        // and in the test's host namespace (the current one) through None
        kleene_net::linux::enable_forwarding(None).expect("enable forwarding here");
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .expect("read")
                .trim(),
            "1"
        );
    });
}

#[test]
fn apply_nft_acts_in_the_callers_namespace() {
    if skip("apply_nft_acts_in_the_callers_namespace", true) {
        return;
    }
    with_host(|| async {
        // this thread is in the test's host namespace: nft's child inherits it
        apply_nft("table inet kleenetest {\n  chain input {\n    type filter hook input priority 0; policy accept;\n  }\n}\n")
            .expect("apply_nft");
        let tables =
            nft_command(&["list", "tables"], None, Duration::from_secs(10)).expect("list tables");
        assert!(tables.contains("table inet kleenetest"), "{tables}");
        // a sibling namespace does not see it
        let other = Sandbox::new().expect("sandbox");
        let there = other
            .run_in(|| nft_command(&["list", "tables"], None, Duration::from_secs(10)))
            .expect("run_in")
            .expect("list tables there");
        assert!(!there.contains("kleenetest"), "{there}");
        let err = apply_nft("this is not nftables\n").expect_err("bad script");
        match err {
            Error::Nft { stderr, .. } => assert!(!stderr.is_empty()),
            other => panic!("unexpected error {other}"),
        }
        apply_nft("delete table inet kleenetest\n").expect("delete table");
    });
}

#[test]
fn of_process_opens_the_namespace_a_child_inherited() {
    if skip("of_process_opens_the_namespace_a_child_inherited", false) {
        return;
    }
    with_host(|| async {
        let here = Sandbox::current().expect("this namespace");
        // spawned from this thread, the child starts in the test's namespace
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let of_child = Sandbox::of_process(child.id());
        let _ = child.kill();
        let _ = child.wait();
        let of_child = of_child.expect("of_process");
        assert_eq!(of_child.label(), here.label());
        assert_ne!(Sandbox::new().expect("sandbox").label(), here.label());
        assert!(Sandbox::of_process(u32::MAX).is_err());
    });
}
