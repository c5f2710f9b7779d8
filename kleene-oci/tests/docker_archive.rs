//! Docker archives (`docker save`'s format) made by skopeo of layouts this crate wrote,
//! read back with `DockerArchive`; and hostile `manifest.json`s refused.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use kleene_oci::diff::{write_layer, DiffOptions};
use kleene_oci::docker_archive::DockerArchive;
use kleene_oci::spec::{ConfigBuilder, ImageConfigurationBuilder, RootFsBuilder};
use kleene_oci::write::{LayerDigests, LayerWriter, LayoutWriter};
use kleene_oci::{Digest, LayerCompression, Layout, Platform};

/// Whether `tool` is installed; without it a test skips, unless `KLEENE_REQUIRE_ZFS=1`.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but {tool} is not installed"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

fn add_layer(w: &mut LayoutWriter, lower: Option<&Path>, upper: &Path) -> LayerDigests {
    let tmp = w.temp_file().unwrap();
    let mut lw = LayerWriter::gzip(tmp.as_file().try_clone().unwrap());
    write_layer(lower, upper, &mut lw, &DiffOptions::default()).unwrap();
    let (_, digests) = lw.finish().unwrap();
    w.add_blob_file(tmp.path(), &digests.digest).unwrap();
    digests
}

/// A layout of two layers (the second with a whiteout) named `v1`.
fn layout(dir: &Path, work: &Path) {
    let (lower, upper) = (work.join("lower"), work.join("upper"));
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::write(lower.join("etc/motd"), "hello\n").unwrap();
    std::fs::write(lower.join("etc/gone"), "x").unwrap();
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/motd"), "hello again\n").unwrap();
    std::fs::create_dir_all(upper.join("bin")).unwrap();
    std::os::unix::fs::symlink("../etc/motd", upper.join("bin/motd")).unwrap();
    let mut w = LayoutWriter::create(dir).unwrap();
    let l1 = add_layer(&mut w, None, &lower);
    let l2 = add_layer(&mut w, Some(&lower), &upper);
    let config = ImageConfigurationBuilder::default()
        .os("linux")
        .architecture("amd64")
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![l1.diff_id.to_string(), l2.diff_id.to_string()])
                .build()
                .unwrap(),
        )
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/bin/cat".to_string()])
                .cmd(vec!["/etc/motd".to_string()])
                .env(vec!["A=1".to_string()])
                .user("www")
                .working_dir("/srv")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    w.add_image(
        &config,
        &[l1.descriptor().unwrap(), l2.descriptor().unwrap()],
        Some("v1"),
    )
    .unwrap();
    w.finish().unwrap();
}

#[test]
fn a_docker_archive_by_skopeo_reads_back() {
    if !have("skopeo") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    layout(&img, t.path());
    let file = t.path().join("x.tar");
    let out = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            &format!("oci:{}:v1", img.display()),
            &format!("docker-archive:{}:repo:tag", file.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = t.path().join("unpacked");
    tar::Archive::new(std::fs::File::open(&file).unwrap())
        .unpack(&dir)
        .unwrap();

    let archive = DockerArchive::open_dir(&dir).unwrap();
    assert!(
        archive
            .tags()
            .iter()
            .any(|t| t == "repo:tag" || t.ends_with("/repo:tag")),
        "{:?}",
        archive.tags()
    );
    let got = archive.resolve(Some("repo:tag")).unwrap();
    let want = Layout::open(&img)
        .unwrap()
        .resolve(Some("v1"), &Platform::parse("linux/amd64").unwrap())
        .unwrap();
    let ids = |i: &kleene_oci::ResolvedImage| {
        i.layers
            .iter()
            .map(|l| (l.diff_id.clone(), l.chain_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&got), ids(&want));
    assert_eq!(got.settings, want.settings);
    assert_eq!(got.settings.entrypoint, ["/bin/cat"]);
    assert_eq!(got.manifest.layers().len(), 2);
    for l in &got.layers {
        // Each layer's file is where the archive says, of the digest and size given.
        let bytes = std::fs::read(archive.layer_path(l)).unwrap();
        assert_eq!(Digest::of(&bytes), l.digest);
        assert_eq!(bytes.len() as u64, l.size);
        if l.compression == LayerCompression::None {
            assert_eq!(l.digest, l.diff_id);
        }
    }
    // The only image, unnamed; and a name it has not.
    assert_eq!(
        archive.resolve(None).unwrap().manifest_digest,
        got.manifest_digest
    );
    let e = archive.resolve(Some("other:tag")).unwrap_err().to_string();
    assert!(e.contains("no image tagged \"other:tag\""), "{e}");
}

fn hostile(dir: &Path, manifest: &str) -> String {
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    DockerArchive::open_dir(dir).unwrap_err().to_string()
}

#[test]
fn hostile_manifests_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(t.path().join("outside.json"), "{}").unwrap();
    std::os::unix::fs::symlink("../outside.json", dir.join("escape.json")).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    std::fs::write(dir.join("c.json"), config).unwrap();
    for (manifest, want) in [
        (r#"[{"Config":"../outside.json","Layers":[]}]"#, "has `..`"),
        (r#"[{"Config":"/etc/passwd","Layers":[]}]"#, "is absolute"),
        (
            r#"[{"Config":"escape.json","Layers":[]}]"#,
            "leads out of the archive",
        ),
        (r#"[{"Config":"c.json","Layers":["../x"]}]"#, "has `..`"),
        (r#"[{"Config":".","Layers":[]}]"#, "is not a regular file"),
        (r#"{"Config":"c.json"}"#, "not a list of images"),
    ] {
        let e = hostile(&dir, manifest);
        assert!(e.contains(want), "{manifest}: {e}");
        assert!(e.contains("manifest.json"), "{e}");
    }
    // A config named after a digest that is not its own.
    let liar = format!("{}.json", "0".repeat(64));
    std::fs::write(dir.join(&liar), config).unwrap();
    let e = hostile(&dir, &format!(r#"[{{"Config":"{liar}","Layers":[]}}]"#));
    assert!(e.contains(&liar) && e.contains("has the digest"), "{e}");
    // A layer that is not what the config's diff ids say.
    std::fs::write(dir.join("l.tar"), [0u8; 1024]).unwrap();
    let e = hostile(&dir, r#"[{"Config":"c.json","Layers":["l.tar"]}]"#);
    assert!(
        e.contains("1 layers where its config c.json has 0 diff ids"),
        "{e}"
    );
    let d = Digest::of(&[1u8]);
    let lying = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#
    );
    std::fs::write(dir.join("c2.json"), lying).unwrap();
    let e = hostile(&dir, r#"[{"Config":"c2.json","Layers":["l.tar"]}]"#);
    assert!(e.contains("l.tar") && e.contains(&d.to_string()), "{e}");
}

/// Docker 25's `docker save`: an OCI layout with a `manifest.json` naming its blobs
/// (gzip layers here, a config named by its bare hex), and docker's older symlinks
/// between layer directories, which stay inside.
#[test]
fn blobs_of_a_layout_with_gzip_layers_and_inner_symlinks_read_back() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    layout(&img, t.path());
    let want = Layout::open(&img)
        .unwrap()
        .resolve(Some("v1"), &Platform::parse("linux/amd64").unwrap())
        .unwrap();
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    std::fs::create_dir(img.join("dup")).unwrap();
    std::os::unix::fs::symlink(
        format!("../{}", blob(&want.layers[1].digest)),
        img.join("dup/layer.tar"),
    )
    .unwrap();
    let manifest = serde_json::json!([{
        "Config": blob(&want.config_digest),
        "RepoTags": ["example.org/app:1"],
        "Layers": [blob(&want.layers[0].digest), "dup/layer.tar"],
    }]);
    std::fs::write(img.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = DockerArchive::open_dir(&img).unwrap();
    assert_eq!(archive.tags(), ["example.org/app:1"]);
    let got = archive.resolve(Some("example.org/app:1")).unwrap();
    assert_eq!(got.layers, want.layers);
    assert_eq!(got.config_digest, want.config_digest);
    assert_eq!(got.settings, want.settings);
    assert_eq!(got.manifest.layers(), want.manifest.layers());
    assert!(got
        .layers
        .iter()
        .all(|l| l.compression == LayerCompression::Gzip));
    assert!(archive
        .layer_path(&got.layers[1])
        .ends_with(blob(&want.layers[1].digest)));
    // A layer that lies about its content, under the name of another's digest.
    let l0 = img.join(blob(&want.layers[0].digest));
    std::fs::remove_file(&l0).unwrap();
    std::fs::write(&l0, b"not a layer").unwrap();
    let e = DockerArchive::open_dir(&img).unwrap_err().to_string();
    assert!(e.contains(&want.layers[0].digest.hex()[..12]), "{e}");
}
