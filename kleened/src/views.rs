//! kleene-core's model in the JSON shapes of kleened's OpenAPI schemas (`Container`,
//! `ContainerSummary`, `ContainerInspect`, `Image`, `Volume`, `VolumeInspect`, ...): the
//! types and conversions of `kleene-api`, shared with `klee`, under the names kleened's
//! handlers use.

pub use kleene_api::types::{
    Container as ContainerView, ContainerInspect, ContainerStats as ContainerStatsView,
    ContainerSummary, EndPoint as EndpointView, Image as ImageView, MountPoint as MountpointView,
    Network as NetworkView, NetworkInspect, PublishedPort as PublishedPortView,
    Volume as VolumeView, VolumeInspect,
};
pub use kleene_api::views::{
    container_inspect, container_summary, container_view, endpoint_view, image_view, is_running,
    iso8601, mountpoint_views, network_inspect, network_view, stats_view, volume_inspect,
    volume_view,
};
