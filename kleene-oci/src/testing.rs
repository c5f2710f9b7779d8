//! Helpers for tests against umoci, the independent OCI implementation this project's
//! tests compare with (feature `testing`).

use std::path::Path;
use std::process::Command;

/// Whether umoci is installed. Without it a test skips, saying so, unless
/// `KLEENE_REQUIRE_ZFS=1` (CI), where this panics: CI installs it.
pub fn have_umoci() -> bool {
    let have = Command::new("umoci")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but umoci is not installed (apt-get install umoci)"
        );
        eprintln!("skipped: umoci is not installed");
    }
    have
}

/// Runs `umoci ARGS` in `dir`; panics with its stderr when it fails.
pub fn umoci(dir: &Path, args: &[&str]) {
    let out = Command::new("umoci")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("umoci runs");
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
