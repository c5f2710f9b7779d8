//! What the podman and containerd tests share: the skip-or-fail rule, runc, a busybox
//! root file system, and clean-up of the mounts podman's and containerd's storage leave.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// runc's path, if installed.
pub fn runc() -> Option<&'static str> {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Whether the test can run: root, runc, busybox and `programs` (each with the Debian
/// package that has it). Panics (fails the test) when something is missing and
/// KLEENE_REQUIRE_ZFS=1 (as CI sets it); otherwise says why it skips.
pub fn can_run(what: &str, programs: &[(&str, &str)]) -> bool {
    let required = std::env::var("KLEENE_REQUIRE_ZFS").is_ok_and(|v| v == "1");
    let missing = programs
        .iter()
        .find(|(p, _)| Command::new(p).arg("--version").output().is_err());
    let why = if !nix::unistd::geteuid().is_root() {
        Some(format!("{what} tests need root"))
    } else if let Some((p, package)) = missing {
        Some(format!("{what} tests need {p} (Debian package {package})"))
    } else if runc().is_none() {
        Some(format!(
            "{what} tests need runc to compare with (Debian package runc)"
        ))
    } else if !Path::new("/bin/busybox").exists() {
        Some(format!(
            "{what} tests need /bin/busybox (Debian package busybox-static)"
        ))
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if required => panic!("{why} (KLEENE_REQUIRE_ZFS=1)"),
        Some(why) => {
            eprintln!("skipping: {why}");
            false
        }
    }
}

/// kleene-runtime, as built for the tests.
pub fn ours() -> &'static str {
    env!("CARGO_BIN_EXE_kleene-runtime")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A busybox root file system at `dir/rootfs` with `applets` linked, a root user, and
/// its tar at `dir/rootfs.tar`: the tar's path.
pub fn busybox_tar(dir: &Path, applets: &[&str]) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox");
    for a in applets {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("symlink");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("write");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("write");
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar: {}", text(&out.stderr));
    tar
}

/// Detaches every mount below `dir` (deepest first): what podman's and containerd's
/// storage and shims leave there.
pub fn umount_below(dir: &Path) {
    let dir = dir.to_string_lossy().into_owned();
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&dir))
        .map(PathBuf::from)
        .collect();
    points.sort();
    for p in points.iter().rev() {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}
