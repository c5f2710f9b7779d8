//! Parse throughput over BuildKit's Dockerfile corpus: this crate's syntax
//! tree, its typed layer, and the `parse-dockerfile` crate on the same input.
//!
//! `cargo bench -p kleene-dockerfile -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus() -> Vec<String> {
    // The vendored BuildKit cases, or another copy named by `$KLEENE_BUILDKIT_TESTS`.
    let dir = match std::env::var_os("KLEENE_BUILDKIT_TESTS") {
        Some(d) => std::path::PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buildkit"),
    };
    let mut files: Vec<_> = std::fs::read_dir(dir.join("testfiles"))
        .expect("the BuildKit corpus: tests/fixtures/buildkit or $KLEENE_BUILDKIT_TESTS")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("Dockerfile"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let bytes: usize = files.iter().map(String::len).sum();
    let mut group = c.benchmark_group("parse-corpus");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("kleene-dockerfile syntax tree", |b| {
        b.iter(|| {
            for f in &files {
                let _ = black_box(kleene_dockerfile::parse_syntax(black_box(f)));
            }
        })
    });
    group.bench_function("kleene-dockerfile typed", |b| {
        b.iter(|| {
            for f in &files {
                let _ = black_box(kleene_dockerfile::parse(black_box(f)));
            }
        })
    });
    group.bench_function("parse-dockerfile", |b| {
        b.iter(|| {
            for f in &files {
                let _ = black_box(parse_dockerfile::parse(black_box(f)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
