#![allow(dead_code)] // each test binary uses a part of it
//! Where BuildKit's parser cases are: the copy vendored in `tests/fixtures/buildkit`
//! (always), and, as extra sources when present, `$KLEENE_BUILDKIT_TESTS` and the project's
//! `../shared/peer-tests/buildkit-dockerfile`. An extra source that holds the same files as
//! the vendored copy is not run twice.

use std::path::{Path, PathBuf};

/// The vendored cases.
pub fn vendored() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/buildkit")
}

/// Every directory of cases to run, the vendored one first.
pub fn case_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![vendored()];
    let extra = std::env::var_os("KLEENE_BUILDKIT_TESTS")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/peer-tests/buildkit-dockerfile"),
        ));
    for dir in extra {
        if dir.join("testfiles").is_dir() && !same_cases(&dirs[0], &dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Whether two case directories hold the same files with the same contents.
fn same_cases(a: &Path, b: &Path) -> bool {
    fn files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files(root, &p, out);
            } else if let (Ok(rel), Ok(data)) = (p.strip_prefix(root), std::fs::read(&p)) {
                out.push((rel.to_path_buf(), data));
            }
        }
    }
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    files(a, a, &mut fa);
    files(b, b, &mut fb);
    fa.sort();
    fb.sort();
    fa == fb
}
