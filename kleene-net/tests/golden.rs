//! Golden tests for the pf and nftables renderers.
//!
//! Each case renders to `tests/golden/{pf,nft}/<case>.conf`; `UPDATE_GOLDEN=1`
//! rewrites the files instead of comparing. `nft_check` feeds every nft golden to
//! `nft -c -f` inside a fresh network namespace (`unshare --net`), so the host's
//! firewall is never touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use kleene_net::model::{EndpointRules, FirewallInput, NetRules, PublishRules};
use kleene_net::nft::render_nft;
use kleene_net::pf::{render_pf, DEFAULT_PF_TEMPLATE};

fn golden_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(kind)
}

fn net(name: &str, interface: &str, subnet: &str) -> NetRules {
    NetRules {
        name: name.into(),
        interface: interface.into(),
        subnet: Some(subnet.parse().expect("test subnet")),
        subnet6: None,
        gateway: None,
        gateway6: None,
        nat: None,
        icc: true,
        internal: false,
    }
}

fn endpoint(
    container: &str,
    network: &str,
    ipv4: Option<&str>,
    ipv6: Option<&str>,
) -> EndpointRules {
    EndpointRules {
        container: container.into(),
        network: network.into(),
        ipv4: ipv4.map(|a| a.parse().expect("test address")),
        ipv6: ipv6.map(|a| a.parse().expect("test address")),
        host_interface: None,
    }
}

fn publish(
    container: &str,
    network: &str,
    ipv4: Option<&str>,
    ipv6: Option<&str>,
    spec: &str,
    host_if: &str,
) -> PublishRules {
    let port: kleene_net::ports::PublishedPort = spec.parse().expect("test port");
    PublishRules {
        container: container.into(),
        network: network.into(),
        ipv4: ipv4.map(|a| a.parse().expect("test address")),
        ipv6: ipv6.map(|a| a.parse().expect("test address")),
        interface: port
            .interface
            .clone()
            .unwrap_or_else(|| host_if.to_string()),
        port,
    }
}

/// The cases, for a host whose gateway interface is `gw` ("em0" for pf, "eth0" for nft).
fn cases(gw: &str) -> Vec<(&'static str, FirewallInput)> {
    let host_gateway = Some(gw.to_string());
    let freebsd = gw == "em0";
    let other_if = if freebsd { "em1" } else { "eth1" };
    let (link1, link2) = if freebsd {
        ("epair0a", "epair1a")
    } else {
        ("vk-c1", "vk-c2")
    };
    let mut v = Vec::new();

    v.push((
        "empty",
        FirewallInput {
            host_gateway: None,
            ..Default::default()
        },
    ));

    let mut nat = net("testnet", "kleene0", "10.13.37.0/24");
    nat.nat = Some(gw.into());
    v.push((
        "nat",
        FirewallInput {
            networks: vec![nat.clone()],
            endpoints: vec![endpoint("c1", "testnet", Some("10.13.37.2"), None)],
            published: vec![],
            host_gateway: host_gateway.clone(),
        },
    ));

    let mut icc_off = net("quiet", "kleene1", "10.20.0.0/16");
    icc_off.icc = false;
    icc_off.gateway = Some("10.20.0.1".parse().expect("addr"));
    let icc_on = net("chatty", "kleene2", "10.21.0.0/16");
    v.push((
        "icc",
        FirewallInput {
            networks: vec![icc_off.clone(), icc_on],
            endpoints: vec![
                EndpointRules {
                    host_interface: Some(link1.into()),
                    ..endpoint("c1", "quiet", Some("10.20.0.2"), None)
                },
                EndpointRules {
                    host_interface: Some(link2.into()),
                    ..endpoint("c2", "quiet", Some("10.20.0.3"), None)
                },
            ],
            published: vec![],
            host_gateway: host_gateway.clone(),
        },
    ));

    let mut internal = net("vault", "kleene3", "10.30.0.0/24");
    internal.internal = true;
    internal.nat = Some(gw.into()); // ignored: internal networks are never NAT'ed
    internal.subnet6 = Some("fd00:30::/64".parse().expect("subnet6"));
    v.push((
        "internal",
        FirewallInput {
            networks: vec![nat.clone(), internal],
            endpoints: vec![endpoint(
                "c3",
                "vault",
                Some("10.30.0.2"),
                Some("fd00:30::2"),
            )],
            published: vec![],
            host_gateway: host_gateway.clone(),
        },
    ));

    v.push((
        "publish_tcp_udp",
        FirewallInput {
            networks: vec![nat.clone()],
            endpoints: vec![endpoint("c1", "testnet", Some("10.13.37.2"), None)],
            published: vec![
                publish("c1", "testnet", Some("10.13.37.2"), None, "8080:80", gw),
                publish("c1", "testnet", Some("10.13.37.2"), None, "53/udp", gw),
                publish(
                    "c1",
                    "testnet",
                    Some("10.13.37.2"),
                    None,
                    &format!("{other_if}:5353:53/udp"),
                    gw,
                ),
            ],
            host_gateway: host_gateway.clone(),
        },
    ));

    v.push((
        "ranges",
        FirewallInput {
            networks: vec![nat.clone()],
            endpoints: vec![endpoint("c1", "testnet", Some("10.13.37.2"), None)],
            published: vec![
                publish("c1", "testnet", Some("10.13.37.2"), None, "8000-8010", gw),
                publish(
                    "c1",
                    "testnet",
                    Some("10.13.37.2"),
                    None,
                    "9000-9004:10000/udp",
                    gw,
                ),
            ],
            host_gateway: host_gateway.clone(),
        },
    ));

    let mut dual = net("dual", "kleene4", "10.40.0.0/24");
    dual.subnet6 = Some("fd00:40::/64".parse().expect("subnet6"));
    dual.nat = Some(gw.into());
    dual.gateway = Some("10.40.0.1".parse().expect("addr"));
    dual.gateway6 = Some("fd00:40::1".parse().expect("addr"));
    let mut only6 = NetRules {
        subnet: None,
        ..net("only6", "kleene5", "10.0.0.0/8")
    };
    only6.subnet6 = Some("fd00:50::/64".parse().expect("subnet6"));
    only6.nat = Some(gw.into());
    v.push((
        "ipv6",
        FirewallInput {
            networks: vec![dual, only6],
            endpoints: vec![
                endpoint("c4", "dual", Some("10.40.0.2"), Some("fd00:40::2")),
                endpoint("c5", "only6", None, Some("fd00:50::2")),
            ],
            published: vec![
                publish(
                    "c4",
                    "dual",
                    Some("10.40.0.2"),
                    Some("fd00:40::2"),
                    "443",
                    gw,
                ),
                publish("c5", "only6", None, Some("fd00:50::2"), "8053:53/udp", gw),
            ],
            host_gateway: host_gateway.clone(),
        },
    ));

    v
}

/// The firewall.md example: a user template with rules of its own and an unknown token.
const CUSTOM_TEMPLATE: &str = "\
ext_if=\"em0\" # External interface of the host
set block-policy drop # Drop blocked packets

### KLEENED MACROS START ###
<%= kleene_macros %>
### KLEENED MACROS END #####

# Perform traffic sanitation on the external interface
scrub in on $ext_if all fragment reassemble

### KLEENED TRANSLATION RULES START ###
<%=kleene_translation%>
### KLEENED TRANSLATION RULES END #####

# block everything by default
block log all

# Allow the client machine to SSH into the host
pass in quick on $ext_if proto tcp from 10.0.2.2 to 10.0.2.15 port 22
# <%= not_a_kleene_placeholder %> stays as it is

### KLEENED FILTERING RULES START #####
<%= kleene_filtering %>
### KLEENED FILTERING RULES END #######
";

fn check_or_update(kind: &str, name: &str, got: &str, failures: &mut Vec<String>) {
    let path = golden_dir(kind).join(format!("{name}.conf"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir(kind)).expect("create the golden directory");
        std::fs::write(&path, got).expect("write a golden file");
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!(
            "{}: differs (rerun with UPDATE_GOLDEN=1 to accept)\n--- want\n{want}\n--- got\n{got}",
            path.display()
        )),
        Err(e) => failures.push(format!(
            "{}: {e} (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}

#[test]
fn golden_pf() {
    let mut failures = Vec::new();
    for (name, input) in cases("em0") {
        let got = render_pf(&input, DEFAULT_PF_TEMPLATE).expect("render pf");
        check_or_update("pf", name, &got, &mut failures);
    }
    let input = cases("em0")
        .into_iter()
        .find(|(n, _)| *n == "publish_tcp_udp")
        .map(|(_, i)| i)
        .expect("the publish case");
    let got = render_pf(&input, CUSTOM_TEMPLATE).expect("render pf");
    assert!(got.contains("<%= not_a_kleene_placeholder %>"));
    check_or_update("pf", "custom_template", &got, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_nft() {
    let mut failures = Vec::new();
    for (name, input) in cases("eth0") {
        let got = render_nft(&input);
        check_or_update("nft", name, &got, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rendering_is_deterministic() {
    for (_, mut input) in cases("eth0") {
        let a = render_nft(&input);
        let b = render_pf(&input, DEFAULT_PF_TEMPLATE).expect("render pf");
        input.networks.reverse();
        input.published.reverse();
        input.endpoints.reverse();
        assert_eq!(a, render_nft(&input));
        assert_eq!(
            b,
            render_pf(&input, DEFAULT_PF_TEMPLATE).expect("render pf")
        );
    }
}

/// Skip (or fail, when KLEENE_REQUIRE_ZFS=1 asks for the full privileged tier).
fn skip(why: &str) {
    if std::env::var_os("KLEENE_REQUIRE_ZFS").is_some_and(|v| v == "1") {
        panic!("nft_check cannot run and KLEENE_REQUIRE_ZFS=1: {why}");
    }
    println!("skipped: {why}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn nft_check() {
    if !is_root() {
        return skip("not root (nft -c needs CAP_NET_ADMIN in a new network namespace)");
    }
    match Command::new("nft").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return skip("nft is not installed (Debian package nftables)"),
    }
    match Command::new("unshare").args(["--net", "true"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(&format!(
                "unshare --net failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return skip(&format!("unshare cannot run: {e}")),
    }
    let dir = golden_dir("nft");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read the nft golden directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no nft golden files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for f in &files {
        let out = Command::new("unshare")
            .arg("--net")
            .arg("nft")
            .arg("-c")
            .arg("-f")
            .arg(f)
            .output()
            .expect("run unshare --net nft -c -f");
        if !out.status.success() {
            failures.push(format!(
                "{}: nft -c failed:\n{}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("nft -c accepted {} files", files.len());
}
