//! Containers on real ZFS and real namespaces: create, start (attached, detached), exec,
//! stop, logs, remove, prune, volumes, networks; crash repair and two processes at once.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use kleene_core::kleene_jail::Stdio;
use kleene_core::kleene_zfs::{DatasetName, Zfs};
use kleene_core::{
    Attach, BaseSource, BuildRequest, CoreError, CreateContainer, CreateImage, Driver, Engine,
    Events, ExecSpec, JailParamText, MountSpec, Object, RunState, StartOverrides,
};
use tokio::io::AsyncReadExt;

use common::busybox_engine as setup;

fn create(cmd: &[&str]) -> CreateContainer {
    CreateContainer::new("bb").cmd(cmd.iter().copied())
}

async fn run_piped(engine: &Engine, reference: &str) -> (String, String, i32) {
    let mut started = engine
        .start_container(reference, Attach::Piped)
        .await
        .unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut so = started.stdout.take().unwrap();
    let mut se = started.stderr.take().unwrap();
    let (a, b) = tokio::join!(so.read_to_string(&mut out), se.read_to_string(&mut err));
    a.unwrap();
    b.unwrap();
    let exit = started.wait().await.unwrap();
    assert!(exit.container_ended, "the container runs on");
    (out, err, exit.code)
}

#[tokio::test]
async fn attached_run_output_and_exit_code() {
    let Some((_s, engine)) = setup("attached").await else {
        return;
    };
    let c = engine
        .create_container(
            create(&[
                "/bin/sh",
                "-c",
                "echo \"$GREETING\"; echo oops >&2; hostname; id -u; exit 3",
            ])
            .name("hello")
            .env("GREETING=hi there"),
        )
        .await
        .unwrap();
    assert_eq!(c.runtime.state, RunState::Created);
    assert_eq!(engine.container("hello").await.unwrap().id, c.id);
    assert_eq!(
        engine.container(&c.id.as_str()[..8]).await.unwrap().id,
        c.id
    );
    let (out, err, code) = run_piped(&engine, "hello").await;
    assert_eq!(out, format!("hi there\n{}\n0\n", c.id));
    assert_eq!(err, "oops\n");
    assert_eq!(code, 3);
    let after = engine.container("hello").await.unwrap();
    assert_eq!(after.runtime.state, RunState::Exited);
    assert_eq!(after.runtime.exit_code, Some(3));
    // It can run again.
    let (_, _, code) = run_piped(&engine, "hello").await;
    assert_eq!(code, 3);
}

#[tokio::test]
async fn user_workdir_env_from_request() {
    let Some((_s, engine)) = setup("user").await else {
        return;
    };
    engine
        .create_container(
            create(&["/bin/sh", "-c", "id -u; id -g; id -G; pwd; env | grep -c ."])
                .name("u")
                .user("app")
                .workdir("/home/app/work"),
        )
        .await
        .unwrap();
    let (out, err, code) = run_piped(&engine, "u").await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["4321", "4322", "4322 4400", "/home/app/work"]);
}

#[tokio::test]
async fn detached_exec_logs_stop_remove() {
    let Some((s, engine)) = setup("detached").await else {
        return;
    };
    let c = engine
        .create_container(create(&["/bin/sh", "-c", "echo started; exec sleep 60"]).name("svc"))
        .await
        .unwrap();
    let started = engine
        .start_container("svc", Attach::Detached)
        .await
        .unwrap();
    assert_eq!(started.container.runtime.state, RunState::Running);
    drop(started);
    // Another engine on the same root (another process would do the same) sees it run.
    let other = Engine::open(s.config.clone()).await.unwrap();
    let seen = other.container("svc").await.unwrap();
    assert_eq!(seen.runtime.state, RunState::Running);
    assert!(seen.runtime.pid.is_some());

    let mut p = other
        .exec_container(
            "svc",
            ExecSpec::new(["/bin/sh", "-c", "id -u; cat /proc/1/cmdline | tr '\\0' ' '"])
                .user("app")
                .stdio(Stdio::Inherit, Stdio::Piped, Stdio::Inherit),
        )
        .await
        .unwrap();
    let out = p.output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("4321\n"), "{text}");

    // Logs of the detached container.
    for _ in 0..100 {
        if !other.container_logs("svc").await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(other.container_logs("svc").await.unwrap(), b"started\n");

    // Running: removal refused; the image too.
    let err = other.remove_container("svc", false).await.unwrap_err();
    assert!(err.to_string().contains("running"), "{err}");
    let err = other.remove_image("bb").await.unwrap_err();
    assert!(matches!(err, CoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("svc"), "{err}");

    // The stop's SIGTERM reaches every process of the container (its pid 1 is the
    // jail's init, not the command, which then ends of it at once).
    let stopped = other
        .stop_container("svc", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(stopped.runtime.state, RunState::Exited);
    assert_eq!(stopped.runtime.exit_code, Some(143));
    assert!(matches!(
        other.stop_container("svc", Duration::ZERO).await,
        Err(CoreError::NotRunning { .. })
    ));

    // Restart, then a forced removal of a running container.
    let restarted = other
        .restart_container("svc", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(restarted.runtime.state, RunState::Running);
    other.remove_container("svc", true).await.unwrap();
    assert!(matches!(
        other.container("svc").await,
        Err(CoreError::NotFound { .. })
    ));
    let zfs = Zfs::open();
    assert!(!zfs.exists(&c.dataset).unwrap());
    other.remove_image("bb").await.unwrap();
}

#[tokio::test]
async fn a_detached_container_outlives_its_starter() {
    let Some((s, engine)) = setup("daemonless").await else {
        return;
    };
    engine
        .create_container(create(&["/bin/sleep", "60"]).name("bg"))
        .await
        .unwrap();
    // A separate process starts it and exits.
    let status = child_process("start", &s.config.root, "bg")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let c = engine.container("bg").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Running);
    // Killing the container's process: the monitor records it, whoever asks later.
    let pid = rustix::process::Pid::from_raw(c.runtime.pid.unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    for _ in 0..200 {
        if engine.container("bg").await.unwrap().runtime.state == RunState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = engine.container("bg").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Exited);
    assert_eq!(c.runtime.exit_code, Some(137));
}

#[tokio::test]
async fn open_refuses_a_program_that_did_not_call_init() {
    // A test binary's main is libtest's: it never called kleene_core::init. No pool is
    // needed to see the refusal, which comes before anything is touched.
    let config = kleene_core::Config::new(DatasetName::new("nosuchpool/kleene").unwrap());
    let err = Engine::open(config).await.unwrap_err();
    assert!(matches!(err, CoreError::NoMonitor), "{err}");
    assert!(err.to_string().contains("kleene_core::init()"), "{err}");
}

#[tokio::test]
async fn a_monitor_that_dies_before_reporting_is_named() {
    let Some((s, engine)) = setup("deadmonitor").await else {
        return;
    };
    engine
        .create_container(create(&["/bin/true"]).name("m"))
        .await
        .unwrap();
    // A "monitor" that exits at once without a word: the start fails with its status.
    let mut config = s.config.clone();
    config.monitor = Some("/bin/false".into());
    let broken = Engine::open(config).await.unwrap();
    let err = broken
        .start_container("m", Attach::Piped)
        .await
        .unwrap_err();
    match &err {
        CoreError::MonitorFailed { container, reason } => {
            assert_eq!(container, "m");
            assert!(reason.contains("exit status: 1"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // The container is not left starting: it can start again, with a real monitor.
    let c = engine.container("m").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Exited);
    assert!(c.runtime.error.unwrap().contains("exit status: 1"));
    let (_, _, code) = run_piped(&engine, "m").await;
    assert_eq!(code, 0);
    // A container that cannot start is a typed error with the jail's reason.
    engine
        .create_container(create(&["/bin/nosuch"]).name("nocmd"))
        .await
        .unwrap();
    let err = engine
        .start_container("nocmd", Attach::Detached)
        .await
        .unwrap_err();
    match &err {
        CoreError::StartFailed { container, reason } => {
            assert_eq!(container, "nocmd");
            assert!(reason.contains("/bin/nosuch"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn ctrl_c_on_the_terminal_leaves_the_exit_recorded() {
    let Some((s, engine)) = setup("ctrlc").await else {
        return;
    };
    // The container catches SIGINT (pid 1 of its namespace gets only the signals it
    // catches) and ends with 130, after its monitor was sent SIGINT as well.
    let c = engine
        .create_container(
            create(&[
                "/bin/sh",
                "-c",
                // A background command of a shell ignores SIGINT: the trap ends it.
                "trap 'kill $!; exit 130' INT; touch /tmp/ready; sleep 30 & wait",
            ])
            .name("tty"),
        )
        .await
        .unwrap();
    // Another process starts it with its own streams (as `klee run -it` does), in a
    // process group of its own here, which stands for the terminal's foreground group:
    // the monitor is in it too.
    let mut child = child_process("inherit", &s.config.root, "tty")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let ready = {
        let dataset = DatasetName::new(c.dataset.as_str()).unwrap();
        let root = Zfs::open().mountpoint(&dataset).unwrap().unwrap();
        root.join("tmp/ready")
    };
    for _ in 0..1000 {
        if ready.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready.exists(), "the container did not start");
    let running = engine.container("tty").await.unwrap();
    assert_eq!(running.runtime.state, RunState::Running);
    let monitor = running.runtime.monitor_pid.unwrap();
    let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    assert_eq!(
        rustix::process::getpgid(rustix::process::Pid::from_raw(monitor)).unwrap(),
        group,
        "the monitor shares the starter's process group"
    );
    // Ctrl-C: SIGINT to the whole group. The starter dies of it; the monitor does not.
    rustix::process::kill_process_group(group, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let mut c = engine.container("tty").await.unwrap();
    for _ in 0..1000 {
        if c.runtime.state == RunState::Exited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        c = engine.container("tty").await.unwrap();
    }
    assert_eq!(c.runtime.state, RunState::Exited);
    assert_eq!(c.runtime.error, None, "the monitor recorded the exit");
    assert_eq!(c.runtime.exit_code, Some(130));
}

/// The other process of the tests above: does what KLEENE_TEST_CHILD says, then exits.
#[tokio::test]
async fn child_entry() {
    let Ok(what) = std::env::var("KLEENE_TEST_CHILD") else {
        return;
    };
    let parts: Vec<&str> = what.splitn(3, ':').collect();
    let s = common::scratch_at(DatasetName::new(parts[1]).unwrap(), false);
    let engine = Engine::open(s.config.clone()).await.unwrap();
    match parts[0] {
        "start" => {
            engine
                .start_container(parts[2], Attach::Detached)
                .await
                .unwrap();
        }
        "inherit" => {
            let code = engine
                .start_container(parts[2], Attach::Inherit)
                .await
                .unwrap()
                .wait()
                .await
                .unwrap()
                .code;
            println!("exit code {code}");
        }
        "image" => {
            let tarball = s.rootfs("gz");
            engine
                .create_base_image(
                    CreateImage::new(BaseSource::Fetch {
                        url: tarball.display().to_string(),
                        sha256: None,
                    }),
                    Events::none(),
                )
                .await
                .unwrap();
        }
        "container" => {
            engine
                .create_container(create(&["/bin/true"]))
                .await
                .unwrap();
        }
        "run-rm" => {
            let started = engine
                .start_container_with(parts[2], Attach::Piped, StartOverrides::new().remove(true))
                .await
                .unwrap();
            let exit = started.wait().await.unwrap();
            assert!(exit.removed && exit.container_ended, "{exit:?}");
            // Gone from every listing when the wait returns, whatever follows.
            assert!(engine.containers().await.unwrap().is_empty());
            assert!(engine.container(parts[2]).await.is_err());
        }
        other => panic!("unknown child action {other}"),
    }
}

/// This test binary run again as [`child_entry`], to do `action` on root `root` (with
/// `name`, when the action takes one) in a process of its own.
fn child_process(action: &str, root: &DatasetName, name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("KLEENE_TEST_CHILD", format!("{action}:{root}:{name}"));
    cmd
}

#[tokio::test]
async fn a_container_removed_while_it_starts_is_stopped_then_removed() {
    let Some((s, engine)) = setup("rmstarting").await else {
        return;
    };
    engine
        .create_container(create(&["/bin/sleep", "600"]).name("slow"))
        .await
        .unwrap();
    // A child process starts it, its monitor held two seconds once it has recorded the
    // start (the failpoint reaches only that monitor).
    let mut child = child_process("start", &s.config.root, "slow")
        .env("KLEENE_FAILPOINT_SLEEP", "monitor-after-starting")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let monitor = loop {
        let c = engine.container("slow").await.unwrap();
        // The engine records the start first, then its monitor with its pid.
        if let (RunState::Starting, Some(pid)) = (c.runtime.state, c.runtime.monitor_pid) {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start never showed: {:?}",
            c.runtime
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Removed as what it becomes: the start settles, the jail is stopped, then removed.
    engine.remove_container("slow", true).await.unwrap();
    assert!(engine.containers().await.unwrap().is_empty());
    assert!(common::datasets_below(&s.config.root, "container").is_empty());
    assert!(child.wait().unwrap().success(), "the child's start failed");
    // Its monitor ends with its jail: nothing of it runs on.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{monitor}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor of the removed container runs on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_start_whose_starter_died_before_its_monitor_ran_is_given_up() {
    let Some((s, engine)) = setup("starterdied").await else {
        return;
    };
    engine
        .create_container(create(&["/bin/sleep", "600"]).name("orphaned"))
        .await
        .unwrap();
    // The starting process dies right after it has recorded the start, before its monitor.
    let status = child_process("start", &s.config.root, "orphaned")
        .env("KLEENE_FAILPOINT", "start-after-marking")
        .status()
        .unwrap();
    assert!(!status.success(), "the child was to die at its failpoint");
    // Not starting for ever: ended, and saying why.
    let rt = engine.container("orphaned").await.unwrap().runtime;
    assert_eq!(rt.state, RunState::Exited, "{rt:?}");
    assert_eq!(
        rt.error.as_deref(),
        Some("the process starting it ended before its monitor ran")
    );
    // It starts again as any ended container does.
    engine
        .start_container("orphaned", Attach::Detached)
        .await
        .unwrap();
    let rt = engine.container("orphaned").await.unwrap().runtime;
    assert_eq!(rt.state, RunState::Running, "{rt:?}");
    assert_eq!(
        rt.starter_pid, None,
        "its monitor took the start over: {rt:?}"
    );
    engine.remove_container("orphaned", true).await.unwrap();
}

#[tokio::test]
async fn a_monitor_whose_starter_died_and_was_given_up_starts_nothing() {
    let Some((s, engine)) = setup("starterdied2").await else {
        return;
    };
    engine
        .create_container(create(&["/bin/sleep", "600"]).name("late"))
        .await
        .unwrap();
    // The monitor is held two seconds before it takes the start over; its starter is
    // killed meanwhile, and this process gives the start up.
    let mut child = child_process("start", &s.config.root, "late")
        .env("KLEENE_FAILPOINT_SLEEP", "monitor-before-starting")
        .spawn()
        .unwrap();
    let monitor = {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let monitors: Vec<i32> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                        st.rsplit(')')
                            .next()
                            .and_then(|rest| rest.split_whitespace().nth(1))
                            == Some(child.id().to_string().as_str())
                    })
                })
                .collect();
            if let Some(&m) = monitors.first() {
                break m;
            }
            assert!(std::time::Instant::now() < deadline, "no monitor came");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let rt = engine.container("late").await.unwrap().runtime;
    assert_eq!(rt.state, RunState::Exited, "{rt:?}");
    // The monitor wakes, finds the start given up, and ends without starting anything.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(format!("/proc/{monitor}/stat"))
        .is_ok_and(|st| !st.contains(") Z"))
    {
        assert!(std::time::Instant::now() < deadline, "the monitor runs on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rt = engine.container("late").await.unwrap().runtime;
    assert_eq!(rt.state, RunState::Exited, "{rt:?}");
    assert_eq!(
        rt.error.as_deref(),
        Some("the process starting it ended before its monitor ran")
    );
    assert_eq!((rt.pid, rt.monitor_pid), (None, None), "{rt:?}");
    engine.remove_container("late", true).await.unwrap();
}

#[tokio::test]
async fn volumes_and_host_paths() {
    let Some((s, engine)) = setup("mounts").await else {
        return;
    };
    let host = s.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from the host").unwrap();
    engine
        .create_container(
            create(&["/bin/sh", "-c", "cat /srv/seed.txt; echo; echo written > /srv/new.txt; cat /mnt/in.txt; echo; touch /mnt/x 2>/dev/null && echo writable || echo read-only"])
                .name("writer")
                .mount(MountSpec::parse("data:/srv").unwrap())
                .mount(MountSpec::parse(&format!("{}:/mnt:ro", host.display())).unwrap()),
        )
        .await
        .unwrap();
    let (out, err, code) = run_piped(&engine, "writer").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "seeded from the image\nfrom the host\nread-only\n");
    assert!(!host.join("x").exists());
    engine
        .create_container(
            create(&["/bin/cat", "/var/data/new.txt"])
                .name("reader")
                .mount(MountSpec::parse("data:/var/data").unwrap()),
        )
        .await
        .unwrap();
    let (out, _, _) = run_piped(&engine, "reader").await;
    assert_eq!(out, "written\n");
    let err = engine.remove_volume("data").await.unwrap_err();
    assert!(matches!(err, CoreError::InUse { .. }), "{err}");
    assert!(
        err.to_string().contains("reader") && err.to_string().contains("writer"),
        "{err}"
    );
    assert_eq!(engine.prune_containers().await.unwrap().len(), 2);
    engine.remove_volume("data").await.unwrap();
    let err = engine
        .create_container(
            create(&["/bin/true"]).mount(MountSpec::parse("/nonexistent/dir:/x").unwrap()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dir"), "{err}");
    // A single host file, at a path the image lacks and over one it has.
    let file = s.dir.path().join("one.conf");
    std::fs::write(&file, "one file\n").unwrap();
    engine
        .create_container(
            create(&[
                "/bin/sh",
                "-c",
                "cat /etc/one.conf /etc/passwd | head -1; echo x > /etc/one.conf",
            ])
            .name("onefile")
            .mount(MountSpec::parse(&format!("{}:/etc/one.conf", file.display())).unwrap())
            .mount(MountSpec::parse(&format!("{}:/etc/passwd:ro", file.display())).unwrap()),
        )
        .await
        .unwrap();
    let (out, err, code) = run_piped(&engine, "onefile").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "one file\n");
    // Written through the mount: the host file is the container's.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x\n");
}

#[tokio::test]
async fn workdir_and_mount_points_through_symlinks() {
    let Some((s, engine)) = setup("links").await else {
        return;
    };
    // An image whose paths go through symlinks, absolute and relative.
    let ctx = s.dir.path().join("links-context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb\nRUN ln -s /srv /data && ln -s home/app /app && ln -s ../../../../../.. /up\n",
    )
    .unwrap();
    let req = BuildRequest::new(&ctx).tag("links");
    engine.build(req, Events::none()).await.unwrap();
    let linked = |name: &str, workdir: &str, mount: &str, cmd: &str| {
        CreateContainer::new("links")
            .name(name)
            .workdir(workdir)
            .mount(MountSpec::parse(mount).unwrap())
            .cmd(["/bin/sh", "-c", cmd])
    };
    // WORKDIR and the volume's mount point are found as the container sees them: the
    // new volume is filled from /srv, where /data leads.
    engine
        .create_container(linked(
            "linked",
            "/app/work",
            "filled:/data",
            "pwd -P; cat /data/seed.txt; echo; ls /srv",
        ))
        .await
        .unwrap();
    let (out, err, code) = run_piped(&engine, "linked").await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..2],
        ["/home/app/work", "seeded from the image"],
        "{out}"
    );
    // A mount point through a link climbing above the root is refused.
    engine
        .create_container(linked("up", "/", "other:/up/kleene-escape", "true"))
        .await
        .unwrap();
    let err = engine
        .start_container("up", Attach::Piped)
        .await
        .expect_err("a mount point out of the root");
    assert!(err.to_string().contains("leads out of the root"), "{err}");
    assert!(!std::path::Path::new("/kleene-escape").exists());
}

#[tokio::test]
async fn networks_and_refusals() {
    let Some((s, engine)) = setup("net").await else {
        return;
    };
    engine
        .create_container(
            create(&[
                "/bin/sh",
                "-c",
                "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '",
            ])
            .name("nonet")
            .driver(Driver::Disabled),
        )
        .await
        .unwrap();
    let (out, err, code) = run_piped(&engine, "nonet").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "lo");
    // Networks are parsed at the edge now: an unknown driver never reaches create_container.
    let err = "bridge0".parse::<Driver>().unwrap_err();
    assert!(err.to_string().contains("bridge0"), "{err}");
    // A network that does not exist is named.
    let err = engine
        .create_container(create(&["/bin/true"]).network("nowhere", Default::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::NotFound {
                kind: Object::Network,
                ..
            }
        ),
        "{err}"
    );
    // A base image's command is Kleene's /bin/sh /etc/rc; an image whose CMD is empty
    // needs one given.
    assert_eq!(
        engine.image("bb").await.unwrap().config.cmd,
        ["/bin/sh", "/etc/rc"]
    );
    let ctx = s.dir.path().join("nocmd");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb\nCMD []\n").unwrap();
    engine
        .build(BuildRequest::new(&ctx).tag("nocmd"), Events::none())
        .await
        .unwrap();
    let err = engine
        .create_container(CreateContainer::new("nocmd"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
    let err = engine
        .create_container(create(&["/bin/true"]).name("bad name"))
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::InvalidInput(_)), "{err}");
    engine
        .create_container(create(&["/bin/true"]).name("dup"))
        .await
        .unwrap();
    let err = engine
        .create_container(create(&["/bin/true"]).name("dup"))
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::AlreadyExists { .. }), "{err}");
    let err = engine
        .create_container(CreateContainer::new("nosuch").cmd(["/bin/true"]))
        .await
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound { .. }), "{err}");
    // A command that is not there: start says so.
    engine
        .create_container(create(&["/bin/nosuch"]).name("missing"))
        .await
        .unwrap();
    let err = engine
        .start_container("missing", Attach::Piped)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/bin/nosuch"), "{err}");
    // Unknown jail parameters are refused on Linux, never ignored.
    if cfg!(target_os = "linux") {
        engine
            .create_container(
                create(&["/bin/true"])
                    .name("jparam")
                    .jail_param("allow.raw_sockets".parse::<JailParamText>().unwrap()),
            )
            .await
            .unwrap();
        let err = engine
            .start_container("jparam", Attach::Piped)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("allow.raw_sockets"), "{err}");
    }
    let c = engine.rename_container("dup", "renamed").await.unwrap();
    assert_eq!(c.name, "renamed");
}

#[tokio::test]
async fn crashes_at_every_point_are_repaired_by_open() {
    let Some((s, engine)) = setup("crash").await else {
        return;
    };
    let images_before = engine.images().await.unwrap().len();
    drop(engine);
    for (point, action) in [
        ("image-after-row", "image"),
        ("image-after-extract", "image"),
        ("image-before-snapshot", "image"),
        ("image-before-finish", "image"),
        ("container-after-row", "container"),
        ("container-after-clone", "container"),
    ] {
        let status = child_process(action, &s.config.root, "")
            .env("KLEENE_FAILPOINT", point)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the child should have died");
        let (engine, repairs) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(!repairs.is_empty(), "{point}: nothing was repaired");
        assert_eq!(
            engine.images().await.unwrap().len(),
            images_before,
            "{point}"
        );
        assert!(engine.containers().await.unwrap().is_empty(), "{point}");
        assert_eq!(
            common::datasets_below(&s.config.root, "image").len(),
            images_before,
            "{point}"
        );
        assert!(
            common::datasets_below(&s.config.root, "container").is_empty(),
            "{point}"
        );
        let (_, again) = Engine::open_with(s.config.clone(), Events::none())
            .await
            .unwrap();
        assert!(
            again.is_empty(),
            "{point}: a second open found more: {again:?}"
        );
    }
}

#[tokio::test]
async fn two_processes_at_once() {
    let Some((s, engine)) = setup("concurrent").await else {
        return;
    };
    let spawn = |action: &str, env: Option<(&str, &str)>| {
        let mut cmd = child_process(action, &s.config.root, "");
        cmd.stdout(std::process::Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    };
    // Two creators of images and two of containers at once.
    let children: Vec<_> = ["image", "image", "container", "container"]
        .iter()
        .map(|a| spawn(a, None))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(engine.images().await.unwrap().len(), 3);
    assert_eq!(engine.containers().await.unwrap().len(), 2);
    // An open (with its repair) while another process is half-way leaves that process's
    // work alone.
    let mut slow = spawn(
        "image",
        Some(("KLEENE_FAILPOINT_SLEEP", "image-before-snapshot")),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, repairs) = Engine::open_with(s.config.clone(), Events::none())
        .await
        .unwrap();
    assert!(repairs.is_empty(), "{repairs:?}");
    assert!(slow.wait().unwrap().success());
    assert_eq!(engine.images().await.unwrap().len(), 4);
}

/// `run --rm`: the monitor takes the container out of every listing before it reports
/// the end, then destroys its dataset off the caller's path; killed in between, it leaves
/// a pending removal that the next open finishes.
#[tokio::test]
async fn a_removed_run_is_gone_at_once_and_a_killed_removal_is_finished_by_open() {
    let Some((s, engine)) = setup("runrm").await else {
        return;
    };
    // Removed by its monitor: no listing shows it when the wait returns, and its dataset
    // goes soon after.
    engine
        .create_container(create(&["/bin/sh", "-c", "exit 4"]).name("gone"))
        .await
        .unwrap();
    let started = engine
        .start_container_with("gone", Attach::Piped, StartOverrides::new().remove(true))
        .await
        .unwrap();
    let exit = started.wait().await.unwrap();
    assert_eq!(
        (exit.code, exit.container_ended, exit.removed),
        (4, true, true)
    );
    assert!(engine.containers().await.unwrap().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !common::datasets_below(&s.config.root, "container").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed container's dataset is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without remove nothing changes: the container stays, ended.
    engine
        .create_container(create(&["/bin/true"]).name("kept"))
        .await
        .unwrap();
    let exit = engine
        .start_container("kept", Attach::Piped)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(!exit.removed);
    assert_eq!(engine.containers().await.unwrap().len(), 1);
    engine.remove_container("kept", false).await.unwrap();

    // The monitor killed after its report, before the destroy (a child process runs the
    // start, so that the failpoint reaches only its monitor).
    engine
        .create_container(create(&["/bin/true"]).name("killed"))
        .await
        .unwrap();
    drop(engine);
    let status = child_process("run-rm", &s.config.root, "killed")
        .env("KLEENE_FAILPOINT", "monitor-after-removal-report")
        .status()
        .unwrap();
    assert!(status.success(), "the child's wait saw the removal");
    let left = common::datasets_below(&s.config.root, "container");
    assert_eq!(
        left.len(),
        1,
        "the killed monitor left its dataset: {left:?}"
    );
    let (engine, repairs) = Engine::open_with(s.config.clone(), Events::none())
        .await
        .unwrap();
    assert_eq!(repairs.removed_unfinished.len(), 1, "{repairs:?}");
    assert!(common::datasets_below(&s.config.root, "container").is_empty());
    assert!(engine.containers().await.unwrap().is_empty());
}

/// Waits (at most `limit`) until container `name` is in `state`; the container then.
async fn until_state(
    engine: &Engine,
    name: &str,
    state: RunState,
    limit: Duration,
) -> kleene_core::Container {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let c = engine.container(name).await.unwrap();
        if c.runtime.state == state {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is still {:?}",
            c.runtime
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_container_runs_while_its_processes_do_as_a_jail() {
    let Some((_s, engine)) = setup("lifetime").await else {
        return;
    };
    // Kleene's `klee run FreeBSD` (/etc/rc starts daemons and exits): the command ends,
    // the container runs on while what it started runs.
    engine
        .create_container(
            create(&["/bin/sh", "-c", "sleep 1.5 & echo daemon started; exit 3"]).name("rc"),
        )
        .await
        .unwrap();
    let mut started = engine.start_container("rc", Attach::Piped).await.unwrap();
    let mut so = started.stdout.take().unwrap();
    let exit = started.wait().await.unwrap();
    assert_eq!(
        exit,
        kleene_core::Exit {
            code: 3,
            container_ended: false,
            removed: false
        }
    );
    let mut line = [0u8; 15];
    so.read_exact(&mut line).await.unwrap();
    assert_eq!(&line, b"daemon started\n");
    let c = engine.container("rc").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Running, "{:?}", c.runtime);
    assert_eq!(c.runtime.exit_code, Some(3));
    assert!(c.runtime.command_finished.is_some());
    // exec works in it meanwhile.
    let mut p = engine
        .exec_container("rc", ExecSpec::new(["/bin/true"]))
        .await
        .unwrap();
    assert!(p.wait().await.unwrap().success());
    // Its end comes with its last process's, and keeps the command's code.
    let c = until_state(&engine, "rc", RunState::Exited, Duration::from_secs(20)).await;
    assert_eq!(c.runtime.exit_code, Some(3));
    assert!(c.runtime.command_finished.is_none());

    // `persist`: it runs with no process at all until stopped; stop runs exec.stop first.
    engine
        .create_container(
            create(&["/bin/true"])
                .name("kept")
                .jail_param("persist".parse::<JailParamText>().unwrap())
                .jail_param(
                    "exec.stop=echo stopped > /stopped"
                        .parse::<JailParamText>()
                        .unwrap(),
                ),
        )
        .await
        .unwrap();
    engine
        .start_container("kept", Attach::Detached)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = engine.container("kept").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Running, "{:?}", c.runtime);
    assert_eq!(c.runtime.exit_code, Some(0));
    let t = std::time::Instant::now();
    let c = engine
        .stop_container("kept", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(c.runtime.state, RunState::Exited);
    let out = file_in(&c, "stopped");
    assert_eq!(out, "stopped\n");

    // A daemon that ignores nothing ends with the stop's SIGTERM (sent to every process).
    engine
        .create_container(create(&["/bin/sh", "-c", "sleep 300 & exit 0"]).name("svc"))
        .await
        .unwrap();
    engine
        .start_container("svc", Attach::Detached)
        .await
        .unwrap();
    let c = engine.container("svc").await.unwrap();
    assert_eq!(c.runtime.state, RunState::Running);
    let t = std::time::Instant::now();
    engine
        .stop_container("svc", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// A file of container `c`'s dataset, read from the host ("" when missing).
fn file_in(c: &kleene_core::Container, path: &str) -> String {
    let mnt = Zfs::open().mountpoint(&c.dataset).unwrap().unwrap();
    std::fs::read_to_string(mnt.join(path)).unwrap_or_default()
}

#[tokio::test]
async fn update_changes_what_kleene_changes() {
    let Some((_s, engine)) = setup("update").await else {
        return;
    };
    let c = engine
        .create_container(
            create(&["/bin/sh", "-c", "echo $A $B $(id -u)"])
                .name("u")
                .env("A=1"),
        )
        .await
        .unwrap();
    assert!(!c.config.persist);
    // user, environment (replaced, over the image's), command, name, persist, restart.
    let u = engine
        .update_container(
            "u",
            kleene_core::ContainerUpdate::new()
                .name("u2")
                .user("app")
                .env(vec!["B=2".into()])
                .cmd(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo $A $B $(id -u)".into(),
                ])
                .persist(true)
                .restart(kleene_core::RestartPolicy::OnStartup),
        )
        .await
        .unwrap();
    assert_eq!(u.id, c.id);
    assert_eq!(u.name, "u2");
    assert_eq!(u.config.user, "app");
    assert!(
        u.config.env.contains(&"B=2".to_string()),
        "{:?}",
        u.config.env
    );
    assert!(
        !u.config.env.contains(&"A=1".to_string()),
        "{:?}",
        u.config.env
    );
    assert!(u.config.persist);
    assert_eq!(u.config.restart, kleene_core::RestartPolicy::OnStartup);
    let (out, _, code) = run_piped(&engine, "u2").await;
    assert_eq!(code, 0);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["2", "4321"],
        "{out}"
    );
    // prune keeps a persistent container.
    assert!(engine.prune_containers().await.unwrap().is_empty());
    assert!(engine.container("u2").await.is_ok());
    let err = engine
        .update_container("u2", kleene_core::ContainerUpdate::new().name("bad name"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad name"), "{err}");

    // A running container: exec.stop is taken at once; a parameter Linux cannot change
    // on a running jail is kept for the next start, and the error names it.
    engine
        .create_container(create(&["sleep", "60"]).name("live"))
        .await
        .unwrap();
    engine
        .start_container("live", Attach::Detached)
        .await
        .unwrap();
    let p = |s: &str| s.parse::<JailParamText>().unwrap();
    engine
        .update_container(
            "live",
            kleene_core::ContainerUpdate::new().jail_params(vec![p("exec.stop=echo bye > /bye")]),
        )
        .await
        .unwrap();
    let err = engine
        .update_container(
            "live",
            kleene_core::ContainerUpdate::new().jail_params(vec![p("allow.raw_sockets")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::Unsupported(m) if m.contains("allow.raw_sockets") && m.contains("starts again")),
        "{err}"
    );
    let kept = engine.container("live").await.unwrap();
    assert_eq!(kept.config.jail_params, vec![p("allow.raw_sockets")]);
    engine.remove_container("live", true).await.unwrap();
}
