//! Layers as the difference of two trees (`kleene_oci::diff`), written into layouts
//! (`kleene_oci::write`), and read back by independent implementations: umoci unpacks
//! them over each other into the upper tree again, skopeo inspects and copies them.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kleene_oci::diff::{write_layer, DiffOptions, LayerStats};
use kleene_oci::spec::{
    ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder, RootFsBuilder,
};
use kleene_oci::write::{archive_layout, LayerDigests, LayerWriter, LayoutWriter};
use kleene_oci::{Layout, Platform};

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

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

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `lower`, and `upper` made of a copy of it with every kind of change.
struct Trees {
    _t: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    /// Whether the device node could be made (root).
    device: bool,
}

fn trees() -> Trees {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    let upper = t.path().join("upper");
    let l = |p: &str| lower.join(p);
    let u = |p: &str| upper.join(p);
    std::fs::create_dir(&lower).unwrap();
    std::fs::write(l("keep"), "same\n").unwrap();
    std::fs::write(l("changed"), "aaaa").unwrap();
    std::fs::write(l("modeonly"), "m").unwrap();
    std::fs::write(l("owneronly"), "o").unwrap();
    std::fs::create_dir_all(l("etc")).unwrap();
    std::fs::write(l("etc/gone"), "g").unwrap();
    std::fs::write(l("etc/stay"), "s").unwrap();
    std::fs::create_dir_all(l("olddir/sub")).unwrap();
    std::fs::write(l("olddir/a"), "a").unwrap();
    std::fs::write(l("olddir/sub/b"), "b").unwrap();
    std::fs::create_dir_all(l("d2f")).unwrap();
    std::fs::write(l("d2f/x"), "x").unwrap();
    std::fs::create_dir_all(l("-t")).unwrap();
    std::fs::write(l("f2d"), "f").unwrap();
    std::os::unix::fs::symlink("keep", l("link")).unwrap();
    std::os::unix::fs::symlink("keep", l("relink")).unwrap();
    std::fs::write(l("lhard1"), "linked").unwrap();
    std::fs::hard_link(l("lhard1"), l("lhard2")).unwrap();
    std::fs::set_permissions(l("keep"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Names and a target ustar cannot hold (PAX records), unchanged in upper.
    let deep = format!("long/{}/{}", "d".repeat(160), "n".repeat(120));
    std::fs::create_dir_all(l(&deep)).unwrap();
    std::fs::write(l(&format!("{deep}/f")), "deep").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), l("long/sym")).unwrap();

    assert!(run(
        "cp",
        &["-a", lower.to_str().unwrap(), upper.to_str().unwrap()]
    ));
    // Another content of the same size and mtime: only reading tells.
    let mtime = std::fs::metadata(l("changed")).unwrap().modified().unwrap();
    std::fs::write(u("changed"), "bbbb").unwrap();
    std::fs::File::options()
        .write(true)
        .open(u("changed"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::set_permissions(u("modeonly"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(u("owneronly"), Some(1234), Some(5678)).unwrap();
    } else {
        std::fs::write(u("owneronly"), "O").unwrap();
    }
    std::fs::write(u("etc/new"), "new\n").unwrap();
    std::fs::remove_file(u("etc/gone")).unwrap();
    std::fs::remove_dir_all(u("olddir")).unwrap();
    std::fs::remove_dir_all(u("d2f")).unwrap();
    std::fs::write(u("d2f"), "now a file").unwrap();
    std::fs::remove_dir_all(u("-t")).unwrap();
    std::fs::write(u("-t"), "dash").unwrap();
    std::fs::remove_file(u("f2d")).unwrap();
    std::fs::create_dir(u("f2d")).unwrap();
    std::fs::write(u("f2d/inner"), "in").unwrap();
    std::fs::remove_file(u("relink")).unwrap();
    std::os::unix::fs::symlink("changed", u("relink")).unwrap();
    // Never followed: an absolute target, and a dangling one.
    std::os::unix::fs::symlink("/etc/passwd", u("newlink")).unwrap();
    std::fs::write(u("hl1"), "one inode").unwrap();
    std::fs::hard_link(u("hl1"), u("hl2")).unwrap();
    std::fs::create_dir(u("emptydir")).unwrap();
    // Left out: a tar cannot hold a socket.
    drop(std::os::unix::net::UnixListener::bind(u("sock")).unwrap());
    assert!(run("mkfifo", &[u("fifo").to_str().unwrap()]));
    let device = is_root() && run("mknod", &[u("null").to_str().unwrap(), "c", "1", "3"]);
    Trees {
        _t: t,
        lower,
        upper,
        device,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    path: String,
    kind: char,
    link: Option<String>,
    mode: u32,
    uid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn entries(tar: &[u8]) -> Vec<Entry> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert!(h.as_ustar().is_some(), "ustar headers");
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Entry {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: char::from(h.entry_type().as_byte()),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                mtime: h.mtime().unwrap(),
                data,
            }
        })
        .collect()
}

fn layer(lower: Option<&Path>, upper: &Path, opts: &DiffOptions) -> (Vec<u8>, LayerStats) {
    let mut out = Vec::new();
    let stats = write_layer(lower, upper, &mut out, opts).unwrap();
    assert_eq!(stats.bytes, out.len() as u64);
    (out, stats)
}

#[test]
fn a_layer_holds_exactly_the_changes() {
    let t = trees();
    let (tar, stats) = layer(Some(&t.lower), &t.upper, &DiffOptions::default());
    let got = entries(&tar);
    let shown: Vec<(String, char, Option<String>)> = got
        .iter()
        .map(|e| (e.path.clone(), e.kind, e.link.clone()))
        .collect();
    let mut want: Vec<(&str, char, Option<&str>)> = vec![
        // Whiteouts first in their directory, then the rest by name.
        (".wh.-t", '0', None),
        (".wh.d2f", '0', None),
        (".wh.f2d", '0', None),
        (".wh.olddir", '0', None),
        ("-t", '0', None),
        ("changed", '0', None),
        ("d2f", '0', None),
        ("emptydir/", '5', None),
        ("etc/", '5', None),
        ("f2d/", '5', None),
        ("fifo", '6', None),
        ("hl1", '0', None),
        ("hl2", '1', Some("hl1")),
        ("modeonly", '0', None),
        ("newlink", '2', Some("/etc/passwd")),
    ];
    if t.device {
        want.push(("null", '3', None));
    }
    want.extend([
        ("owneronly", '0', None),
        ("relink", '2', Some("changed")),
        ("etc/.wh.gone", '0', None),
        ("etc/new", '0', None),
        ("f2d/inner", '0', None),
    ]);
    let want: Vec<(String, char, Option<String>)> = want
        .into_iter()
        .map(|(p, k, l)| (p.to_string(), k, l.map(str::to_string)))
        .collect();
    assert_eq!(shown, want);
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(stats.entries, want.len() as u64 - 5);
    let by = |p: &str| got.iter().find(|e| e.path == p).unwrap();
    assert_eq!(by("changed").data, b"bbbb");
    assert_eq!(by("modeonly").mode, 0o600);
    if is_root() {
        assert_eq!(by("owneronly").uid, 1234);
    }
    assert_eq!(by("hl1").data, b"one inode");
    assert!(by("hl2").data.is_empty());
    assert!(by(".wh.d2f").data.is_empty());
    let mtime = std::fs::symlink_metadata(t.upper.join("etc/new"))
        .unwrap()
        .mtime();
    assert_eq!(by("etc/new").mtime, mtime as u64);

    // Against itself: nothing.
    let (tar, stats) = layer(Some(&t.upper), &t.upper, &DiffOptions::default());
    assert!(entries(&tar).is_empty());
    assert_eq!((stats.entries, stats.whiteouts), (0, 0));
    // A copy with the same content and times: nothing either (contents compared).
    let copy = t._t.path().join("copy");
    assert!(run(
        "cp",
        &["-a", t.upper.to_str().unwrap(), copy.to_str().unwrap()]
    ));
    let (tar, _) = layer(Some(&t.upper), &copy, &DiffOptions::default());
    assert_eq!(entries(&tar), Vec::<Entry>::new());
    // A name that would read as a whiteout is refused, naming it.
    std::fs::write(copy.join("etc/.wh.sneaky"), "").unwrap();
    let e = write_layer(Some(&t.upper), &copy, Vec::new(), &DiffOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("etc/.wh.sneaky") && e.contains(".wh."), "{e}");
}

#[test]
fn a_hard_link_group_goes_in_whole() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
    std::fs::create_dir(&lower).unwrap();
    std::fs::write(lower.join("a"), "shared").unwrap();
    std::fs::hard_link(lower.join("a"), lower.join("b")).unwrap();
    assert!(run(
        "cp",
        &["-a", lower.to_str().unwrap(), upper.to_str().unwrap()]
    ));
    // A third name of the inode: all three are written, one file and two links.
    std::fs::hard_link(upper.join("a"), upper.join("c")).unwrap();
    let (tar, _) = layer(Some(&lower), &upper, &DiffOptions::default());
    let got: Vec<(String, char, Option<String>)> = entries(&tar)
        .into_iter()
        .map(|e| (e.path, e.kind, e.link))
        .collect();
    assert_eq!(
        got,
        [
            ("a".to_string(), '0', None),
            ("b".to_string(), '1', Some("a".to_string())),
            ("c".to_string(), '1', Some("a".to_string())),
        ]
    );
}

#[test]
fn layers_are_reproducible_and_clamped() {
    let t = trees();
    let opts = DiffOptions::default();
    let (a, _) = layer(Some(&t.lower), &t.upper, &opts);
    let (b, _) = layer(Some(&t.lower), &t.upper, &opts);
    assert_eq!(a, b);
    let (c, _) = layer(None, &t.upper, &opts);
    let (d, _) = layer(None, &t.upper, &opts);
    assert_eq!(c, d);
    // Compressed and hashed: the same blob, twice.
    let blob = |tar: &[u8]| {
        let mut w = LayerWriter::gzip(Vec::new());
        std::io::Write::write_all(&mut w, tar).unwrap();
        w.finish().unwrap()
    };
    let (x, dx) = blob(&a);
    let (y, dy) = blob(&b);
    assert_eq!((x.clone(), dx.clone()), (y, dy));
    assert_eq!(dx.diff_id, kleene_oci::Digest::of(&a));
    assert_eq!(dx.digest, kleene_oci::Digest::of(&x));
    assert_eq!(dx.size, x.len() as u64);
    // No name and no time in the gzip header.
    assert_eq!(&x[3..8], &[0, 0, 0, 0, 0]);

    let clamp = 1_000_000;
    let (e, _) = layer(
        None,
        &t.upper,
        &DiffOptions {
            clamp_mtime: Some(clamp),
        },
    );
    let es = entries(&e);
    assert!(!es.is_empty());
    assert!(es.iter().all(|e| e.mtime <= clamp as u64), "{es:?}");
    assert!(es.iter().any(|e| e.mtime == clamp as u64));
}

/// A layer blob of `lower` → `upper`, written into the layout.
fn add_layer(w: &mut LayoutWriter, lower: Option<&Path>, upper: &Path) -> LayerDigests {
    let tmp = w.temp_file().unwrap();
    let mut lw = LayerWriter::gzip(tmp.as_file().try_clone().unwrap());
    write_layer(lower, upper, &mut lw, &DiffOptions::default()).unwrap();
    let (_, digests) = lw.finish().unwrap();
    w.add_blob_file(tmp.path(), &digests.digest).unwrap();
    digests
}

pub fn config(diff_ids: &[&LayerDigests]) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .os("linux")
        .architecture("amd64")
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    diff_ids
                        .iter()
                        .map(|d| d.diff_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()
                .unwrap(),
        )
        .config(
            ConfigBuilder::default()
                .cmd(vec!["/bin/sh".to_string()])
                .env(vec!["A=1".to_string(), "B=two".to_string()])
                .working_dir("/srv")
                .labels(
                    [("k1", "v1"), ("k2", "v2"), ("k3", "v3")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn write_image(dir: &Path, t: &Trees, name: &str) -> (LayerDigests, LayerDigests) {
    let mut w = LayoutWriter::create(dir).unwrap();
    let l1 = add_layer(&mut w, None, &t.lower);
    let l2 = add_layer(&mut w, Some(&t.lower), &t.upper);
    let cfg = config(&[&l1, &l2]);
    w.add_image(
        &cfg,
        &[l1.descriptor().unwrap(), l2.descriptor().unwrap()],
        Some(name),
    )
    .unwrap();
    w.finish().unwrap();
    (l1, l2)
}

#[test]
fn layouts_read_back_and_are_reproducible() {
    let t = trees();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let (l1, l2) = write_image(&a, &t, "v1");
    write_image(&b, &t, "v1");
    let mut ta = Vec::new();
    archive_layout(&a, &mut ta).unwrap();
    let mut tb = Vec::new();
    archive_layout(&b, &mut tb).unwrap();
    assert_eq!(ta, tb, "the same image twice is the same archive");

    // Added to: a second name, and the first replaced by itself.
    let mut w = LayoutWriter::create(&a).unwrap();
    let cfg = config(&[&l1]);
    w.add_image(&cfg, &[l1.descriptor().unwrap()], Some("base"))
        .unwrap();
    w.add_image(
        &config(&[&l1, &l2]),
        &[l1.descriptor().unwrap(), l2.descriptor().unwrap()],
        Some("v1"),
    )
    .unwrap();
    // A layer count that is not the config's is refused.
    let e = w.add_image(&cfg, &[], Some("bad")).unwrap_err().to_string();
    assert!(
        e.contains("0 layers were given where its config has 1 diff ids"),
        "{e}"
    );
    w.finish().unwrap();

    // The archive unpacks into a layout this crate reads.
    let un = d.path().join("unpacked");
    tar::Archive::new(&ta[..]).unpack(&un).unwrap();
    for dir in [&a, &un] {
        let layout = Layout::open(dir).unwrap();
        let img = layout
            .resolve(Some("v1"), &Platform::parse("linux/amd64").unwrap())
            .unwrap();
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.layers[0].diff_id, l1.diff_id);
        assert_eq!(img.layers[1].diff_id, l2.diff_id);
        assert_eq!(img.layers[1].digest, l2.digest);
        assert_eq!(img.settings.cmd, ["/bin/sh"]);
        assert_eq!(img.settings.env, ["A=1", "B=two"]);
        assert_eq!(img.settings.labels.len(), 3);
    }
    let names = Layout::open(&a).unwrap().names();
    assert_eq!(names, ["base", "v1"]);
}

/// Compares the unpacked tree with `upper`: the same names, types, modes, owners,
/// contents, symlink targets, device numbers, and the mtimes of non-directories.
fn compare(want: &Path, got: &Path, rel: &str) {
    let list = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_type().unwrap().is_socket())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(want), list(got), "the names in /{rel}");
    for name in list(want) {
        let (w, g) = (want.join(&name), got.join(&name));
        let at = format!("{rel}{name}");
        let (wm, gm) = (
            std::fs::symlink_metadata(&w).unwrap(),
            std::fs::symlink_metadata(&g).unwrap(),
        );
        assert_eq!(
            wm.file_type().is_dir(),
            gm.file_type().is_dir(),
            "{at}: type"
        );
        assert_eq!(wm.mode(), gm.mode(), "{at}: mode");
        assert_eq!((wm.uid(), wm.gid()), (gm.uid(), gm.gid()), "{at}: owner");
        let ft = wm.file_type();
        if ft.is_dir() {
            compare(&w, &g, &format!("{at}/"));
            continue;
        }
        assert_eq!(wm.mtime(), gm.mtime(), "{at}: mtime");
        if ft.is_symlink() {
            assert_eq!(
                std::fs::read_link(&w).unwrap(),
                std::fs::read_link(&g).unwrap(),
                "{at}: target"
            );
        } else if ft.is_file() {
            assert_eq!(
                std::fs::read(&w).unwrap(),
                std::fs::read(&g).unwrap(),
                "{at}"
            );
        } else if ft.is_char_device() || ft.is_block_device() {
            assert_eq!(wm.rdev(), gm.rdev(), "{at}: device");
        }
    }
}

#[test]
fn umoci_unpacks_the_layers_into_the_upper_tree_and_skopeo_copies_them() {
    if !have("umoci") {
        return;
    }
    let t = trees();
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    write_image(&img, &t, "v1");
    let image_ref = format!("{}:v1", img.display());
    let bundle = d.path().join("bundle");
    let mut args = vec!["unpack"];
    if !is_root() {
        args.push("--rootless");
    }
    let bundle_s = bundle.to_str().unwrap().to_string();
    args.extend(["--image", &image_ref, &bundle_s]);
    let out = Command::new("umoci").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    if is_root() {
        compare(&t.upper, &rootfs, "");
        let ino = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().ino();
        assert_eq!(ino("hl1"), ino("hl2"), "hl2 is a hard link of hl1");
    } else {
        assert_eq!(std::fs::read(rootfs.join("changed")).unwrap(), b"bbbb");
        assert!(!rootfs.join("olddir").exists());
    }

    if !have("skopeo") {
        return;
    }
    let oci = format!("oci:{}:v1", img.display());
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "inspect", &oci])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2, "{info}");
    assert_eq!(info["Os"], "linux");
    let archive = d.path().join("x.tar");
    let dest = format!("docker-archive:{}:name:tag", archive.display());
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", &oci, &dest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&archive).unwrap().len() > 0);
}
