//! `klee image build PATH` (and `klee build`): klee's build transcript from the engine's
//! events.

use std::io::Write;

use kleene_core::{Addresses, BuildRequest, CoreError, Driver, Event, Events, MountSpec};

use crate::cli::BuildArgs;
use crate::failure::{Failure, Outcome};
use crate::Ctx;

/// The request for `Engine::build`; refuses the build-container options the engine does
/// not take yet.
fn request(a: BuildArgs) -> Result<BuildRequest, Failure> {
    let c = a.container;
    if c.network.is_none() && matches!(c.driver, Some(Driver::Ipnet | Driver::Vnet)) {
        return Err(Failure::usage(format!(
            "--driver {} needs a network: give one with --network",
            c.driver.unwrap_or_default()
        )));
    }
    if let Some(kv) = c.env.iter().find(|kv| !kv.contains('=')) {
        return Err(Failure::usage(format!("invalid --env {kv:?}: VAR=VALUE")));
    }
    let mut build_args = Vec::new();
    for kv in a.build_arg {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // docker's form: the value is taken from klee's environment.
            None => match std::env::var(&kv) {
                Ok(v) => (kv.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            return Err(Failure::usage(format!(
                "invalid --build-arg {kv:?}: NAME=value"
            )));
        }
        build_args.push((k, v));
    }
    let mut req = BuildRequest::new(&a.path)
        .dockerfile(a.path.join(&a.file))
        .no_cache(a.no_cache)
        .rm(a.rm)
        .quiet(a.quiet)
        .driver(match c.driver {
            Some(Driver::Disabled) => Driver::Disabled,
            _ => Driver::Host,
        });
    if let Some(n) = c.network {
        req = req.network(n, Addresses::new(c.ip, c.ip6));
    }
    if let Some(u) = c.user {
        req = req.user(u);
    }
    for m in &c.mount {
        req = req.mount(MountSpec::parse(m).map_err(|e| Failure::usage(e.to_string()))?);
    }
    for kv in c.env {
        req = req.env(kv);
    }
    if let Some(tag) = a.tag {
        req = req.tag(tag);
    }
    if let Some(from) = a.from {
        req = req.from_image(from);
    }
    if let Some(target) = a.target {
        req = req.target(target);
    }
    for (k, v) in build_args {
        req = req.build_arg(k, v);
    }
    for p in c.jailparam {
        req = req.jail_param(p);
    }
    Ok(req)
}

/// A build event as klee prints it (without its last line end), on stdout with the rest
/// of the transcript and RUN steps' output: kleened's frame of it, printed as klee prints
/// frames ([`kleene_api::transcript`]); `None` for events that print nothing.
fn line(event: &Event) -> Option<String> {
    use kleene_api::transcript::{build_failed, build_frame, build_started, printed_build_frame};
    Some(match event {
        Event::BuildStarted { id } => build_started(id.as_str()),
        Event::BuildFailed {
            image,
            snapshot,
            reason,
        } => match snapshot {
            Some(s) => format!("{reason}\n{}", build_failed(image.as_str(), s)),
            None => format!("{reason}\nFailed to build image {image}."),
        },
        Event::Repaired(s) => format!("repaired: {s}"),
        e => {
            let mut text = printed_build_frame(&build_frame(e)?);
            if text.ends_with('\n') {
                text.pop();
            }
            text
        }
    })
}

/// `klee image build [OPTIONS] PATH`.
pub async fn build(ctx: &Ctx, a: BuildArgs) -> Outcome {
    if let Some(client) = ctx.client()? {
        return crate::remote::build(&client, a).await;
    }
    let quiet = a.quiet;
    let req = request(a)?;
    let engine = ctx.engine().await?;
    // Ctrl-C kills the running step and keeps the build as <name>:failed.
    let interrupt = crate::signals::watch("build");
    let req = req.interrupt(interrupt.clone());
    let told = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let told_in_events = std::sync::Arc::clone(&told);
    let events = Events::new(move |e| {
        if matches!(e, Event::BuildFailed { .. }) {
            told_in_events.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // Quiet, only a failure is told (and the id of a success printed).
        if quiet && !matches!(e, Event::BuildFailed { .. }) {
            return;
        }
        if let Some(text) = line(&e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    });
    match engine.build(req, events).await {
        Ok(outcome) => {
            if !quiet {
                // klee ends the transcript with an empty line, then kleened's closing
                // message.
                println!();
                println!("image created");
            }
            println!("{}", outcome.image.id);
            Ok(0)
        }
        // Its lines were printed from the BuildFailed event; without one (the engine could
        // not keep the failed state either, ZFS gone for instance) the error says it.
        Err(CoreError::BuildFailed { .. }) if told.load(std::sync::atomic::Ordering::SeqCst) => {
            Err(Failure::reported(if interrupt.is_interrupted() {
                crate::signals::ABORTED
            } else {
                crate::failure::FAILED
            }))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kleene_core::Id;

    #[test]
    fn lines_read_like_klee() {
        let id = Id::parse("f472c80affa4").expect("a valid id");
        assert_eq!(
            line(&Event::BuildStarted { id: id.clone() }).as_deref(),
            Some("Started to build image with ID f472c80affa4")
        );
        assert_eq!(
            line(&Event::BuildStep {
                n: 2,
                total: 7,
                text: "RUN sysrc postgresql_enable=yes".into()
            })
            .as_deref(),
            Some("Step 2/7 : RUN sysrc postgresql_enable=yes")
        );
        assert_eq!(
            line(&Event::SnapshotCreated {
                snapshot: "@fb70baa07e6e".into()
            })
            .as_deref(),
            Some("--> Snapshot created: @fb70baa07e6e")
        );
        assert_eq!(
            line(&Event::BuildFailed {
                image: id,
                snapshot: Some("@fb70baa07e6e".into()),
                reason: "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
            })
            .as_deref(),
            Some(
                "The command '/bin/sh -c false' returned a non-zero code: 1\n\
                 Failed to build image f472c80affa4. Most recent snapshot is @fb70baa07e6e"
            )
        );
    }
}
