//! Layouts written by hand, as the image spec describes them: resolution by name and
//! platform, the config's settings, verified blobs, and hostile layouts refused.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;

use kleene_oci::{Digest, Error, LayerCompression, Layout, Platform};
use serde_json::json;

/// Writes a blob; its digest and size.
fn blob(dir: &Path, bytes: &[u8]) -> (Digest, u64) {
    let d = Digest::of(bytes);
    let path = dir.join("blobs/sha256");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join(d.hex()), bytes).unwrap();
    (d, bytes.len() as u64)
}

/// A gzip tar of `files`; the blob and its diff id.
fn layer(dir: &Path, files: &[(&str, &str)]) -> (Digest, u64, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let (d, size) = blob(dir, &gz.finish().unwrap());
    (d, size, diff_id)
}

/// An image: two layers, a config for `os/arch`; the manifest's descriptor.
fn image(dir: &Path, os: &str, arch: &str, marker: &str) -> serde_json::Value {
    let l1 = layer(dir, &[("etc/os-release", os)]);
    let l2 = layer(dir, &[("etc/marker", marker)]);
    let config = json!({
        "architecture": arch, "os": os,
        "config": {"Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/bin/sh", "-c"],
                   "Cmd": ["echo hi"], "User": "www", "WorkingDir": "/srv",
                   "Labels": {"org.example": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": [l1.2.to_string(), l2.2.to_string()]},
    });
    let (cd, cs) = blob(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd.to_string(), "size": cs},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l1.0.to_string(), "size": l1.1},
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": l2.0.to_string(), "size": l2.1},
        ],
    });
    let (md, ms) = blob(dir, manifest.to_string().as_bytes());
    json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md.to_string(), "size": ms,
           "platform": {"os": os, "architecture": arch}})
}

fn write_layout(dir: &Path, entries: Vec<serde_json::Value>) {
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

fn named(mut d: serde_json::Value, name: &str) -> serde_json::Value {
    d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    d
}

fn freebsd() -> Platform {
    Platform::parse("freebsd/amd64").unwrap()
}

#[test]
fn an_image_resolves_with_its_layers_and_settings() {
    let t = tempfile::tempdir().unwrap();
    let d = image(t.path(), "freebsd", "amd64", "one");
    write_layout(t.path(), vec![named(d, "14.2")]);
    let layout = Layout::open(t.path()).unwrap();
    assert_eq!(layout.names(), ["14.2"]);
    let img = layout.resolve(Some("14.2"), &freebsd()).unwrap();
    // Without a name: the only image.
    assert_eq!(
        layout.resolve(None, &freebsd()).unwrap().manifest_digest,
        img.manifest_digest
    );
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[0].compression, LayerCompression::Gzip);
    assert_eq!(img.layers[1].compression, LayerCompression::Gzip);
    assert_eq!(img.layers[0].chain_id, img.layers[0].diff_id);
    assert_ne!(img.layers[1].chain_id, img.layers[1].diff_id);
    let s = &img.settings;
    assert_eq!(s.env, ["PATH=/bin", "A=1"]);
    assert_eq!(s.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(s.cmd, ["echo hi"]);
    assert_eq!((s.user.as_str(), s.workdir.as_str()), ("www", "/srv"));
    assert_eq!(s.labels.get("org.example").map(String::as_str), Some("yes"));
    assert_eq!(s.platform.as_ref().unwrap().to_string(), "freebsd/amd64");
    // The layer reads whole and verified; its tar has the file.
    let l = &img.layers[1];
    let mut r = layout.blob(&l.digest, l.size).unwrap();
    let mut gz = Vec::new();
    r.read_to_end(&mut gz).unwrap();
    assert!(r.verified());
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of(&tar), l.diff_id);
    // Unknown names are told with the names there are.
    let e = layout.resolve(Some("13.4"), &freebsd()).unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
    assert!(
        e.to_string().contains("\"13.4\"") && e.to_string().contains("14.2"),
        "{e}"
    );
}

#[test]
fn platforms_are_chosen_from_indexes_and_manifest_lists() {
    let t = tempfile::tempdir().unwrap();
    let bsd = image(t.path(), "freebsd", "amd64", "bsd");
    let arm = image(t.path(), "freebsd", "arm64", "arm");
    let linux = image(t.path(), "linux", "amd64", "linux");
    // A nested Docker manifest list, named, holding three platforms.
    let list = json!({"schemaVersion": 2,
                      "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                      "manifests": [bsd, arm, linux]});
    let (ld, ls) = blob(t.path(), list.to_string().as_bytes());
    let entry = json!({"mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                       "digest": ld.to_string(), "size": ls});
    write_layout(t.path(), vec![named(entry, "latest")]);
    let layout = Layout::open(t.path()).unwrap();
    let pick = |p: &str| {
        let img = layout
            .resolve(Some("latest"), &Platform::parse(p).unwrap())
            .unwrap();
        img.settings.platform.unwrap().to_string()
    };
    assert_eq!(pick("freebsd/amd64"), "freebsd/amd64");
    assert_eq!(pick("freebsd/arm64"), "freebsd/arm64");
    assert_eq!(pick("linux/amd64"), "linux/amd64");
    let e = layout
        .resolve(Some("latest"), &Platform::parse("freebsd/riscv64").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no image for freebsd/riscv64"), "{e}");
    assert!(
        e.contains("freebsd/amd64, freebsd/arm64, linux/amd64"),
        "{e}"
    );
}

#[test]
fn hostile_layouts_are_refused_naming_the_fault() {
    // Not a layout.
    let t = tempfile::tempdir().unwrap();
    let e = Layout::open(t.path()).unwrap_err().to_string();
    assert!(e.contains("no oci-layout file"), "{e}");
    std::fs::write(
        t.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let e = Layout::open(t.path()).unwrap_err().to_string();
    assert!(e.contains("version 2.0.0"), "{e}");

    // A manifest blob whose content is not what its digest says.
    let t = tempfile::tempdir().unwrap();
    let d = image(t.path(), "freebsd", "amd64", "x");
    write_layout(t.path(), vec![d.clone()]);
    let digest = Digest::parse(d["digest"].as_str().unwrap()).unwrap();
    let path = t.path().join("blobs/sha256").join(digest.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Layout::open(t.path())
        .unwrap()
        .resolve(None, &freebsd())
        .unwrap_err();
    assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains(&digest.to_string()), "{e}");

    // A manifest that lies about its size.
    let t = tempfile::tempdir().unwrap();
    let mut d = image(t.path(), "freebsd", "amd64", "x");
    d["size"] = json!(d["size"].as_u64().unwrap() + 5);
    write_layout(t.path(), vec![d]);
    let e = Layout::open(t.path())
        .unwrap()
        .resolve(None, &freebsd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ended after"), "{e}");

    // A huge size claimed for a manifest: refused before reading.
    let t = tempfile::tempdir().unwrap();
    let mut d = image(t.path(), "freebsd", "amd64", "x");
    d["size"] = json!(1u64 << 40);
    write_layout(t.path(), vec![d]);
    let e = Layout::open(t.path())
        .unwrap()
        .resolve(None, &freebsd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the"), "{e}");

    // A digest that tries to leave blobs/.
    let t = tempfile::tempdir().unwrap();
    write_layout(
        t.path(),
        vec![
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:../../../../etc/passwd", "size": 10}),
        ],
    );
    match Layout::open(t.path()) {
        Err(e) => assert!(
            e.to_string().contains("digest") || e.to_string().contains("index"),
            "{e}"
        ),
        Ok(l) => {
            let e = l.resolve(None, &freebsd()).unwrap_err().to_string();
            assert!(e.contains("invalid digest"), "{e}");
        }
    }

    // A truncated layer: its reader fails at the end.
    let t = tempfile::tempdir().unwrap();
    let d = image(t.path(), "freebsd", "amd64", "x");
    write_layout(t.path(), vec![d]);
    let layout = Layout::open(t.path()).unwrap();
    let img = layout.resolve(None, &freebsd()).unwrap();
    let l = &img.layers[0];
    let path = layout.blob_path(&l.digest);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = layout
        .blob(&l.digest, l.size)
        .unwrap()
        .finish()
        .unwrap_err();
    assert!(e.to_string().contains("ended after"), "{e}");
}

#[test]
fn manifests_and_configs_that_disagree_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (l, ls, diff) = layer(t.path(), &[("a", "b")]);
    let config = json!({"architecture": "amd64", "os": "freebsd",
                        "rootfs": {"type": "layers", "diff_ids": [diff.to_string(), diff.to_string()]}});
    let (cd, cs) = blob(t.path(), config.to_string().as_bytes());
    let manifest = |layer_type: &str| {
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
               "layers": [{"mediaType": layer_type, "digest": l.to_string(), "size": ls}]})
    };
    let (md, ms) = blob(
        t.path(),
        manifest("application/vnd.oci.image.layer.v1.tar+gzip")
            .to_string()
            .as_bytes(),
    );
    write_layout(
        t.path(),
        vec![
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": md.to_string(), "size": ms}),
        ],
    );
    let e = Layout::open(t.path())
        .unwrap()
        .resolve(None, &freebsd())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lists 1 layers where its config has 2 diff ids"),
        "{e}"
    );

    // A layer media type no engine applies.
    let config = json!({"architecture": "amd64", "os": "freebsd",
                        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]}});
    let (cd2, cs2) = blob(t.path(), config.to_string().as_bytes());
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd2.to_string(), "size": cs2},
                   "layers": [{"mediaType": "application/x-strange", "digest": l.to_string(), "size": ls}]});
    let (md, ms) = blob(t.path(), m.to_string().as_bytes());
    write_layout(
        t.path(),
        vec![
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": md.to_string(), "size": ms}),
        ],
    );
    let e = Layout::open(t.path())
        .unwrap()
        .resolve(None, &freebsd())
        .unwrap_err()
        .to_string();
    assert!(e.contains("application/x-strange"), "{e}");
}
