//! Property tests against escapes: random trees of directories, files and symlinks
//! (relative and absolute, loops, ones climbing above the root, ones naming the real
//! directory beside the root by its host path) and random paths with `..` and `.`.
//!
//! Each case checks, for every path and policy, that the crate agrees with a pure model
//! of resolution (same real path, or the same kind of error), that every descriptor it
//! gives is of an inode inside the root, that `mkdir -p` and `write_file` change the tree
//! exactly as the model does, and that nothing beside the root changes. On Linux the model
//! is itself checked against the kernel's `openat2(RESOLVE_IN_ROOT)`.

mod harness;

use harness::{Case, Entry, Kind, Target, NAMES, PARTS};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&NAMES[..3]).prop_map(str::to_string),
        1 => Just(".zfs".to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(PARTS), 1..6),
    )
        .prop_map(|(abs, parts)| {
            let mut t = parts.join("/");
            if abs {
                t.insert(0, '/');
            }
            if t.is_empty() {
                t.push('.');
            }
            t
        })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Dir),
        2 => Just(Kind::File),
        4 => text().prop_map(|t| Kind::Link(Target::Text(t))),
        1 => prop::sample::select(&["", "/a", "/sentinel", "/.."][..])
            .prop_map(|s| Kind::Link(Target::Outside(s.to_string()))),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (prop::collection::vec(name(), 1..4), kind())
                .prop_map(|(path, kind)| Entry { path, kind }),
            0..28,
        ),
        prop::collection::vec(text(), 1..8),
    )
        .prop_map(|(entries, paths)| Case { entries, paths })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// The crate against the model (and the model against the kernel), on random trees.
    #[test]
    fn resolution_matches_the_model_and_stays_inside(c in case()) {
        harness::check(&c);
    }
}

/// Hand-written cases the random ones might take long to find.
#[test]
fn known_tricky_trees() {
    let link = |p: &str, t: &str| Entry {
        path: p.split('/').map(str::to_string).collect(),
        kind: Kind::Link(Target::Text(t.to_string())),
    };
    let dir = |p: &str| Entry {
        path: p.split('/').map(str::to_string).collect(),
        kind: Kind::Dir,
    };
    let paths = |ps: &[&str]| ps.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for c in [
        // Each link alone stays inside; together they climb out.
        Case {
            entries: vec![dir("a"), link("a/b", ".."), link("a/c", "b/..")],
            paths: paths(&["a/c/outside/sentinel", "a/c", "a/b/a/b/a/b"]),
        },
        // Loops, direct and through a directory.
        Case {
            entries: vec![
                link("a", "b"),
                link("b", "a"),
                dir("c"),
                link("c/a", "../c/a"),
            ],
            paths: paths(&["a/x", "c/a", "c/a/", "b"]),
        },
        // Links to `.`, `/` and `..` at the top.
        Case {
            entries: vec![link("a", "."), link("b", "/"), link("c", "..")],
            paths: paths(&["a/a/a/b/c", "b/../b", "c/outside/sentinel", "a/../b"]),
        },
        // Dangling links made by mkdir -p; a link to .zfs.
        Case {
            entries: vec![link("a", "/b/c"), link("c", ".zfs"), dir("b")],
            paths: paths(&["a/x", "c/snapshot/x", "/.zfs", "b/.zfs"]),
        },
        // The real outside by its host path.
        Case {
            entries: vec![Entry {
                path: vec!["a".into()],
                kind: Kind::Link(Target::Outside("/a".into())),
            }],
            paths: paths(&["a/sentinel", "a", "a/x/y"]),
        },
    ] {
        harness::check(&c);
    }
}
