//! Kleene image references: `name[:tag][@snapshot]`.

use std::fmt;

/// An image reference as `FROM` and the CLI take it: `name[:tag][@snapshot]`,
/// where `name` may also be (a prefix of) an image ID.
///
/// The tag separator is the last `:` after the last `/`, so a registry port
/// stays part of the name: `host:5000/base:13.2` is name `host:5000/base`,
/// tag `13.2`.
///
/// ```
/// use kleene_dockerfile::ImageRef;
/// let r: ImageRef = "PostgreSQL:failed@fb70baa07e6e".parse().unwrap();
/// assert_eq!(r.name, "PostgreSQL");
/// assert_eq!(r.tag.as_deref(), Some("failed"));
/// assert_eq!(r.snapshot.as_deref(), Some("fb70baa07e6e"));
/// assert_eq!(ImageRef::parse("FreeBSD").unwrap().tag_or_latest(), "latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Image name (possibly with a registry host and port) or image ID prefix.
    pub name: String,
    /// Tag, `None` when not written (the engine then assumes `latest`).
    pub tag: Option<String>,
    /// Snapshot ID after `@`, if any.
    pub snapshot: Option<String>,
}

/// Why a string is no image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageRefError {
    /// Nothing to parse.
    #[error("empty image reference (expected name[:tag][@snapshot])")]
    Empty,
    /// `:tag` or `@snapshot` without a name.
    #[error("image reference {0:?} has no name (expected name[:tag][@snapshot])")]
    EmptyName(String),
    /// `name:` with nothing after the colon.
    #[error("image reference {0:?} has an empty tag (expected name:tag)")]
    EmptyTag(String),
    /// `name@` with nothing after the at sign.
    #[error("image reference {0:?} has an empty snapshot (expected name@snapshot)")]
    EmptySnapshot(String),
    /// White space, control characters or a second `@`.
    #[error("image reference {reference:?} contains {found:?} (expected name[:tag][@snapshot] without white space)")]
    InvalidCharacter {
        /// The reference.
        reference: String,
        /// The offending character.
        found: char,
    },
}

impl ImageRef {
    /// Parses `name[:tag][@snapshot]`.
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ImageRefError::InvalidCharacter {
                reference: s.to_string(),
                found: c,
            });
        }
        let (rest, snapshot) = match s.split_once('@') {
            Some((r, snap)) => {
                if snap.is_empty() {
                    return Err(ImageRefError::EmptySnapshot(s.to_string()));
                }
                if snap.contains(['@', '/', ':']) {
                    let found = snap
                        .chars()
                        .find(|c| matches!(c, '@' | '/' | ':'))
                        .unwrap_or('@');
                    return Err(ImageRefError::InvalidCharacter {
                        reference: s.to_string(),
                        found,
                    });
                }
                (r, Some(snap.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                if tag.is_empty() {
                    return Err(ImageRefError::EmptyTag(s.to_string()));
                }
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ImageRefError::EmptyName(s.to_string()));
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag,
            snapshot,
        })
    }

    /// The tag, or `latest` when none was written.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// Whether the reference could name an image by (a prefix of) its ID: a
    /// bare lower-case hexadecimal name without tag.
    pub fn could_be_id_prefix(&self) -> bool {
        self.tag.is_none()
            && !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(s) = &self.snapshot {
            write!(f, "@{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forms() {
        let r = ImageRef::parse("FreeBSD").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.snapshot.as_deref()),
            ("FreeBSD", None, None)
        );
        let r = ImageRef::parse("FreeBSD:13.2-STABLE").unwrap();
        assert_eq!(r.tag.as_deref(), Some("13.2-STABLE"));
        let r = ImageRef::parse("base@c069e69af8cf").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref(), r.snapshot.as_deref()),
            ("base", None, Some("c069e69af8cf"))
        );
        let r = ImageRef::parse("host:5000/name:tag").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("host:5000/name", Some("tag"))
        );
        let r = ImageRef::parse("host:5000/name").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_deref()),
            ("host:5000/name", None)
        );
        let r = ImageRef::parse("host:5000/name:tag@snap").unwrap();
        assert_eq!(r.to_string(), "host:5000/name:tag@snap");
        assert!(ImageRef::parse("f472c80a").unwrap().could_be_id_prefix());
        assert!(!ImageRef::parse("FreeBSD").unwrap().could_be_id_prefix());
    }

    #[test]
    fn errors() {
        assert_eq!(ImageRef::parse(""), Err(ImageRefError::Empty));
        assert!(matches!(
            ImageRef::parse(":tag"),
            Err(ImageRefError::EmptyName(_))
        ));
        assert!(matches!(
            ImageRef::parse("@snap"),
            Err(ImageRefError::EmptyName(_))
        ));
        assert!(matches!(
            ImageRef::parse("name:"),
            Err(ImageRefError::EmptyTag(_))
        ));
        assert!(matches!(
            ImageRef::parse("name@"),
            Err(ImageRefError::EmptySnapshot(_))
        ));
        assert!(matches!(
            ImageRef::parse("a b"),
            Err(ImageRefError::InvalidCharacter { found: ' ', .. })
        ));
        assert!(matches!(
            ImageRef::parse("a@b@c"),
            Err(ImageRefError::InvalidCharacter { found: '@', .. })
        ));
    }
}
