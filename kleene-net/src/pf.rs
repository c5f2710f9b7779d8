//! The pf(4) ruleset (FreeBSD), rendered from a [`FirewallInput`] and Kleene's
//! pf.conf template.
//!
//! The template is kleened's: a pf.conf with three placeholders, `<%= kleene_macros %>`,
//! `<%= kleene_translation %>` and `<%= kleene_filtering %>` (see
//! [`DEFAULT_PF_TEMPLATE`]). Rendering is pure and deterministic: networks are
//! sorted by name, endpoints and published ports by container, network and port.
//!
//! What is rendered:
//! - macros: `kleenet_network_interfaces` (always, at least `{lo0}`),
//!   `kleenet_host_gw_if` (when the host gateway is known), and per network
//!   `kleenet_<name>_interface`, `_subnet`, `_subnet6`, `_nat_if` (each only when it
//!   exists) and `_all_interfaces`. A rule only ever uses a macro that is defined.
//! - translation: `nat` per NAT'ed, non-internal network and address family with a
//!   subnet; `rdr` per published port, interface and family with an address, with
//!   the port's own protocol, ranges as `port A:B -> ip port C:*`.
//! - filtering: incoming traffic to a subnet is blocked by default; an internal
//!   network's traffic may neither leave nor enter its subnet; icc on passes and icc
//!   off blocks traffic within the subnet; published ports pass with their own
//!   protocol on their interface and from the networks' interfaces.
//!
//! Placeholders may be written with any spacing (`<%=kleene_macros%>`). Other
//! `<%= ... %>` tokens are left alone. Without a `kleene_macros` placeholder the
//! macros are put at the top of the file (so the rules never use an undefined
//! macro); without one of the other two, those rules are left out.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::model::{FirewallInput, NetRules, PublishRules};
use crate::ports::PortRange;

/// The placeholder for the macros.
pub const MACROS_PLACEHOLDER: &str = "kleene_macros";
/// The placeholder for the translation (nat, rdr) rules.
pub const TRANSLATION_PLACEHOLDER: &str = "kleene_translation";
/// The placeholder for the filtering rules.
pub const FILTERING_PLACEHOLDER: &str = "kleene_filtering";

/// Kleene's default pf.conf template (kleened's `pf.conf.kleene`).
pub const DEFAULT_PF_TEMPLATE: &str = "\
# This is the pf(4) configuration file template that is used by Kleene.
# Feel free to add additional rules as long as the tags (and their ordering) below are preserved.
# Modify with care: it can affect Kleene's networking in unpredictable ways.

### KLEENED MACROS START ###
<%= kleene_macros %>
### KLEENED MACROS END #####

### KLEENED TRANSLATION RULES START ###
<%= kleene_translation %>
### KLEENED TRANSLATION RULES END #####

### KLEENED FILTERING RULES START #####
<%= kleene_filtering %>
### KLEENED FILTERING RULES END #######
";

/// The three rendered sections.
#[derive(Debug, Default)]
struct Sections {
    macros: Vec<String>,
    translation: Vec<String>,
    filtering: Vec<String>,
}

/// A network with the macro prefix it got.
struct Net<'a> {
    rules: &'a NetRules,
    prefix: String,
}

impl Net<'_> {
    fn m(&self, what: &str) -> String {
        format!("${}_{what}", self.prefix)
    }
}

/// `kleenet_<name>` with the name reduced to letters, digits and `_`, made unique.
fn prefixes<'a>(nets: &[&'a NetRules]) -> Vec<Net<'a>> {
    let mut taken = HashSet::new();
    nets.iter()
        .map(|n| {
            let base: String = n
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let mut prefix = format!("kleenet_{base}");
            let mut k = 2;
            while !taken.insert(prefix.clone()) {
                prefix = format!("kleenet_{base}_{k}");
                k += 1;
            }
            Net { rules: n, prefix }
        })
        .collect()
}

/// pf's form of a port range in a filter rule or rdr match: `N` or `A:B`.
fn pf_ports(r: PortRange) -> String {
    if r.is_single() {
        r.start().to_string()
    } else {
        format!("{}:{}", r.start(), r.end())
    }
}

fn build(input: &FirewallInput) -> Sections {
    let mut s = Sections::default();
    let mut nets_sorted: Vec<&NetRules> = input.networks.iter().collect();
    nets_sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let nets = prefixes(&nets_sorted);

    // macros
    if let Some(gw) = &input.host_gateway {
        s.macros.push(format!("kleenet_host_gw_if=\"{gw}\""));
    }
    let mut all: Vec<&str> = vec!["lo0"];
    let others: BTreeSet<&str> = nets
        .iter()
        .map(|n| n.rules.interface.as_str())
        .filter(|i| *i != "lo0")
        .collect();
    all.extend(others);
    s.macros.push(format!(
        "kleenet_network_interfaces=\"{{{}}}\"",
        all.join(", ")
    ));
    for n in &nets {
        let r = n.rules;
        let p = &n.prefix;
        s.macros.push(format!("{p}_interface=\"{}\"", r.interface));
        if let Some(sub) = r.subnet {
            s.macros.push(format!("{p}_subnet=\"{sub}\""));
        }
        if let Some(sub) = r.subnet6 {
            s.macros.push(format!("{p}_subnet6=\"{sub}\""));
        }
        if let Some(nat) = &r.nat {
            s.macros.push(format!("{p}_nat_if=\"{nat}\""));
        }
        let mut ifs = vec![r.interface.as_str()];
        if r.interface != "lo0" {
            ifs.push("lo0");
        }
        let links: BTreeSet<&str> = input
            .endpoints
            .iter()
            .filter(|e| e.network == r.name)
            .filter_map(|e| e.host_interface.as_deref())
            .filter(|i| !ifs.contains(i))
            .collect();
        ifs.extend(links);
        s.macros
            .push(format!("{p}_all_interfaces=\"{{{}}}\"", ifs.join(", ")));
    }

    // translation: nat
    for n in &nets {
        let r = n.rules;
        if r.internal || r.nat.is_none() {
            continue;
        }
        let natif = n.m("nat_if");
        if r.subnet.is_some() {
            let sub = n.m("subnet");
            s.translation.push(format!(
                "nat on {natif} inet from {sub} to any -> ({natif})"
            ));
        }
        if r.subnet6.is_some() {
            let sub = n.m("subnet6");
            s.translation.push(format!(
                "nat on {natif} inet6 from {sub} to any -> ({natif})"
            ));
        }
    }

    // published ports, sorted
    let mut published: Vec<&PublishRules> = input.published.iter().collect();
    published.sort_by(|a, b| {
        (&a.container, &a.network, &a.interface, &a.port).cmp(&(
            &b.container,
            &b.network,
            &b.interface,
            &b.port,
        ))
    });
    for p in &published {
        let proto = p.port.protocol;
        let hp = pf_ports(p.port.host);
        let cp = if p.port.host.is_single() {
            p.port.container.start().to_string()
        } else {
            format!("{}:*", p.port.container.start())
        };
        let i = &p.interface;
        let addrs = [
            ("inet", p.ipv4.map(|a| a.to_string())),
            ("inet6", p.ipv6.map(|a| a.to_string())),
        ];
        for (fam, addr) in &addrs {
            let Some(addr) = addr else { continue };
            s.translation.push(format!(
                "rdr on {i} {fam} proto {proto} from any to ({i}) port {hp} -> {addr} port {cp}"
            ));
        }
    }

    // filtering: default block of incoming traffic to the subnets
    for n in &nets {
        if n.rules.subnet.is_some() {
            s.filtering
                .push(format!("block in log from any to {}", n.m("subnet")));
        }
        if n.rules.subnet6.is_some() {
            s.filtering
                .push(format!("block in log from any to {}", n.m("subnet6")));
        }
    }
    let subnets = |n: &Net| {
        let mut v = Vec::new();
        if n.rules.subnet.is_some() {
            v.push(n.m("subnet"));
        }
        if n.rules.subnet6.is_some() {
            v.push(n.m("subnet6"));
        }
        v
    };
    // internal networks: nothing leaves, nothing enters (quick, so it wins)
    for n in nets.iter().filter(|n| n.rules.internal) {
        for sub in subnets(n) {
            s.filtering
                .push(format!("block drop quick log from {sub} to ! {sub}"));
            s.filtering
                .push(format!("block drop quick log from ! {sub} to {sub}"));
        }
    }
    // inter-container communication
    for n in &nets {
        let all = n.m("all_interfaces");
        for sub in subnets(n) {
            if n.rules.icc {
                s.filtering
                    .push(format!("pass quick on {all} from {sub} to {sub}"));
            } else {
                s.filtering
                    .push(format!("block drop quick on {all} from {sub} to {sub}"));
            }
        }
    }
    // published ports
    for p in &published {
        let proto = p.port.protocol;
        let cp = pf_ports(p.port.container);
        let i = &p.interface;
        let addrs = [
            ("inet", p.ipv4.map(|a| a.to_string())),
            ("inet6", p.ipv6.map(|a| a.to_string())),
        ];
        for (fam, addr) in &addrs {
            let Some(addr) = addr else { continue };
            s.filtering.push(format!(
                "pass quick on {i} {fam} proto {proto} from any to {addr} port {cp}"
            ));
            s.filtering.push(format!(
                "pass quick on $kleenet_network_interfaces {fam} proto {proto} from any to {addr} port {cp}"
            ));
        }
    }
    s
}

/// Drop repeated rules (two published ports can need the same pass rule), keeping the first.
fn dedup(rules: &mut Vec<String>) {
    let mut seen = HashSet::new();
    rules.retain(|r| seen.insert(r.clone()));
}

/// Render pf.conf text from `input` and `template` (see the module docs).
///
/// Errors when the input fails [`FirewallInput::validate`].
pub fn render_pf(input: &FirewallInput, template: &str) -> Result<String> {
    input.validate().map_err(|e| Error::Render {
        what: "pf",
        reason: e.to_string(),
    })?;
    let mut s = build(input);
    dedup(&mut s.translation);
    dedup(&mut s.filtering);
    let macros = s.macros.join("\n");
    let translation = s.translation.join("\n");
    let filtering = s.filtering.join("\n");

    let mut out = String::with_capacity(template.len() + macros.len() + filtering.len());
    let mut saw_macros = false;
    let mut rest = template;
    while let Some(open) = rest.find("<%=") {
        let after = &rest[open + 3..];
        let Some(close) = after.find("%>") else { break };
        let name = after[..close].trim();
        let value = match name {
            MACROS_PLACEHOLDER => {
                saw_macros = true;
                Some(&macros)
            }
            TRANSLATION_PLACEHOLDER => Some(&translation),
            FILTERING_PLACEHOLDER => Some(&filtering),
            _ => None,
        };
        match value {
            Some(v) => {
                out.push_str(&rest[..open]);
                out.push_str(v);
                rest = &after[close + 2..];
            }
            None => {
                // not ours: copy it through untouched, up to and including its "%>"
                let end = open + 3 + close + 2;
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out.push_str(rest);
    if !saw_macros {
        let mut head = String::new();
        let _ = writeln!(
            head,
            "### KLEENED MACROS (the template has no {MACROS_PLACEHOLDER} placeholder) ###"
        );
        let _ = writeln!(head, "{macros}");
        head.push('\n');
        out.insert_str(0, &head);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{EndpointRules, NetRules, PublishRules};

    fn net(name: &str) -> NetRules {
        NetRules {
            name: name.into(),
            interface: "kleene0".into(),
            subnet: Some("10.13.37.0/24".parse().unwrap()),
            subnet6: None,
            gateway: None,
            gateway6: None,
            nat: Some("em0".into()),
            icc: true,
            internal: false,
        }
    }

    fn publish(spec: &str) -> PublishRules {
        PublishRules {
            container: "c1".into(),
            network: "testnet".into(),
            ipv4: Some("10.13.37.2".parse().unwrap()),
            ipv6: None,
            port: spec.parse().unwrap(),
            interface: "em0".into(),
        }
    }

    fn render(input: &FirewallInput) -> String {
        render_pf(input, DEFAULT_PF_TEMPLATE).unwrap()
    }

    #[test]
    fn empty_input_defines_the_interfaces_macro() {
        let out = render(&FirewallInput::default());
        assert!(out.contains("kleenet_network_interfaces=\"{lo0}\""));
        assert!(!out.contains("<%"));
        assert!(!out.contains("kleenet_host_gw_if"));
    }

    #[test]
    fn every_used_macro_is_defined() {
        let mut n2 = net("other-net");
        n2.interface = "kleene1".into();
        n2.subnet6 = Some("fd00::/64".parse().unwrap());
        n2.internal = true;
        n2.icc = false;
        let input = FirewallInput {
            networks: vec![net("testnet"), n2, {
                let mut n = net("no.nat");
                n.nat = None;
                n.interface = "kleene2".into();
                n
            }],
            endpoints: vec![],
            published: vec![publish("8080:80/udp")],
            host_gateway: None,
        };
        let out = render(&input);
        let defined: BTreeSet<String> = out
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.contains(' '))
            .collect();
        for word in out.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')) {
            if let Some(m) = word.strip_prefix('$') {
                assert!(
                    defined.contains(m),
                    "macro {m} used but not defined:\n{out}"
                );
            }
        }
        assert!(out.contains("kleenet_other_net_subnet6=\"fd00::/64\""));
        assert!(!out.contains("kleenet_no_nat_nat_if"));
    }

    #[test]
    fn udp_publish_gets_udp_pass_rules() {
        let input = FirewallInput {
            networks: vec![net("testnet")],
            published: vec![publish("8080:80/udp")],
            ..Default::default()
        };
        let out = render(&input);
        assert!(out.contains(
            "rdr on em0 inet proto udp from any to (em0) port 8080 -> 10.13.37.2 port 80"
        ));
        assert!(out.contains("pass quick on em0 inet proto udp from any to 10.13.37.2 port 80"));
        assert!(out.contains(
            "pass quick on $kleenet_network_interfaces inet proto udp from any to 10.13.37.2 port 80"
        ));
        assert!(!out.contains("proto tcp"));
    }

    #[test]
    fn ranges_and_macro_name_collisions() {
        let mut b = net("a_b");
        b.interface = "kleene1".into();
        let input = FirewallInput {
            networks: vec![net("a-b"), b],
            published: vec![PublishRules {
                network: "a-b".into(),
                ..publish("8000-8010:9000")
            }],
            ..Default::default()
        };
        let out = render(&input);
        assert!(out.contains("kleenet_a_b_interface=\"kleene0\""));
        assert!(out.contains("kleenet_a_b_2_interface=\"kleene1\""));
        assert!(out.contains("port 8000:8010 -> 10.13.37.2 port 9000:*"));
        assert!(out.contains("to 10.13.37.2 port 9000:9010"));
    }

    #[test]
    fn template_handling() {
        let input = FirewallInput {
            networks: vec![net("testnet")],
            ..Default::default()
        };
        // spacing variants, unknown tokens kept
        let t = "a <%=kleene_translation%> b <%= other %> c <%= kleene_macros   %>\n<% x";
        let out = render_pf(&input, t).unwrap();
        assert!(out.starts_with("a nat on $kleenet_testnet_nat_if inet"));
        assert!(out.contains(" b <%= other %> c kleenet_network_interfaces="));
        assert!(out.ends_with("<% x"));
        // no macros placeholder: macros go on top
        let out = render_pf(&input, "<%= kleene_filtering %>\n").unwrap();
        assert!(out.starts_with("### KLEENED MACROS"));
        assert!(out.contains("kleenet_testnet_subnet=\"10.13.37.0/24\""));
        // nothing at all
        let out = render_pf(&input, "").unwrap();
        assert!(out.contains("kleenet_network_interfaces"));
        // unterminated token
        let out = render_pf(&input, "<%= kleene_macros").unwrap();
        assert!(out.ends_with("<%= kleene_macros"));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut n = net("testnet");
        n.interface = "bad if".into();
        let input = FirewallInput {
            networks: vec![n],
            ..Default::default()
        };
        let e = render_pf(&input, DEFAULT_PF_TEMPLATE)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot render the pf ruleset: invalid interface name 'bad if'"),
            "{e}"
        );
    }

    #[test]
    fn endpoints_links_join_all_interfaces() {
        let input = FirewallInput {
            networks: vec![net("testnet")],
            endpoints: vec![EndpointRules {
                container: "c1".into(),
                network: "testnet".into(),
                ipv4: Some("10.13.37.2".parse().unwrap()),
                ipv6: None,
                host_interface: Some("epair0a".into()),
            }],
            ..Default::default()
        };
        assert!(
            render(&input).contains("kleenet_testnet_all_interfaces=\"{kleene0, lo0, epair0a}\"")
        );
    }
}
