//! Identifiers of images, containers and snapshots: 12 lower-case hex characters, never
//! all digits (so an id is never mistaken for a number, as Kleene has it).

use std::fmt;

use crate::error::CoreError;

/// Length of every id.
pub const ID_LEN: usize = 12;

/// A 12-character lower-case hex id with at least one letter.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

impl Id {
    /// A fresh random id.
    pub fn generate() -> Result<Self, CoreError> {
        loop {
            let mut bytes = [0u8; ID_LEN / 2];
            getrandom::fill(&mut bytes)
                .map_err(|e| CoreError::Internal(format!("no randomness for an id: {e}")))?;
            let s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Ok(id) = Id::parse(&s) {
                return Ok(id);
            }
        }
    }

    /// Checks `s` is a valid id.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if s.len() != ID_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(CoreError::InvalidInput(format!(
                "invalid id {s:?}: expected {ID_LEN} lower-case hex characters"
            )));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CoreError::InvalidInput(format!(
                "invalid id {s:?}: an id is never all digits"
            )));
        }
        Ok(Self(s.to_string()))
    }

    /// Whether `s` could be the start of an id (a lookup prefix).
    pub fn is_prefix(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= ID_LEN
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Id {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Id::parse(&s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl std::str::FromStr for Id {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let id = Id::generate().unwrap();
            assert_eq!(id.as_str().len(), 12);
            assert!(id.as_str().bytes().any(|b| b.is_ascii_alphabetic()));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn parse_rules() {
        Id::parse("0123456789ab").unwrap();
        for bad in [
            "012345678901",
            "0123456789AB",
            "0123456789a",
            "0123456789abc",
            "zzzzzzzzzzzz",
            "",
        ] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
        assert!(Id::is_prefix("01a"));
        assert!(!Id::is_prefix("web"));
        assert!(!Id::is_prefix(""));
    }
}
