//! A scratch engine root per test on the pool named by `KLEENE_TEST_POOL`; skipped without
//! one, unless `KLEENE_REQUIRE_ZFS=1`, where the test fails.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use kleene_core::kleene_zfs::{DatasetName, Depth, Zfs};
use kleene_core::Config;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Scratch {
    pub config: Config,
    pub dir: tempfile::TempDir,
    cleanup: bool,
}

pub fn pool() -> Option<String> {
    let required = std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1");
    match std::env::var("KLEENE_TEST_POOL") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                !required,
                "KLEENE_REQUIRE_ZFS=1 but KLEENE_TEST_POOL is not set"
            );
            eprintln!("skipped: KLEENE_TEST_POOL is not set (scripts/testpool.sh up makes one)");
            None
        }
    }
}

/// A config whose root is a fresh `<pool>/kct-<pid>-<n>-<tag>`, with host files for dns and
/// localtime in a temp dir.
pub fn scratch(tag: &str) -> Option<Scratch> {
    let pool = pool()?;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let root = DatasetName::new(format!("{pool}/kct-{}-{n}-{tag}", std::process::id())).unwrap();
    Some(scratch_at(root, true))
}

pub fn scratch_at(root: DatasetName, cleanup: bool) -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
    let localtime = dir.path().join("localtime");
    std::fs::write(&localtime, "TZif-test").unwrap();
    let mut config = Config::new(root);
    config.monitor = Some(env!("CARGO_BIN_EXE_kleene-monitor").into());
    config.resolv_conf = resolv;
    config.localtime = localtime;
    Scratch {
        config,
        dir,
        cleanup,
    }
}

impl Scratch {
    /// Writes a tar archive of `files` (path, contents, mode) to the temp dir, compressed
    /// as asked ("none", "gz", "xz", "zst").
    pub fn tarball(&self, name: &str, compression: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, mode) in files {
            let mut h = tar::Header::new_gnu();
            if path.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            } else {
                h.set_size(data.len() as u64);
            }
            h.set_mode(*mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            if path.contains("..") || path.starts_with('/') {
                // The builder refuses such paths: write the name bytes as an attacker would.
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
            } else {
                h.set_path(path).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        let raw = b.into_inner().unwrap();
        let bytes = match compression {
            "none" => raw,
            "gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                e.finish().unwrap()
            }
            "xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(&raw).unwrap();
                e.finish().unwrap()
            }
            "zst" => zstd::encode_all(raw.as_slice(), 1).unwrap(),
            other => panic!("unknown compression {other}"),
        };
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A small rootfs tarball: /etc, /bin/hello, a file in /usr.
    pub fn rootfs(&self, compression: &str) -> PathBuf {
        self.tarball(
            &format!("rootfs.tar.{compression}"),
            compression,
            &[
                ("etc/", b"", 0o755),
                ("etc/os-release", b"NAME=test\n", 0o644),
                ("bin/", b"", 0o755),
                ("bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
                ("usr/share/doc/readme", b"docs", 0o644),
            ],
        )
    }
}

impl Scratch {
    /// A busybox rootfs tarball (from Debian's busybox-static), with users and groups.
    pub fn busybox_rootfs(&self) -> PathBuf {
        let busybox =
            std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        };
        for d in [
            "bin", "etc", "tmp", "root", "home", "home/app", "var", "srv",
        ] {
            dir(&mut b, d);
        }
        let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            b.append_data(&mut h, path, data).unwrap();
        };
        file(&mut b, "bin/busybox", &busybox, 0o755);
        file(
            &mut b,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:4321:4322:app:/home/app:/bin/sh\n",
            0o644,
        );
        file(
            &mut b,
            "etc/group",
            b"root:x:0:\napp:x:4322:\nextra:x:4400:app\n",
            0o644,
        );
        file(&mut b, "srv/seed.txt", b"seeded from the image", 0o644);
        for applet in [
            "sh", "echo", "cat", "sleep", "true", "false", "id", "hostname", "ls", "env", "pwd",
            "touch", "test", "ps", "kill", "mkdir", "rm", "wc", "grep",
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        let path = self.dir.path().join("busybox.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.cleanup {
            return;
        }
        let zfs = Zfs::open();
        let root = &self.config.root;
        if let Ok(all) = zfs.list_datasets(root, Depth::All, &["origin"]) {
            for d in all.iter().rev() {
                if d.properties.get("origin").is_some() {
                    let _ = zfs.destroy(&d.name, true);
                }
            }
        }
        if let Err(e) = zfs.destroy(root, true) {
            if !e.is_not_found() {
                eprintln!("warning: could not destroy {root}: {e}");
            }
        }
    }
}

#[macro_export]
macro_rules! scratch_or_skip {
    ($tag:expr) => {
        match common::scratch($tag) {
            Some(s) => s,
            None => return,
        }
    };
}

/// A scratch root with a busybox image tagged `bb`, for tests that run jails; `None`
/// (skip) without a pool or root, a failure instead when `KLEENE_REQUIRE_ZFS=1`.
pub async fn busybox_engine(tag: &str) -> Option<(Scratch, kleene_core::Engine)> {
    use kleene_core::{BaseSource, CreateImage, Engine, Events};
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but not root: jails need root"
        );
        eprintln!("skipped: jails need root");
        return None;
    }
    let s = scratch(tag)?;
    let engine = Engine::open(s.config.clone()).await.unwrap();
    let tarball = s.busybox_rootfs();
    engine
        .create_base_image(
            CreateImage::new(BaseSource::Fetch {
                url: tarball.display().to_string(),
                sha256: None,
            })
            .tag("bb"),
            Events::none(),
        )
        .await
        .unwrap();
    Some((s, engine))
}

/// The datasets directly below `<root>/<child>` (e.g. every image dataset).
pub fn datasets_below(root: &DatasetName, child: &str) -> Vec<String> {
    let zfs = Zfs::open();
    let r = root.child(child).unwrap();
    zfs.list_datasets(&r, Depth::Children, &[])
        .unwrap()
        .into_iter()
        .map(|d| d.name.to_string())
        .filter(|d| d != r.as_str())
        .collect()
}

/// A layout `img` in `dir` with `img:a` (two layers) and `img:b` (the same two and a
/// third).
pub fn two_images(dir: &Path) -> PathBuf {
    kleene_oci::testing::umoci(dir, &["init", "--layout", "img"]);
    kleene_oci::testing::umoci(dir, &["new", "--image", "img:a"]);
    kleene_oci::testing::umoci(dir, &["unpack", "--rootless", "--image", "img:a", "bundle"]);
    let r = dir.join("bundle/rootfs");
    let repack = |tag: &str| {
        kleene_oci::testing::umoci(
            dir,
            &[
                "repack",
                "--refresh-bundle",
                "--image",
                &format!("img:{tag}"),
                "bundle",
            ],
        )
    };
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/base"), "base\n").unwrap();
    std::fs::write(r.join("etc/gone"), "gone\n").unwrap();
    repack("a");
    std::fs::write(r.join("etc/second"), "second\n").unwrap();
    std::fs::remove_file(r.join("etc/gone")).unwrap();
    repack("a");
    // Layer 3 of b only.
    std::fs::write(r.join("etc/third"), "third\n").unwrap();
    repack("b");
    kleene_oci::testing::umoci(
        dir,
        &["config", "--image", "img:b", "--config.cmd", "/bin/b"],
    );
    dir.join("img")
}
