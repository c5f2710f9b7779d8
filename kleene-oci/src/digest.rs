//! Content digests: `sha256:<64 hex digits>`, verified while a blob streams, and the chain
//! ids that name a layer together with everything below it.

use std::io::Read;

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// A sha256 digest, `sha256:<64 lower-case hex digits>` (the only algorithm this crate
/// verifies; others are refused by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(text: &str) -> Result<Self> {
        let err = |reason: &str| Error::Digest {
            digest: text.to_string(),
            reason: reason.to_string(),
        };
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| err("expected ALGORITHM:HEX"))?;
        if algorithm != "sha256" {
            return Err(err("only sha256 digests are verified"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err("a sha256 digest is 64 lower-case hex digits"));
        }
        Ok(Self {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: Sha256) -> Self {
        let sum = h.finalize();
        let mut hex = String::with_capacity(64);
        for b in sum {
            hex.push_str(&format!("{b:02x}"));
        }
        Self { hex }
    }

    /// The hex digits: the blob's file name in a layout (`blobs/sha256/<hex>`).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The chain ids of a stack of layers from their diff ids, bottom first: the first is
/// its diff id, each next `sha256(<chain id below> + " " + <diff id>)` (the image spec's
/// ChainID). A layer is the same unpacked tree wherever its chain id is the same.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(below) => Digest::of(format!("{below} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Reads a blob while hashing and counting it: reading past the size its descriptor
/// says, or an end at which the size or digest differ, is an `InvalidData` error naming
/// the blob. Nothing read from a blob may be trusted before its end was reached.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    /// The size the descriptor says; `None` for a stream of unknown length (an
    /// uncompressed layer checked against its diff id).
    size: Option<u64>,
    read: u64,
    hasher: Sha256,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Verifies `inner` against `expected` and `size`.
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        Self::with_size(inner, expected, Some(size))
    }

    /// Verifies `inner` against `expected` only (a stream whose length no descriptor
    /// gives: a decompressed layer and its diff id).
    pub fn digest_only(inner: R, expected: Digest) -> Self {
        Self::with_size(inner, expected, None)
    }

    fn with_size(inner: R, expected: Digest, size: Option<u64>) -> Self {
        Self {
            inner,
            expected,
            size,
            read: 0,
            hasher: Sha256::new(),
            verified: false,
        }
    }

    /// Whether the whole blob was read and matched.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Reads what is left (a consumer may stop at the end of a tar archive, before the
    /// blob's end) and verifies the blob.
    pub fn finish(mut self) -> std::io::Result<()> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        if self.verified {
            Ok(())
        } else {
            Err(self.mismatch("the blob was not read to its end".into()))
        }
    }

    fn mismatch(&self, reason: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::Mismatch {
                digest: self.expected.to_string(),
                reason,
            },
        )
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.verified {
            return Ok(0);
        }
        let want = match self.size {
            Some(size) if self.read > size => {
                return Err(self.mismatch(format!("it is longer than its {size} bytes")));
            }
            // One byte more than the size may be asked for, to see a blob that is too
            // long.
            Some(size) => {
                let room = (size - self.read).saturating_add(1);
                buf.len().min(usize::try_from(room).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if let Some(size) = self.size.filter(|s| self.read > *s) {
            return Err(self.mismatch(format!("it is longer than its {size} bytes")));
        }
        self.hasher.update(&buf[..n]);
        if n == 0 && want > 0 {
            if let Some(size) = self.size.filter(|s| self.read != *s) {
                return Err(
                    self.mismatch(format!("it ended after {} of its {size} bytes", self.read))
                );
            }
            let got = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if got != self.expected {
                return Err(self.mismatch(format!("its content has the digest {got}")));
            }
            self.verified = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digests_parse_and_refuse() {
        let d = Digest::of(b"{}");
        assert_eq!(
            d.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        for bad in [
            "sha512:00",
            "sha256:ABC",
            "sha256:../../etc/passwd",
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        ] {
            let e = Digest::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    fn read_all(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    }

    #[test]
    fn blobs_are_verified_at_their_end() {
        let data = b"hello blob".to_vec();
        let d = Digest::of(&data);
        let mut r = VerifyingReader::new(&data[..], d.clone(), data.len() as u64);
        assert_eq!(read_all(&mut r).unwrap(), data);
        assert!(r.verified());
        // Another content of the same size.
        let mut r = VerifyingReader::new(&b"hello blub"[..], d.clone(), 10);
        let e = read_all(&mut r).unwrap_err().to_string();
        assert!(e.contains("its content has the digest"), "{e}");
        // Truncated, and too long.
        let mut r = VerifyingReader::new(&data[..5], d.clone(), 10);
        let e = read_all(&mut r).unwrap_err().to_string();
        assert!(e.contains("ended after 5 of its 10 bytes"), "{e}");
        let mut r = VerifyingReader::new(&b"hello blob and more"[..], d.clone(), 10);
        let e = read_all(&mut r).unwrap_err().to_string();
        assert!(e.contains("longer than its 10 bytes"), "{e}");
        // Of unknown size: the digest alone.
        let mut r = VerifyingReader::digest_only(&data[..], d.clone());
        assert_eq!(read_all(&mut r).unwrap(), data);
        let mut r = VerifyingReader::digest_only(&data[..4], d.clone());
        assert!(read_all(&mut r).is_err());
        // finish() reads the rest.
        let mut r = VerifyingReader::new(&data[..], d, 10);
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        r.finish().unwrap();
    }
}
