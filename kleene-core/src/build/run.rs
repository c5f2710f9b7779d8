//! RUN: the command (shell form through SHELL, heredocs), its network, the jail run
//! described as a [`JailRun`] and handed to the engine's [`crate::jails::Jails`], its cache
//! key, and its exit status.

use std::sync::Arc;

use kleene_dockerfile::{Run, RunFlags, ShellOrExec};
use kleene_jail::NetworkMode;

use super::cache;
use super::state::StageState;
use super::Builder;
use crate::error::{CoreError, Result};
use crate::jails::{JailRun, RunEnd};
use crate::model::Driver;

/// Refuses the RUN flags kleene does not support.
fn check_flags(flags: &RunFlags) -> Result<()> {
    if !flags.mounts.is_empty() || !flags.devices.is_empty() || flags.security.is_some() {
        return Err(CoreError::Unsupported(
            "RUN --mount, --device and --security are not supported".into(),
        ));
    }
    Ok(())
}

/// The network of a RUN: `--network` (BuildKit's words `default` and `none` too), or the
/// build's.
fn network(flags: &RunFlags, default: Driver) -> Result<Driver> {
    match flags.network.as_deref() {
        None => Ok(default),
        Some("default" | "host") => Ok(Driver::Host),
        Some("none" | "disabled") => Ok(Driver::Disabled),
        Some(other) => Err(CoreError::Unsupported(format!(
            "network {other:?} is not supported in RUN: use default, host or none"
        ))),
    }
}

/// The command line of a RUN: the exec form as it is; the shell form through `shell`, its
/// heredocs appended to the script (`RUN <<EOF` alone: the body is the script).
fn argv(run: &Run, shell: &[String]) -> Vec<String> {
    match &run.command {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let script = match run.heredocs.as_slice() {
                [h] if s.trim_start().starts_with("<<") && !s.trim().contains(' ') => {
                    h.content.clone()
                }
                hs => {
                    let mut script = s.clone();
                    for h in hs {
                        script.push('\n');
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                    }
                    script
                }
            };
            let mut v = shell.to_vec();
            v.push(script);
            v
        }
    }
}

impl Builder {
    /// The jail run of a RUN step in stage `st` (its root is set once the dataset exists):
    /// the environment with ENV over ARG, the stage's user and workdir, the build's jail
    /// parameters.
    fn jail_run(&self, st: &StageState, argv: Vec<String>, network: Driver) -> JailRun {
        let mut run = JailRun::new("", super::jail_name(&st.id), argv);
        run.hostname = st.id.to_string();
        // The build's own environment (`-e`) first; ENV and ARG override it.
        let mut env: Vec<(String, String)> = self
            .req
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in st.run_env() {
            env.retain(|(old, _)| *old != k);
            env.push((k, v));
        }
        run.env = env;
        run.network = match network {
            Driver::Disabled => NetworkMode::Disabled,
            // The build's networks, when it has some.
            _ => self.net.clone().unwrap_or(NetworkMode::Inherit),
        };
        run.params = self.req.jail_params.clone();
        run.mounts = self.mounts.clone();
        run.quiet = self.req.quiet;
        run.user = if st.config.user.is_empty() {
            self.req.user.clone()
        } else {
            Some(st.config.user.clone())
        };
        run.workdir = (!st.config.workdir.is_empty()).then(|| st.config.workdir.clone());
        run
    }

    /// Runs a RUN step (or takes it from the cache); the snapshot it made.
    pub(super) async fn run_step(
        &mut self,
        run: &Run,
        st: &mut StageState,
    ) -> Result<Option<String>> {
        check_flags(&run.flags)?;
        let network = network(&run.flags, self.req.network)?;
        let mut jail = self.jail_run(st, argv(run, &st.shell), network);
        let key = cache::run_key(&st.chain, &jail);
        if self.try_cache(st, &key).await? {
            return Ok(None);
        }
        self.materialize(st).await?;
        let root = st.root.clone().unwrap_or_default();
        if let Some(w) = jail.workdir.clone() {
            let r = root.clone();
            self.engine
                .blocking(move |_| super::copy::make_dir(&r, &w))
                .await?;
        }
        jail.root = root;
        let shown = jail.argv.join(" ");
        self.runs += 1;
        let jails = Arc::clone(&self.engine.inner.jails);
        let (stop, _forward) = self.stop_watch();
        let status = match jails.run(jail, &self.events, stop).await {
            Ok(RunEnd::Cancelled) if self.cancelled() => return Err(CoreError::Cancelled),
            Ok(RunEnd::Cancelled) => return Err(CoreError::Interrupted),
            Ok(RunEnd::Exited(status)) => status,
            Err(e) => {
                return Err(CoreError::CommandFailed {
                    command: shown,
                    outcome: format!("could not start: {e}"),
                })
            }
        };
        if !status.success() {
            return Err(CoreError::CommandFailed {
                command: shown,
                outcome: format!("returned a non-zero code: {}", status.shell_code()),
            });
        }
        Ok(Some(self.snapshot(st, key).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(line: &str) -> Run {
        let df = kleene_dockerfile::Dockerfile::parse(&format!("FROM x\n{line}\n"))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        match &df.stages[0].instructions[0].node {
            kleene_dockerfile::Instruction::Run(r) => r.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shell_exec_and_heredoc_commands() {
        let sh = ["/bin/sh".to_string(), "-c".into()];
        assert_eq!(
            argv(&run_of("RUN echo hi"), &sh),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            argv(&run_of(r#"RUN ["/bin/true", "x"]"#), &sh),
            ["/bin/true", "x"]
        );
        assert_eq!(
            argv(&run_of("RUN <<EOF\necho one\necho two\nEOF"), &sh),
            ["/bin/sh", "-c", "echo one\necho two\n"]
        );
        assert_eq!(
            argv(&run_of("RUN cat <<EOF\nbody\nEOF"), &sh),
            ["/bin/sh", "-c", "cat <<EOF\nbody\nEOF"]
        );
    }

    #[test]
    fn networks_and_refused_flags() {
        let flags = |l: &str| run_of(l).flags;
        let n = |l: &str| network(&flags(l), Driver::Host);
        assert_eq!(n("RUN true").ok(), Some(Driver::Host));
        assert_eq!(n("RUN --network=none true").ok(), Some(Driver::Disabled));
        assert_eq!(n("RUN --network=default true").ok(), Some(Driver::Host));
        assert_eq!(
            network(&flags("RUN true"), Driver::Disabled).ok(),
            Some(Driver::Disabled)
        );
        assert_eq!(
            n("RUN --network=bridge true").map_err(|e| e.to_string()),
            Err(
                "network \"bridge\" is not supported in RUN: use default, host or none".to_string()
            )
        );
        assert!(check_flags(&flags("RUN --mount=type=cache,target=/x true")).is_err());
        assert!(check_flags(&flags("RUN true")).is_ok());
    }
}
