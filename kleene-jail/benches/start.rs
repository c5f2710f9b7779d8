//! Start + wait of `/bin/true` in a jail, and what the parts cost: a network namespace
//! (Disabled vs Inherit), the minimal /dev, dying with the owner (the default) or not, and
//! an exec into a running jail.
//! Needs root and /bin/busybox (busybox-static); prints why and does nothing otherwise.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use kleene_jail::{ExecConfig, JailConfig, NetworkMode, Stdio};

fn make_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("make the root");
    std::fs::create_dir_all(root.join("etc")).expect("make the root");
    if std::fs::hard_link("/bin/busybox", root.join("bin/busybox")).is_err() {
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    }
    for a in ["true", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("link applet");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    root
}

fn bench(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping the jail benchmarks: they need root and /bin/busybox");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = make_root(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let base = JailConfig::new(&root)
        .command(["/bin/true"])
        .stdin(Stdio::Null);
    let mut group = c.benchmark_group("start_wait_true");
    for (name, cfg) in [
        ("inherit", base.clone()),
        ("disabled_net", base.clone().network(NetworkMode::Disabled)),
        ("inherit_no_devfs", base.clone().devfs(false)),
        ("inherit_unowned", base.clone().kill_with_owner(false)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut jail = cfg.start().await.expect("start");
                    assert!(jail.wait().await.expect("wait").success());
                })
            })
        });
    }
    group.finish();

    let mut jail = rt
        .block_on(JailConfig::new(&root).command(["sleep", "1000"]).start())
        .expect("start a jail to exec into");
    let exec = ExecConfig::new(["/bin/true"]).stdin(Stdio::Null);
    c.bench_function("exec_true", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut p = jail.exec(&exec).await.expect("exec");
                assert!(p.wait().await.expect("wait").success());
            })
        })
    });
    let unowned = exec.clone().kill_with_owner(false);
    c.bench_function("exec_true_unowned", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut p = jail.exec(&unowned).await.expect("exec");
                assert!(p.wait().await.expect("wait").success());
            })
        })
    });
    rt.block_on(jail.stop(std::time::Duration::from_millis(10)))
        .expect("stop");
}

criterion_group!(benches, bench);
criterion_main!(benches);
