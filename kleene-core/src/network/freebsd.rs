//! FreeBSD (and other systems, for now): networks are not set up here yet; every
//! operation says so.

use kleene_net::model::FirewallInput;

use crate::error::{CoreError, Result};
use crate::id::Id;
use crate::model::{Container, Endpoint, Network};

fn unsupported<T>() -> Result<T> {
    Err(CoreError::Unsupported(
        "networks are set up on Linux only in this version".into(),
    ))
}

pub async fn interfaces() -> Result<Vec<String>> {
    Ok(Vec::new())
}

pub async fn default_route_interface() -> Result<Option<String>> {
    Ok(None)
}

pub async fn ensure_interface(_: &Network) -> Result<()> {
    unsupported()
}

pub async fn remove_interface(_: &Network) -> Result<()> {
    Ok(())
}

pub fn host_link(container: &Id, slot: u8) -> String {
    format!("epair{}{slot}", &container.as_str()[..6])
}

pub async fn attach_running(_: &Container, _: &Network, _: &Endpoint) -> Result<()> {
    unsupported()
}

pub async fn detach_running(_: &Container, _: &Endpoint) -> Result<()> {
    unsupported()
}

/// What a starting container's network needs alive until its jail runs.
pub type Hold = ();

pub async fn prepare(
    _: &Container,
    _: &[(Network, Endpoint)],
) -> Result<(kleene_jail::NetworkMode, Hold)> {
    unsupported()
}

pub fn render(input: &FirewallInput) -> Result<String> {
    kleene_net::pf::render_pf(input, kleene_net::pf::DEFAULT_PF_TEMPLATE)
        .map_err(|e| CoreError::Network(e.to_string()))
}

pub fn load(_: &str) -> Result<()> {
    unsupported()
}
