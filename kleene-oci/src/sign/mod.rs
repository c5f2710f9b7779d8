//! Image signatures, both kinds the containers tools (skopeo, podman) read and write:
//!
//! - [`cosign`]: sigstore/cosign signatures, an ECDSA P-256 signature over a small JSON
//!   payload, stored in the registry as the tag `sha256-<hex>.sig` next to the image
//!   (skopeo's `--sign-by-sigstore-private-key`, policy `sigstoreSigned`);
//! - [`simple`]: "atomic container signatures", the same kind of JSON payload in an
//!   OpenPGP signed message (skopeo's `--sign-by FINGERPRINT`, policy `signedBy`),
//!   stored in a lookaside directory (`sigstore:` in registries.d).
//!
//! Both payloads name the image by its manifest digest and its docker reference; a
//! signature is only trusted when its cryptographic check passed and both claims
//! match what the caller expects.

pub mod cosign;
pub mod simple;

use serde_json::{Map, Value};

use crate::{Digest, Error};

/// The largest signature payload or message read (they are a few hundred bytes).
const MAX_PAYLOAD: usize = 1 << 20;

pub(crate) fn error(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Signature {
        what: what.into(),
        reason: reason.into(),
    }
}

/// What a payload claims, not yet compared with anything.
#[derive(Debug)]
pub(crate) struct Claims {
    pub(crate) digest: String,
    pub(crate) reference: String,
}

/// An object with exactly the fields `names` (as containers/image's
/// `ParanoidUnmarshalJSONObjectExactFields`).
fn exact_fields<'a>(
    value: &'a Value,
    names: &[&str],
    what: &str,
) -> std::result::Result<&'a Map<String, Value>, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{what} is not a json object"))?;
    for key in object.keys() {
        if !names.contains(&key.as_str()) {
            return Err(format!("{what} has an unexpected field {key:?}"));
        }
    }
    for name in names {
        if !object.contains_key(*name) {
            return Err(format!("{what} has no field {name:?}"));
        }
    }
    Ok(object)
}

fn string_field(
    object: &Map<String, Value>,
    name: &str,
    what: &str,
) -> std::result::Result<String, String> {
    object
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{what}.{name} is not a string"))
}

/// Parses a payload as strictly as containers/image does: `critical` with exactly
/// `type`, `image.docker-manifest-digest` and `identity.docker-reference`; `optional`
/// null or an object whose `timestamp`, when given, is an integer.
pub(crate) fn parse_claims(
    payload: &[u8],
    signature_type: &str,
) -> std::result::Result<Claims, String> {
    if payload.len() > MAX_PAYLOAD {
        return Err(format!("the payload is larger than {MAX_PAYLOAD} bytes"));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload is not json: {e}"))?;
    let top = exact_fields(&value, &["critical", "optional"], "the payload")?;
    match &top["optional"] {
        Value::Null => {}
        Value::Object(optional) => {
            if let Some(timestamp) = optional.get("timestamp") {
                if timestamp.as_i64().is_none() {
                    return Err("optional.timestamp is not an integer".into());
                }
            }
            if let Some(creator) = optional.get("creator") {
                if !creator.is_string() {
                    return Err("optional.creator is not a string".into());
                }
            }
        }
        _ => return Err("optional is neither null nor an object".into()),
    }
    let critical = exact_fields(&top["critical"], &["type", "image", "identity"], "critical")?;
    let kind = string_field(critical, "type", "critical")?;
    if kind != signature_type {
        return Err(format!(
            "the payload is of type {kind:?}, not {signature_type:?}"
        ));
    }
    let image = exact_fields(
        &critical["image"],
        &["docker-manifest-digest"],
        "critical.image",
    )?;
    let identity = exact_fields(
        &critical["identity"],
        &["docker-reference"],
        "critical.identity",
    )?;
    Ok(Claims {
        digest: string_field(image, "docker-manifest-digest", "critical.image")?,
        reference: string_field(identity, "docker-reference", "critical.identity")?,
    })
}

/// Compares a payload's claims with the expected digest and reference (see
/// [`reference_matches`]); the error says which differs.
pub(crate) fn check_claims(
    claims: &Claims,
    manifest_digest: &Digest,
    expected_reference: Option<&str>,
) -> std::result::Result<(), String> {
    if claims.digest != manifest_digest.to_string() {
        return Err(format!(
            "it signs the manifest digest {}, not {manifest_digest}",
            claims.digest
        ));
    }
    if let Some(expected) = expected_reference {
        if !reference_matches(&claims.reference, expected) {
            return Err(format!(
                "it signs the reference {:?}, which does not match {expected:?}",
                claims.reference
            ));
        }
    }
    Ok(())
}

/// A docker reference split into its normalized repository (`docker.io/library/alpine`
/// for `alpine`) and its tag or digest suffix (`:3.20`, `@sha256:…`, or empty).
pub(crate) fn split_reference(reference: &str) -> (String, &str) {
    let name_and_tag = match reference.find('@') {
        Some(at) => &reference[..at],
        None => reference,
    };
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let name_end = match name_and_tag[last_slash..].find(':') {
        Some(colon) => last_slash + colon,
        None => name_and_tag.len(),
    };
    let name = &reference[..name_end];
    let suffix = &reference[name_end..];
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (format!("{domain}/{path}"), suffix)
}

/// Whether a signed docker reference matches the expected one, after normalizing both
/// (`alpine` is `docker.io/library/alpine`): when `expected` has a tag or digest, the
/// whole references must be the same (policy "exact"), else the repositories (policy
/// "matchRepository").
pub fn reference_matches(signed: &str, expected: &str) -> bool {
    let (signed_repo, signed_suffix) = split_reference(signed);
    let (expected_repo, expected_suffix) = split_reference(expected);
    signed_repo == expected_repo && (expected_suffix.is_empty() || signed_suffix == expected_suffix)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_normalize_and_match() {
        assert_eq!(
            split_reference("alpine:3.20"),
            ("docker.io/library/alpine".to_string(), ":3.20")
        );
        assert_eq!(
            split_reference("localhost:5000/a/b@sha256:00"),
            ("localhost:5000/a/b".to_string(), "@sha256:00")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/repo"),
            ("127.0.0.1:5000/repo".to_string(), "")
        );
        assert!(reference_matches("docker.io/library/alpine:3.20", "alpine"));
        assert!(reference_matches(
            "alpine:3.20",
            "docker.io/library/alpine:3.20"
        ));
        assert!(!reference_matches("alpine:3.20", "alpine:3.21"));
        assert!(!reference_matches("alpine", "alpine:3.21"));
        assert!(!reference_matches("example.com/alpine:1", "alpine"));
        assert!(!reference_matches(
            "127.0.0.1:5000/repo2:t",
            "127.0.0.1:5000/repo"
        ));
    }

    #[test]
    fn payloads_are_parsed_strictly() {
        let d = Digest::of(b"m");
        let good = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"a/b:1"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"t"}},"optional":null}}"#
        );
        let claims = parse_claims(good.as_bytes(), "t").unwrap();
        assert_eq!(claims.reference, "a/b:1");
        check_claims(&claims, &d, Some("docker.io/a/b")).unwrap();
        let e = check_claims(&claims, &Digest::of(b"n"), None).unwrap_err();
        assert!(e.contains("signs the manifest digest"), "{e}");
        assert!(parse_claims(good.as_bytes(), "u").is_err());
        for bad in [
            good.replace("\"optional\":null", "\"optional\":null,\"x\":1"),
            good.replace("\"type\":\"t\"", "\"type\":\"t\",\"y\":2"),
            good.replace("\"optional\":null", "\"optional\":{\"timestamp\":1.5}"),
            good.replace(",\"optional\":null", ""),
            "[]".to_string(),
        ] {
            assert!(parse_claims(bad.as_bytes(), "t").is_err(), "{bad}");
        }
    }
}
