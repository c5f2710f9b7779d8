//! Docker-style image references: `[registry/]repository[:tag][@sha256:digest]`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Digest, Error, Result};

/// The registry of references that name none (Docker Hub).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A docker-style image reference, normalised like Docker does: `alpine` is
/// `docker.io/library/alpine:latest`, `localhost:5000/x` is on registry `localhost:5000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry: `host[:port]` (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository: `library/alpine`, `kleene/base`.
    pub repository: String,
    /// The tag (`latest` when neither a tag nor a digest was given).
    pub tag: Option<String>,
    /// The digest, when the reference pins one.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference. The first component is a registry when it
    /// has a `.` or a `:`, or is `localhost`, and more components follow.
    pub fn parse(s: &str) -> Result<Reference> {
        let err = |reason: String| Error::Reference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("it is empty".into()));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| err(format!("its digest: {e}")))?),
            ),
            None => (s, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|r| err(format!("tag {t:?}: {r}")))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_registry(first).map_err(|r| err(format!("registry {first:?}: {r}")))?;
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
            _ => registry,
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        check_repository(&repository).map_err(|r| err(format!("repository: {r}")))?;
        if registry.len() + 1 + repository.len() > 255 {
            return Err(err("its name is longer than 255 characters".into()));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether the registry is on this host: `localhost`, `127.0.0.0/8` or `::1`, with
    /// or without a port. These are spoken to over plain http, as Docker does.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }

    /// The same repository with tag `tag` (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to digest `d` (the tag, if any, is kept for display;
    /// the digest is what is asked for).
    pub fn with_digest(&self, d: Digest) -> Reference {
        Reference {
            digest: Some(d),
            ..self.clone()
        }
    }

    /// What goes in `/manifests/<..>`: the digest if any, else the tag, else `latest`.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Whether `host[:port]` (`[v6]:port` too) is a loopback host.
pub(crate) fn host_is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

/// The host of `host[:port]`, without brackets around an IPv6 address.
pub(crate) fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    if registry.matches(':').count() > 1 {
        // A bare IPv6 address.
        return registry;
    }
    registry.split_once(':').map_or(registry, |(h, _)| h)
}

fn check_tag(t: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = t.as_bytes();
    match bytes.first() {
        None => return Err("it is empty".into()),
        Some(&b) if !word(b) => return Err("it must start with a letter, digit or _".into()),
        _ => {}
    }
    if bytes.len() > 128 {
        return Err("it is longer than 128 characters".into());
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err("it may only have letters, digits, _ . and -".into());
    }
    Ok(())
}

fn check_registry(r: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        h.parse::<Ipv6Addr>()
            .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            p => (
                None,
                Some(p.strip_prefix(':').ok_or("expected :PORT after ]")?),
            ),
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !h.split('.').all(label_ok) {
            return Err("a host is letters, digits and - in labels separated by .".into());
        }
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("port {p:?} is not a port number"));
        }
    }
    Ok(())
}

/// Repository components: `[a-z0-9]+` separated by `.`, `_`, `__` or dashes, between
/// slashes.
fn check_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("it is empty".into());
    }
    if repo.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{repo:?} must be lower-case"));
    }
    for component in repo.split('/') {
        check_component(component).map_err(|r| format!("component {component:?}: {r}"))?;
    }
    Ok(())
}

fn check_component(c: &str) -> std::result::Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("it must start and end with a lower-case letter or digit".into());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or dashes.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!("{sep:?} is not a separator (. _ __ or dashes)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(full("kleene/base"), "docker.io/kleene/base:latest");
        assert_eq!(full("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            full("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(full("localhost:5000/x/y:v1"), "localhost:5000/x/y:v1");
        assert_eq!(
            full("ghcr.io/a/b-c__d.e:1.0-rc"),
            "ghcr.io/a/b-c__d.e:1.0-rc"
        );
        assert_eq!(full("[::1]:5000/img"), "[::1]:5000/img:latest");
        let r = Reference::parse(&format!("127.0.0.1:5000/img@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "img");
        assert_eq!(r.tag, None);
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/img@{D}"));
        let r = Reference::parse(&format!("img:v2@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(r.with_tag("v3").tag_or_digest(), "v3");
        assert_eq!(
            r.with_tag("v3").with_digest(Digest::parse(D).unwrap()),
            r.with_tag("v3").with_digest(Digest::parse(D).unwrap())
        );
        // "localhost:5000" alone is repository localhost, tag 5000.
        let r = Reference::parse("localhost:5000").unwrap();
        assert_eq!(r.repository, "library/localhost");
        assert_eq!(r.tag.as_deref(), Some("5000"));
        let r: Reference = "a.b/c".parse().unwrap();
        assert_eq!(r.registry, "a.b");
    }

    #[test]
    fn loopback_registries() {
        for l in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
        ] {
            let r = Reference::parse(&format!("{l}/x")).unwrap();
            assert!(r.is_loopback(), "{l}");
        }
        for n in [
            "docker.io",
            "10.0.0.1:5000",
            "ghcr.io",
            "localhost.example.com",
        ] {
            let r = Reference::parse(&format!("{n}/x")).unwrap();
            assert!(!r.is_loopback(), "{n}");
        }
    }

    #[test]
    fn bad_references_are_named() {
        for bad in [
            "",
            "Alpine",
            "ghcr.io/A/b",
            "alpine:",
            "alpine:-x",
            "alpine:a b",
            "a//b",
            "a/-b",
            "a/b-",
            "a..b",
            "a___b",
            "a.-b",
            "alpine@sha256:abc",
            "alpine@md5:abc",
            "localhost:0/x",
            "localhost:99999/x",
            "bad_host.io:5000/x",
            "[::g]:5000/x",
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let long = format!("a:{}", "x".repeat(129));
        assert!(Reference::parse(&long).is_err());
        let long = "a".repeat(300);
        assert!(Reference::parse(&long).is_err());
    }
}
