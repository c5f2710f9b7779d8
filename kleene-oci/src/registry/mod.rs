//! A client of the OCI distribution API (registries): references, manifests and
//! indexes, blobs downloaded with resume and verified as they stream, uploads, tags, and
//! the registries' Bearer-token and Basic authentication.
//!
//! Loopback registries (`localhost`, `127.0.0.0/8`, `::1`) are spoken to over plain
//! http, as Docker does; those listed as insecure over https without verification, else
//! http; all others over verified https. `docker.io` is `registry-1.docker.io`.

mod auth;
mod client;
mod reference;

pub use client::{Client, Credentials, Fetched, RegistryConfig, RemoteImage, MANIFEST_MEDIA_TYPES};
pub use reference::{Reference, DEFAULT_REGISTRY};
