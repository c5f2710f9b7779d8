//! A directory on the way swapped, again and again, for a symlink to the outside while
//! paths through it are resolved, created and written: the `*at` walk holds each
//! directory it enters, so whichever it meets, it never reaches the outside.

#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kleene_rootfs::{Mkdir, OFlags, RootDir, Symlinks};

mod harness;
use rustix::fs::{renameat_with, RenameFlags, CWD};

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        let data = if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("listing") {
                stack.push(e.expect("an entry").path());
            }
            Vec::new()
        } else {
            std::fs::read(&p).expect("reading")
        };
        out.push((p.display().to_string(), data));
    }
    out.sort();
    out
}

#[test]
fn swapping_a_directory_for_a_symlink_never_leads_outside() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("a/b")).expect("making the root");
    std::fs::create_dir_all(outside.join("b")).expect("making the outside");
    std::fs::write(outside.join("b/f"), b"precious").expect("the sentinel");
    // `a` is exchanged with one of these in turn.
    std::os::unix::fs::symlink(&outside, root.join("abs")).expect("a symlink");
    std::os::unix::fs::symlink("../outside", root.join("rel")).expect("a symlink");
    std::os::unix::fs::symlink("../../outside", root.join("deep")).expect("a symlink");
    let before = listing(&outside);
    let outside_inodes = harness::Sandbox::inodes(&outside);

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, root) = (Arc::clone(&stop), root.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            for other in ["abs", "rel", "deep"].iter().cycle() {
                if stop.load(Ordering::Relaxed) || swaps > 2_000_000 {
                    break;
                }
                for _ in 0..2 {
                    renameat_with(
                        CWD,
                        root.join("a"),
                        CWD,
                        root.join(other),
                        RenameFlags::EXCHANGE,
                    )
                    .expect("exchanging a directory and a symlink");
                    swaps += 1;
                }
            }
            swaps
        })
    };

    let dir = RootDir::open(&root).expect("opening the root");
    let (mut ok, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    let mut rounds = 0u64;
    while rounds < 20_000 && start.elapsed() < Duration::from_secs(20) {
        rounds += 1;
        for policy in [
            Symlinks::Refuse,
            Symlinks::FollowBeneath,
            Symlinks::FollowInRoot,
        ] {
            let results = [
                dir.resolve_dir("a/b/new", policy, Some(Mkdir::default()))
                    .map(|r| r.fd),
                dir.create_file("a/b/f", policy, None),
                dir.open_file("a/b/f", policy, OFlags::RDONLY, 0),
                dir.open_dir("a/b", policy, false),
            ];
            for r in results {
                match r {
                    Ok(fd) => {
                        let st = rustix::fs::fstat(&fd).expect("fstat");
                        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
                        let id = (st.st_dev as u64, st.st_ino as u64);
                        assert!(
                            !outside_inodes.contains(&id),
                            "opened {id:?} outside the root"
                        );
                        ok += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        if rounds >= 200 && ok > 0 && refused > 0 && start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapper");
    eprintln!("{rounds} rounds, {swaps} swaps: {ok} opened inside, {refused} failed");
    assert!(ok > 0 && refused > 0, "the race never showed both sides");
    assert_eq!(listing(&outside), before, "the outside changed");
    assert!(!outside.join("new").exists() && !outside.join("b/new").exists());
}
