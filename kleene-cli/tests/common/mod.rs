//! A scratch root dataset per test (`<pool>/kcl-<pid>-<n>`, destroyed after), the `klee`
//! binary, and a busybox base image. Without a pool (or root, for containers) the tests
//! skip with a reason, unless `KLEENE_REQUIRE_ZFS=1`, where they fail.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kleene_core::kleene_zfs::{DatasetName, Depth, Zfs};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long one klee command may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(180);

pub fn required() -> bool {
    std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1")
}

/// The `klee` binary under test.
pub fn klee_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_klee"))
}

/// A `klee` command with no root or config from the environment. It needs nothing else:
/// klee runs its containers' monitors itself.
pub fn klee() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::from_std(klee_process());
    cmd.timeout(TIMEOUT);
    cmd
}

/// The process [`klee`] runs, as a `std::process::Command`, for tests that spawn klee and
/// signal it (tests/faults.rs): the same binary and environment.
pub fn klee_process() -> std::process::Command {
    let mut cmd = std::process::Command::new(klee_path());
    cmd.env_remove("KLEENE_ROOT").env_remove("KLEE_THEME");
    // Embedded: no kleened from the environment.
    for var in [
        "KLEE_HOST",
        "KLEE_TLS_VERIFY",
        "KLEE_TLS_CERT",
        "KLEE_TLS_KEY",
        "KLEE_TLS_CACERT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The test pool, or `None` (skip) when there is none and it is not required.
pub fn pool() -> Option<String> {
    match std::env::var("KLEENE_TEST_POOL") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                !required(),
                "KLEENE_REQUIRE_ZFS=1 but KLEENE_TEST_POOL is not set"
            );
            eprintln!("skipped: KLEENE_TEST_POOL is not set (scripts/testpool.sh up makes one)");
            None
        }
    }
}

/// A root dataset of its own for one test.
pub struct Scratch {
    pub root: String,
    pub dir: tempfile::TempDir,
}

/// A scratch root, or `None` (skip).
pub fn scratch() -> Option<Scratch> {
    let pool = pool()?;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    Some(Scratch {
        root: format!("{pool}/kcl-{}-{n}", std::process::id()),
        dir: tempfile::tempdir().unwrap(),
    })
}

/// A scratch root for tests that run containers (namespaces need root), or `None` (skip).
pub fn scratch_for_containers() -> Option<Scratch> {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            !required(),
            "KLEENE_REQUIRE_ZFS=1 but the tests do not run as root"
        );
        eprintln!("skipped: running containers needs root");
        return None;
    }
    scratch()
}

impl Scratch {
    /// `klee --root <root> ARGS...`.
    pub fn klee<I, S>(&self, args: I) -> assert_cmd::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = klee();
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// Runs klee, expects success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.klee(args).output().unwrap();
        assert!(
            out.status.success(),
            "klee {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A busybox rootfs tarball (from Debian's busybox-static).
    pub fn busybox_rootfs(&self) -> PathBuf {
        let path = self.dir.path().join("busybox.tar");
        write_busybox_rootfs(&path);
        path
    }

    /// Creates the base image `bb` from the busybox rootfs; its id.
    pub fn busybox_image(&self) -> String {
        let tar = self.busybox_rootfs();
        let url = format!("file://{}", tar.display());
        let out = self.ok(&["image", "create", "-t", "bb", "fetch", &url]);
        // klee prints its progress on stdout too; the id comes last.
        let id = out.lines().last().unwrap_or_default().to_string();
        assert_eq!(id.len(), 12, "an image id: {out:?}");
        id
    }

    /// Whether a dataset exists.
    pub fn exists(&self, dataset: &str) -> bool {
        Zfs::open()
            .exists(&DatasetName::new(dataset).unwrap())
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Containers may still run: stop them through klee, then destroy clones first.
        let _ = klee()
            .args(["--root", &self.root, "container", "prune", "-f"])
            .output();
        if let Ok(out) = klee()
            .args(["--root", &self.root, "lsc", "--format", "json"])
            .output()
        {
            if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) {
                for c in list {
                    if let Some(id) = c["id"].as_str() {
                        let _ = klee()
                            .args(["--root", &self.root, "rmc", "-f", id])
                            .output();
                    }
                }
            }
        }
        let zfs = Zfs::open();
        let Ok(root) = DatasetName::new(self.root.as_str()) else {
            return;
        };
        if let Ok(all) = zfs.list_datasets(&root, Depth::All, &["origin"]) {
            for d in all.iter().rev() {
                if d.properties.get("origin").is_some() {
                    let _ = zfs.destroy(&d.name, true);
                }
            }
        }
        if let Err(e) = zfs.destroy(&root, true) {
            if !e.is_not_found() {
                eprintln!("warning: could not destroy {root}: {e}");
            }
        }
    }
}

/// Writes a busybox root file system as a tar archive: /bin/busybox with applet links,
/// /etc/passwd and /etc/group, and empty directories.
pub fn write_busybox_rootfs(path: &Path) {
    let busybox =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    for d in ["bin", "etc", "tmp", "root", "var", "srv", "data"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let mut file = |path: &str, data: &[u8], mode: u32| {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    file("bin/busybox", &busybox, 0o755);
    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    file("etc/group", b"root:x:0:\n", 0o644);
    file("srv/seed.txt", b"seeded from the image", 0o644);
    // A stand-in for FreeBSD's /etc/rc (a base image's command): it starts a service in
    // the background and exits, so the container runs on, as Kleene's do.
    file(
        "etc/rc",
        b"#!/bin/sh\n# A stand-in for FreeBSD's /etc/rc.\necho 'Starting sleepd.'\nsleep 3600 > /dev/null 2>&1 &\n",
        0o755,
    );
    for applet in [
        "sh", "echo", "cat", "sleep", "true", "false", "id", "ls", "env", "pwd", "touch", "test",
        "mkdir", "rm", "wc", "grep",
    ] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// Stdout and stderr of an output, as text.
pub fn texts(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[macro_export]
macro_rules! scratch_or_skip {
    () => {
        match common::scratch() {
            Some(s) => s,
            None => return,
        }
    };
    (containers) => {
        match common::scratch_for_containers() {
            Some(s) => s,
            None => return,
        }
    };
}
