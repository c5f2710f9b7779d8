//! Image signatures against skopeo, the independent implementation (containers/image):
//! GPG simple signatures made by skopeo verify here and ours verify in skopeo; cosign
//! signatures skopeo pushes with a key we generated verify here, and ours, pushed to a
//! registry (Debian's `docker-registry`), satisfy a skopeo `sigstoreSigned` policy.
//! Skipped without skopeo, gpg or docker-registry unless `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kleene_oci::sign::{cosign, simple};
use kleene_oci::Digest;

/// Whether `program` runs; without it the test skips, saying so, unless
/// `KLEENE_REQUIRE_ZFS=1` (CI), where this panics.
fn have(program: &str, arg: &str) -> bool {
    let ok = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but {program} is not installed"
        );
        eprintln!("skipped: {program} is not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A valid OCI manifest (of an image with one empty layer): the config and the manifest.
fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    // An empty tar archive, uncompressed: two zero blocks.
    let layer = vec![0u8; 1024];
    let config = format!(
        r#"{{"architecture":"amd64","os":"freebsd","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        Digest::of(&layer)
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":{},"digest":"{}"}}]}}"#,
        config.len(),
        Digest::of(&config),
        layer.len(),
        Digest::of(&layer)
    )
    .into_bytes();
    (layer, config, manifest)
}

// ---------------------------------------------------------------------------------
// GPG simple signing

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Self { home }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("GNUPGHOME", self.home.path());
        c
    }

    /// Makes a key without a passphrase; returns its fingerprint.
    fn generate(&self, uid: &str, algo: &str) -> String {
        run(self.cmd("gpg").args([
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            algo,
            "sign",
            "never",
        ]));
        let out = run(self.cmd("gpg").args(["--with-colons", "--list-keys", uid]));
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }

    fn export(&self, fingerprint: &str, secret: bool) -> Vec<u8> {
        let what = if secret {
            "--export-secret-keys"
        } else {
            "--export"
        };
        run(self
            .cmd("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--armor", what, fingerprint]))
        .stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // The agent gpg started for this home.
        let _ = self
            .cmd("gpgconf")
            .args(["--kill", "gpg-agent"])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn simple_signatures_interoperate_with_skopeo() {
    if !have("skopeo", "--version") || !have("gpg", "--version") {
        return;
    }
    for algo in ["rsa2048", "ed25519"] {
        simple_with(algo);
    }
}

fn simple_with(algo: &str) {
    let gpg = Gpg::new();
    let fpr = gpg.generate("Test <t@example.invalid>", algo);
    let other_fpr = gpg.generate("Other <o@example.invalid>", algo);
    let public = simple::PublicKeys::from_armored_or_binary(&gpg.export(&fpr, false)).unwrap();
    let other = simple::PublicKeys::from_armored_or_binary(&gpg.export(&other_fpr, false)).unwrap();
    let secret = simple::SecretKey::from_armored(&gpg.export(&fpr, true), None).unwrap();
    assert_eq!(secret.fingerprint(), fpr, "{algo}");

    let dir = tempfile::tempdir().unwrap();
    let (_, _, manifest) = image();
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, &manifest).unwrap();
    let digest = Digest::of(&manifest);
    let reference = "registry.example:5000/team/app:1.0";

    // (a) skopeo (gpgme) signs, we verify.
    let sig_path = dir.path().join("signature-1");
    run(gpg
        .cmd("skopeo")
        .arg("standalone-sign")
        .arg(&manifest_path)
        .args([reference, fpr.as_str(), "-o"])
        .arg(&sig_path));
    let sig = std::fs::read(&sig_path).unwrap();
    let signed = simple::verify(&public, &sig, &digest, Some(reference)).unwrap();
    assert_eq!(signed, reference);
    simple::verify(
        &public,
        &sig,
        &digest,
        Some("registry.example:5000/team/app"),
    )
    .unwrap();
    simple::verify(&public, &sig, &digest, None).unwrap();
    let e = simple::verify(&public, &sig, &Digest::of(b"other"), Some(reference)).unwrap_err();
    assert!(e.to_string().contains("signs the manifest digest"), "{e}");
    let e = simple::verify(
        &public,
        &sig,
        &digest,
        Some("registry.example:5000/team/evil"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let e = simple::verify(&other, &sig, &digest, Some(reference)).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    for i in [sig.len() / 2, sig.len() - 5] {
        let mut flipped = sig.clone();
        flipped[i] ^= 0x01;
        assert!(
            simple::verify(&public, &flipped, &digest, Some(reference)).is_err(),
            "{algo}: byte {i} flipped"
        );
    }

    // (b) we sign, skopeo verifies (with the key from the keyring of gpg's home).
    let ours = simple::sign(&secret, reference, &digest).unwrap();
    let ours_path = dir.path().join("signature-2");
    std::fs::write(&ours_path, &ours).unwrap();
    let out = run(gpg
        .cmd("skopeo")
        .arg("standalone-verify")
        .arg(&manifest_path)
        .args([reference, fpr.as_str()])
        .arg(&ours_path));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&digest.to_string()), "{said}");
    // skopeo refuses it for another reference and another key.
    for (r, f) in [
        ("registry.example:5000/team/evil:1.0", &fpr),
        (reference, &other_fpr),
    ] {
        let out = gpg
            .cmd("skopeo")
            .arg("standalone-verify")
            .arg(&manifest_path)
            .args([r, f.as_str()])
            .arg(&ours_path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{algo}: skopeo accepted {r} {f}");
    }
    // And ours verifies here, of course.
    assert_eq!(
        simple::verify(&secret.public_keys(), &ours, &digest, Some(reference)).unwrap(),
        reference
    );
    assert_eq!(
        simple::lookaside_path("registry.example:5000/team/app", &digest, 1),
        format!("team/app@sha256={}/signature-1", digest.hex())
    );
}

// ---------------------------------------------------------------------------------
// cosign / sigstore

/// A `docker-registry` on a free port of 127.0.0.1, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok((200, _, _)) = registry.http("GET", "/v2/", &[], &[]) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain HTTP/1.0 request: (status, headers, body).
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        let mut request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        s.write_all(request.as_bytes())?;
        s.write_all(body)?;
        let mut response = Vec::new();
        s.read_to_end(&mut response)?;
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no http header end"))?;
        let head = String::from_utf8_lossy(&response[..end]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no http status"))?;
        Ok((status, head, response[end + 4..].to_vec()))
    }

    fn get(&self, path: &str, accept: &str) -> Vec<u8> {
        let (status, head, body) = self.http("GET", path, &[("Accept", accept)], &[]).unwrap();
        assert_eq!(status, 200, "GET {path}: {head}");
        body
    }

    fn upload_blob(&self, repo: &str, blob: &[u8]) {
        let (status, head, _) = self
            .http("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[])
            .unwrap();
        assert_eq!(status, 202, "{head}");
        let location = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_string())
            })
            .unwrap();
        let path = match location.find("/v2/") {
            Some(i) => location[i..].to_string(),
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, head, _) = self
            .http(
                "PUT",
                &format!("{path}{sep}digest={}", Digest::of(blob)),
                &[("Content-Type", "application/octet-stream")],
                blob,
            )
            .unwrap();
        assert_eq!(status, 201, "{head}");
    }

    fn put_manifest(&self, repo: &str, tag: &str, manifest: &[u8]) {
        let (status, head, body) = self
            .http(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                manifest,
            )
            .unwrap();
        assert_eq!(status, 201, "{head} {}", String::from_utf8_lossy(&body));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI layout with `image()` tagged `tag`.
fn write_layout(dir: &Path, tag: &str) {
    let (layer, config, manifest) = image();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for blob in [&layer, &config, &manifest] {
        std::fs::write(blobs.join(Digest::of(blob).hex()), blob).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":{},"digest":"{}","annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
            manifest.len(),
            Digest::of(&manifest)
        ),
    )
    .unwrap();
}

/// A signature as containers/image keeps it in `dir:` images: a zero byte,
/// `sigstore-json`, a newline, and JSON with the payload and the annotations.
fn sigstore_blob(payload: &[u8], signature_b64: &str) -> Vec<u8> {
    let json = serde_json::json!({
        "mimeType": cosign::PAYLOAD_MEDIA_TYPE,
        "payload": base64_encode(payload),
        "annotations": {cosign::SIGNATURE_ANNOTATION: signature_b64},
    });
    let mut out = b"\0sigstore-json\n".to_vec();
    out.extend_from_slice(json.to_string().as_bytes());
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A signature made by `cosign sign` (containers/image's test fixture
/// `signature/fixtures/dir-img-cosign-valid`, Apache-2.0): the image's manifest, the
/// payload and signature of its `signature-1`, and the public key (`cosign.pub`).
const FIXTURE_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1512,"digest":"sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2896510,"digest":"sha256:9d16cba9fb961d1aafec9542f2bf7cb64acfc55245f9e4eb5abecd4cdc38d749"}]}"#;
const FIXTURE_PAYLOAD_B64: &str = "eyJjcml0aWNhbCI6eyJpZGVudGl0eSI6eyJkb2NrZXItcmVmZXJlbmNlIjoiMTkyLjE2OC42NC4yOjUwMDAvY29zaWduLXNpZ25lZC1zaW5nbGUtc2FtcGxlIn0sImltYWdlIjp7ImRvY2tlci1tYW5pZmVzdC1kaWdlc3QiOiJzaGEyNTY6NjM0YThmMzViNWYxNmRjZjRhYWEwODIyYWRjMGIxOTY0YmI3ODZmY2ExMmY2ODMxZGU4ZGRjNDVlNTk4NmEwMCJ9LCJ0eXBlIjoiY29zaWduIGNvbnRhaW5lciBpbWFnZSBzaWduYXR1cmUifSwib3B0aW9uYWwiOm51bGx9";
const FIXTURE_SIGNATURE: &str = "MEYCIQDmtamqYPjMg81nqeBhptrPls44aA/r7PwLmspINJY4MwIhANKRpqe2E9UCBtGFdPoz/8jAbaQm4uP4h+IpwKTE6ClR";
const FIXTURE_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0\nvRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==\n-----END PUBLIC KEY-----\n";

#[test]
fn cosign_verifies_what_cosign_signed() {
    let key = cosign::VerifyingKey::from_pem(FIXTURE_PUBLIC_KEY.as_bytes()).unwrap();
    let payload = base64_decode(FIXTURE_PAYLOAD_B64);
    let digest = Digest::of(FIXTURE_MANIFEST.as_bytes());
    let reference = "192.168.64.2:5000/cosign-signed-single-sample";
    cosign::verify(
        std::slice::from_ref(&key),
        &payload,
        FIXTURE_SIGNATURE,
        &digest,
        Some(reference),
    )
    .unwrap();
    cosign::verify(
        std::slice::from_ref(&key),
        &payload,
        FIXTURE_SIGNATURE,
        &digest,
        None,
    )
    .unwrap();
    let e = cosign::verify(
        std::slice::from_ref(&key),
        &payload,
        FIXTURE_SIGNATURE,
        &Digest::of(b"x"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("signs the manifest digest"), "{e}");
    let e = cosign::verify(
        std::slice::from_ref(&key),
        &payload,
        FIXTURE_SIGNATURE,
        &digest,
        Some("192.168.64.2:5000/other"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let mut tampered = payload.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 1;
    let e = cosign::verify(&[key], &tampered, FIXTURE_SIGNATURE, &digest, None).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    let other = p256::SecretKey::random(&mut rand_core::OsRng);
    let other_pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
        &other.public_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap();
    let other = cosign::VerifyingKey::from_pem(other_pem.as_bytes()).unwrap();
    let e = cosign::verify(&[other], &payload, FIXTURE_SIGNATURE, &digest, None).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn cosign_signatures_interoperate_with_skopeo() {
    if !have("skopeo", "--version") || !have("docker-registry", "--version") {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_layout(&d.join("layout"), "v1");

    // Sigstore attachments for this registry, a policy accepting anything to push.
    let registries_d = d.join("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("test.yaml"),
        format!("docker:\n  {host}:\n    use-sigstore-attachments: true\n"),
    )
    .unwrap();
    let accept_all = d.join("accept-all.json");
    std::fs::write(
        &accept_all,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let skopeo = |policy: &Path| {
        let mut c = Command::new("skopeo");
        c.arg("--registries.d")
            .arg(&registries_d)
            .arg("--policy")
            .arg(policy);
        c
    };
    let layout = format!("oci:{}:v1", d.join("layout").display());

    // The key pair, as `cosign generate-key-pair` would write it.
    let (private_pem, public_pem) = cosign::generate_key_pair(b"secret words").unwrap();
    std::fs::write(d.join("cosign.key"), &private_pem).unwrap();
    std::fs::write(d.join("cosign.pub"), &public_pem).unwrap();
    std::fs::write(d.join("pass"), "secret words").unwrap();
    let public = cosign::VerifyingKey::from_pem(public_pem.as_bytes()).unwrap();
    let key = cosign::SigningKey::from_pem(private_pem.as_bytes(), Some(b"secret words")).unwrap();
    assert_eq!(key.public_pem(), public_pem);
    // Another key, a plain PKCS#8 one.
    let other_secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let other_pem =
        p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&other_secret, p256::pkcs8::LineEnding::LF)
            .unwrap();
    let other_key = cosign::SigningKey::from_pem(other_pem.as_bytes(), None).unwrap();
    let other_public = cosign::VerifyingKey::from_pem(other_key.public_pem().as_bytes()).unwrap();
    std::fs::write(d.join("other.pub"), other_key.public_pem()).unwrap();

    // (a) skopeo signs with our generated key while pushing, and we verify. Debian's
    // skopeo cannot sign with sigstore keys ("Debian-local change: sigstore disabled"):
    // then skopeo writes the signature manifest from a `dir:` image carrying our
    // signature instead, and we read what it wrote.
    let reference = format!("{host}/signed-by-skopeo:v1");
    let out = skopeo(&accept_all)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--sign-by-sigstore-private-key",
        ])
        .arg(d.join("cosign.key"))
        .arg("--sign-passphrase-file")
        .arg(d.join("pass"))
        .arg(&layout)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && said.contains("sigstore disabled") {
        eprintln!("skipped: this skopeo cannot sign with sigstore keys: {said}");
        let (layer, config, manifest) = image();
        let digest = Digest::of(&manifest);
        let dir_image = d.join("dir-image");
        std::fs::create_dir_all(&dir_image).unwrap();
        std::fs::write(
            dir_image.join("version"),
            "Directory Transport Version: 1.1\n",
        )
        .unwrap();
        std::fs::write(dir_image.join("manifest.json"), &manifest).unwrap();
        for blob in [&layer, &config] {
            std::fs::write(dir_image.join(Digest::of(blob).hex()), blob).unwrap();
        }
        let payload = cosign::payload(&reference, &digest);
        std::fs::write(
            dir_image.join("signature-1"),
            sigstore_blob(&payload, &key.sign(&payload)),
        )
        .unwrap();
        run(skopeo(&accept_all)
            .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
            .arg(format!("dir:{}", dir_image.display()))
            .arg(format!("docker://{reference}")));
    } else {
        assert!(out.status.success(), "{said}");
    }
    let manifest = registry.get("/v2/signed-by-skopeo/manifests/v1", OCI_MANIFEST);
    let digest = Digest::of(&manifest);
    let sig_manifest = registry.get(
        &format!(
            "/v2/signed-by-skopeo/manifests/{}",
            cosign::signature_tag(&digest)
        ),
        OCI_MANIFEST,
    );
    let listed = cosign::signatures_in(&sig_manifest).unwrap();
    assert_eq!(
        listed.len(),
        1,
        "{}",
        String::from_utf8_lossy(&sig_manifest)
    );
    let (payload_digest, size, signature) = &listed[0];
    let payload = registry.get(
        &format!("/v2/signed-by-skopeo/blobs/{payload_digest}"),
        "*/*",
    );
    assert_eq!(payload.len() as u64, *size);
    assert_eq!(Digest::of(&payload), *payload_digest);
    let keys = [public.clone()];
    cosign::verify(&keys, &payload, signature, &digest, Some(&reference)).unwrap();
    cosign::verify(
        &keys,
        &payload,
        signature,
        &digest,
        Some(&format!("{host}/signed-by-skopeo")),
    )
    .unwrap();
    let e = cosign::verify(
        std::slice::from_ref(&other_public),
        &payload,
        signature,
        &digest,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    let e = cosign::verify(&keys, &payload, signature, &Digest::of(b"x"), None).unwrap_err();
    assert!(e.to_string().contains("signs the manifest digest"), "{e}");
    let e = cosign::verify(
        &keys,
        &payload,
        signature,
        &digest,
        Some(&format!("{host}/other")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // With several keys, one of which signed.
    cosign::verify(
        &[other_public.clone(), public.clone()],
        &payload,
        signature,
        &digest,
        None,
    )
    .unwrap();

    // (b) skopeo pushes unsigned; we sign and push the signature by hand; skopeo's
    // policy requires our key.
    let reference = format!("{host}/signed-by-us:v1");
    run(skopeo(&accept_all)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(&layout)
        .arg(format!("docker://{reference}")));
    let manifest = registry.get("/v2/signed-by-us/manifests/v1", OCI_MANIFEST);
    let digest = Digest::of(&manifest);
    let payload = cosign::payload(&reference, &digest);
    let signature = key.sign(&payload);
    cosign::verify(&keys, &payload, &signature, &digest, Some(&reference)).unwrap();
    // Two signatures, the other one by another key (a policy needs one that verifies).
    let other_payload = cosign::payload(&reference, &digest);
    let other_signature = other_key.sign(&other_payload);
    let (config, sig_manifest) = cosign::signature_manifest(&[
        (other_payload.clone(), other_signature),
        (payload.clone(), signature),
    ]);
    for blob in [&config, &payload] {
        registry.upload_blob("signed-by-us", blob);
    }
    registry.put_manifest(
        "signed-by-us",
        &cosign::signature_tag(&digest),
        &sig_manifest,
    );

    let policy = |key: &str| {
        let path = d.join(format!("policy-{key}"));
        std::fs::write(
            &path,
            format!(
                r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/signed-by-us":[{{"type":"sigstoreSigned","keyPath":"{}","signedIdentity":{{"type":"matchRepoDigestOrExact"}}}}]}}}}}}"#,
                d.join(key).display()
            ),
        )
        .unwrap();
        path
    };
    let pull = |policy: &Path, out: &str| {
        skopeo(policy)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:v1", d.join(out).display()))
            .output()
            .unwrap()
    };
    let out = pull(&policy("cosign.pub"), "pulled");
    let said = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && said.contains("sigstore disabled") {
        // Debian's skopeo reads sigstore signatures but verifies none. It did find
        // both of ours in the manifest we wrote.
        eprintln!("skipped: this skopeo cannot verify sigstore signatures: {said}");
        assert_eq!(said.matches("sigstore disabled").count(), 2, "{said}");
        return;
    }
    assert!(out.status.success(), "skopeo refused our signature: {said}");
    // The first signature, by the plain PKCS#8 key, verifies for skopeo too.
    let out = pull(&policy("other.pub"), "pulled-other");
    assert!(
        out.status.success(),
        "skopeo refused our other signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A key that signed nothing: refused (skopeo really verifies).
    let third = p256::SecretKey::random(&mut rand_core::OsRng);
    let third_pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
        &third.public_key(),
        p256::pkcs8::LineEnding::LF,
    )
    .unwrap();
    std::fs::write(d.join("third.pub"), third_pem).unwrap();
    let out = pull(&policy("third.pub"), "refused");
    assert!(
        !out.status.success(),
        "skopeo accepted a signature by another key"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("signature"), "{said}");
}

/// Opens a cosign encrypted key with its own scrypt (Python's hashlib, OpenSSL's) and
/// NaCl secretbox (written from the spec: HSalsa20, Salsa20, Poly1305), loads the
/// PKCS#8 key and the public key with Python's `cryptography` (OpenSSL), checks they
/// agree, verifies a signature, and prints its own signature of the payload.
/// Arguments: private PEM, public PEM, passphrase, payload file, base64 signature.
const PYTHON_COSIGN_CHECK: &str = r##"
import base64, hashlib, json, struct, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

M = 0xffffffff
def rotl(v, c): return ((v << c) & M) | (v >> (32 - c))
def core(inp, rounds=20):
    x = list(inp)
    def qr(a, b, c, d):
        x[b] ^= rotl((x[a] + x[d]) & M, 7); x[c] ^= rotl((x[b] + x[a]) & M, 9)
        x[d] ^= rotl((x[c] + x[b]) & M, 13); x[a] ^= rotl((x[d] + x[c]) & M, 18)
    for _ in range(rounds // 2):
        qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11)
        qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14)
    return x
SIGMA = struct.unpack('<4I', b'expand 32-byte k')
def state(key, n16):
    k = struct.unpack('<8I', key); n = struct.unpack('<4I', n16)
    return [SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1], n[2], n[3], SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3]]
def hsalsa20(key, n16):
    x = core(state(key, n16))
    return struct.pack('<8I', *[x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)])
def salsa20_stream(key, n8, length):
    out = b''; ctr = 0
    while len(out) < length:
        inp = state(key, n8 + struct.pack('<Q', ctr))
        x = core(inp)
        out += struct.pack('<16I', *[(a + b) & M for a, b in zip(x, inp)]); ctr += 1
    return out[:length]
def poly1305(key, msg):
    r = int.from_bytes(key[:16], 'little') & 0x0ffffffc0ffffffc0ffffffc0fffffff
    s = int.from_bytes(key[16:], 'little'); p = (1 << 130) - 5; acc = 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i+16] + b'\x01', 'little')) * r % p
    return ((acc + s) % (1 << 128)).to_bytes(16, 'little')
def secretbox_open(key, nonce, box):
    sub = hsalsa20(key, nonce[:16])
    ks = salsa20_stream(sub, nonce[16:], 32 + len(box) - 16)
    tag, c = box[:16], box[16:]
    assert poly1305(ks[:32], c) == tag, 'secretbox: bad tag'
    return bytes(a ^ b for a, b in zip(c, ks[32:]))

priv_pem, pub_pem, passphrase, payload_path, sig_b64 = sys.argv[1:6]
lines = open(priv_pem).read().strip().splitlines()
assert lines[0] == '-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----', lines[0]
doc = json.loads(base64.b64decode(''.join(lines[1:-1])))
assert doc['kdf']['name'] == 'scrypt' and doc['cipher']['name'] == 'nacl/secretbox'
assert doc['kdf']['params'] == {'N': 32768, 'r': 8, 'p': 1}, doc['kdf']['params']
key = hashlib.scrypt(passphrase.encode(), salt=base64.b64decode(doc['kdf']['salt']), n=32768, r=8, p=1, maxmem=1 << 26, dklen=32)
der = secretbox_open(key, base64.b64decode(doc['cipher']['nonce']), base64.b64decode(doc['ciphertext']))
private = serialization.load_der_private_key(der, password=None)
public = serialization.load_pem_public_key(open(pub_pem, 'rb').read())
assert private.public_key().public_numbers() == public.public_numbers(), 'public keys differ'
payload = open(payload_path, 'rb').read()
public.verify(base64.b64decode(sig_b64), payload, ec.ECDSA(hashes.SHA256()))
print(base64.b64encode(private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode())
"##;

#[test]
fn cosign_keys_interoperate_with_python_cryptography() {
    let have_python = Command::new("python3")
        .args(["-c", "import cryptography"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_python {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but python3's cryptography module is not installed (apt-get install python3-cryptography)"
        );
        eprintln!("skipped: python3 with the cryptography module is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let (private_pem, public_pem) = cosign::generate_key_pair(b"secret words").unwrap();
    std::fs::write(d.join("cosign.key"), &private_pem).unwrap();
    std::fs::write(d.join("cosign.pub"), &public_pem).unwrap();
    let key = cosign::SigningKey::from_pem(private_pem.as_bytes(), Some(b"secret words")).unwrap();
    let e =
        cosign::SigningKey::from_pem(private_pem.as_bytes(), Some(b"secret wordz")).unwrap_err();
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    let digest = Digest::of(image().2.as_slice());
    let payload = cosign::payload("registry.example/app:1", &digest);
    std::fs::write(d.join("payload"), &payload).unwrap();
    let ours = key.sign(&payload);
    let out = run(Command::new("python3")
        .args(["-c", PYTHON_COSIGN_CHECK])
        .arg(d.join("cosign.key"))
        .arg(d.join("cosign.pub"))
        .arg("secret words")
        .arg(d.join("payload"))
        .arg(&ours));
    let theirs = String::from_utf8(out.stdout).unwrap();
    let public = cosign::VerifyingKey::from_pem(public_pem.as_bytes()).unwrap();
    cosign::verify(
        &[public],
        &payload,
        theirs.trim(),
        &digest,
        Some("registry.example/app"),
    )
    .unwrap();
}
