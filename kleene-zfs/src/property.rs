//! ZFS properties: validated names and values, in a stable order.

use std::collections::BTreeMap;

use crate::error::ZfsError;

/// Longest user property name ZFS accepts (ZAP_MAXNAMELEN).
const MAX_USER_NAME_LEN: usize = 256;
/// Longest user property value ZFS accepts (ZAP_MAXVALUELEN, with its NUL).
const MAX_USER_VALUE_LEN: usize = 8191;

fn invalid(name: &str, reason: impl Into<String>) -> ZfsError {
    ZfsError::InvalidProperty {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Whether `name` is a user property (`module:property`), as opposed to a native one.
pub fn is_user_property(name: &str) -> bool {
    name.contains(':')
}

/// Checks a property name: native names are lower-case words (`mountpoint`,
/// `userquota@alice` aside), user names contain a colon and only `[a-z0-9:._-]`.
pub fn check_property_name(name: &str) -> Result<(), ZfsError> {
    if name.is_empty() {
        return Err(invalid(name, "empty property name"));
    }
    if name.starts_with('-') {
        return Err(invalid(name, "property name may not begin with '-'"));
    }
    if is_user_property(name) {
        if name.len() > MAX_USER_NAME_LEN {
            return Err(invalid(name, "user property name is longer than 256 bytes"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(*c)))
        {
            return Err(invalid(
                name,
                format!("invalid character {c:?} in user property name"),
            ));
        }
        return Ok(());
    }
    let (base, who) = match name.split_once('@') {
        Some((base, who)) => (base, Some(who)),
        None => (name, None),
    };
    if let Some(c) = base
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(invalid(
            name,
            format!("invalid character {c:?} in property name"),
        ));
    }
    if let Some(who) = who {
        if who.is_empty() || who.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(name, "invalid user or group after '@'"));
        }
    }
    Ok(())
}

/// Checks a property value. Tabs and newlines are refused because zfs(8)'s parseable
/// output separates fields with them; a value with them could not be read back.
pub fn check_property_value(name: &str, value: &str) -> Result<(), ZfsError> {
    if value.contains(['\0', '\n', '\t', '\r']) {
        return Err(invalid(
            name,
            "value may not contain NUL, tab or newline characters",
        ));
    }
    if value.len() > MAX_USER_VALUE_LEN {
        return Err(invalid(
            name,
            format!(
                "value is {} bytes long, more than {MAX_USER_VALUE_LEN}",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// A set of properties, native (`mountpoint`) and user (`kleene:id`), by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `name=value` after checking both.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> Result<&mut Self, ZfsError> {
        let value = value.into();
        check_property_name(name)?;
        check_property_value(name, &value)?;
        self.0.insert(name.to_string(), value);
        Ok(self)
    }

    /// Builder form of [`Properties::set`].
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Result<Self, ZfsError> {
        self.set(name, value)?;
        Ok(self)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `-o name=value` pairs for zfs(8).
    pub(crate) fn to_option_args(&self) -> Vec<String> {
        self.iter()
            .flat_map(|(k, v)| ["-o".to_string(), format!("{k}={v}")])
            .collect()
    }

    /// Inserts without checks: for values read back from zfs(8).
    pub(crate) fn insert_unchecked(&mut self, name: String, value: String) {
        self.0.insert(name, value);
    }
}

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "mountpoint",
            "kleene:id",
            "com.example:a-b_c.d",
            "userquota@alice",
            "canmount",
        ] {
            check_property_name(ok).unwrap();
        }
        for bad in [
            "",
            "-o",
            "Kleene:id",
            "kleene:a b",
            "mount point",
            "a=b",
            "x:y;z",
            "userquota@",
        ] {
            assert!(check_property_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values() {
        check_property_value("kleene:cmd", "[\"/bin/sh\", \"-c\", \"echo a=b\"]").unwrap();
        assert!(check_property_value("kleene:x", "a\nb").is_err());
        assert!(check_property_value("kleene:x", "a\tb").is_err());
        assert!(check_property_value("kleene:x", &"x".repeat(9000)).is_err());
    }

    #[test]
    fn option_args_are_sorted_pairs() {
        let p = Properties::new()
            .with("mountpoint", "/m")
            .unwrap()
            .with("kleene:id", "abc")
            .unwrap();
        assert_eq!(
            p.to_option_args(),
            vec!["-o", "kleene:id=abc", "-o", "mountpoint=/m"]
        );
        assert_eq!(p.get("kleene:id"), Some("abc"));
        assert_eq!(p.len(), 2);
    }
}
