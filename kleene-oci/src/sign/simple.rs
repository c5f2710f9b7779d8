//! containers' "atomic container signatures" (GPG simple signing, skopeo's
//! `--sign-by FINGERPRINT`, policy `signedBy`): an OpenPGP signed message (not a
//! detached signature) whose literal data is a JSON payload naming the image, stored
//! outside the registry in a lookaside directory (`sigstore:` / `lookaside:` in
//! registries.d) as `<repository path>@sha256=<hex>/signature-<n>`.
//!
//! Keys are OpenPGP keys (rpgp reads what `gpg --export[-secret-keys] [--armor]`
//! writes: RSA, EdDSA, ECDSA). A signature verifies with a key's primary key or a
//! signing-capable subkey whose binding signatures verify.

use std::io::Read as _;

use pgp::composed::{
    Deserializable as _, Message, MessageBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails as _, Password};
use rand_core::OsRng;
use serde_json::json;

use super::{check_claims, error, parse_claims, split_reference, MAX_PAYLOAD};
use crate::{Digest, Result};

/// The `type` of a simple signing payload.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// The payload skopeo signs for `docker_reference` at `manifest_digest`; `creator`
/// names the signing tool, `timestamp` is in seconds since the epoch.
pub fn payload(
    docker_reference: &str,
    manifest_digest: &Digest,
    creator: &str,
    timestamp: i64,
) -> Vec<u8> {
    json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": {"creator": creator, "timestamp": timestamp},
    })
    .to_string()
    .into_bytes()
}

/// An OpenPGP secret key (its primary key signs), unlocked with its passphrase.
pub struct SecretKey {
    key: SignedSecretKey,
    passphrase: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Reads a secret key as `gpg --export-secret-keys [--armor]` writes it (the first
    /// key when there are several); a protected key is unlocked with `passphrase` now,
    /// so that a wrong one is an error here.
    pub fn from_armored(bytes: &[u8], passphrase: Option<&str>) -> Result<Self> {
        const WHAT: &str = "openpgp secret key";
        let (key, _) = SignedSecretKey::from_reader_single(bytes)
            .map_err(|e| error(WHAT, format!("cannot read it: {e}")))?;
        let fingerprint = format!("{:X}", key.fingerprint());
        key.verify_bindings().map_err(|e| {
            error(
                format!("{WHAT} {fingerprint}"),
                format!("its self-signatures do not verify: {e}"),
            )
        })?;
        let passphrase = passphrase.unwrap_or_default().to_string();
        key.primary_key
            .unlock(&Password::from(passphrase.as_str()), |_, _| Ok(()))
            .and_then(|inner| inner)
            .map_err(|e| {
                error(
                    format!("{WHAT} {fingerprint}"),
                    format!("cannot unlock it (wrong passphrase?): {e}"),
                )
            })?;
        Ok(Self { key, passphrase })
    }

    /// The primary key's fingerprint, upper-case hex as gpg prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.fingerprint())
    }

    /// The public part, as a keyring of one key.
    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys {
            keys: vec![self.key.to_public_key()],
        }
    }
}

/// OpenPGP public keys to verify with (a keyring export, `gpg --export [--armor]`).
#[derive(Debug, Clone)]
pub struct PublicKeys {
    keys: Vec<SignedPublicKey>,
}

impl PublicKeys {
    /// Reads the keys of a keyring export, armored or binary; each key's self-signatures
    /// and subkey bindings must verify.
    pub fn from_armored_or_binary(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "openpgp public keys";
        let (keys, _) = SignedPublicKey::from_reader_many(bytes)
            .map_err(|e| error(WHAT, format!("cannot read them: {e}")))?;
        let mut out = Vec::new();
        for key in keys {
            let key = key.map_err(|e| error(WHAT, format!("cannot read a key: {e}")))?;
            key.verify_bindings().map_err(|e| {
                error(
                    format!("openpgp public key {:X}", key.fingerprint()),
                    format!("its self-signatures do not verify: {e}"),
                )
            })?;
            out.push(key);
        }
        if out.is_empty() {
            return Err(error(WHAT, "there is no key in them"));
        }
        Ok(Self { keys: out })
    }

    /// The primary keys' fingerprints, upper-case hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.fingerprint()))
            .collect()
    }

    /// The keys a data signature may be made with: each primary key, and each subkey
    /// whose binding signature allows signing. With the primary key's fingerprint.
    fn signing_keys(&self) -> Vec<(&dyn pgp::types::VerifyingKey, String)> {
        let mut out: Vec<(&dyn pgp::types::VerifyingKey, String)> = Vec::new();
        for key in &self.keys {
            let fingerprint = format!("{:X}", key.fingerprint());
            out.push((&key.primary_key, fingerprint.clone()));
            for subkey in &key.public_subkeys {
                if subkey.signatures.iter().any(|s| s.key_flags().sign()) {
                    out.push((&subkey.key, fingerprint.clone()));
                }
            }
        }
        out
    }
}

/// Signs `docker_reference` at `manifest_digest` with `key`'s primary key: an OpenPGP
/// signed message (one-pass signature, literal data, signature; SHA-256), binary, as
/// skopeo writes it through gpgme.
pub fn sign(key: &SecretKey, docker_reference: &str, manifest_digest: &Digest) -> Result<Vec<u8>> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let creator = concat!("kleene-oci ", env!("CARGO_PKG_VERSION"));
    let payload = payload(docker_reference, manifest_digest, creator, timestamp);
    let mut builder = MessageBuilder::from_bytes("", payload);
    builder.sign(
        &key.key.primary_key,
        Password::from(key.passphrase.as_str()),
        HashAlgorithm::Sha256,
    );
    builder.to_vec(OsRng).map_err(|e| {
        error(
            format!("signature of {docker_reference}@{manifest_digest}"),
            format!("signing with openpgp key {} failed: {e}", key.fingerprint()),
        )
    })
}

/// Verifies a simple signature of the image `manifest_digest`: an OpenPGP signed
/// message (binary or armored, compressed or not) with exactly one signature, made by
/// one of `keys`, whose payload claims `manifest_digest` and, when given, a docker
/// reference matching `expected_reference` (see [`super::reference_matches`]). Returns
/// the signed docker reference. The error says which check failed.
pub fn verify(
    keys: &PublicKeys,
    signature: &[u8],
    manifest_digest: &Digest,
    expected_reference: Option<&str>,
) -> Result<String> {
    let what = || match expected_reference {
        Some(r) => format!("simple signature of {r}@{manifest_digest}"),
        None => format!("simple signature of {manifest_digest}"),
    };
    if signature.len() > MAX_PAYLOAD {
        return Err(error(
            what(),
            format!("it is larger than {MAX_PAYLOAD} bytes"),
        ));
    }
    let not_message =
        |e: pgp::errors::Error| error(what(), format!("not an openpgp signed message: {e}"));
    let mut message = if signature.starts_with(b"-----BEGIN PGP") {
        Message::from_armor(signature).map_err(not_message)?.0
    } else {
        Message::from_bytes(signature).map_err(not_message)?
    };
    while message.is_compressed() {
        message = message.decompress().map_err(not_message)?;
    }
    let Message::Signed { reader, .. } = &message else {
        return Err(error(what(), "the openpgp message is not signed"));
    };
    if reader.num_signatures() != 1 {
        return Err(error(
            what(),
            format!(
                "the openpgp message has {} signatures, not one",
                reader.num_signatures()
            ),
        ));
    }
    let mut payload = Vec::new();
    (&mut message)
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut payload)
        .map_err(|e| error(what(), format!("cannot read the signed payload: {e}")))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(error(
            what(),
            format!("the signed payload is larger than {MAX_PAYLOAD} bytes"),
        ));
    }
    let candidates = keys.signing_keys();
    if !candidates
        .iter()
        .any(|(key, _)| message.verify(*key).is_ok())
    {
        return Err(error(
            what(),
            format!(
                "the signature does not verify with the openpgp key(s) {}",
                keys.fingerprints().join(", ")
            ),
        ));
    }
    let claims = parse_claims(&payload, SIGNATURE_TYPE).map_err(|e| error(what(), e))?;
    check_claims(&claims, manifest_digest, expected_reference).map_err(|e| error(what(), e))?;
    Ok(claims.reference)
}

/// Where a lookaside store keeps signature `n` (1-based) of `repository` at
/// `manifest_digest`, relative to its base (`file:///var/lib/containers/sigstore`):
/// `<repository path>@sha256=<hex>/signature-<n>`, the repository path without its
/// registry (`library/alpine` for `alpine` and `docker.io/library/alpine`,
/// `team/app` for `registry.example:5000/team/app`). A tag or digest on `repository`
/// is ignored.
pub fn lookaside_path(repository: &str, manifest_digest: &Digest, n: usize) -> String {
    let (normalized, _) = split_reference(repository);
    let path = normalized
        .split_once('/')
        .map_or(normalized.as_str(), |(_, path)| path);
    format!("{path}@sha256={}/signature-{n}", manifest_digest.hex())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_what_is_not_a_signed_message() {
        let e = PublicKeys::from_armored_or_binary(b"not a key").unwrap_err();
        assert!(e.to_string().starts_with("openpgp public keys: "), "{e}");
        let e = SecretKey::from_armored(b"not a key", None).unwrap_err();
        assert!(e.to_string().starts_with("openpgp secret key: "), "{e}");
        let keys = PublicKeys { keys: Vec::new() };
        let d = Digest::of(b"m");
        let e = verify(&keys, b"garbage", &d, None).unwrap_err().to_string();
        assert!(e.contains("not an openpgp signed message"), "{e}");
        let literal = MessageBuilder::from_bytes("", payload("a/b", &d, "t", 1))
            .to_vec(OsRng)
            .unwrap();
        let e = verify(&keys, &literal, &d, None).unwrap_err().to_string();
        assert!(e.contains("is not signed"), "{e}");
        assert!(e.starts_with(&format!("simple signature of {d}")), "{e}");
    }

    #[test]
    fn lookaside_paths() {
        let d = Digest::of(b"m");
        assert_eq!(
            lookaside_path("alpine", &d, 1),
            format!("library/alpine@sha256={}/signature-1", d.hex())
        );
        assert_eq!(
            lookaside_path("registry.example:5000/team/app:1", &d, 2),
            format!("team/app@sha256={}/signature-2", d.hex())
        );
    }
}
