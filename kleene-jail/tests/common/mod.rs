//! What the jail test files share.
#![allow(dead_code)]

use std::path::Path;

/// Whether a test of `what` can run (root, busybox-static, and `more` answering `None`);
/// fails the test (panics) when something is missing and KLEENE_REQUIRE_ZFS=1 (as CI sets
/// it), else says why it skips.
pub fn can_run(what: &str, more: impl FnOnce() -> Option<String>) -> bool {
    let required = std::env::var("KLEENE_REQUIRE_ZFS").is_ok_and(|v| v == "1");
    let why = if !nix::unistd::geteuid().is_root() {
        Some(format!("{what} tests need root"))
    } else if !Path::new("/bin/busybox").exists() {
        Some(format!(
            "{what} tests need /bin/busybox (Debian package busybox-static)"
        ))
    } else {
        more()
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
