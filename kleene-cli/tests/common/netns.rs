//! A lab of two network namespaces for the network tests (tests/network.rs): `host`,
//! where every klee of the test runs (`nsenter --net=/run/netns/HOST klee ...`) and where
//! the engine makes its bridges, veths and nftables table, and `out`, an outside peer
//! linked to it by a veth:
//!
//! ```text
//!   [containers] -- kleeneN (bridge) -- HOST: up0 10.99.0.1/24 ==veth== out0 10.99.0.2/24 :OUT
//! ```
//!
//! HOST's default route goes to 10.99.0.2, so "the outside" is OUT and nothing a test does
//! reaches the real host's interfaces, routes or firewall. Both namespaces are removed
//! (after SIGKILL of whatever still runs in them) when the [`Lab`] is dropped, also on a
//! panic; the engine root is emptied through klee in HOST first, and the [`Scratch`]'s own
//! drop (which runs klee) runs on a thread that has joined HOST too.
//!
//! Every process is bounded: [`run`] kills what outlives its deadline.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Scratch;

/// The host namespace's address on the link to the outside peer.
pub const HOST_ADDR: &str = "10.99.0.1";
/// The outside peer's address.
pub const OUT_ADDR: &str = "10.99.0.2";

/// How long one klee command may take.
pub const KLEE_LIMIT: Duration = Duration::from_secs(60);
/// How long a probe (wget, a client container) may take; it has its own `timeout` inside.
pub const PROBE_LIMIT: Duration = Duration::from_secs(20);

static SEQ: AtomicU32 = AtomicU32::new(0);

fn required() -> bool {
    std::env::var("KLEENE_REQUIRE_ZFS").as_deref() == Ok("1")
}

/// What a finished (or killed) process printed.
#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Out {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: {}{} after {:.2} s\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.what,
            self.status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no status".into()),
            if self.timed_out {
                " (TIMED OUT, killed)"
            } else {
                ""
            },
            self.took.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (stdin: `input`, or nothing) with its output in files under `logs`; kills it
/// when it takes longer than `limit`.
pub fn run(mut cmd: Command, input: Option<&[u8]>, logs: &Path, limit: Duration) -> Out {
    let what = format!("{cmd:?}");
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let out_path = logs.join(format!("p{n}.out"));
    let err_path = logs.join(format!("p{n}.err"));
    cmd.stdout(File::create(&out_path).expect("an output file"))
        .stderr(File::create(&err_path).expect("an output file"))
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(data);
    }
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > limit => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    Out {
        what,
        status,
        timed_out,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// `ip ARGS` in the test's own (real) namespace, for building the lab only; panics on failure.
fn ip(args: &[&str], logs: &Path) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = run(cmd, None, logs, Duration::from_secs(10));
    assert!(out.success(), "building the lab failed: {out}");
}

/// Whether a tool runs (`TOOL --version` or similar).
fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `f` on a new thread that joined the network namespace at `ns` (a path); sockets
/// made there stay in that namespace. `None` if the namespace cannot be joined.
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let file = File::open(&ns).ok()?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        Some(f())
    })
    .join()
    .ok()
    .flatten()
}

/// A pair of namespaces with a klee root of its own.
pub struct Lab {
    /// The namespace klee runs in.
    pub host: String,
    /// The outside peer.
    pub out: String,
    scratch: Option<Scratch>,
    /// Where process outputs (and test files) go.
    pub logs: PathBuf,
    _logs_dir: tempfile::TempDir,
    made: Vec<String>,
    servers: Vec<std::process::Child>,
    tag: String,
    started: Instant,
}

impl Lab {
    /// A lab for test `tag` (unique per test); `None` (skip) without root, a pool, nft or
    /// ip, unless `KLEENE_REQUIRE_ZFS=1`, where that fails.
    pub fn new(tag: &str) -> Option<Lab> {
        let scratch = crate::common::scratch_for_containers()?;
        for (tool, arg) in [("nft", "--version"), ("ip", "-V"), ("nsenter", "--version")] {
            if !have(tool, arg) {
                assert!(!required(), "KLEENE_REQUIRE_ZFS=1 but {tool} is missing");
                eprintln!("skipped: {tool} is missing");
                return None;
            }
        }
        assert!(
            Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists(),
            "busybox is needed for the outside peer"
        );
        let pid = std::process::id();
        let logs_dir = tempfile::tempdir().expect("a temporary directory");
        let logs = logs_dir.path().to_path_buf();
        let mut lab = Lab {
            host: format!("kth-{pid}-{tag}"),
            out: format!("kto-{pid}-{tag}"),
            scratch: Some(scratch),
            logs,
            _logs_dir: logs_dir,
            made: Vec::new(),
            servers: Vec::new(),
            tag: tag.to_string(),
            started: Instant::now(),
        };
        let (h, o) = (lab.host.clone(), lab.out.clone());
        let logs = lab.logs.clone();
        ip(&["netns", "add", &h], &logs);
        lab.made.push(h.clone());
        ip(&["netns", "add", &o], &logs);
        lab.made.push(o.clone());
        ip(&["-n", &h, "link", "set", "lo", "up"], &logs);
        ip(&["-n", &o, "link", "set", "lo", "up"], &logs);
        ip(
            &[
                "-n", &h, "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", &o,
            ],
            &logs,
        );
        ip(
            &[
                "-n",
                &h,
                "addr",
                "add",
                &format!("{HOST_ADDR}/24"),
                "dev",
                "up0",
            ],
            &logs,
        );
        ip(
            &[
                "-n",
                &o,
                "addr",
                "add",
                &format!("{OUT_ADDR}/24"),
                "dev",
                "out0",
            ],
            &logs,
        );
        ip(&["-n", &h, "link", "set", "up0", "up"], &logs);
        ip(&["-n", &o, "link", "set", "out0", "up"], &logs);
        ip(
            &["-n", &h, "route", "add", "default", "via", OUT_ADDR],
            &logs,
        );
        Some(lab)
    }

    pub fn root(&self) -> &str {
        &self.scratch.as_ref().expect("the scratch root").root
    }

    pub fn host_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.host))
    }

    pub fn out_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.out))
    }

    /// `nsenter --net=HOST klee --root ROOT ARGS...` (nsenter execs klee: one process).
    pub fn klee_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.host))
            .arg(crate::common::klee_path())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("KLEENE_ROOT")
            .env_remove("KLEE_THEME")
            .current_dir(&self.logs);
        cmd
    }

    /// Runs klee in HOST within [`KLEE_LIMIT`] (a timeout fails the test).
    pub fn klee(&self, args: &[&str]) -> Out {
        let out = run(self.klee_command(args), None, &self.logs, KLEE_LIMIT);
        assert!(!out.timed_out, "HANG: {out}");
        out
    }

    /// Runs klee in HOST and expects success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.klee(args);
        assert!(out.success(), "klee {args:?} failed: {out}");
        out.stdout
    }

    /// A klee command's JSON output.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("klee {args:?}: not JSON ({e}): {out}"))
    }

    /// Makes the busybox image `bb` (through klee in HOST).
    pub fn busybox_image(&self) {
        let tar = self
            .scratch
            .as_ref()
            .expect("the scratch root")
            .busybox_rootfs();
        let url = format!("file://{}", tar.display());
        self.ok(&["image", "create", "-t", "bb", "fetch", &url]);
    }

    /// `network create --type bridge --subnet SUBNET EXTRA... NAME`.
    pub fn network(&self, name: &str, subnet: &str, extra: &[&str]) {
        let mut args = vec!["network", "create", "--type", "bridge", "--subnet", subnet];
        args.extend_from_slice(extra);
        args.push(name);
        self.ok(&args);
    }

    /// A detached httpd container on `network` (extra run options before the image) that
    /// serves `marker` at `/`; its address on the network.
    pub fn httpd(&self, name: &str, network: &str, extra: &[&str], marker: &str) -> String {
        let script = format!(
            "mkdir -p /www && echo {marker} > /www/index.html && exec busybox httpd -f -p 80 -h /www"
        );
        let mut args = vec!["run", "-d", "--name", name, "-n", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb", "/bin/sh", "-c", &script]);
        self.ok(&args);
        self.address(network, name)
    }

    /// A detached `sleep` container on `network`; its address.
    pub fn sleeper(&self, name: &str, network: &str, extra: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name, "-n", network];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["bb", "sleep", "120"]);
        self.ok(&args);
        self.address(network, name)
    }

    /// The id of container `name` (`isc NAME` → `container.id`).
    pub fn container_id(&self, name: &str) -> String {
        let v = self.json(&["container", "inspect", name]);
        v["container"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("isc {name} names no container id: {v:#}"))
            .to_string()
    }

    /// Whether container `name` runs (`isc NAME` → `container.running`).
    pub fn running(&self, name: &str) -> bool {
        let v = self.json(&["container", "inspect", name]);
        v["container"]["running"]
            .as_bool()
            .unwrap_or_else(|| panic!("isc {name} says nothing of running: {v:#}"))
    }

    /// The endpoint of container `name` in a `network inspect` (`v`), matched by its id.
    pub fn endpoint_of(&self, v: &Value, name: &str) -> Option<Value> {
        let id = self.container_id(name);
        endpoint_of_id(v, &id)
    }

    /// The IPv4 address of container `name` on `network` (from `network inspect`).
    pub fn address(&self, network: &str, name: &str) -> String {
        let v = self.json(&["network", "inspect", network]);
        let e = self
            .endpoint_of(&v, name)
            .unwrap_or_else(|| panic!("no endpoint of {name} on {network}: {v:#}"));
        e["ip_address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address of {name} on {network}: {v:#}"))
            .to_string()
    }

    /// The pid of a running container's first process (`lsc -a --format json` →
    /// `runtime.pid`).
    pub fn pid_of(&self, container: &str) -> i32 {
        let v = self.json(&["lsc", "-a", "--format", "json"]);
        let c = v
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container || c["id"] == container)
            .unwrap_or_else(|| panic!("{container} is not listed: {v:#}"));
        c["runtime"]["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{container} has no pid: {c:#}")) as i32
    }

    /// A new `--rm` container on `network` fetching `url` (`busybox timeout 4 wget`, under a
    /// shell: the container's first process is pid 1 of its own pid namespace, which a
    /// SIGTERM from `timeout` would not end).
    pub fn fetch_from_container(&self, network: &str, url: &str) -> Out {
        let script = format!("busybox timeout 4 busybox wget -q -O - {url}; exit $?");
        let args = ["run", "--rm", "-n", network, "bb", "/bin/sh", "-c", &script];
        run(self.klee_command(&args), None, &self.logs, PROBE_LIMIT)
    }

    /// Running container `container` fetching `url`, through `klee exec`.
    pub fn fetch_via_exec(&self, container: &str, url: &str) -> Out {
        let args = [
            "exec", container, "busybox", "timeout", "4", "busybox", "wget", "-q", "-O", "-", url,
        ];
        run(self.klee_command(&args), None, &self.logs, PROBE_LIMIT)
    }

    /// `busybox wget URL` run in namespace `ns` (the lab's HOST or OUT), bounded.
    pub fn fetch_in(&self, ns: &str, url: &str) -> Out {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns", "exec", ns, "busybox", "timeout", "4", "busybox", "wget", "-q",
        ])
        .args(["-O", "-", url]);
        run(cmd, None, &self.logs, PROBE_LIMIT)
    }

    /// Retries `probe` until it succeeds and prints `marker`, for at most 5 s; the last try.
    pub fn until_served(&self, marker: &str, probe: impl Fn() -> Out) -> Out {
        let start = Instant::now();
        loop {
            let out = probe();
            if out.success() && out.stdout.contains(marker) {
                return out;
            }
            if start.elapsed() > Duration::from_secs(5) {
                return out;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `busybox httpd -f -v -p 10.99.0.2:80 -h DIR` in OUT serving `marker`; the
    /// file its log (stderr) goes to.
    pub fn outside_httpd(&mut self, marker: &str) -> PathBuf {
        let dir = self.logs.join("outside-www");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("{marker}\n")).unwrap();
        let log = self.logs.join("outside-httpd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.out, "busybox", "httpd", "-f", "-v"])
            .args(["-p", &format!("{OUT_ADDR}:80"), "-h"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(File::create(self.logs.join("outside-httpd.out")).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("starting the outside httpd");
        self.servers.push(child);
        // Up when OUT itself can fetch from it.
        let up = self.until_served(marker, || {
            self.fetch_in(&self.out, &format!("http://{OUT_ADDR}/"))
        });
        assert!(up.success(), "the outside httpd does not serve: {up}");
        log
    }

    /// A UDP socket bound to `0.0.0.0:port` in the network namespace of process `pid` (a
    /// container's): a server inside the container's network stack, held by the test.
    pub fn udp_server_in(&self, pid: i32, port: u16) -> UdpSocket {
        let sock = in_netns(Path::new(&format!("/proc/{pid}/ns/net")), move || {
            UdpSocket::bind(("0.0.0.0", port))
        })
        .expect("joining the container's network namespace")
        .expect("binding the UDP server in the container's namespace");
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        sock
    }

    /// A UDP socket (unbound port) in namespace path `ns`, to send from.
    pub fn udp_client_in(&self, ns: &Path) -> UdpSocket {
        let sock = in_netns(ns, || UdpSocket::bind(("0.0.0.0", 0)))
            .expect("joining the namespace")
            .expect("binding a UDP client socket");
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        sock
    }

    /// Links of HOST (`ip -n HOST -o link`), by name.
    pub fn host_links(&self) -> Vec<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.host, "-o", "link"]);
        let out = run(cmd, None, &self.logs, Duration::from_secs(10));
        assert!(out.success(), "{out}");
        out.stdout
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    /// HOST's ruleset as JSON text (`nft -j list ruleset`).
    pub fn host_ruleset(&self) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host, "nft", "-j", "list", "ruleset"]);
        let out = run(cmd, None, &self.logs, Duration::from_secs(10));
        assert!(out.success(), "{out}");
        out.stdout
    }

    /// HOST's ruleset as text, for messages.
    pub fn host_ruleset_text(&self) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host, "nft", "list", "ruleset"]);
        run(cmd, None, &self.logs, Duration::from_secs(10)).stdout
    }

    /// Best effort, bounded: removes every container and network of the root, through klee
    /// in HOST.
    fn empty_root(&self) {
        if self.scratch.is_none() {
            return;
        }
        let list = |args: &[&str]| -> Vec<String> {
            let out = run(self.klee_command(args), None, &self.logs, KLEE_LIMIT);
            serde_json::from_str::<Vec<Value>>(&out.stdout)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect()
        };
        for id in list(&["lsc", "-a", "--format", "json"]) {
            let _ = run(
                self.klee_command(&["rmc", "-f", &id]),
                None,
                &self.logs,
                KLEE_LIMIT,
            );
        }
        for id in list(&["lsn", "--format", "json"]) {
            let _ = run(
                self.klee_command(&["rmn", &id]),
                None,
                &self.logs,
                KLEE_LIMIT,
            );
        }
    }
}

/// The `network_endpoints` of a `network inspect`.
pub fn endpoints(v: &Value) -> Vec<Value> {
    v["network_endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The endpoint of the container with id `id` in a `network inspect` (`v`).
pub fn endpoint_of_id(v: &Value, id: &str) -> Option<Value> {
    endpoints(v).into_iter().find(|e| e["container_id"] == id)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.made.is_empty() {
            self.empty_root();
        }
        eprintln!(
            "lab {}: test body took {:.1} s",
            self.tag,
            self.started.elapsed().as_secs_f64()
        );
        let root = self.scratch.as_ref().map(|s| s.root.clone());
        if let Some(scratch) = self.scratch.take() {
            // Scratch's drop runs klee: let it run in HOST, never in the real namespace.
            let path = self.host_ns_path();
            if self.made.contains(&self.host) && path.exists() {
                let (tx, rx) = std::sync::mpsc::channel();
                let handle = std::thread::spawn(move || {
                    let joined = File::open(&path).ok().is_some_and(|f| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                    });
                    if joined {
                        drop(scratch);
                    } else {
                        eprintln!("warning: cannot join {}: root left behind", path.display());
                        std::mem::forget(scratch);
                    }
                    let _ = tx.send(());
                });
                // Bounded: a wedged pool must not hang the suite (the thread is left).
                if rx.recv_timeout(Duration::from_secs(300)).is_ok() {
                    let _ = handle.join();
                } else {
                    eprintln!("warning: dropping the scratch root took over 300 s");
                }
            } else {
                // No HOST was made: the engine never ran in this lab; nothing to clean
                // in any namespace, and klee there could only touch the real host.
                std::mem::forget(scratch);
            }
        }
        for ns in self.made.drain(..).rev() {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "pids", &ns]);
            let pids = run(cmd, None, &self.logs, Duration::from_secs(10));
            for pid in pids.stdout.split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "del", &ns]);
            let out = run(cmd, None, &self.logs, Duration::from_secs(10));
            if !out.success() {
                eprintln!("warning: could not delete namespace {ns}: {out}");
            }
        }
        // zfs-fuse may call a dataset busy for a moment after its unmount: a few more
        // tries (bounded) so that no scratch root is left in the pool.
        if let Some(root) = root {
            for _ in 0..6 {
                let mut cmd = Command::new("zfs");
                cmd.args(["list", "-H", "-o", "name", &root]);
                if !run(cmd, None, &self.logs, Duration::from_secs(20)).success() {
                    break;
                }
                let mut cmd = Command::new("zfs");
                cmd.args(["destroy", "-rf", &root]);
                if run(cmd, None, &self.logs, Duration::from_secs(30)).success() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
