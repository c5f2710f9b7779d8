#![doc = include_str!("../README.md")]
// The docs show where kleene_core::init goes: first in `main`.
#![allow(clippy::needless_doctest_main)]

pub mod archive;
mod build;
mod config;
mod container;
mod engine;
#[cfg(test)]
mod engine_tests;
mod error;
mod event;
mod export;
mod fetch;
mod id;
mod image;
mod interrupt;
mod jails;
mod layer;
mod limits;
mod meta;
mod model;
mod monitor;
mod network;
mod oci;
mod pull;
mod push;
mod rootfs;
mod sign;
#[cfg(test)]
mod testkit;
mod tree;
mod vars;
mod volume;
mod watch;

pub use build::{BuildOutcome, BuildRequest};
pub use config::{
    Config, Registries, RegistryCredentials, SignaturePolicy, FREEBSD_RELEASE_TEMPLATE,
};
pub use container::{
    check_container_name, Attach, ContainerUpdate, CreateContainer, ExecSpec, Exit, StartOverrides,
    Started,
};
pub use engine::{Engine, EngineBuilder, Repairs};
pub use error::{CoreError, MetadataError, Object, Result};
pub use event::{Event, Events, OutputStream};
pub use export::{Exported, SaveOptions};
pub use id::{Id, ID_LEN};
pub use image::{fetch_auto_url, parse_nametag, BaseSource, CreateImage, IMAGE_SNAPSHOT};
pub use interrupt::Interrupt;
pub use jails::{EndFuture, HostJails, JailRun, Jails, RunEnd, RunFuture};
pub use limits::{ContainerStats, Limits, CGROUP_PARENT};
pub use model::{
    Container, ContainerConfig, Driver, Endpoint, Gateway, Image, ImageConfig, ImageOrigin,
    ImageSnapshot, Instruction, JailParamText, MountSource, MountSpec, Nat, Network, NetworkSpec,
    NetworkType, PortRange, Protocol, PublishedPort, RestartPolicy, RunState, Runtime, Seccomp,
    StopSignal, UserNs, Volume,
};
pub use monitor::init;
pub use network::Addresses;
pub use pull::{local_name, names_a_registry, PullImage};
pub use push::Pushed;
pub use sign::SignWith;
pub use volume::check_volume_name;

/// Re-exported so that callers name datasets with the same types.
pub use kleene_dockerfile;
pub use kleene_jail;
pub use kleene_net;
pub use kleene_oci;
pub use kleene_zfs;

/// Crash testing, built only with the `failpoints` feature: when `KLEENE_FAILPOINT` names
/// this point, the process dies here at once, as a power cut or `kill -9` would leave it.
/// Tests use it to prove that `Engine::open` repairs every such state.
/// `KLEENE_FAILPOINT_SLEEP` naming it pauses there for two seconds instead, so a test can
/// act while an operation is half-way. Without the feature it is nothing.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    if std::env::var_os("KLEENE_FAILPOINT").is_some_and(|v| v == name) {
        std::process::abort();
    }
    if std::env::var_os("KLEENE_FAILPOINT_SLEEP").is_some_and(|v| v == name) {
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}
