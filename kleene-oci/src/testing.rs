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

/// Whether the program `name` is on `PATH`. Without it a test skips, saying so, unless
/// `KLEENE_REQUIRE_ZFS=1` (CI), where this panics: CI installs it.
pub fn have_tool(name: &str) -> bool {
    let have = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()));
    if !have {
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "KLEENE_REQUIRE_ZFS=1 but {name} is not installed"
        );
        eprintln!("skipped: {name} is not installed");
    }
    have
}

/// Runs `skopeo ARGS`; panics with its stderr when it fails; its stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A `docker-registry` (Debian's distribution/distribution 2.x) on `127.0.0.1` at a
/// free port, storing into a temporary directory, with deletes enabled; killed (and its
/// storage removed) when dropped.
#[derive(Debug)]
pub struct Registry {
    child: std::process::Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers. `None` (after saying
    /// "skipped: ...") when docker-registry is not installed, unless
    /// `KLEENE_REQUIRE_ZFS=1`, where that panics.
    pub fn start() -> Option<Registry> {
        if !have_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kleene-registry-")
            .tempdir()
            .expect("a temporary directory for the registry");
        let mut last = String::new();
        // A port found free may be taken before the registry binds it: try again.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port on 127.0.0.1")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n",
                    dir.path().join("storage").display()
                ),
            )
            .expect("writing the registry's config");
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .expect("creating the registry's log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone().expect("the log file again"))
                .stderr(log)
                .spawn()
                .expect("docker-registry starts");
            if wait_ready(&mut child, &addr) {
                return Some(Registry { child, addr, dir });
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps a blob's bytes (to tamper with them).
    pub fn blob_data(&self, digest: &crate::Digest) -> std::path::PathBuf {
        let hex = digest.hex();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the registry at `addr` answers `/v2/` (false when it exits, or after
/// 15 s).
fn wait_ready(child: &mut std::process::Child, addr: &str) -> bool {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                return true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
