//! A kleened daemon per test on a fresh root below the pool named by `KLEENE_TEST_POOL`
//! and a socket in a temp dir; skipped without a pool, unless `KLEENE_REQUIRE_ZFS=1`,
//! where the test fails. Raw HTTP over the socket, and the PyPI klee client.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kleene_core::kleene_zfs::DatasetName;
use kleene_core::{BaseSource, CreateImage, Engine, Events, Image};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub const KLEENED: &str = env!("CARGO_BIN_EXE_kleened");

pub fn required() -> bool {
    std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1")
}

pub fn pool() -> Option<String> {
    match std::env::var("KLEENE_TEST_POOL") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                !required(),
                "KLEENE_REQUIRE_ZFS=1 but KLEENE_TEST_POOL is not set"
            );
            eprintln!("skipped: KLEENE_TEST_POOL is not set (scripts/testpool.sh up makes one)");
            None
        }
    }
}

/// A running kleened.
pub struct Daemon {
    pub root: DatasetName,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

/// Starts kleened on `<pool>/kdt-<pid>-<n>-<tag>` with a Unix socket in a temp dir;
/// `None` (skipped) without a pool.
pub fn daemon(tag: &str) -> Option<Daemon> {
    start_daemon(tag, "", None)
}

impl Daemon {
    /// Stops kleened with SIGTERM and starts it again on the same root and socket.
    pub fn restart(&mut self) {
        let mut child = self.child.take().expect("the daemon runs");
        let _ = nix_kill_term(child.id());
        let _ = child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("kleened.log"))
            .unwrap();
        let child = Command::new(KLEENED)
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "kleened exited with {status} before listening: {}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "kleened did not listen within 120 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kleened.log")).unwrap_or_default()
    }

    /// One request, `Connection: close`; the status and the body.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.http_with(method, path, body, Some("application/json"))
    }

    pub fn http_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: Option<&str>,
    ) -> (u16, String) {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let body = body.unwrap_or("");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if let Some(ct) = content_type.filter(|_| !body.is_empty()) {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        (status, body)
    }

    /// A request whose body is JSON; the status and the parsed body.
    pub fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let (status, text) = self.http(method, path, body);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} {text:?} is not JSON: {e}"));
        (status, value)
    }

    /// An engine on the daemon's root, in this process (containers' monitors are the
    /// kleened binary, which calls kleene_core::init first).
    pub async fn engine(&self) -> Engine {
        let mut config = kleene_core::Config::new(self.root.clone());
        config.monitor = Some(KLEENED.into());
        let resolv = self.dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
        config.resolv_conf = resolv;
        Engine::open(config).await.unwrap()
    }

    /// A busybox image tagged `nametag`, made through kleene-core's API.
    pub async fn busybox_image(&self, engine: &Engine, nametag: &str) -> Image {
        let tar = self.dir.path().join("busybox.tar");
        if !tar.exists() {
            write_busybox_rootfs(&tar);
        }
        let req = CreateImage::new(BaseSource::Fetch {
            url: format!("file://{}", tar.display()),
            sha256: None,
        })
        .tag(nametag);
        engine.create_base_image(req, Events::none()).await.unwrap()
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Containers outlive the daemon: a test that failed half-way must not leave its
        // running ones behind (their datasets are destroyed below).
        if self.child.is_some() && UnixStream::connect(&self.socket).is_ok() {
            let running = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.json("GET", "/containers/list", None).1
            }));
            if let Ok(serde_json::Value::Array(list)) = running {
                for c in list {
                    if let Some(id) = c["id"].as_str() {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.http("POST", &format!("/containers/{id}/stop"), None)
                        }));
                    }
                }
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // zfs-fuse answers "busy" for a moment after an unmount: retry.
        for _ in 0..40 {
            let out = Command::new("zfs")
                .args(["destroy", "-R", "-f"])
                .arg(self.root.to_string())
                .output();
            match out {
                Ok(o) if o.status.success() => return,
                Ok(o) if String::from_utf8_lossy(&o.stderr).contains("does not exist") => return,
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        eprintln!("warning: could not destroy {}", self.root);
    }
}

/// A busybox rootfs tarball (from Debian's busybox-static), as kleene-cli's tests write it.
pub fn write_busybox_rootfs(path: &Path) {
    let busybox =
        std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    for d in ["bin", "etc", "tmp", "root", "var", "srv", "data"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let mut file = |path: &str, data: &[u8], mode: u32| {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    file("bin/busybox", &busybox, 0o755);
    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    file("etc/group", b"root:x:0:\n", 0o644);
    for applet in ["sh", "echo", "cat", "sleep", "true", "false", "ls"] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

// ---- the PyPI klee client ----

pub const KLEE_VERSION: &str = "kleene-cli==0.1.0rc4";

static VENV: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);

/// The workspace's `target/klee-venv` with the PyPI klee in it, made on first use.
fn make_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("klee-venv");
    let klee = venv.join("bin").join("klee");
    if klee.exists() {
        return Ok(klee);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin").join("pip")).args(["install", "-q", KLEE_VERSION]))?;
    if klee.exists() {
        Ok(klee)
    } else {
        Err(format!("{} is missing after pip install", klee.display()))
    }
}

/// The klee program; `None` (skipped) when the venv cannot be made, unless
/// `KLEENE_REQUIRE_ZFS=1`, where the test fails.
pub fn klee_program() -> Option<PathBuf> {
    let mut guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    let result = guard.get_or_insert_with(make_venv).clone();
    match result {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(
                !required(),
                "KLEENE_REQUIRE_ZFS=1 but the klee venv cannot be made: {e}"
            );
            eprintln!("skipped: the klee venv cannot be made ({e})");
            None
        }
    }
}

/// Runs `klee --host http://<socket> ARGS`, with a wide terminal and the simple theme.
pub fn klee(program: &Path, d: &Daemon, args: &[&str]) -> Output {
    Command::new(program)
        .arg("--host")
        .arg(format!("http://{}", d.socket.display()))
        .arg("--theme")
        .arg("simple")
        .args(args)
        .env("COLUMNS", "200")
        .env("HOME", d.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SIGTERM to process `pid`.
fn nix_kill_term(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM {pid}: {status}")))
    }
}

// ---- more sockets (tests/tls.rs, tests/networks.rs) ----

/// Starts kleened as [`daemon`] does, with the `api_listening_sockets` entries in
/// `sockets_yaml` (YAML list items, indented by two spaces) before its Unix socket, so
/// that they are bound once the Unix socket answers.
pub fn daemon_with_sockets(tag: &str, sockets_yaml: &str) -> Option<Daemon> {
    start_daemon(tag, sockets_yaml, None)
}

/// Starts kleened as [`daemon`] does, inside the network namespace `ns` (its Unix
/// socket is reachable from anywhere: it is a file).
pub fn daemon_in_netns(tag: &str, ns: &Netns) -> Option<Daemon> {
    start_daemon(tag, "", Some(ns))
}

fn start_daemon(tag: &str, sockets_yaml: &str, ns: Option<&Netns>) -> Option<Daemon> {
    let pool = pool()?;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let root = DatasetName::new(format!("{pool}/kdt-{}-{n}-{tag}", std::process::id())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kleened.sock");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "kleene_root: \"{root}\"\napi_listening_sockets:\n{sockets_yaml}  - address: \"http://{}\"\nenable_logging: false\nlog_level: \"info\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("kleened.log")).unwrap();
    // nsenter execs kleened: the child is kleened itself, which SIGTERM stops.
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.path().display())).arg(KLEENED);
            c
        }
        None => Command::new(KLEENED),
    };
    let child = cmd
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = Daemon {
        root,
        dir,
        socket,
        child: Some(child),
    };
    d.wait_ready();
    Some(d)
}

/// A network namespace of the test's own (`ip netns add`), with only `lo` up: kleened's
/// bridges and nftables tables are made there, never on the real host. Deleted (after
/// SIGKILL of what still runs in it) when dropped. `None` (skip) without `ip`, `nft` or
/// `nsenter`, unless `KLEENE_REQUIRE_ZFS=1`, where that fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Option<Netns> {
        for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("nsenter", "--version")] {
            let ok = Command::new(tool)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                assert!(!required(), "KLEENE_REQUIRE_ZFS=1 but {tool} is missing");
                eprintln!("skipped: {tool} is missing");
                return None;
            }
        }
        let ns = Netns {
            name: format!("kdn-{}-{tag}", std::process::id()),
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        Some(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n NS ARGS`: its output, or `None` on failure.
    pub fn ip(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Daemon {
    /// The addresses kleened logged "listening on" for, in the order of the
    /// configuration (`https://127.0.0.1:40123`, `http:///tmp/.../kleened.sock`).
    pub fn listening(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                l.split_once("listening on ")
                    .map(|(_, a)| a.trim().to_string())
            })
            .collect()
    }

    /// Whether the kleened process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}
