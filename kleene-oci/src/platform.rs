//! Platforms: `os/arch[/variant]` as OCI indexes and `--platform` name them.

use crate::{Error, Result};

/// An OCI platform: `freebsd/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// GOOS: `freebsd`, `linux`.
    pub os: String,
    /// GOARCH: `amd64`, `arm64`, `386`, `riscv64`.
    pub arch: String,
    /// The CPU variant (`v8`), when one is asked for.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the running host, in OCI's words.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64",
            other => other,
        };
        Self {
            os: std::env::consts::OS.to_string(),
            arch: arch.to_string(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Self> {
        let err = |reason: &str| Error::Platform {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !ok(os) || !ok(arch) => {
                Err(err("os and arch are lower-case words, like freebsd/amd64"))
            }
            [os, arch] => Ok(Self {
                os: (*os).into(),
                arch: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] if ok(variant) => Ok(Self {
                os: (*os).into(),
                arch: (*arch).into(),
                variant: Some((*variant).into()),
            }),
            _ => Err(err("expected os/arch or os/arch/variant")),
        }
    }

    /// Whether an index entry's platform is this one: os and arch equal, and the variant
    /// too when this one names one.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.arch == arch
            && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("freebsd/amd64").unwrap();
        assert_eq!(p.to_string(), "freebsd/amd64");
        assert!(p.matches("freebsd", "amd64", Some("v1")));
        assert!(!p.matches("linux", "amd64", None));
        let v = Platform::parse("linux/arm64/v8").unwrap();
        assert!(v.matches("linux", "arm64", Some("v8")));
        assert!(!v.matches("linux", "arm64", None));
        for bad in ["freebsd", "FreeBSD/amd64", "a/b/c/d", "/amd64", "linux/"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let host = Platform::host();
        assert!(!host.os.is_empty() && !host.arch.is_empty());
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host.to_string(), "linux/amd64");
    }
}
