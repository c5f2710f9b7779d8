//! Seccomp filters installed for real: a forked child installs a profile, makes system
//! calls, and reports what they returned through a pipe. The child sets no_new_privs
//! first, so these tests need no privileges.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Child, Command};

use kleene_jail::{default_capability_mask, PreparedFilter, SeccompProfile, SeccompProgram};

/// Forks; the child sets no_new_privs, installs `prog`, runs `body` (which must not
/// allocate: the test process has other threads) and `_exit`s with 0. Returns what
/// `body` wrote and the child's wait status.
fn in_filtered_child(prog: &PreparedFilter<'_>, body: impl Fn(&mut Report)) -> (Vec<i64>, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes system calls (no allocation, no locks) and ends with
    // _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            // SAFETY: _exit ends the child.
            unsafe { libc::_exit(101) };
        }
        if prog.install().is_err() {
            // SAFETY: _exit ends the child.
            unsafe { libc::_exit(102) };
        }
        let mut report = Report {
            fd: fds[1],
            failed: false,
        };
        body(&mut report);
        // SAFETY: _exit ends the child.
        unsafe { libc::_exit(if report.failed { 103 } else { 0 }) };
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is ours, and the File takes it over.
    let mut reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let values = bytes
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    (values, status)
}

/// The child's side of the pipe.
struct Report {
    fd: i32,
    failed: bool,
}

impl Report {
    fn put(&mut self, v: i64) {
        let b = v.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live array (this write is itself a test of write).
        if unsafe { libc::write(self.fd, b.as_ptr().cast(), 8) } != 8 {
            self.failed = true;
        }
    }

    /// Reports a raw system call's result: the value, or -errno.
    fn syscall(&mut self, r: libc::c_long) {
        let v = if r < 0 {
            -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            r
        };
        self.put(v);
    }
}

fn docker_default() -> SeccompProgram {
    SeccompProfile::docker_default(default_capability_mask())
        .compile()
        .unwrap()
}

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

const EPERM: i64 = -(libc::EPERM as i64);
const ENOSYS: i64 = -(libc::ENOSYS as i64);

#[test]
fn default_profile_blocks_what_docker_blocks() {
    let prog = docker_default();
    let prepared = prog.prepare();
    let mut other = sleeper();
    let other_pid = other.id() as libc::pid_t;
    let (got, status) = in_filtered_child(&prepared, |r| {
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe {
            libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0 as libc::c_ulong,
                std::ptr::null::<libc::c_void>(),
            )
        });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS) });
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, other_pid, 0, 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_umount2, c"/tmp".as_ptr(), 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_socket, libc::AF_VSOCK, 1, 0) });
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        r.syscall(unsafe { libc::syscall(libc::SYS_personality, 0x0040000) });
    });
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(status, 0, "child status {status:#x}");
    assert_eq!(
        got,
        vec![EPERM, EPERM, EPERM, EPERM, EPERM, EPERM, ENOSYS, EPERM, EPERM, EPERM],
        "mount, unshare(NEWUSER), unshare(NEWNS), keyctl, kexec_load, ptrace, clone3, \
         umount2, socket(AF_VSOCK), personality(ADDR_NO_RANDOMIZE)"
    );
}

#[test]
fn default_profile_lets_ordinary_programs_run() {
    let prog = docker_default();
    let prepared = prog.prepare();
    let truth = CString::new("/bin/true").unwrap();
    let argv = [truth.as_ptr(), std::ptr::null()];
    let (got, status) = in_filtered_child(&prepared, |r| {
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        r.put(i64::from(pid > 0));
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let fd = unsafe { libc::open(c"/dev/zero".as_ptr(), libc::O_RDONLY) };
        let mut buf = [1u8; 16];
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        r.put(i64::from(fd >= 0 && n == 16 && buf == [0; 16]));
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        unsafe { libc::close(fd) };
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        r.put(i64::from(s >= 0));
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let p = unsafe { libc::personality(0xffff_ffff) };
        r.put(i64::from(p >= 0));
        // fork + wait
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: a system call on our own process, descriptors and buffers, with
            // integer arguments or pointers to live NUL-terminated strings.
            unsafe { libc::_exit(7) };
        }
        let mut st = 0;
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let w = unsafe { libc::waitpid(child, &mut st, 0) };
        r.put(if w == child { i64::from(st) } else { -1 });
        // execve of a dynamically linked program
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: a system call on our own process, descriptors and buffers, with
            // integer arguments or pointers to live NUL-terminated strings.
            unsafe { libc::execv(argv[0], argv.as_ptr()) };
            // SAFETY: a system call on our own process, descriptors and buffers, with
            // integer arguments or pointers to live NUL-terminated strings.
            unsafe { libc::_exit(127) };
        }
        // SAFETY: a system call on our own process, descriptors and buffers, with
        // integer arguments or pointers to live NUL-terminated strings.
        let w = unsafe { libc::waitpid(child, &mut st, 0) };
        r.put(if w == child { i64::from(st) } else { -1 });
    });
    assert_eq!(status, 0, "child status {status:#x}");
    assert_eq!(got, vec![1, 1, 1, 1, 7 << 8, 0]);
}

/// Runs `argv` with environment `env` in a filtered child, its standard output on
/// /dev/null, and returns its wait status.
fn run_filtered(prog: &SeccompProgram, argv: &[&str], env: &[&str]) -> i32 {
    let prepared = prog.prepare();
    let cstrings =
        |v: &[&str]| -> Vec<CString> { v.iter().map(|a| CString::new(*a).unwrap()).collect() };
    let (args, envs) = (cstrings(argv), cstrings(env));
    let nul_ended = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let (argp, envp) = (nul_ended(&args), nul_ended(&envs));
    let devnull = std::fs::File::create("/dev/null").unwrap();
    let null_fd = devnull.as_raw_fd();
    let (got, status) = in_filtered_child(&prepared, |r| {
        // SAFETY: fork, then dup2 and execve with NUL-terminated strings and NULL-ended
        // arrays made before the first fork; the grandchild only execs or _exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: a system call on our own process, descriptors and buffers, with
            // integer arguments or pointers to live NUL-terminated strings.
            unsafe {
                libc::dup2(null_fd, 1);
                libc::execve(argp[0], argp.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            };
        }
        let mut st = 0;
        // SAFETY: waits for our own child.
        let w = unsafe { libc::waitpid(child, &mut st, 0) };
        r.put(if w == child { i64::from(st) } else { -1 });
    });
    drop(devnull);
    assert_eq!(status, 0);
    got[0] as i32
}

#[test]
fn threads_start_through_the_clone3_fallback() {
    if std::env::var_os("KLEENE_SECCOMP_THREAD_HELPER").is_some() {
        return;
    }
    // Re-run this test binary filtered: the harness and the helper start threads (glibc
    // tries clone3, gets ENOSYS, and falls back to clone).
    let exe = std::env::current_exe().unwrap();
    let status = run_filtered(
        &docker_default(),
        &[
            exe.to_str().unwrap(),
            "--exact",
            "thread_helper",
            "--test-threads=2",
        ],
        &["KLEENE_SECCOMP_THREAD_HELPER=1"],
    );
    assert_eq!(status, 0, "status {status:#x}");
}

#[test]
fn thread_helper() {
    if std::env::var_os("KLEENE_SECCOMP_THREAD_HELPER").is_none() {
        return;
    }
    let t = std::thread::spawn(std::process::id);
    assert_eq!(t.join().unwrap(), std::process::id());
}

#[test]
fn busybox_works_under_the_default_profile() {
    let busybox = "/bin/busybox";
    if !std::path::Path::new(busybox).exists() {
        // CI installs busybox-static; elsewhere this says why it skips.
        assert!(
            std::env::var("KLEENE_REQUIRE_ZFS").as_deref() != Ok("1"),
            "no {busybox} (Debian package busybox-static; KLEENE_REQUIRE_ZFS=1)"
        );
        eprintln!("skipping: no {busybox}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    // Nothing of the host's filesystem beyond the test's directory and /dev: a FUSE mount
    // point in / (a test pool's, while zfs-fuse restarts) can fail a listing there.
    let script = format!(
        "set -e; b={busybox}; cd {d}; $b ls -l . /dev >/dev/null; echo hello > a; $b cat a; \
         $b cp a b; $b mkdir -p x/y; $b rm -r x; $b sleep 0; $b date; $b id; \
         $b find . -name a; $b tar cf t.tar a b; $b tar tf t.tar; \
         printf 'b\\na\\n' | $b sort; $b kill -0 $$; $b ps; $b top -b -n1; \
         $b wc -l /proc/self/status; {ping}",
        d = dir.path().display(),
        // as root, ping opens a raw socket (CAP_NET_RAW)
        ping = if root {
            "$b ping -c 1 -W 2 127.0.0.1"
        } else {
            "true"
        },
    );
    let status = run_filtered(
        &docker_default(),
        &[busybox, "sh", "-c", &script],
        &["PATH=/nonexistent"],
    );
    assert_eq!(status, 0, "status {status:#x}");
}

#[test]
fn kill_action_kills_with_sigsys() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL"}]}"#;
    for profile in [
        SeccompProfile::from_json(json).unwrap(),
        SeccompProfile::from_json(&json.replace("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS")).unwrap(),
    ] {
        let prog = profile.compile().unwrap();
        let (got, status) = in_filtered_child(&prog.prepare(), |r| {
            r.put(1);
            // SAFETY: getppid has no arguments.
            r.syscall(unsafe { libc::syscall(libc::SYS_getppid) });
        });
        assert_eq!(got, vec![1]);
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}

#[test]
fn install_current_thread_in_a_child() {
    let prog = docker_default();
    // SAFETY: the child makes system calls only (install_current_thread does not
    // allocate) and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: prctl with integer arguments; _exit ends the child.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        let code = match prog.install_current_thread() {
            // SAFETY: raw system call with integer arguments.
            Ok(()) => match unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) } {
                -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) => 0,
                _ => 2,
            },
            Err(_) => 1,
        };
        // SAFETY: _exit ends the child.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0, "status {status:#x}");
}
