//! Hostile images pulled from a real registry (Debian's docker-registry on 127.0.0.1)
//! are refused with nothing left behind. Each image is an OCI layout written here by
//! hand (a harmless first layer, then a hostile one, the config's diff ids right so
//! that only the hostility differs), put into the registry by skopeo (or, for a
//! manifest lying about sizes, by the registry client itself), then pulled:
//!
//! 1. `../` paths;
//! 2. absolute paths;
//! 3. paths through a symlink leading out;
//! 4. hard links to host files;
//! 5. whiteouts that escape;
//! 6. a blob truncated in the registry's storage;
//! 7. a blob of the same length with other bytes;
//! 8. a manifest whose layer size is one byte more or less than the blob's;
//! 9. a config whose diff id is not the layer's.
//!
//! Every refusal must name the entry or digest at fault and leave no image, no layer
//! but the good one below, no download in `<root>/blobs`, and a sentinel directory on
//! the host (aimed at by absolute paths and `../` chains) untouched; a reopen repairs
//! nothing, and a prune leaves no layer.
//!
//! (These found that a layer refused while it was applied left its download, and the
//! downloads of the layers above it, in `<root>/blobs`: a refused pull now removes
//! them; a cancelled or killed one keeps them to resume.)

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kleene_core::{Engine, Events, PullImage};
use kleene_oci::registry::{Client, Reference, RegistryConfig};
use kleene_oci::spec::{ImageConfigurationBuilder, RootFsBuilder};
use kleene_oci::testing::{have_tool, skopeo, Registry};
use kleene_oci::write::{LayerDigests, LayerWriter, LayoutWriter};
use kleene_oci::Digest;

/// One tar entry, its name (and link target) written as raw header bytes.
enum E {
    Dir(String),
    File(String, &'static [u8]),
    Symlink(String, String),
    Hard(String, String),
}

fn dir(n: &str) -> E {
    E::Dir(n.to_string())
}
fn file(n: &str, data: &'static [u8]) -> E {
    E::File(n.to_string(), data)
}
fn symlink(n: &str, t: &str) -> E {
    E::Symlink(n.to_string(), t.to_string())
}
fn hard(n: &str, t: &str) -> E {
    E::Hard(n.to_string(), t.to_string())
}

/// A tar archive of `entries`, names as given (the tar builder refuses `..` and `/`:
/// the header bytes are written as an attacker would).
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, link, data, kind, mode): (&str, Option<&str>, &[u8], _, _) = match e {
            E::Dir(n) => (n, None, b"", tar::EntryType::Directory, 0o755),
            E::File(n, d) => (n, None, d, tar::EntryType::Regular, 0o644),
            E::Symlink(n, t) => (n, Some(t), b"", tar::EntryType::Symlink, 0o777),
            E::Hard(n, t) => (n, Some(t), b"", tar::EntryType::Link, 0o644),
        };
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let old = h.as_old_mut();
        assert!(
            name.len() < old.name.len(),
            "{name} is too long for a header"
        );
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            assert!(l.len() < old.linkname.len(), "{l} is too long for a header");
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// The harmless first layer of every image.
fn good_layer() -> Vec<u8> {
    tar_of(&[
        dir("etc/"),
        file("etc/good", b"good\n"),
        file("etc/also", b"also good\n"),
    ])
}

/// A harmless upper layer (for the cases where the transfer, not the tar, is hostile).
fn plain_upper() -> Vec<u8> {
    tar_of(&[
        dir("srv/"),
        file("srv/upper", b"upper layer\n"),
        file(
            "srv/more",
            b"more of it, long enough to cut in two somewhere\n",
        ),
    ])
}

/// An image written as an OCI layout.
struct Written {
    layout: PathBuf,
    layers: Vec<LayerDigests>,
    manifest: Digest,
}

/// Writes an OCI layout `dir` with one image `v` of `layers` (gzip); its config has the
/// layers' diff ids unless `diff_ids` overrides one (index, claimed diff id).
fn write_image(dir: &Path, layers: &[Vec<u8>], diff_ids: Option<(usize, Digest)>) -> Written {
    let mut w = LayoutWriter::create(dir).unwrap();
    let mut written = Vec::new();
    for tar in layers {
        let tmp = w.temp_file().unwrap();
        let mut lw = LayerWriter::gzip(tmp.as_file());
        lw.write_all(tar).unwrap();
        let (_, d) = lw.finish().unwrap();
        assert_eq!(d.diff_id, Digest::of(tar));
        w.add_blob_file(tmp.path(), &d.digest).unwrap();
        written.push(d);
    }
    let mut ids: Vec<String> = written.iter().map(|d| d.diff_id.to_string()).collect();
    if let Some((i, claimed)) = diff_ids {
        ids[i] = claimed.to_string();
    }
    let config = ImageConfigurationBuilder::default()
        .os("linux")
        .architecture("amd64")
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(ids)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let descs: Vec<_> = written.iter().map(|d| d.descriptor().unwrap()).collect();
    let manifest = w.add_image(&config, &descs, Some("v")).unwrap();
    w.finish().unwrap();
    Written {
        layout: dir.to_path_buf(),
        layers: written,
        manifest: Digest::parse(manifest.digest().as_ref()).unwrap(),
    }
}

/// Copies image `v` of a layout to `addr/hostile/name:v`; the reference.
fn push_with_skopeo(reg: &Registry, w: &Written, name: &str) -> String {
    let reference = format!("{}/hostile/{name}:v", reg.addr());
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:v", w.layout.display()),
        &format!("docker://{reference}"),
    ]);
    reference
}

/// A directory on the host that hostile entries aim at, with what it held.
struct Sentinel {
    dir: tempfile::TempDir,
    before: BTreeMap<PathBuf, String>,
    passwd: String,
}

/// Everything below `dir` (and `/etc/passwd`), as text to compare.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                std::fs::read_to_string(&p).unwrap()
            } else {
                String::new()
            };
            if m.is_dir() {
                todo.push(p.clone());
            }
            out.insert(
                p,
                format!(
                    "{:?} mode {:o} nlink {} size {} mtime {} {content:?}",
                    m.file_type(),
                    m.mode(),
                    m.nlink(),
                    m.len(),
                    m.mtime()
                ),
            );
        }
    }
    out
}

fn passwd_state() -> String {
    let m = std::fs::metadata("/etc/passwd").unwrap();
    format!(
        "nlink {} size {} mtime {} ino {}",
        m.nlink(),
        m.len(),
        m.mtime(),
        m.ino()
    )
}

impl Sentinel {
    fn new() -> Sentinel {
        let dir = tempfile::Builder::new()
            .prefix("ksent-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("keep"), "keep\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/inner"), "inner\n").unwrap();
        let before = snapshot(dir.path());
        Sentinel {
            dir,
            before,
            passwd: passwd_state(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `self.path()/rest` as an absolute path string.
    fn abs(&self, rest: &str) -> String {
        format!("{}/{rest}", self.path().display())
    }

    /// `self.path()/rest` reached from any directory by a `../` chain.
    fn climb(&self, rest: &str) -> String {
        let rel = self.path().strip_prefix("/").unwrap();
        format!("{}{}/{rest}", "../".repeat(16), rel.display())
    }

    fn untouched(&self, what: &str) {
        assert_eq!(snapshot(self.path()), self.before, "{what}: the sentinel");
        assert_eq!(passwd_state(), self.passwd, "{what}: /etc/passwd");
    }
}

/// The engine, its scratch root and a registry for one case (the engine first: the
/// scratch root is destroyed last, once nothing has it open).
struct Setup {
    engine: Engine,
    reg: Registry,
    t: tempfile::TempDir,
    sentinel: Sentinel,
    /// Downloads a refused pull left in `<root>/blobs` (by variant), removed once seen so
    /// that the next variant is checked on its own; the case fails at its end for them.
    left_in_blobs: std::sync::Mutex<Vec<String>>,
    s: common::Scratch,
}

async fn setup(tag: &str) -> Option<Setup> {
    let s = common::scratch(tag)?;
    if !have_tool("skopeo") {
        return None;
    }
    let reg = Registry::start()?;
    let engine = Engine::open(s.config.clone()).await.unwrap();
    Some(Setup {
        engine,
        reg,
        t: tempfile::tempdir().unwrap(),
        sentinel: Sentinel::new(),
        left_in_blobs: std::sync::Mutex::new(Vec::new()),
        s,
    })
}

impl Setup {
    /// Pulls `reference`; it must fail naming every one of `expect`, leaving nothing but
    /// `good` (the chain id of the good layer) behind, the host untouched.
    async fn refused(&self, what: &str, reference: &str, expect: &[String], good: &Digest) {
        let err = self
            .engine
            .pull_image(PullImage::new(reference), Events::none())
            .await
            .map(|i| i.id.to_string())
            .expect_err(&format!(
                "{what}: the pull of {reference} should be refused"
            ))
            .to_string();
        eprintln!("{what}: {err}");
        for e in expect {
            assert!(err.contains(e.as_str()), "{what}: {e:?} is not in {err}");
        }
        assert!(
            self.engine.images().await.unwrap().is_empty(),
            "{what}: an image stays"
        );
        let layers = common::datasets_below(&self.s.config.root, "layer");
        assert!(
            layers.len() <= 1 && layers.iter().all(|l| l.ends_with(good.hex())),
            "{what}: layers other than the good one stay: {layers:?}"
        );
        // Checked after everything else (see `end`), so that the other checks run for
        // every variant.
        for e in std::fs::read_dir(self.engine.root_mountpoint().join("blobs")).unwrap() {
            let p = e.unwrap().path();
            self.left_in_blobs
                .lock()
                .unwrap()
                .push(format!("{what}: {}", p.display()));
            std::fs::remove_file(&p).unwrap();
        }
        let root = self.engine.root_mountpoint();
        for stray in ["escape", "pwned", "layer/escape", "layer/pwned"] {
            assert!(!root.join(stray).exists(), "{what}: {stray} was written");
        }
        self.sentinel.untouched(what);
    }

    /// Writes, pushes and pulls (refused) one hostile upper layer over the good one.
    async fn hostile_layer(&self, name: &str, upper: &[E], expect: &[&str]) {
        let w = write_image(
            &self.t.path().join(name),
            &[good_layer(), tar_of(upper)],
            None,
        );
        let reference = push_with_skopeo(&self.reg, &w, name);
        let mut expect: Vec<String> = expect.iter().map(|e| e.to_string()).collect();
        expect.push(w.layers[1].digest.hex().to_string());
        self.refused(name, &reference, &expect, &w.layers[0].diff_id)
            .await;
    }

    /// After the case: a reopen repairs nothing, a prune leaves no layer.
    async fn end(self) {
        let (engine, repairs) = Engine::open_with(self.s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(repairs.is_empty(), "{repairs:?}");
        engine.prune_images(true).await.unwrap();
        let layers = common::datasets_below(&self.s.config.root, "layer");
        assert!(layers.is_empty(), "{layers:?}");
        self.sentinel.untouched("at the end");
        let left = self.left_in_blobs.lock().unwrap().clone();
        assert!(
            left.is_empty(),
            "refused pulls left their downloads in <root>/blobs:\n{}",
            left.join("\n")
        );
    }
}

macro_rules! setup_or_skip {
    ($tag:expr) => {
        match setup($tag).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// A harmless entry before the hostile one, so that the hostile layer has something
/// of its own to leave behind.
fn first() -> E {
    file("etc/hostile-was-here", b"x\n")
}

#[tokio::test]
async fn dot_dot_entries_are_refused() {
    let x = setup_or_skip!("hdotdot");
    x.hostile_layer(
        "dotdot",
        &[first(), file("../../escape", b"escaped\n")],
        &["\"../../escape\"", "\"..\""],
    )
    .await;
    let deep = x.sentinel.climb("pwned");
    x.hostile_layer(
        "dotdotdeep",
        &[first(), file(&deep, b"escaped\n")],
        &[&format!("{deep:?}")],
    )
    .await;
    let inner = format!("etc/../../../{}", x.sentinel.climb("pwned"));
    x.hostile_layer(
        "dotdotinner",
        &[first(), file(&inner, b"escaped\n")],
        &[&format!("{inner:?}")],
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn absolute_entries_are_refused() {
    let x = setup_or_skip!("habs");
    let abs = x.sentinel.abs("pwned");
    x.hostile_layer(
        "abs",
        &[first(), file(&abs, b"escaped\n")],
        &[&format!("{abs:?}"), "absolute"],
    )
    .await;
    let abs_dir = x.sentinel.abs("newdir/");
    x.hostile_layer(
        "absdir",
        &[first(), dir(&abs_dir)],
        &[&format!("{abs_dir:?}"), "absolute"],
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn entries_through_symlinks_leading_out_are_refused() {
    let x = setup_or_skip!("hsym");
    x.hostile_layer(
        "symroot",
        &[
            first(),
            symlink("link", "/"),
            file("link/pwned", b"escaped\n"),
        ],
        &["\"link/pwned\"", "outside the root"],
    )
    .await;
    let target = x.sentinel.path().display().to_string();
    x.hostile_layer(
        "symsentinel",
        &[
            first(),
            symlink("link", &target),
            file("link/pwned", b"escaped\n"),
        ],
        &["\"link/pwned\"", "outside the root"],
    )
    .await;
    // Overwriting what is there through the link.
    x.hostile_layer(
        "symoverwrite",
        &[
            first(),
            symlink("link", &target),
            file("link/keep", b"overwritten\n"),
        ],
        &["\"link/keep\"", "outside the root"],
    )
    .await;
    x.hostile_layer(
        "symclimb",
        &[
            first(),
            symlink("etc/up", &format!("../{}", "../".repeat(16))),
            file(
                &format!(
                    "etc/up/{}/pwned",
                    x.sentinel.path().strip_prefix("/").unwrap().display()
                ),
                b"escaped\n",
            ),
        ],
        &["etc/up/", "outside the root"],
    )
    .await;
    // A directory made through a link, and a link whose own name is a link.
    x.hostile_layer(
        "symdir",
        &[first(), symlink("link", &target), dir("link/newdir/")],
        &["\"link/newdir/\"", "outside the root"],
    )
    .await;
    x.hostile_layer(
        "symchain",
        &[
            first(),
            symlink("a", &target),
            symlink("b", "a"),
            file("b/sub/pwned", b"escaped\n"),
        ],
        &["\"b/sub/pwned\"", "outside the root"],
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn hard_links_to_host_files_are_refused() {
    let x = setup_or_skip!("hhard");
    x.hostile_layer(
        "hardpasswd",
        &[first(), hard("etc/pw", "/etc/passwd")],
        &["\"etc/pw\"", "\"/etc/passwd\"", "absolute"],
    )
    .await;
    let keep = x.sentinel.abs("keep");
    x.hostile_layer(
        "hardsentinel",
        &[first(), hard("etc/keep", &keep)],
        &["\"etc/keep\"", &format!("{keep:?}")],
    )
    .await;
    let climb = x.sentinel.climb("keep");
    x.hostile_layer(
        "hardclimb",
        &[first(), hard("etc/keep", &climb)],
        &["\"etc/keep\"", "\"..\""],
    )
    .await;
    // Through a symlink leading out.
    x.hostile_layer(
        "hardviasym",
        &[
            first(),
            symlink("hostetc", "/etc"),
            hard("pw", "hostetc/passwd"),
        ],
        &["\"pw\"", "hostetc/passwd", "outside the root"],
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn whiteouts_that_escape_are_refused() {
    let x = setup_or_skip!("hwh");
    x.hostile_layer("whdotdot", &[first(), file(".wh...", b"")], &["\".wh...\""])
        .await;
    x.hostile_layer(
        "whparent",
        &[first(), file("../.wh.x", b"")],
        &["\"../.wh.x\""],
    )
    .await;
    x.hostile_layer(
        "whzfs",
        &[first(), file(".wh..zfs", b"")],
        &["\".wh..zfs\""],
    )
    .await;
    x.hostile_layer(
        "whempty",
        &[first(), file("etc/.wh.", b"")],
        &["\"etc/.wh.\""],
    )
    .await;
    x.hostile_layer(
        "whinzfs",
        &[first(), file(".zfs/snapshot/.wh.layer", b"")],
        &["\".zfs/snapshot/.wh.layer\""],
    )
    .await;
    // Removing the sentinel's file through a link leading out.
    let target = x.sentinel.path().display().to_string();
    x.hostile_layer(
        "whviasym",
        &[
            first(),
            symlink("link", &target),
            file("link/.wh.keep", b""),
        ],
        &["\"link/.wh.keep\"", "outside the root"],
    )
    .await;
    x.hostile_layer(
        "whopqviasym",
        &[
            first(),
            symlink("link", &target),
            file("link/.wh..wh..opq", b""),
        ],
        &["\"link/.wh..wh..opq\"", "outside the root"],
    )
    .await;
    let climb = format!("{}.wh.keep", x.sentinel.climb(""));
    x.hostile_layer(
        "whclimb",
        &[first(), file(&climb, b"")],
        &[&format!("{climb:?}")],
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn a_truncated_blob_is_refused() {
    let x = setup_or_skip!("htrunc");
    let w = write_image(
        &x.t.path().join("trunc"),
        &[good_layer(), plain_upper()],
        None,
    );
    let reference = push_with_skopeo(&x.reg, &w, "trunc");
    let bad = &w.layers[1];
    let data = x.reg.blob_data(&bad.digest);
    let bytes = std::fs::read(&data).unwrap();
    assert_eq!(bytes.len() as u64, bad.size);
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    x.refused(
        "truncated",
        &reference,
        &[bad.digest.to_string()],
        &w.layers[0].diff_id,
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn a_blob_of_other_bytes_is_refused() {
    let x = setup_or_skip!("hdigest");
    let w = write_image(
        &x.t.path().join("digest"),
        &[good_layer(), plain_upper()],
        None,
    );
    let reference = push_with_skopeo(&x.reg, &w, "digest");
    let bad = &w.layers[1];
    let data = x.reg.blob_data(&bad.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    x.refused(
        "other bytes",
        &reference,
        &[bad.digest.to_string()],
        &w.layers[0].diff_id,
    )
    .await;
    x.end().await;
}

#[tokio::test]
async fn a_manifest_lying_about_a_layer_size_is_refused() {
    let x = setup_or_skip!("hsize");
    let w = write_image(
        &x.t.path().join("size"),
        &[good_layer(), plain_upper()],
        None,
    );
    let blob = |d: &Digest| w.layout.join("blobs/sha256").join(d.hex());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&w.manifest)).unwrap()).unwrap();
    let config = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let client = Client::new(RegistryConfig::default()).unwrap();
    let bad = &w.layers[1];
    for (tag, delta) in [("plus", 1i64), ("minus", -1)] {
        let r = Reference::parse(&format!("{}/hostile/size:{tag}", x.reg.addr())).unwrap();
        for l in &w.layers {
            client
                .push_blob(&r, &l.digest, l.size, &blob(&l.digest), None)
                .await
                .unwrap();
        }
        client
            .push_blob_bytes(&r, &std::fs::read(blob(&config)).unwrap())
            .await
            .unwrap();
        let mut lying = manifest.clone();
        let size = bad.size.checked_add_signed(delta).unwrap();
        lying["layers"][1]["size"] = serde_json::json!(size);
        let bytes = serde_json::to_vec(&lying).unwrap();
        client
            .put_manifest(&r, "application/vnd.oci.image.manifest.v1+json", &bytes)
            .await
            .unwrap();
        x.refused(
            &format!("size {delta:+}"),
            &r.to_string(),
            &[bad.digest.to_string()],
            &w.layers[0].diff_id,
        )
        .await;
    }
    x.end().await;
}

#[tokio::test]
async fn a_config_whose_diff_id_is_not_the_layers_is_refused() {
    let x = setup_or_skip!("hdiffid");
    let claimed = Digest::of(b"not the tar of this layer");
    let w = write_image(
        &x.t.path().join("diffid"),
        &[good_layer(), plain_upper()],
        Some((1, claimed.clone())),
    );
    let reference = push_with_skopeo(&x.reg, &w, "diffid");
    x.refused(
        "diff id",
        &reference,
        &[w.layers[1].digest.to_string(), claimed.to_string()],
        &w.layers[0].diff_id,
    )
    .await;
    // The same for the bottom layer: not even the good layer stays (its chain id is
    // the claimed diff id).
    let claimed = Digest::of(b"not the tar of the bottom layer");
    let w = write_image(
        &x.t.path().join("diffid0"),
        &[good_layer(), plain_upper()],
        Some((0, claimed.clone())),
    );
    let reference = push_with_skopeo(&x.reg, &w, "diffid0");
    x.refused(
        "bottom diff id",
        &reference,
        &[w.layers[0].digest.to_string(), claimed.to_string()],
        &w.layers[0].diff_id,
    )
    .await;
    x.end().await;
}
