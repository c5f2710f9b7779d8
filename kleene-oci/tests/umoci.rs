//! Layouts made by an independent implementation, umoci (Debian's package): an image of
//! two layers (the second with a whiteout) and a config set by `umoci config`, read back.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use kleene_oci::testing::{have_umoci, umoci};

use kleene_oci::{LayerCompression, Layout, Platform};

#[test]
fn a_layout_made_by_umoci_reads_back() {
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
    let etc = d.join("bundle/rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("greeting"), "hi\n").unwrap();
    std::fs::write(etc.join("gone"), "x\n").unwrap();
    // The bundle then stands for the new image, so the next repack is a layer over it.
    umoci(
        d,
        &[
            "repack",
            "--refresh-bundle",
            "--image",
            "img:latest",
            "bundle",
        ],
    );
    std::fs::remove_file(etc.join("gone")).unwrap();
    umoci(d, &["repack", "--image", "img:latest", "bundle"]);
    umoci(
        d,
        &[
            "config",
            "--image",
            "img:latest",
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "A=1",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "www",
            "--config.label",
            "k=v",
        ],
    );

    let layout = Layout::open(&d.join("img")).unwrap();
    assert_eq!(layout.names(), ["latest"]);
    let img = layout.resolve(Some("latest"), &Platform::host()).unwrap();
    assert_eq!(img.layers.len(), 2, "{:?}", img.layers);
    let s = &img.settings;
    assert_eq!(s.cmd, ["/bin/sh"]);
    assert!(s.env.iter().any(|e| e == "A=1"), "{:?}", s.env);
    assert_eq!((s.workdir.as_str(), s.user.as_str()), ("/srv", "www"));
    assert_eq!(s.labels.get("k").map(String::as_str), Some("v"));
    // Every layer verifies, and its diff id is its tar's digest; the second holds the
    // whiteout of /etc/gone.
    let mut names = Vec::new();
    for l in &img.layers {
        assert_eq!(l.compression, LayerCompression::Gzip);
        let mut r = layout.blob(&l.digest, l.size).unwrap();
        let mut gz = Vec::new();
        r.read_to_end(&mut gz).unwrap();
        assert!(r.verified());
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(kleene_oci::Digest::of(&tar), l.diff_id);
        let mut a = tar::Archive::new(&tar[..]);
        names.push(
            a.entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        names[0].iter().any(|n| n.ends_with("etc/greeting")),
        "{names:?}"
    );
    assert!(
        names[1].iter().any(|n| n.ends_with("etc/.wh.gone")),
        "{names:?}"
    );
}
