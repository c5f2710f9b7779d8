//! Validated ZFS names.
//!
//! A name reaches zfs(8) as one argv element, never through a shell, but that alone does not
//! make it safe: `-o foo` would still be read as an option, and `pool/x@y` where a filesystem
//! is expected would act on something else. Every name is therefore checked against ZFS's
//! own rules before it is used.

use std::fmt;
use std::str::FromStr;

use crate::error::ZfsError;

/// ZFS_MAX_DATASET_NAME_LEN is 256 including the terminating NUL.
pub const MAX_NAME_LEN: usize = 255;

/// Pool names ZFS reserves for vdev types: zpool(8) reserves `log` and every name that
/// begins with one of these prefixes.
const RESERVED_POOL_PREFIXES: &[&str] = &["mirror", "raidz", "draid", "spare"];

fn invalid(name: &str, reason: impl Into<String>) -> ZfsError {
    ZfsError::InvalidName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The characters ZFS accepts in a name component (zfs_namecheck.c `valid_char`).
fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

fn check_component(full: &str, component: &str, what: &str) -> Result<(), ZfsError> {
    if component.is_empty() {
        return Err(invalid(full, format!("empty {what} component")));
    }
    if component == "." || component == ".." {
        return Err(invalid(
            full,
            format!("{what} component may not be '{component}'"),
        ));
    }
    if component.starts_with('-') {
        return Err(invalid(
            full,
            format!("{what} component may not begin with '-'"),
        ));
    }
    if let Some(c) = component.chars().find(|c| !valid_char(*c)) {
        return Err(invalid(full, format!("invalid character {c:?} in {what}")));
    }
    Ok(())
}

fn check_dataset(name: &str) -> Result<(), ZfsError> {
    if name.is_empty() {
        return Err(invalid(name, "empty name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            name,
            format!(
                "name is {} bytes long, more than {MAX_NAME_LEN}",
                name.len()
            ),
        ));
    }
    if name.contains('@') {
        return Err(invalid(name, "a dataset name may not contain '@'"));
    }
    if name.contains('#') {
        return Err(invalid(name, "a dataset name may not contain '#'"));
    }
    let mut components = name.split('/');
    let pool = components.next().unwrap_or_default();
    check_component(name, pool, "pool")?;
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid(name, "pool name must begin with a letter"));
    }
    let reserved = pool == "log" || RESERVED_POOL_PREFIXES.iter().any(|r| pool.starts_with(r));
    if reserved {
        return Err(invalid(name, format!("pool name '{pool}' is reserved")));
    }
    for component in components {
        check_component(name, component, "dataset")?;
    }
    Ok(())
}

/// A filesystem or volume name: `pool[/component]...`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetName(String);

impl DatasetName {
    /// Validates `name` against ZFS's naming rules.
    pub fn new(name: impl Into<String>) -> Result<Self, ZfsError> {
        let name = name.into();
        check_dataset(&name)?;
        Ok(Self(name))
    }

    /// The name as zfs(8) prints it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pool this dataset lives in.
    pub fn pool(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The parent dataset, `None` for a pool's root dataset.
    pub fn parent(&self) -> Option<DatasetName> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| DatasetName(parent.to_string()))
    }

    /// The last component.
    pub fn basename(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// A child dataset `self/component`.
    pub fn child(&self, component: &str) -> Result<DatasetName, ZfsError> {
        if component.contains('/') {
            return Err(invalid(component, "a child component may not contain '/'"));
        }
        DatasetName::new(format!("{}/{}", self.0, component))
    }

    /// The snapshot `self@snapshot`.
    pub fn snapshot(&self, snapshot: &str) -> Result<SnapshotName, ZfsError> {
        SnapshotName::from_parts(self.clone(), snapshot)
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(&self, other: &DatasetName) -> bool {
        self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DatasetName {
    type Err = ZfsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for DatasetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A snapshot name: `dataset@snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName {
    full: String,
    at: usize,
}

impl SnapshotName {
    /// Validates `dataset@snapshot`.
    pub fn new(name: impl Into<String>) -> Result<Self, ZfsError> {
        let full: String = name.into();
        let Some((dataset, snap)) = full.split_once('@') else {
            return Err(invalid(&full, "a snapshot name must contain '@'"));
        };
        let dataset = DatasetName::new(dataset).map_err(|e| match e {
            ZfsError::InvalidName { reason, .. } => invalid(&full, reason),
            other => other,
        })?;
        Self::from_parts(dataset, snap).map_err(|e| match e {
            ZfsError::InvalidName { reason, .. } => invalid(&full, reason),
            other => other,
        })
    }

    /// `dataset@snapshot` from its two parts.
    pub fn from_parts(dataset: DatasetName, snapshot: &str) -> Result<Self, ZfsError> {
        let full = format!("{}@{}", dataset.0, snapshot);
        if snapshot.contains('@') || snapshot.contains('/') || snapshot.contains('#') {
            return Err(invalid(
                &full,
                "a snapshot component may not contain '@', '/' or '#'",
            ));
        }
        check_component(&full, snapshot, "snapshot")?;
        if full.len() > MAX_NAME_LEN {
            return Err(invalid(
                &full,
                format!(
                    "name is {} bytes long, more than {MAX_NAME_LEN}",
                    full.len()
                ),
            ));
        }
        Ok(Self {
            at: dataset.0.len(),
            full,
        })
    }

    /// The whole name as zfs(8) prints it.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The dataset the snapshot belongs to.
    pub fn dataset(&self) -> DatasetName {
        DatasetName(self.full[..self.at].to_string())
    }

    /// The part after `@`.
    pub fn snapshot(&self) -> &str {
        &self.full[self.at + 1..]
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for SnapshotName {
    type Err = ZfsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for SnapshotName {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// With the `serde` feature: names as plain strings; deserializing checks them like
/// [`DatasetName::new`] and [`SnapshotName::new`] and fails with that error's text.
#[cfg(feature = "serde")]
mod serde_impls {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde::ser::{Serialize, Serializer};

    use super::{DatasetName, SnapshotName};

    impl Serialize for DatasetName {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for DatasetName {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let name = String::deserialize(deserializer)?;
            DatasetName::new(name).map_err(D::Error::custom)
        }
    }

    impl Serialize for SnapshotName {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.as_str())
        }
    }

    impl<'de> Deserialize<'de> for SnapshotName {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let name = String::deserialize(deserializer)?;
            SnapshotName::new(name).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in [
            "zroot",
            "zroot/kleene",
            "zroot/kleene/image/0123456789ab",
            "tank/a.b-c_d:e",
            "tank/with space",
        ] {
            assert_eq!(DatasetName::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn rejects_hostile_and_malformed_names() {
        for n in [
            "",
            "-o foo",
            "pool/x; rm -rf /",
            "pool/-o",
            "pool//x",
            "pool/x/",
            "/pool",
            "pool/./x",
            "pool/../x",
            "pool/x@snap",
            "pool/x#bm",
            "1pool",
            "mirror",
            "raidz2",
            "pool/$(id)",
            "pool/x\ny",
            "pool/ä",
        ] {
            let err = DatasetName::new(n).unwrap_err();
            assert!(matches!(err, ZfsError::InvalidName { .. }), "{n:?}: {err}");
        }
    }

    #[test]
    fn error_names_the_offender() {
        let err = DatasetName::new("pool/x; rm -rf /").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pool/x; rm -rf /"), "{text}");
        assert!(text.contains("';'"), "{text}");
    }

    #[test]
    fn length_limit_is_255_bytes() {
        let ok = format!("p/{}", "a".repeat(253));
        assert_eq!(ok.len(), 255);
        DatasetName::new(ok.clone()).unwrap();
        let long = format!("{ok}a");
        assert!(DatasetName::new(long).is_err());
        let snap_too_long = format!("{ok}@s");
        assert!(SnapshotName::new(snap_too_long).is_err());
    }

    #[test]
    fn snapshot_parts() {
        let s = SnapshotName::new("zroot/kleene/image/abc@image").unwrap();
        assert_eq!(s.dataset().as_str(), "zroot/kleene/image/abc");
        assert_eq!(s.snapshot(), "image");
        assert_eq!(s.to_string(), "zroot/kleene/image/abc@image");
        for bad in [
            "pool",
            "pool@",
            "pool@a@b",
            "pool@-x",
            "pool@a/b",
            "@s",
            "pool/x@a;b",
        ] {
            assert!(SnapshotName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn family() {
        let d = DatasetName::new("zroot/kleene/image").unwrap();
        assert_eq!(d.pool(), "zroot");
        assert_eq!(d.parent().unwrap().as_str(), "zroot/kleene");
        assert_eq!(d.basename(), "image");
        assert_eq!(d.child("x").unwrap().as_str(), "zroot/kleene/image/x");
        assert!(d.child("x/y").is_err());
        assert!(d.child("-o").is_err());
        assert_eq!(d.snapshot("s").unwrap().as_str(), "zroot/kleene/image@s");
        assert!(DatasetName::new("zroot").unwrap().parent().is_none());
        let c = d.child("x").unwrap();
        assert!(c.is_within(&d));
        assert!(d.is_within(&d));
        assert!(!DatasetName::new("zroot/kleene/images")
            .unwrap()
            .is_within(&d));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_round_trips_as_plain_strings() {
        let d = DatasetName::new("zroot/kleene/image/abc").unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, "\"zroot/kleene/image/abc\"");
        assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), d);

        let s = SnapshotName::new("zroot/kleene/image/abc@image").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"zroot/kleene/image/abc@image\"");
        let back: SnapshotName = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.snapshot(), "image");
        assert_eq!(back.dataset().as_str(), "zroot/kleene/image/abc");

        // Inside other types, and from an owned (escaped) string too.
        let pair: (DatasetName, Vec<SnapshotName>) =
            serde_json::from_str(r#"["tank\/with space", ["tank@a", "tank/x@b"]]"#).unwrap();
        assert_eq!(pair.0.as_str(), "tank/with space");
        assert_eq!(pair.1[1].as_str(), "tank/x@b");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_refuses_what_new_refuses_with_its_text() {
        for bad in ["pool/x; rm -rf /", "-o foo", "pool/x@snap", "pool//x", ""] {
            let err = serde_json::from_str::<DatasetName>(&serde_json::to_string(bad).unwrap())
                .unwrap_err();
            let want = DatasetName::new(bad).unwrap_err().to_string();
            assert!(
                err.to_string().starts_with(&want),
                "{bad:?}: {err} vs {want}"
            );
        }
        for bad in ["pool", "pool@", "pool@a@b", "pool@-x", "pool/x@a;b"] {
            let err = serde_json::from_str::<SnapshotName>(&serde_json::to_string(bad).unwrap())
                .unwrap_err();
            let want = SnapshotName::new(bad).unwrap_err().to_string();
            assert!(
                err.to_string().starts_with(&want),
                "{bad:?}: {err} vs {want}"
            );
        }
        // Not a string at all.
        assert!(serde_json::from_str::<DatasetName>("42").is_err());
        assert!(serde_json::from_str::<SnapshotName>("null").is_err());
    }
}
