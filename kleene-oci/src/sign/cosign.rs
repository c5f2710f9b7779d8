//! cosign/sigstore signatures (what skopeo calls "sigstore"): an ECDSA P-256 SHA-256
//! signature, base64 ASN.1 DER, over a JSON payload naming the image. A registry keeps
//! them as the image `<repository>:sha256-<hex>.sig`, an OCI manifest with one layer
//! per signature: the layer is the payload (media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`), its annotation
//! `dev.cosignproject.cosign/signature` the signature.
//!
//! Private keys are read in cosign's encrypted format (`ENCRYPTED COSIGN PRIVATE KEY` or
//! `ENCRYPTED SIGSTORE PRIVATE KEY`: JSON with scrypt parameters, a NaCl secretbox
//! nonce and the sealed PKCS#8 key) and as plain PKCS#8 or SEC1 PEM; public keys as
//! SPKI PEM (`PUBLIC KEY`). Only P-256 keys, cosign's default, are supported.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::Signature;
use p256::pkcs8::der::pem::{self, LineEnding};
use p256::pkcs8::EncodePublicKey as _;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Value};

use super::{check_claims, error, parse_claims};
use crate::{Digest, Result};

/// The `type` of a cosign payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The media type of a signature layer (its content is the payload).
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The PEM label of the encrypted private keys this crate writes (the one cosign and
/// containers/image read).
pub const ENCRYPTED_KEY_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The PEM label newer sigstore tools write; read as the above.
pub const ENCRYPTED_SIGSTORE_KEY_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// scrypt's cost for keys this crate encrypts: cosign's (N = 2^15, r = 8, p = 1), the
/// parameters every reader of the format accepts.
const SCRYPT_LOG_N: u8 = 15;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
/// The highest cost accepted when reading (N = 2^20: about 1 GiB with r = 8).
const SCRYPT_MAX_LOG_N: u8 = 20;

/// The tag under which a registry keeps the signatures of the manifest
/// `manifest_digest`: `sha256-<hex>.sig`.
pub fn signature_tag(manifest_digest: &Digest) -> String {
    format!("sha256-{}.sig", manifest_digest.hex())
}

/// The payload cosign and skopeo sign for `docker_reference` (`registry/repo:tag`) at
/// `manifest_digest`.
pub fn payload(docker_reference: &str, manifest_digest: &Digest) -> Vec<u8> {
    let value = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    value.to_string().into_bytes()
}

/// A P-256 private key to sign with.
#[derive(Clone)]
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a private key: cosign's encrypted PEM (decrypted with `passphrase`, empty
    /// when `None`), or a plain PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM.
    pub fn from_pem(pem_bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Self> {
        const WHAT: &str = "cosign private key";
        let (label, der) =
            pem::decode_vec(pem_bytes).map_err(|e| error(WHAT, format!("not a pem file: {e}")))?;
        let secret = match label {
            ENCRYPTED_KEY_LABEL | ENCRYPTED_SIGSTORE_KEY_LABEL => {
                let pkcs8 = decrypt(&der, passphrase.unwrap_or_default())?;
                p256::SecretKey::from_pkcs8_der(&pkcs8)
                    .map_err(|e| error(WHAT, format!("not an ecdsa p-256 pkcs#8 key: {e}")))?
            }
            "PRIVATE KEY" => p256::SecretKey::from_pkcs8_der(&der)
                .map_err(|e| error(WHAT, format!("not an ecdsa p-256 pkcs#8 key: {e}")))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                .map_err(|e| error(WHAT, format!("not an ecdsa p-256 sec1 key: {e}")))?,
            other => return Err(error(WHAT, format!("unsupported pem type {other:?}"))),
        };
        Ok(Self {
            key: p256::ecdsa::SigningKey::from(secret),
        })
    }

    /// Signs `payload`: the base64 ASN.1 DER ECDSA-SHA256 signature.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature: Signature = self.key.sign(payload);
        BASE64.encode(signature.to_der().as_bytes())
    }

    /// The public key, SPKI PEM (`PUBLIC KEY`), as cosign writes `cosign.pub`.
    pub fn public_pem(&self) -> String {
        self.verifying_key().pem()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            key: *self.key.verifying_key(),
        }
    }
}

/// A P-256 public key to verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    key: p256::ecdsa::VerifyingKey,
}

impl VerifyingKey {
    /// Reads an SPKI PEM (`PUBLIC KEY`) public key.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "cosign public key";
        let (label, der) =
            pem::decode_vec(pem_bytes).map_err(|e| error(WHAT, format!("not a pem file: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(error(WHAT, format!("unsupported pem type {label:?}")));
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map_err(|e| error(WHAT, format!("not an ecdsa p-256 public key: {e}")))?;
        Ok(Self { key })
    }

    fn pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a p-256 public key always encodes as spki")
    }
}

/// Makes a new P-256 key pair: the private key in cosign's encrypted PEM
/// (`ENCRYPTED COSIGN PRIVATE KEY`, scrypt N = 2^15, r = 8, p = 1 and NaCl secretbox, as
/// `cosign generate-key-pair` writes and skopeo's `--sign-by-sigstore-private-key`
/// reads), and the public key as SPKI PEM.
pub fn generate_key_pair(passphrase: &[u8]) -> Result<(String, String)> {
    const WHAT: &str = "new cosign key";
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let secret = p256::SecretKey::from(&key);
    let pkcs8 = secret
        .to_pkcs8_der()
        .map_err(|e| error(WHAT, format!("cannot encode it as pkcs#8: {e}")))?;
    let private = encrypt_pkcs8(pkcs8.as_bytes(), passphrase, SCRYPT_LOG_N)?;
    let public = VerifyingKey {
        key: *key.verifying_key(),
    }
    .pem();
    Ok((private, public))
}

/// Seals PKCS#8 bytes in cosign's encrypted PEM, scrypt cost N = 2^`log_n`.
fn encrypt_pkcs8(pkcs8: &[u8], passphrase: &[u8], log_n: u8) -> Result<String> {
    const WHAT: &str = "new cosign key";
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let box_key = scrypt_key(passphrase, &salt, log_n, SCRYPT_R, SCRYPT_P, WHAT)?;
    let sealed = XSalsa20Poly1305::new(Key::from_slice(&box_key))
        .encrypt(Nonce::from_slice(&nonce), pkcs8)
        .map_err(|_| error(WHAT, "cannot seal it"))?;
    let document = json!({
        "kdf": {
            "name": "scrypt",
            "params": {"N": 1u64 << log_n, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": BASE64.encode(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": BASE64.encode(nonce)},
        "ciphertext": BASE64.encode(sealed),
    });
    pem::encode_string(
        ENCRYPTED_KEY_LABEL,
        LineEnding::LF,
        document.to_string().as_bytes(),
    )
    .map_err(|e| error(WHAT, format!("cannot encode it as pem: {e}")))
}

fn scrypt_key(
    passphrase: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    what: &str,
) -> Result<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|e| error(what, format!("invalid scrypt parameters: {e}")))?;
    let mut out = [0u8; 32];
    scrypt::scrypt(passphrase, salt, &params, &mut out)
        .map_err(|e| error(what, format!("scrypt failed: {e}")))?;
    Ok(out)
}

/// Opens cosign's encrypted key JSON (go-tuf's `encrypted` format) to the PKCS#8 bytes.
fn decrypt(document: &[u8], passphrase: &[u8]) -> Result<Vec<u8>> {
    const WHAT: &str = "cosign private key";
    let bad = |reason: &str| error(WHAT, reason.to_string());
    let value: Value = serde_json::from_slice(document)
        .map_err(|e| error(WHAT, format!("the encrypted key is not json: {e}")))?;
    let bytes = |pointer: &str| -> Result<Vec<u8>> {
        let text = value
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| error(WHAT, format!("the encrypted key has no {pointer}")))?;
        BASE64
            .decode(text)
            .map_err(|e| error(WHAT, format!("{pointer} is not base64: {e}")))
    };
    let number = |pointer: &str| -> Result<u64> {
        value
            .pointer(pointer)
            .and_then(Value::as_u64)
            .ok_or_else(|| error(WHAT, format!("the encrypted key has no number {pointer}")))
    };
    if value.pointer("/kdf/name").and_then(Value::as_str) != Some("scrypt") {
        return Err(bad("its key derivation is not scrypt"));
    }
    if value.pointer("/cipher/name").and_then(Value::as_str) != Some("nacl/secretbox") {
        return Err(bad("its cipher is not nacl/secretbox"));
    }
    let n = number("/kdf/params/N")?;
    if !n.is_power_of_two() || !(2..=1 << SCRYPT_MAX_LOG_N).contains(&n) {
        return Err(error(WHAT, format!("unsupported scrypt parameter N = {n}")));
    }
    let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| bad("scrypt N is too large"))?;
    let r = u32::try_from(number("/kdf/params/r")?).map_err(|_| bad("scrypt r is too large"))?;
    let p = u32::try_from(number("/kdf/params/p")?).map_err(|_| bad("scrypt p is too large"))?;
    if u64::from(r) * u64::from(p) > 64 {
        return Err(bad("its scrypt parameters r and p are too large"));
    }
    let salt = bytes("/kdf/salt")?;
    let nonce = bytes("/cipher/nonce")?;
    if nonce.len() != 24 {
        return Err(bad("its secretbox nonce is not 24 bytes"));
    }
    let sealed = bytes("/ciphertext")?;
    let box_key = scrypt_key(passphrase, &salt, log_n, r, p, WHAT)?;
    XSalsa20Poly1305::new(Key::from_slice(&box_key))
        .decrypt(Nonce::from_slice(&nonce), sealed.as_slice())
        .map_err(|_| bad("wrong passphrase, or the encrypted key is corrupt"))
}

/// Verifies one signature of the image `manifest_digest`: that `signature_b64` is a
/// signature of `payload` by one of `keys`, then that the payload is a cosign payload
/// claiming `manifest_digest` and, when given, a docker reference matching
/// `expected_reference` (see [`super::reference_matches`]: the whole reference when it
/// has a tag or digest, else the repository). The error says which check failed.
pub fn verify(
    keys: &[VerifyingKey],
    payload: &[u8],
    signature_b64: &str,
    manifest_digest: &Digest,
    expected_reference: Option<&str>,
) -> Result<()> {
    let what = || match expected_reference {
        Some(r) => format!("cosign signature of {r}@{manifest_digest}"),
        None => format!("cosign signature of {manifest_digest}"),
    };
    let der = BASE64
        .decode(signature_b64.trim())
        .map_err(|e| error(what(), format!("the signature is not base64: {e}")))?;
    let signature = Signature::from_der(&der)
        .map_err(|e| error(what(), format!("the signature is not asn.1 ecdsa: {e}")))?;
    if keys.is_empty() {
        return Err(error(what(), "no public key to verify it with"));
    }
    if !keys
        .iter()
        .any(|k| k.key.verify(payload, &signature).is_ok())
    {
        return Err(error(
            what(),
            format!(
                "the signature does not verify with the {} public key(s) given",
                keys.len()
            ),
        ));
    }
    let claims = parse_claims(payload, SIGNATURE_TYPE).map_err(|e| error(what(), e))?;
    check_claims(&claims, manifest_digest, expected_reference).map_err(|e| error(what(), e))
}

/// The signature image to push as [`signature_tag`]: its config and its OCI manifest,
/// one layer per (payload, base64 signature), in that order. To add a signature to an
/// image already signed, list the existing ones ([`signatures_in`]) first.
pub fn signature_manifest(signatures: &[(Vec<u8>, String)]) -> (Vec<u8>, Vec<u8>) {
    let digests: Vec<String> = signatures
        .iter()
        .map(|(payload, _)| Digest::of(payload).to_string())
        .collect();
    // The config cosign writes: an empty image whose layers are the payloads.
    let config = json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": digests},
    })
    .to_string()
    .into_bytes();
    let layers: Vec<Value> = signatures
        .iter()
        .zip(&digests)
        .map(|((payload, signature), digest)| {
            json!({
                "mediaType": PAYLOAD_MEDIA_TYPE,
                "size": payload.len(),
                "digest": digest,
                "annotations": {SIGNATURE_ANNOTATION: signature},
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": config.len(),
            "digest": Digest::of(&config).to_string(),
        },
        "layers": layers,
    })
    .to_string()
    .into_bytes();
    (config, manifest)
}

/// The signatures a signature manifest lists: (payload digest, payload size, base64
/// signature) of each layer of media type [`PAYLOAD_MEDIA_TYPE`] with a signature
/// annotation (other layers, attestations say, are left out). The caller fetches each
/// payload by its digest, verifying it, and passes it to [`verify`].
pub fn signatures_in(manifest_bytes: &[u8]) -> Result<Vec<(Digest, u64, String)>> {
    const WHAT: &str = "cosign signature manifest";
    let value: Value = serde_json::from_slice(manifest_bytes)
        .map_err(|e| error(WHAT, format!("not json: {e}")))?;
    let layers = value
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| error(WHAT, "it has no layers"))?;
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        if layer.get("mediaType").and_then(Value::as_str) != Some(PAYLOAD_MEDIA_TYPE) {
            continue;
        }
        let Some(signature) = layer
            .pointer("/annotations")
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let digest = layer
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| error(WHAT, format!("layer {i} has no digest")))?;
        let digest = Digest::parse(digest)?;
        let size = layer
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| error(WHAT, format!("layer {i} has no size")))?;
        out.push((digest, size, signature.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_verify_and_refuse() {
        // generate_key_pair's cost (N = 2^15) takes seconds unoptimized: tests/sign.rs
        // runs it once; here a cheaper key of the same format.
        let secret = p256::SecretKey::random(&mut OsRng);
        let pkcs8 = secret.to_pkcs8_der().unwrap();
        let private = encrypt_pkcs8(pkcs8.as_bytes(), b"pw", 10).unwrap();
        assert!(private.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"));
        let key = SigningKey::from_pem(private.as_bytes(), Some(b"pw")).unwrap();
        let public = key.public_pem();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        let e = SigningKey::from_pem(private.as_bytes(), Some(b"wrong")).unwrap_err();
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        let relabeled = private.replace("COSIGN", "SIGSTORE");
        let k = SigningKey::from_pem(relabeled.as_bytes(), Some(b"pw")).unwrap();
        assert_eq!(k.public_pem(), public);
        let e = SigningKey::from_pem(public.as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("unsupported pem type"), "{e}");
        let public = VerifyingKey::from_pem(public.as_bytes()).unwrap();

        let d = Digest::of(b"manifest");
        let p = payload("example.com/app:1", &d);
        let s = key.sign(&p);
        verify(
            std::slice::from_ref(&public),
            &p,
            &s,
            &d,
            Some("example.com/app"),
        )
        .unwrap();
        verify(std::slice::from_ref(&public), &p, &s, &d, None).unwrap();
        let other = Digest::of(b"other");
        let e = verify(std::slice::from_ref(&public), &p, &s, &other, None).unwrap_err();
        assert!(e.to_string().contains("signs the manifest digest"), "{e}");
        let e = verify(
            std::slice::from_ref(&public),
            &p,
            &s,
            &d,
            Some("example.com/evil"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let mut tampered = p.clone();
        tampered[10] ^= 1;
        let e = verify(std::slice::from_ref(&public), &tampered, &s, &d, None).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");

        // Plain PKCS#8 and SEC1 keys.
        let secret = p256::SecretKey::from(&key.key);
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        let k2 = SigningKey::from_pem(pkcs8.as_bytes(), None).unwrap();
        assert_eq!(k2.verifying_key(), public);
        let sec1 = secret.to_sec1_pem(LineEnding::LF).unwrap();
        let k3 = SigningKey::from_pem(sec1.as_bytes(), None).unwrap();
        assert_eq!(k3.verifying_key(), public);
    }

    #[test]
    fn decrypts_what_go_encrypts() {
        // go-securesystemslib's encrypted.TestDecrypt (the format cosign's keys use).
        let document = br#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#;
        assert_eq!(
            decrypt(document, b"supersecret").unwrap(),
            b"reallyimportant"
        );
        let huge = br#"{"kdf":{"name":"scrypt","params":{"N":4294967296,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
        let e = decrypt(huge, b"").unwrap_err();
        assert!(
            e.to_string().contains("unsupported scrypt parameter"),
            "{e}"
        );
    }

    #[test]
    fn manifests_list_their_signatures() {
        let d = Digest::of(b"m");
        let sigs = vec![
            (payload("a/b:1", &d), "c2ln".to_string()),
            (payload("a/b:2", &d), "c2lnMg==".to_string()),
        ];
        let (config, manifest) = signature_manifest(&sigs);
        let listed = signatures_in(&manifest).unwrap();
        assert_eq!(listed.len(), 2);
        for ((digest, size, sig), (p, s)) in listed.iter().zip(&sigs) {
            assert_eq!(*digest, Digest::of(p));
            assert_eq!(*size, p.len() as u64);
            assert_eq!(sig, s);
        }
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["config"]["digest"], Digest::of(&config).to_string());
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
    }
}
