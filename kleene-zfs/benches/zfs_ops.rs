//! Latency of the operations a container's life is made of: snapshot, clone, destroy.
//!
//! `KLEENE_TEST_POOL=kleenetest cargo bench -p kleene-zfs --bench zfs_ops`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kleene_zfs::{DatasetName, Properties, Zfs};

static N: AtomicU64 = AtomicU64::new(0);

fn next(root: &DatasetName, prefix: &str) -> DatasetName {
    root.child(&format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed)))
        .expect("bench names are valid")
}

fn bench(c: &mut Criterion) {
    let Ok(pool) = std::env::var("KLEENE_TEST_POOL") else {
        eprintln!("zfs_ops bench: set KLEENE_TEST_POOL to a test pool (scripts/testpool.sh up)");
        return;
    };
    let zfs = Zfs::open();
    let none = Properties::new();
    let root = DatasetName::new(pool)
        .and_then(|p| p.child(&format!("kzb-{}", std::process::id())))
        .expect("pool name is valid");
    zfs.create(&root, &none).expect("create bench root");
    let image = root.child("image").expect("valid");
    zfs.create(&image, &none).expect("create image");
    let snap = image.snapshot("image").expect("valid");
    zfs.snapshot(&snap, &none).expect("snapshot image");

    let mut g = c.benchmark_group("zfs");
    g.sample_size(20).measurement_time(Duration::from_secs(10));

    g.bench_function("snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let s = image
                    .snapshot(&format!("s{}", N.fetch_add(1, Ordering::Relaxed)))
                    .expect("valid");
                let t = Instant::now();
                zfs.snapshot(&s, &none).expect("snapshot");
                total += t.elapsed();
                zfs.destroy_snapshot(&s).expect("destroy snapshot");
            }
            total
        })
    });

    g.bench_function("clone", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = next(&root, "c");
                let t = Instant::now();
                zfs.clone_snapshot(&snap, &target, &none).expect("clone");
                total += t.elapsed();
                zfs.destroy(&target, false).expect("destroy clone");
            }
            total
        })
    });

    g.bench_function("destroy clone", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let target = next(&root, "d");
                zfs.clone_snapshot(&snap, &target, &none).expect("clone");
                let t = Instant::now();
                zfs.destroy(&target, false).expect("destroy clone");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();

    if let Err(e) = zfs.destroy(&root, true) {
        eprintln!("could not clean up {root}: {e}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
