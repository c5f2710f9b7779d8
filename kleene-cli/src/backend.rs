//! Where klee's commands go: the engine itself (embedded, the default), or a kleened
//! (`--host`). Each operation answers in kleened's shapes (`kleene_api`), so that every
//! command renders one way whichever backend did the work.

use std::time::Duration;

use kleene_api::client::{encode, Client, Method, Response};
use kleene_api::views;
use kleene_api::{
    ContainerConfig, ContainerInspect, ContainerSummary, EndPointConfig, IdResponse, Image,
    Network, NetworkConfig, NetworkInspect, Volume, VolumeConfig, VolumeInspect,
};
use kleene_core::{Addresses, ContainerStats, ContainerUpdate, Engine, NetworkSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::failure::Failure;

/// The engine, or a kleened.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Daemonless: the engine on the root dataset.
    Local(Engine),
    /// kleened's API.
    Remote(Client),
}

impl From<kleene_api::client::ClientError> for Failure {
    fn from(e: kleene_api::client::ClientError) -> Self {
        Failure::failed(e.to_string())
    }
}

/// A failure from kleened's answer: its `ErrorResponse` message.
fn refused(r: &Response) -> Failure {
    let message = r.message();
    if message.is_empty() {
        Failure::failed(format!("kleened answered {}", r.status))
    } else {
        Failure::failed(message)
    }
}

/// The body of a successful answer as `T`.
fn answer<T: DeserializeOwned>(r: Response) -> Result<T, Failure> {
    if !r.is_success() {
        return Err(refused(&r));
    }
    Ok(r.json()?)
}

/// The id of an `IdResponse` answer.
fn answered_id(r: Response) -> Result<String, Failure> {
    answer::<IdResponse>(r).map(|r| r.id)
}

/// A success without a body (`204`).
fn answered_nothing(r: Response) -> Result<(), Failure> {
    if r.is_success() {
        Ok(())
    } else {
        Err(refused(&r))
    }
}

impl Backend {
    async fn get<T: DeserializeOwned>(c: &Client, path: &str) -> Result<T, Failure> {
        answer(c.get(path).await?)
    }

    async fn post<B: Serialize + ?Sized>(
        c: &Client,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response, Failure> {
        Ok(c.request(Method::POST, path, body).await?)
    }

    // ---- images ----

    pub async fn images(&self) -> Result<Vec<Image>, Failure> {
        match self {
            Self::Local(e) => Ok(e.images().await?.iter().map(views::image_view).collect()),
            Self::Remote(c) => Self::get(c, "/images/list").await,
        }
    }

    pub async fn image(&self, target: &str) -> Result<Image, Failure> {
        match self {
            Self::Local(e) => Ok(views::image_view(&e.image(target).await?)),
            Self::Remote(c) => Self::get(c, &format!("/images/{}/inspect", encode(target))).await,
        }
    }

    /// Removes an image; its id.
    pub async fn remove_image(&self, target: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.remove_image(target).await?.to_string()),
            Self::Remote(c) => answered_id(c.delete(&format!("/images/{}", encode(target))).await?),
        }
    }

    pub async fn prune_images(&self, all: bool) -> Result<Vec<String>, Failure> {
        match self {
            Self::Local(e) => Ok(e
                .prune_images(all)
                .await?
                .iter()
                .map(ToString::to_string)
                .collect()),
            Self::Remote(c) => {
                answer(Self::post::<()>(c, &format!("/images/prune?all={all}"), None).await?)
            }
        }
    }

    /// Tags an image; its id.
    pub async fn tag_image(&self, source: &str, nametag: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.tag_image(source, nametag).await?.id.to_string()),
            Self::Remote(c) => {
                let path = format!("/images/{}/tag?nametag={}", encode(source), encode(nametag));
                answered_id(Self::post::<()>(c, &path, None).await?)
            }
        }
    }

    // ---- volumes ----

    pub async fn volumes(&self) -> Result<Vec<Volume>, Failure> {
        match self {
            Self::Local(e) => Ok(e.volumes().await?.iter().map(views::volume_view).collect()),
            Self::Remote(c) => Self::get(c, "/volumes/list").await,
        }
    }

    pub async fn volume(&self, name: &str) -> Result<VolumeInspect, Failure> {
        match self {
            Self::Local(e) => {
                let volume = e.volume(name).await?;
                let containers = e.containers().await?;
                Ok(views::volume_inspect(&volume, &containers))
            }
            Self::Remote(c) => Self::get(c, &format!("/volumes/{}/inspect", encode(name))).await,
        }
    }

    /// Creates a volume; its name.
    pub async fn create_volume(&self, name: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.create_volume(name).await?.name),
            Self::Remote(c) => {
                let body = VolumeConfig { name: name.into() };
                answered_id(Self::post(c, "/volumes/create", Some(&body)).await?)
            }
        }
    }

    /// Removes a volume; its name.
    pub async fn remove_volume(&self, name: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => {
                e.remove_volume(name).await?;
                Ok(name.to_string())
            }
            Self::Remote(c) => answered_id(c.delete(&format!("/volumes/{}", encode(name))).await?),
        }
    }

    pub async fn prune_volumes(&self) -> Result<Vec<String>, Failure> {
        match self {
            Self::Local(e) => Ok(e.prune_volumes().await?),
            Self::Remote(c) => answer(Self::post::<()>(c, "/volumes/prune", None).await?),
        }
    }

    // ---- containers ----

    /// The containers, running ones only unless `all`.
    pub async fn containers(&self, all: bool) -> Result<Vec<ContainerSummary>, Failure> {
        match self {
            Self::Local(e) => {
                let images = e.images().await?;
                Ok(e.containers()
                    .await?
                    .iter()
                    .filter(|c| all || views::is_running(c))
                    .map(|c| {
                        views::container_summary(c, images.iter().find(|i| i.id == c.image_id))
                    })
                    .collect())
            }
            Self::Remote(c) => Self::get(c, &format!("/containers/list?all={all}")).await,
        }
    }

    pub async fn container(&self, target: &str) -> Result<ContainerInspect, Failure> {
        match self {
            Self::Local(e) => {
                let container = e.container(target).await?;
                let endpoints = e.endpoints(None, Some(&container.id)).await?;
                Ok(views::container_inspect(&container, &endpoints))
            }
            Self::Remote(c) => {
                Self::get(c, &format!("/containers/{}/inspect", encode(target))).await
            }
        }
    }

    /// Removes a container (stopping it first when `force`); its id.
    pub async fn remove_container(&self, target: &str, force: bool) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.remove_container(target, force).await?.to_string()),
            Self::Remote(c) => {
                if force {
                    // As klee: stop it first, and never mind a container not running.
                    let path = format!("/containers/{}/stop", encode(target));
                    let _ = Self::post::<()>(c, &path, None).await?;
                }
                answered_id(c.delete(&format!("/containers/{}", encode(target))).await?)
            }
        }
    }

    pub async fn prune_containers(&self) -> Result<Vec<String>, Failure> {
        match self {
            Self::Local(e) => Ok(e
                .prune_containers()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect()),
            Self::Remote(c) => answer(Self::post::<()>(c, "/containers/prune", None).await?),
        }
    }

    /// Stops a container; its id. kleened stops with its own timeout.
    pub async fn stop_container(&self, target: &str, timeout: Duration) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.stop_container(target, timeout).await?.id.to_string()),
            Self::Remote(c) => {
                let path = format!("/containers/{}/stop", encode(target));
                answered_id(Self::post::<()>(c, &path, None).await?)
            }
        }
    }

    /// Updates a container: `local` for the engine, `remote` the same as kleened's body;
    /// its id.
    pub async fn update_container(
        &self,
        target: &str,
        local: ContainerUpdate,
        remote: &ContainerConfig,
    ) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.update_container(target, local).await?.id.to_string()),
            Self::Remote(c) => {
                let path = format!("/containers/{}/update", encode(target));
                answered_id(Self::post(c, &path, Some(remote)).await?)
            }
        }
    }

    /// The resource use of a running container, read from its resource group (through
    /// kleened: its `GET /containers/{id}/stats` extension).
    pub async fn container_stats(&self, target: &str) -> Result<ContainerStats, Failure> {
        match self {
            Self::Local(e) => Ok(e.container_stats(target).await?),
            Self::Remote(c) => {
                let path = format!("/containers/{}/stats", encode(target));
                let stats: kleene_api::ContainerStats = Self::get(c, &path).await?;
                views::stats_of(&stats).map_err(|e| {
                    Failure::failed(format!("kleened answered stats klee cannot read: {e}"))
                })
            }
        }
    }

    /// Renames a container; its id.
    pub async fn rename_container(&self, target: &str, name: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.rename_container(target, name).await?.id.to_string()),
            Self::Remote(_) => {
                let body = ContainerConfig {
                    name: Some(name.into()),
                    ..ContainerConfig::default()
                };
                self.update_container(target, ContainerUpdate::new(), &body)
                    .await
            }
        }
    }

    // ---- networks ----

    pub async fn networks(&self) -> Result<Vec<Network>, Failure> {
        match self {
            Self::Local(e) => Ok(e
                .networks()
                .await?
                .iter()
                .map(views::network_view)
                .collect()),
            Self::Remote(c) => Self::get(c, "/networks/list").await,
        }
    }

    pub async fn network(&self, target: &str) -> Result<NetworkInspect, Failure> {
        match self {
            Self::Local(e) => {
                let network = e.network(target).await?;
                let mut endpoints = Vec::new();
                for ep in e.endpoints(Some(&network.id), None).await? {
                    // A container being made (or a build) has an endpoint but no ready
                    // row yet.
                    match e.container(ep.container.as_str()).await {
                        Ok(_) => endpoints.push(ep),
                        Err(kleene_core::CoreError::NotFound { .. }) => continue,
                        Err(err) => return Err(err.into()),
                    }
                }
                Ok(views::network_inspect(&network, &endpoints))
            }
            Self::Remote(c) => Self::get(c, &format!("/networks/{}/inspect", encode(target))).await,
        }
    }

    /// Creates a network; its id.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.create_network(spec).await?.id.to_string()),
            Self::Remote(c) => {
                let body = NetworkConfig {
                    gateway: spec.gateway.to_string(),
                    gateway6: spec.gateway6.to_string(),
                    icc: spec.icc,
                    interface: spec.interface.clone().unwrap_or_default(),
                    internal: spec.internal,
                    name: spec.name.clone(),
                    nat: spec.nat.to_string(),
                    subnet: spec.subnet.map(|s| s.to_string()).unwrap_or_default(),
                    subnet6: spec.subnet6.map(|s| s.to_string()).unwrap_or_default(),
                    kind: spec.kind.to_string(),
                };
                answered_id(Self::post(c, "/networks/create", Some(&body)).await?)
            }
        }
    }

    /// Removes a network; its id.
    pub async fn remove_network(&self, target: &str) -> Result<String, Failure> {
        match self {
            Self::Local(e) => Ok(e.remove_network(target).await?.to_string()),
            Self::Remote(c) => {
                answered_id(c.delete(&format!("/networks/{}", encode(target))).await?)
            }
        }
    }

    pub async fn prune_networks(&self) -> Result<Vec<String>, Failure> {
        match self {
            Self::Local(e) => Ok(e
                .prune_networks()
                .await?
                .iter()
                .map(ToString::to_string)
                .collect()),
            Self::Remote(c) => answer(Self::post::<()>(c, "/networks/prune", None).await?),
        }
    }

    /// Connects a container to a network, at the addresses given or free ones.
    pub async fn connect(
        &self,
        container: &str,
        network: &str,
        addresses: Addresses,
    ) -> Result<(), Failure> {
        match self {
            Self::Local(e) => {
                e.connect(container, network, addresses).await?;
                Ok(())
            }
            Self::Remote(c) => {
                let body = EndPointConfig {
                    container: container.into(),
                    network: network.into(),
                    ip_address: addresses.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                    ip_address6: addresses.ipv6.map(|a| a.to_string()).unwrap_or_default(),
                };
                answered_nothing(Self::post(c, "/networks/connect", Some(&body)).await?)
            }
        }
    }

    pub async fn disconnect(&self, container: &str, network: &str) -> Result<(), Failure> {
        match self {
            Self::Local(e) => {
                e.disconnect(container, network).await?;
                Ok(())
            }
            Self::Remote(c) => {
                let path = format!(
                    "/networks/{}/disconnect/{}",
                    encode(network),
                    encode(container)
                );
                answered_nothing(Self::post::<()>(c, &path, None).await?)
            }
        }
    }
}
