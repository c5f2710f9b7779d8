//! The container monitor: one small process per running container (like podman's conmon).
//! It starts the jail, records its pid, waits for it, records the exit code and tears the
//! jail down, so that any later process sees the truth without a daemon.
//!
//! Run as `kleene-monitor ROOT_DATASET CONTAINER_ID detached|attached`; the engine starts
//! it. In `attached` mode the container uses the monitor's own stdin, stdout and stderr,
//! which the engine connected to its caller; in `detached` mode output goes to the log.

use std::path::Path;

use kleene_jail::{JailConfig, JailParam, Mount, NetworkMode};
use kleene_zfs::DatasetName;

use crate::container::jail_name;
use crate::engine::{Engine, Inner};
use crate::error::{CoreError, Result};
use crate::meta::now;
use crate::model::{Container, MountSource, Network, RunState, Runtime};
use crate::rootfs::{RootDir, Symlinks};
use crate::Config;

/// The monitor's `main`: returns the process exit code.
pub fn monitor_main(args: &[String]) -> i32 {
    let [root, id, mode] = args else {
        eprintln!("usage: kleene-monitor ROOT_DATASET CONTAINER_ID detached|attached");
        return 2;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kleene-monitor: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(root, id, mode == "detached")) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kleene-monitor: {e}");
            1
        }
    }
}

async fn run(root: &str, id: &str, detached: bool) -> Result<()> {
    let engine = Engine::open_without_repair(Config::new(DatasetName::new(root)?)).await?;
    let c = engine.container(id).await?;
    let inner = &engine.inner;
    let set = |rt: Runtime| {
        let id = c.id.clone();
        engine.blocking(move |inner| inner.store().set_runtime(&id, &rt))
    };
    set(Runtime {
        state: RunState::Starting,
        monitor_pid: Some(std::process::id() as i32),
        ..Runtime::default()
    })
    .await?;
    let cfg = match jail_config(inner, &c, detached) {
        Ok(cfg) => cfg,
        Err(e) => {
            set(failed(&e.to_string())).await?;
            return Err(e);
        }
    };
    let mut jail = match cfg.start().await {
        Ok(j) => j,
        Err(e) => {
            set(failed(&e.to_string())).await?;
            return Err(CoreError::Conflict(e.to_string()));
        }
    };
    let started = now();
    set(Runtime {
        state: RunState::Running,
        pid: Some(jail.pid()),
        jid: Some(jail.id().0),
        monitor_pid: Some(std::process::id() as i32),
        started: Some(started),
        ..Runtime::default()
    })
    .await?;
    let status = jail.wait().await;
    let teardown = jail.teardown().await;
    let exit_code = match &status {
        Ok(s) => s.shell_code(),
        Err(_) => 255,
    };
    set(Runtime {
        state: RunState::Exited,
        started: Some(started),
        finished: Some(now()),
        exit_code: Some(exit_code),
        error: status.err().map(|e| e.to_string()),
        ..Runtime::default()
    })
    .await?;
    teardown.map_err(|e| CoreError::Conflict(format!("tearing down container {}: {e}", c.name)))
}

fn failed(error: &str) -> Runtime {
    Runtime {
        state: RunState::Exited,
        finished: Some(now()),
        exit_code: Some(127),
        error: Some(error.to_string()),
        ..Runtime::default()
    }
}

fn jail_config(inner: &Inner, c: &Container, detached: bool) -> Result<JailConfig> {
    let root = inner.mountpoint(&DatasetName::new(c.dataset.as_str())?)?;
    let mut cfg = JailConfig::new(&root)
        .name(jail_name(&c.id))
        .hostname(c.id.as_str())
        .network(match c.config.network {
            Network::Host => NetworkMode::Inherit,
            Network::Disabled => NetworkMode::Disabled,
        })
        .command(&c.config.cmd)
        .clean_env(true);
    for p in &c.config.jail_params {
        cfg = cfg.param(
            JailParam::parse(p)
                .map_err(|e| CoreError::InvalidInput(format!("jail parameter {p:?}: {e}")))?,
        );
    }
    for kv in &c.config.env {
        if let Some((k, v)) = kv.split_once('=') {
            cfg = cfg.env(k, v);
        }
    }
    if !c.config.user.is_empty() {
        cfg = cfg.user(c.config.user.as_str());
    }
    // WORKDIR and mount points are made and found inside the root as the jail sees it.
    let root_dir = RootDir::open(&root)?;
    if !c.config.workdir.is_empty() {
        // WORKDIR is made if missing, as docker does.
        drop(root_dir.open_dir(&c.config.workdir, Symlinks::FollowInRoot, true)?);
        cfg = cfg.workdir(c.config.workdir.as_str());
    }
    for m in &c.config.mounts {
        // The mount point is made inside the root, its symlinks followed there.
        drop(root_dir.open_dir(&m.destination, Symlinks::FollowInRoot, true)?);
        let source = match &m.source {
            MountSource::HostPath(p) => p.clone(),
            MountSource::Volume(v) => {
                let volume = inner.volume(v)?;
                if inner.store().mark_volume_filled(v)? {
                    let real = root_dir.resolve(&m.destination, Symlinks::FollowInRoot)?;
                    fill_volume(&root.join(real), Path::new(&volume.mountpoint))?;
                }
                volume.mountpoint
            }
        };
        let mut mount = Mount::bind(source, &m.destination);
        if m.read_only {
            mount = mount.read_only();
        }
        cfg = cfg.mount(mount);
    }
    if detached {
        let log = inner.log_path(&c.id);
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
        cfg = cfg
            .stdin(kleene_jail::Stdio::Null)
            .stdout(kleene_jail::Stdio::fd(file))
            .stderr(kleene_jail::Stdio::fd(err));
    }
    Ok(cfg)
}

/// An empty volume takes the image's content at its mount point, on its first mount.
fn fill_volume(source: &Path, volume: &Path) -> Result<()> {
    let empty = std::fs::read_dir(volume)
        .map_err(|e| CoreError::io(format!("reading {}", volume.display()), e))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    // `source` was resolved inside the root: no symlink on its way.
    copy_tree(source, volume)
}

/// Copies a directory tree, symlinks as symlinks (never followed), modes and owners kept.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |what: &str, p: &Path, e| CoreError::io(format!("{what} {}", p.display()), e);
    for entry in std::fs::read_dir(from).map_err(|e| io("reading", from, e))? {
        let entry = entry.map_err(|e| io("reading", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&src).map_err(|e| io("reading", &src, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io("reading", &src, e))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(|e| io("creating", &dst, e))?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst).map_err(|e| io("creating", &dst, e))?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| io("copying", &src, e))?;
        } else {
            continue; // devices, fifos and sockets are not volume content
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| io("chown", &dst, e))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| io("chmod", &dst, e))?;
        }
    }
    Ok(())
}
