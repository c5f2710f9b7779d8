//! Signatures on push and pull, with a real registry (docker-registry on 127.0.0.1):
//! cosign signatures made on push verify on pull with the public key and stop the pull
//! with another, and a policy in the config applies to its scope; GPG simple signatures
//! in a lookaside store go both ways with skopeo (it signs on copy, we verify; we sign on
//! push, `skopeo standalone-verify` accepts). Nothing of a refused image is kept.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{
    BaseSource, CoreError, CreateImage, Engine, Events, PullImage, SignWith, SignaturePolicy,
};
use kleene_oci::testing::{have_tool, have_umoci, skopeo, Registry};

fn layers(root: &DatasetName) -> Vec<String> {
    common::datasets_below(root, "layer")
}

/// An engine with `oci:b` loaded from umoci's layout.
async fn engine_with_image(s: &common::Scratch, dir: &Path) -> Engine {
    let img = common::two_images(dir);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    engine
        .create_base_image(
            CreateImage::new(BaseSource::OciLayout {
                dir: img,
                name: Some("b".into()),
                platform: None,
            })
            .tag("oci:b"),
            Events::none(),
        )
        .await
        .unwrap();
    engine
}

#[tokio::test]
async fn cosign_signatures_are_made_on_push_and_checked_on_pull() {
    if !have_umoci() {
        return;
    }
    let s = scratch_or_skip!("cosign");
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let engine = engine_with_image(&s, t.path()).await;
    let (private, public) = kleene_oci::sign::cosign::generate_key_pair(b"secret").unwrap();
    let (_, other_public) = kleene_oci::sign::cosign::generate_key_pair(b"").unwrap();
    let key = t.path().join("cosign.key");
    let pubkey = t.path().join("cosign.pub");
    let other = t.path().join("other.pub");
    std::fs::write(&key, private).unwrap();
    std::fs::write(&pubkey, public).unwrap();
    std::fs::write(&other, other_public).unwrap();

    let signed = format!("{}/team/signed:1", reg.addr());
    let unsigned = format!("{}/team/unsigned:1", reg.addr());
    let sign = SignWith::Cosign {
        key: key.clone(),
        passphrase: Some("secret".into()),
    };
    let pushed = engine
        .push_images_signed(&["oci:b".into()], &signed, Some(&sign), Events::none())
        .await
        .unwrap();
    engine
        .push_images(&["oci:b".into()], &unsigned, Events::none())
        .await
        .unwrap();
    // The signature is where cosign keeps it.
    let tag = kleene_oci::sign::cosign::signature_tag(&pushed.digest);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/signed:{tag}", reg.addr()),
    ]);
    assert_eq!(
        kleene_oci::sign::cosign::signatures_in(&raw).unwrap().len(),
        1
    );
    engine.remove_image("oci:b").await.unwrap();

    // The right key: pulled.
    engine
        .pull_image(PullImage::new(&signed).verify_key(&pubkey), Events::none())
        .await
        .unwrap();
    // Another key, or no signature: refused before anything is downloaded.
    let before = layers(&s.config.root).len();
    for (reference, key) in [(&signed, &other), (&unsigned, &pubkey)] {
        let err = engine
            .pull_image(
                PullImage::new(reference).tag("refused:1").verify_key(key),
                Events::none(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Signature { .. }), "{err}");
        assert!(err.to_string().contains(reference.as_str()), "{err}");
    }
    assert!(engine.image("refused:1").await.is_err());
    assert_eq!(layers(&s.config.root).len(), before);

    // A policy in the config applies to its scope without keys on the command line.
    let mut config = s.config.clone();
    config.registries.policy.insert(
        format!("{}/team", reg.addr()),
        SignaturePolicy::keys(vec![pubkey.clone()]),
    );
    let engine = Engine::open(config).await.unwrap();
    let err = engine
        .pull_image(PullImage::new(&unsigned), Events::none())
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Signature { .. }), "{err}");
    engine
        .pull_image(PullImage::new(&signed).tag("again:1"), Events::none())
        .await
        .unwrap();
    // Signing twice keeps one signature per (payload, signature) and the earlier ones.
    let second = SignWith::Cosign {
        key: key.clone(),
        passphrase: Some("secret".into()),
    };
    engine
        .push_images_signed(&["again:1".into()], &signed, Some(&second), Events::none())
        .await
        .unwrap();
}

/// A GPG home with one key; gpg-agent stopped on drop.
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

    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn generate(&self, uid: &str) -> String {
        self.gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]);
        let text = String::from_utf8(self.gpg(&["--with-colons", "--list-keys", uid])).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn simple_signatures_go_both_ways_with_skopeo() {
    if !have_umoci() || !have_tool("skopeo") || !have_tool("gpg") {
        return;
    }
    let s = scratch_or_skip!("simplesig");
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let engine = engine_with_image(&s, t.path()).await;
    let gpg = Gpg::new();
    let fpr = gpg.generate("Kleene Test <test@example.invalid>");
    let secret = t.path().join("secret.asc");
    let public = t.path().join("public.asc");
    std::fs::write(
        &secret,
        gpg.gpg(&[
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--armor",
            "--export-secret-keys",
            &fpr,
        ]),
    )
    .unwrap();
    std::fs::write(&public, gpg.gpg(&["--armor", "--export", &fpr])).unwrap();
    let store = t.path().join("sigstore");

    // We sign on push; skopeo verifies.
    let ours = format!("{}/team/ours:1", reg.addr());
    let pushed = engine
        .push_images_signed(
            &["oci:b".into()],
            &ours,
            Some(&SignWith::Gpg {
                key: secret.clone(),
                passphrase: None,
                lookaside: store.clone(),
            }),
            Events::none(),
        )
        .await
        .unwrap();
    let sig = store
        .join("team/ours@sha256=".to_string() + pushed.digest.hex())
        .join("signature-1");
    assert!(sig.is_file(), "{}", sig.display());
    let manifest = t.path().join("manifest.json");
    std::fs::write(
        &manifest,
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{ours}"),
        ]),
    )
    .unwrap();
    let out = Command::new("skopeo")
        .env("GNUPGHOME", gpg.home.path())
        .args(["standalone-verify"])
        .arg(&manifest)
        .arg(&ours)
        .arg(&fpr)
        .arg(&sig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo refused our signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And we verify ours on pull.
    engine
        .pull_image(
            PullImage::new(&ours)
                .tag("ours:1")
                .verify_key(&public)
                .lookaside(store.display().to_string()),
            Events::none(),
        )
        .await
        .unwrap();

    // skopeo signs on copy into the lookaside store; we verify on pull.
    let theirs = format!("{}/team/theirs:1", reg.addr());
    let regd = t.path().join("registries.d");
    std::fs::create_dir(&regd).unwrap();
    std::fs::write(
        regd.join("test.yaml"),
        format!(
            "docker:\n  {}:\n    lookaside-staging: file://{}\n",
            reg.addr(),
            store.display()
        ),
    )
    .unwrap();
    let out = Command::new("skopeo")
        .env("GNUPGHOME", gpg.home.path())
        .arg("--registries.d")
        .arg(&regd)
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--sign-by",
            &fpr,
        ])
        .arg(format!("docker://{ours}"))
        .arg(format!("docker://{theirs}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy --sign-by: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    engine
        .pull_image(
            PullImage::new(&theirs)
                .tag("theirs:1")
                .verify_key(&public)
                .lookaside(store.display().to_string()),
            Events::none(),
        )
        .await
        .unwrap();
    // Another key: refused.
    let other = Gpg::new();
    let other_fpr = other.generate("Other <other@example.invalid>");
    let other_public = t.path().join("other.asc");
    std::fs::write(
        &other_public,
        other.gpg(&["--armor", "--export", &other_fpr]),
    )
    .unwrap();
    let err = engine
        .pull_image(
            PullImage::new(&theirs)
                .tag("refused:1")
                .verify_key(&other_public)
                .lookaside(store.display().to_string()),
            Events::none(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::Signature { .. }), "{err}");
}
