//! OCI layers applied by kleene-core's extractor against umoci's own unpacking: an image
//! of three layers made with umoci (files, a symlink, a deleted file and a deleted
//! directory, which umoci writes as whiteouts), unpacked by umoci, and applied layer by
//! layer by `apply_layer`; the two trees must be the same. Skipped without umoci unless
//! `KLEENE_REQUIRE_ZFS=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kleene_oci::testing::{have_umoci, umoci};

use kleene_core::archive::{apply_layer, decompress};
use kleene_oci::{Layout, Platform};

/// Path → type, permissions and content or target, below `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {:o}", m.permissions().mode() & 0o7777)
        } else {
            format!(
                "file {:o} {:?}",
                m.permissions().mode() & 0o7777,
                std::fs::read(&p).unwrap()
            )
        };
        out.insert(rel, what);
    }
    out
}

#[test]
fn umocis_layers_apply_to_the_tree_umoci_unpacks() {
    if !have_umoci() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    umoci(d, &["init", "--layout", "img"]);
    umoci(d, &["new", "--image", "img:latest"]);
    umoci(
        d,
        &["unpack", "--rootless", "--image", "img:latest", "bundle"],
    );
    let r = d.join("bundle/rootfs");
    let repack = || {
        umoci(
            d,
            &[
                "repack",
                "--refresh-bundle",
                "--image",
                "img:latest",
                "bundle",
            ],
        )
    };
    // Layer 1: a tree.
    std::fs::create_dir_all(r.join("etc/conf.d")).unwrap();
    std::fs::create_dir_all(r.join("var/cache/pkg")).unwrap();
    std::fs::write(r.join("etc/conf.d/a"), "a\n").unwrap();
    std::fs::write(r.join("etc/conf.d/b"), "b\n").unwrap();
    std::fs::write(r.join("var/cache/pkg/blob"), "cached\n").unwrap();
    std::fs::write(r.join("etc/motd"), "hello\n").unwrap();
    std::os::unix::fs::symlink("conf.d/a", r.join("etc/a-link")).unwrap();
    repack();
    // Layer 2: a file changed, one deleted, a directory deleted, a file added.
    std::fs::write(r.join("etc/motd"), "changed\n").unwrap();
    std::fs::remove_file(r.join("etc/conf.d/b")).unwrap();
    std::fs::remove_dir_all(r.join("var/cache/pkg")).unwrap();
    std::fs::write(r.join("etc/new"), "new\n").unwrap();
    std::fs::set_permissions(r.join("etc/new"), std::fs::Permissions::from_mode(0o600)).unwrap();
    repack();
    // Layer 3: a directory replaced by a file, a symlink by a directory.
    std::fs::remove_dir_all(r.join("etc/conf.d")).unwrap();
    std::fs::write(r.join("etc/conf.d"), "now a file\n").unwrap();
    std::fs::remove_file(r.join("etc/a-link")).unwrap();
    std::fs::create_dir(r.join("etc/a-link")).unwrap();
    repack();

    // umoci's own unpacking of the result.
    umoci(
        d,
        &["unpack", "--rootless", "--image", "img:latest", "theirs"],
    );
    // Ours, layer by layer.
    let layout = Layout::open(&d.join("img")).unwrap();
    let image = layout.resolve(Some("latest"), &Platform::host()).unwrap();
    assert_eq!(image.layers.len(), 3);
    let ours = d.join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
    for l in &image.layers {
        let blob = layout.blob(&l.digest, l.size).unwrap();
        let (_, tar) = decompress(blob).unwrap();
        apply_layer(tar, &ours, &mut |_| {}).unwrap();
    }
    let (ours_tree, theirs_tree) = (tree(&ours), tree(&d.join("theirs/rootfs")));
    assert_eq!(ours_tree, theirs_tree);
    assert!(ours_tree.contains_key("etc/new"));
    assert!(!ours_tree.contains_key("var/cache/pkg"));
    assert!(ours_tree["etc/conf.d"].starts_with("file"));
}
