//! Image signatures: checked before a pulled image is used, when a policy (the config's,
//! by registry or repository, or keys given with the pull) says so; made on push with a
//! key. Two mechanisms, as containers' tools have them: cosign/sigstore signatures
//! stored in the registry (`sha256-<hex>.sig`, ECDSA P-256 keys in PEM), and GPG
//! "simple signing" signatures in a lookaside store (a directory).

use std::path::{Path, PathBuf};

use kleene_oci::registry::{Client, Reference};
use kleene_oci::sign::{cosign, simple};
use kleene_oci::Digest;

use crate::config::{Registries, SignaturePolicy};
use crate::error::{CoreError, Result};
use crate::oci::oci_error;

/// The largest signature payload read (they are a few hundred bytes).
const MAX_PAYLOAD: u64 = 1 << 20;
/// Simple signatures tried per image in a lookaside store.
const MAX_LOOKASIDE: usize = 32;

/// A key that signs on push.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SignWith {
    /// A cosign/sigstore private key (PEM, cosign's encrypted format or plain PKCS#8),
    /// with its passphrase: the signature goes into the registry.
    Cosign {
        key: PathBuf,
        passphrase: Option<String>,
    },
    /// An OpenPGP secret key (armored or binary), with its passphrase: the signature
    /// goes into the lookaside directory.
    Gpg {
        key: PathBuf,
        passphrase: Option<String>,
        lookaside: PathBuf,
    },
}

/// The policy for `reference`: the keys given with the pull, else the config's longest
/// matching scope.
pub(crate) fn policy_for(
    registries: &Registries,
    reference: &Reference,
    keys: &[PathBuf],
    lookaside: Option<&str>,
) -> Option<SignaturePolicy> {
    if !keys.is_empty() {
        let configured = scope_policy(registries, reference);
        return Some(SignaturePolicy {
            keys: keys.to_vec(),
            lookaside: lookaside
                .map(str::to_string)
                .or_else(|| configured.and_then(|p| p.lookaside)),
        });
    }
    scope_policy(registries, reference)
}

fn scope_policy(registries: &Registries, reference: &Reference) -> Option<SignaturePolicy> {
    let full = format!("{}/{}", reference.registry, reference.repository);
    registries
        .policy
        .iter()
        .filter(|(scope, _)| {
            let scope = scope.trim_end_matches('/');
            full == scope || full.starts_with(&format!("{scope}/"))
        })
        .max_by_key(|(scope, _)| scope.len())
        .map(|(_, p)| p.clone())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CoreError::io(format!("reading {}", path.display()), e))
}

/// A lookaside store's directory from its config text (`/dir` or `file:///dir`).
fn lookaside_dir(text: &str) -> Result<PathBuf> {
    let path = text.strip_prefix("file://").unwrap_or(text);
    if !path.starts_with('/') {
        return Err(CoreError::Unsupported(format!(
            "lookaside store {text:?}: only local directories (file://) are read"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Checks that `reference`'s image (`digests`: what the tag names and, for an index,
/// the platform's manifest; a signature of either counts) carries a signature that
/// verifies with one of the policy's keys. Errors say what was tried.
pub(crate) async fn verify(
    client: &Client,
    reference: &Reference,
    digests: &[Digest],
    policy: &SignaturePolicy,
) -> Result<String> {
    let image = reference.to_string();
    let repo = format!("{}/{}", reference.registry, reference.repository);
    let (cosign_keys, gpg_keys) = policy_keys(policy)?;
    if cosign_keys.is_empty() && gpg_keys.is_empty() {
        return Err(CoreError::Signature {
            image,
            reason: "its signature policy has no keys".into(),
        });
    }
    let mut tried: Vec<String> = Vec::new();
    for digest in digests {
        if !cosign_keys.is_empty() {
            let checked = CosignCheck {
                client,
                reference,
                repo: &repo,
                keys: &cosign_keys,
            };
            if let Some(verified) = checked.verify(digest, &mut tried).await? {
                return Ok(verified);
            }
        }
        if !gpg_keys.is_empty() {
            if let Some(verified) = verify_simple(policy, &repo, digest, &gpg_keys, &mut tried)? {
                return Ok(verified);
            }
        }
    }
    Err(CoreError::Signature {
        image,
        reason: format!(
            "no signature verifies with the policy's keys ({})",
            tried.join("; ")
        ),
    })
}

/// The policy's keys, read: cosign public keys (PEM) and OpenPGP keys (the others).
fn policy_keys(
    policy: &SignaturePolicy,
) -> Result<(Vec<cosign::VerifyingKey>, Vec<simple::PublicKeys>)> {
    let mut cosign_keys = Vec::new();
    let mut gpg_keys = Vec::new();
    for path in &policy.keys {
        let bytes = read(path)?;
        if bytes.starts_with(b"-----BEGIN PUBLIC KEY-----") {
            cosign_keys
                .push(cosign::VerifyingKey::from_pem(&bytes).map_err(|e| {
                    CoreError::InvalidInput(format!("key {}: {e}", path.display()))
                })?);
        } else {
            gpg_keys.push(
                simple::PublicKeys::from_armored_or_binary(&bytes)
                    .map_err(|e| CoreError::InvalidInput(format!("key {}: {e}", path.display())))?,
            );
        }
    }
    Ok((cosign_keys, gpg_keys))
}

/// Where cosign signatures of an image are looked for, and the keys they must verify with.
struct CosignCheck<'a> {
    client: &'a Client,
    reference: &'a Reference,
    /// The image's repository, with its registry.
    repo: &'a str,
    keys: &'a [cosign::VerifyingKey],
}

impl CosignCheck<'_> {
    /// What verified, when one of the registry's cosign signatures of `digest` does;
    /// what failed is added to `tried`.
    async fn verify(&self, digest: &Digest, tried: &mut Vec<String>) -> Result<Option<String>> {
        let client = self.client;
        let sig_ref = self.reference.with_tag(&cosign::signature_tag(digest));
        match client.manifest(&sig_ref).await {
            Ok(fetched) => {
                let sigs = cosign::signatures_in(&fetched.bytes).map_err(oci_error)?;
                for (payload_digest, _, signature) in sigs {
                    let payload = client
                        .blob_bytes(self.reference, &payload_digest, MAX_PAYLOAD)
                        .await
                        .map_err(oci_error)?;
                    match cosign::verify(self.keys, &payload, &signature, digest, Some(self.repo)) {
                        Ok(()) => {
                            return Ok(Some(format!("cosign signature of {digest} verified")))
                        }
                        Err(e) => tried.push(e.to_string()),
                    }
                }
            }
            Err(kleene_oci::Error::Http { status: 404, .. }) => {
                tried.push(format!("no cosign signature of {digest} ({sig_ref})"));
            }
            Err(e) => return Err(oci_error(e)),
        }
        Ok(None)
    }
}

/// What verified, when one of the lookaside store's simple signatures of `digest` does
/// with one of `keys`; what failed is added to `tried`.
fn verify_simple(
    policy: &SignaturePolicy,
    repo: &str,
    digest: &Digest,
    keys: &[simple::PublicKeys],
    tried: &mut Vec<String>,
) -> Result<Option<String>> {
    let Some(store) = &policy.lookaside else {
        tried.push("no lookaside store to read simple signatures from".into());
        return Ok(None);
    };
    let dir = lookaside_dir(store)?;
    for n in 1..=MAX_LOOKASIDE {
        let path = dir.join(simple::lookaside_path(repo, digest, n));
        let Ok(signature) = std::fs::read(&path) else {
            if n == 1 {
                tried.push(format!("no simple signature at {}", path.display()));
            }
            break;
        };
        for keys in keys {
            match simple::verify(keys, &signature, digest, Some(repo)) {
                Ok(_) => {
                    return Ok(Some(format!(
                        "simple signature {} verified",
                        path.display()
                    )))
                }
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            }
        }
    }
    Ok(None)
}

/// Signs `digest` (what `reference`'s tag names) with `with`: a cosign signature added
/// to the registry's `.sig` artifact (its signatures kept), or a simple signature
/// written to the next free place of the lookaside directory.
pub(crate) async fn sign(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    with: &SignWith,
) -> Result<String> {
    match with {
        SignWith::Cosign { key, passphrase } => {
            sign_cosign(client, reference, digest, key, passphrase.as_deref()).await
        }
        SignWith::Gpg {
            key,
            passphrase,
            lookaside,
        } => sign_simple(reference, digest, key, passphrase.as_deref(), lookaside),
    }
}

/// Signs `digest` with the cosign key at `key`, adding the signature to the registry's
/// `.sig` artifact of `reference` (the signatures already there kept).
async fn sign_cosign(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    key: &Path,
    passphrase: Option<&str>,
) -> Result<String> {
    let pem = read(key)?;
    let key = cosign::SigningKey::from_pem(&pem, passphrase.map(str::as_bytes))
        .map_err(|e| CoreError::InvalidInput(format!("key {}: {e}", key.display())))?;
    let payload = cosign::payload(&reference.to_string(), digest);
    let signature = key.sign(&payload);
    let sig_ref = reference.with_tag(&cosign::signature_tag(digest));
    // Signatures already there stay.
    let mut all =
        other_cosign_signatures(client, reference, &sig_ref, &payload, &signature).await?;
    all.push((payload, signature));
    let (config, manifest) = cosign::signature_manifest(&all);
    for (p, _) in &all {
        client
            .push_blob_bytes(reference, p)
            .await
            .map_err(oci_error)?;
    }
    client
        .push_blob_bytes(reference, &config)
        .await
        .map_err(oci_error)?;
    client
        .put_manifest(
            &sig_ref,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await
        .map_err(oci_error)?;
    Ok(format!("signed {digest} (cosign, {sig_ref})"))
}

/// The payloads and signatures of the `.sig` artifact `sig_ref` (none when there is none
/// yet), but for `payload` signed with `signature`.
async fn other_cosign_signatures(
    client: &Client,
    reference: &Reference,
    sig_ref: &Reference,
    payload: &[u8],
    signature: &str,
) -> Result<Vec<(Vec<u8>, String)>> {
    let mut all: Vec<(Vec<u8>, String)> = Vec::new();
    match client.manifest(sig_ref).await {
        Ok(fetched) => {
            for (d, _, s) in cosign::signatures_in(&fetched.bytes).map_err(oci_error)? {
                let p = client
                    .blob_bytes(reference, &d, MAX_PAYLOAD)
                    .await
                    .map_err(oci_error)?;
                if p != payload || s != signature {
                    all.push((p, s));
                }
            }
        }
        Err(kleene_oci::Error::Http { status: 404, .. }) => {}
        Err(e) => return Err(oci_error(e)),
    }
    Ok(all)
}

/// Signs `digest` with the OpenPGP key at `key`, writing the simple signature to the
/// next free place of the `lookaside` directory (or finding it there already).
fn sign_simple(
    reference: &Reference,
    digest: &Digest,
    key: &Path,
    passphrase: Option<&str>,
    lookaside: &Path,
) -> Result<String> {
    let repo = format!("{}/{}", reference.registry, reference.repository);
    let bytes = read(key)?;
    let secret = simple::SecretKey::from_armored(&bytes, passphrase)
        .map_err(|e| CoreError::InvalidInput(format!("key {}: {e}", key.display())))?;
    let signature = simple::sign(&secret, &reference.to_string(), digest).map_err(oci_error)?;
    let dir = lookaside_dir(&lookaside.to_string_lossy())?;
    for n in 1..=MAX_LOOKASIDE {
        let path = dir.join(simple::lookaside_path(&repo, digest, n));
        if path.exists() {
            if std::fs::read(&path).is_ok_and(|b| b == signature) {
                return Ok(format!("signed {digest} ({})", path.display()));
            }
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CoreError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&path, &signature)
            .map_err(|e| CoreError::io(format!("writing {}", path.display()), e))?;
        return Ok(format!("signed {digest} ({})", path.display()));
    }
    Err(CoreError::InvalidInput(format!(
        "{reference}: the lookaside store {} holds {MAX_LOOKASIDE} signatures of {digest} already",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Registries;

    #[test]
    fn the_longest_scope_applies() {
        let mut r = Registries::default();
        let p = |k: &str| SignaturePolicy {
            keys: vec![PathBuf::from(k)],
            lookaside: None,
        };
        r.policy.insert("reg.example:5000".into(), p("registry"));
        r.policy.insert("reg.example:5000/team".into(), p("team"));
        r.policy
            .insert("reg.example:5000/team/app".into(), p("app"));
        let of = |s: &str| {
            policy_for(&r, &Reference::parse(s).expect("a reference"), &[], None)
                .map(|p| p.keys[0].display().to_string())
        };
        assert_eq!(of("reg.example:5000/team/app:1").as_deref(), Some("app"));
        assert_eq!(of("reg.example:5000/team/apps:1").as_deref(), Some("team"));
        assert_eq!(of("reg.example:5000/other:1").as_deref(), Some("registry"));
        assert_eq!(of("other.example/team/app:1"), None);
        // Keys given with the pull win.
        let given = policy_for(
            &r,
            &Reference::parse("other.example/x:1").expect("a reference"),
            &[PathBuf::from("given")],
            Some("/sigs"),
        )
        .expect("a policy");
        assert_eq!(given.keys, [PathBuf::from("given")]);
        assert_eq!(given.lookaside.as_deref(), Some("/sigs"));
    }

    #[test]
    fn lookaside_stores_are_directories() {
        assert_eq!(
            lookaside_dir("file:///var/sigs").ok(),
            Some(PathBuf::from("/var/sigs"))
        );
        assert_eq!(
            lookaside_dir("/var/sigs").ok(),
            Some(PathBuf::from("/var/sigs"))
        );
        assert!(lookaside_dir("https://sigs.example/").is_err());
    }
}
