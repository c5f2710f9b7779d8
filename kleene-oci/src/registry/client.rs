//! The HTTP side of the distribution API: manifests, blobs (resumed, verified as they
//! stream), uploads, tags, and the registries' authentication.

use std::collections::{BTreeMap, HashMap};
use std::io::SeekFrom;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_spec::image::MediaType;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK,
    LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::auth::{parse_challenge, Challenge};
use super::reference::{host_is_loopback, host_of, Reference};
use crate::image::{
    digest_of, image_of, not_an_image, parse_index, parse_manifest, pick_for, too_deep, MAX_DEPTH,
};
use crate::layout::{is_index, is_manifest, MAX_JSON_BLOB};
use crate::{Digest, Error, Platform, ResolvedImage, Result};

/// The manifest media types asked for (`Accept`).
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// How many redirects a request follows.
const MAX_REDIRECTS: usize = 10;
/// How many pages of tags are read.
const MAX_TAG_PAGES: usize = 10_000;
/// The size of the chunks an upload is read from its file in.
const UPLOAD_CHUNK: u64 = 256 * 1024;

/// A user name and password for a registry (Basic authentication, or to get tokens).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a [`Client`] speaks to registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`, or `host` for all its ports) spoken to over https
    /// without verifying their certificates, or else plain http. Loopback registries
    /// are spoken to over http without being listed; all others over verified https.
    pub insecure: Vec<String>,
    /// Credentials by registry (`host[:port]`, `docker.io` for Docker Hub).
    pub credentials: BTreeMap<String, Credentials>,
    /// The `User-Agent` sent.
    pub user_agent: String,
    /// The connect timeout and the longest wait for more data (not a whole transfer's).
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            credentials: BTreeMap::new(),
            user_agent: format!("kleene/{}", env!("CARGO_PKG_VERSION")),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A manifest or index as a registry served it, verified against its digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its media type (its `mediaType` field, else the `Content-Type` it was served as).
    pub media_type: String,
    /// The digest of its bytes.
    pub digest: Digest,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// An image of a registry, resolved for a platform.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The reference resolved.
    pub reference: Reference,
    /// The digest of what the reference names (an index, or the manifest itself).
    pub top_digest: Digest,
    /// The image.
    pub image: ResolvedImage,
}

/// What a request needs to be allowed to do.
#[derive(Debug, Clone)]
enum Scope {
    Pull,
    Push,
    /// Push, and pull from another repository (a cross-repository mount).
    Mount(String),
}

impl Scope {
    fn scopes(&self, repository: &str) -> Vec<String> {
        match self {
            Scope::Pull => vec![format!("repository:{repository}:pull")],
            Scope::Push => vec![format!("repository:{repository}:pull,push")],
            Scope::Mount(from) => vec![
                format!("repository:{repository}:pull,push"),
                format!("repository:{from}:pull"),
            ],
        }
    }
}

/// How requests to a registry are authenticated.
#[derive(Clone)]
enum Auth {
    Bearer(String),
    Basic(Credentials),
}

/// A registry client (cheap to clone: clones share connections and tokens).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    /// Verifies certificates.
    http: reqwest::Client,
    /// For the insecure registries: does not.
    lax: reqwest::Client,
    /// Authorization by (registry, scopes).
    auth: Mutex<HashMap<(String, String), Auth>>,
    /// The base URL (`scheme://host/`) found for each insecure registry.
    bases: Mutex<HashMap<String, Url>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// A URL as errors show it: without its query (upload states, token scopes).
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn hasher_digest(h: Sha256) -> Result<Digest> {
    let sum = h.finalize();
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in sum {
        hex.push_str(&format!("{b:02x}"));
    }
    Digest::parse(&hex)
}

/// A blob's file while the blob downloads into it: how much of the blob it holds, and
/// the hash of that.
struct BlobFile<'a> {
    file: tokio::fs::File,
    /// How many bytes of the blob the file holds.
    have: u64,
    /// The hash of those bytes.
    hasher: Sha256,
    /// The file's path.
    dest: &'a Path,
    /// The blob's digest.
    digest: &'a Digest,
}

/// An I/O error on `dest`, the file of blob `digest`, while doing `what`.
fn blob_io(what: &str, dest: &Path, digest: &Digest, e: std::io::Error) -> Error {
    Error::io(format!("{what} {} (blob {digest})", dest.display()), e)
}

impl<'a> BlobFile<'a> {
    /// Opens (or makes) `dest` for blob `digest`, keeping what it holds.
    async fn open(dest: &'a Path, digest: &'a Digest) -> Result<Self> {
        let io = |what: &str, e| blob_io(what, dest, digest, e);
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dest)
            .await
            .map_err(|e| io("opening", e))?;
        let have = file.metadata().await.map_err(|e| io("reading", e))?.len();
        Ok(Self {
            file,
            have,
            hasher: Sha256::new(),
            dest,
            digest,
        })
    }

    /// Hashes what the file holds of a blob of `size` bytes (nothing when it holds more):
    /// whether that is the whole blob, verified.
    async fn resume(&mut self, size: u64) -> Result<bool> {
        let (dest, digest) = (self.dest, self.digest);
        let io = |what: &str, e| blob_io(what, dest, digest, e);
        if self.have > size {
            self.have = 0;
        } else if self.have > 0 {
            // Re-hash what is there.
            let mut left = self.have;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self
                    .file
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| io("reading", e))?;
                if n == 0 {
                    break;
                }
                self.hasher.update(&buf[..n]);
                left -= n as u64;
            }
            self.have -= left;
            if self.have == size {
                if hasher_digest(self.hasher.clone())? == *digest {
                    return Ok(true);
                }
                self.have = 0;
                self.hasher = Sha256::new();
            }
        }
        Ok(false)
    }

    /// Cuts the file to the bytes of the blob it holds, and moves to their end.
    async fn cut(&mut self) -> Result<()> {
        let (dest, digest) = (self.dest, self.digest);
        let io = |what: &str, e| blob_io(what, dest, digest, e);
        self.file
            .set_len(self.have)
            .await
            .map_err(|e| io("truncating", e))?;
        self.file
            .seek(SeekFrom::Start(self.have))
            .await
            .map_err(|e| io("seeking", e))?;
        Ok(())
    }

    /// Writes the rest of the blob, from `resp`, and verifies its size and digest; on a
    /// mismatch the file is removed.
    async fn receive(
        self,
        r: &Reference,
        resp: reqwest::Response,
        size: u64,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<()> {
        let BlobFile {
            mut file,
            mut have,
            mut hasher,
            dest,
            digest,
        } = self;
        let io = |what: &str, e| blob_io(what, dest, digest, e);
        let url = resp.url().clone();
        let mut stream = resp.bytes_stream();
        let remove = |reason: String| async move {
            let _ = tokio::fs::remove_file(dest).await;
            Error::Mismatch {
                digest: digest.to_string(),
                reason: format!("from {r}: {reason}; {} removed", dest.display()),
            }
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Client::transport(&r.registry, &url, &e))?;
            let n = chunk.len() as u64;
            if have + n > size {
                drop(file);
                return Err(remove(format!("it is longer than its {size} bytes")).await);
            }
            file.write_all(&chunk).await.map_err(|e| io("writing", e))?;
            hasher.update(&chunk);
            have += n;
            progress(have);
        }
        file.flush().await.map_err(|e| io("writing", e))?;
        drop(file);
        if have != size {
            return Err(remove(format!("it ended after {have} of its {size} bytes")).await);
        }
        let got = hasher_digest(hasher)?;
        if got != *digest {
            return Err(remove(format!("its content has the digest {got}")).await);
        }
        Ok(())
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

type BodyFn<'a> = &'a (dyn Fn() -> Result<Option<reqwest::Body>> + Send + Sync);

fn no_body() -> Result<Option<reqwest::Body>> {
    Ok(None)
}

impl Client {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Result<Client> {
        let build = |lax: bool| {
            reqwest::Client::builder()
                .user_agent(config.user_agent.clone())
                .connect_timeout(config.timeout)
                .read_timeout(config.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .danger_accept_invalid_certs(lax)
                .build()
                .map_err(|e| Error::Registry {
                    registry: "(all)".into(),
                    reason: format!("cannot make an HTTP client: {}", error_chain(&e)),
                })
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http: build(false)?,
                lax: build(true)?,
                config,
                auth: Mutex::new(HashMap::new()),
                bases: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.inner
            .config
            .insecure
            .iter()
            .any(|i| i == registry || i == host_of(registry))
    }

    fn client_for(&self, registry: &str) -> &reqwest::Client {
        if self.is_insecure(registry) {
            &self.inner.lax
        } else {
            &self.inner.http
        }
    }

    fn credentials(&self, registry: &str) -> Option<&Credentials> {
        let creds = &self.inner.config.credentials;
        creds.get(registry).or_else(|| {
            if registry == "docker.io" {
                [
                    "registry-1.docker.io",
                    "index.docker.io",
                    "https://index.docker.io/v1/",
                ]
                .iter()
                .find_map(|k| creds.get(*k))
            } else {
                None
            }
        })
    }

    fn transport(registry: &str, url: &Url, e: &reqwest::Error) -> Error {
        Error::Registry {
            registry: registry.to_string(),
            reason: format!("{}: {}", shown(url), error_chain(e)),
        }
    }

    /// `scheme://host/` of a registry: http for loopback ones, https (unverified, else
    /// http) for insecure ones, https for the others.
    async fn base(&self, registry: &str) -> Result<Url> {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let parse = |s: String| {
            Url::parse(&s).map_err(|e| Error::Registry {
                registry: registry.to_string(),
                reason: format!("not a host: {e}"),
            })
        };
        if host_is_loopback(host) {
            return parse(format!("http://{host}/"));
        }
        if !self.is_insecure(registry) {
            return parse(format!("https://{host}/"));
        }
        if let Some(u) = self.lock_bases().get(registry) {
            return Ok(u.clone());
        }
        let https = parse(format!("https://{host}/"))?;
        let probe = https.join("v2/").map_err(|e| Error::Registry {
            registry: registry.to_string(),
            reason: e.to_string(),
        })?;
        let base = match self.inner.lax.get(probe).send().await {
            Ok(_) => https,
            Err(_) => parse(format!("http://{host}/"))?,
        };
        self.lock_bases().insert(registry.to_string(), base.clone());
        Ok(base)
    }

    fn lock_bases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Url>> {
        self.inner
            .bases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Auth>> {
        self.inner
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn url(&self, r: &Reference, path: &str) -> Result<Url> {
        let base = self.base(&r.registry).await?;
        base.join(&format!("v2/{}/{path}", r.repository))
            .map_err(|e| Error::Registry {
                registry: r.registry.clone(),
                reason: format!("bad URL for {r}: {e}"),
            })
    }

    /// Sends a request to `r`'s registry, authenticating on a 401 (once), and following
    /// the redirects of a GET or HEAD (without the registry's credentials to another
    /// host).
    async fn send(
        &self,
        r: &Reference,
        scope: &Scope,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: BodyFn<'_>,
    ) -> Result<reqwest::Response> {
        let follow = method == Method::GET || method == Method::HEAD;
        let registry = &r.registry;
        let scopes = scope.scopes(&r.repository);
        let key = (registry.clone(), scopes.join(" "));
        let origin = self.base(registry).await?;
        let client = self.client_for(registry);
        let mut retried = false;
        loop {
            let auth = self.lock_auth().get(&key).cloned();
            let mut req = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if same_origin(&url, &origin) {
                req = apply(req, auth.as_ref());
            }
            if let Some(b) = body()? {
                req = req.body(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| Self::transport(registry, &url, &e))?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                if retried {
                    let e = status_error(&url, resp).await;
                    return Err(Error::Auth {
                        registry: registry.clone(),
                        reason: format!("refused after authenticating: {e}"),
                    });
                }
                retried = true;
                let new = self.answer_challenge(registry, &scopes, &url, resp).await?;
                self.lock_auth().insert(key.clone(), new);
                continue;
            }
            if follow && resp.status().is_redirection() {
                return self
                    .follow(r, &method, &origin, auth.as_ref(), &headers, resp)
                    .await;
            }
            return Ok(resp);
        }
    }

    /// The authorization that answers the challenge of `resp`, a 401 of `registry` to
    /// `url`: a token for `scopes` (and the scope the challenge names), or the
    /// registry's user name and password.
    async fn answer_challenge(
        &self,
        registry: &str,
        scopes: &[String],
        url: &Url,
        resp: reqwest::Response,
    ) -> Result<Auth> {
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        match challenge {
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut all = scopes.to_vec();
                if let Some(s) = scope.filter(|s| !all.contains(s)) {
                    all.push(s);
                }
                let token = self
                    .token(registry, &realm, service.as_deref(), &all)
                    .await?;
                Ok(Auth::Bearer(token))
            }
            Some(Challenge::Basic) => match self.credentials(registry) {
                Some(c) => Ok(Auth::Basic(c.clone())),
                None => Err(Error::Auth {
                    registry: registry.to_string(),
                    reason: format!(
                        "{} asks for a user name and password and none is configured",
                        shown(url)
                    ),
                }),
            },
            None => {
                let e = status_error(url, resp).await;
                Err(Error::Auth {
                    registry: registry.to_string(),
                    reason: format!("no challenge this client answers: {e}"),
                })
            }
        }
    }

    /// Follows the redirects of a GET or HEAD (blob storage), sending the registry's
    /// authorization only to the registry itself.
    async fn follow(
        &self,
        r: &Reference,
        method: &Method,
        origin: &Url,
        auth: Option<&Auth>,
        headers: &HeaderMap,
        mut resp: reqwest::Response,
    ) -> Result<reqwest::Response> {
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let from = resp.url().clone();
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::Http {
                    url: shown(&from),
                    status: resp.status().as_u16(),
                    reason: "a redirect without a Location".into(),
                })?;
            let next = from.join(location).map_err(|e| Error::Http {
                url: shown(&from),
                status: resp.status().as_u16(),
                reason: format!("a redirect to a bad Location {location:?}: {e}"),
            })?;
            let mut req;
            if same_origin(&next, origin) {
                req = self
                    .client_for(&r.registry)
                    .request(method.clone(), next.clone());
                req = apply(req, auth);
            } else {
                req = self.inner.http.request(method.clone(), next.clone());
            }
            // Range and Accept go along; nothing else of the registry's.
            for name in [RANGE, ACCEPT] {
                if let Some(v) = headers.get(&name) {
                    req = req.header(name, v.clone());
                }
            }
            resp = req
                .send()
                .await
                .map_err(|e| Self::transport(&r.registry, &next, &e))?;
        }
        Err(Error::Registry {
            registry: r.registry.clone(),
            reason: format!("more than {MAX_REDIRECTS} redirects for {r}"),
        })
    }

    /// Gets a token from `realm` for `scopes`, with the registry's credentials if any.
    async fn token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        let auth_err = |reason: String| Error::Auth {
            registry: registry.to_string(),
            reason,
        };
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(format!("its token realm {realm:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(auth_err(format!(
                "its token realm {realm:?} is not http(s)"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.client_for(registry).get(url.clone());
        if let Some(c) = self.credentials(registry) {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|e| {
            auth_err(format!(
                "token service {}: {}",
                shown(&url),
                error_chain(&e)
            ))
        })?;
        if !resp.status().is_success() {
            let e = status_error(&url, resp).await;
            return Err(auth_err(format!("token service: {e}")));
        }
        let bytes = read_limited(resp, 1024 * 1024, &url).await?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| auth_err(format!("token service {}: not JSON: {e}", shown(&url))))?;
        ["token", "access_token"]
            .iter()
            .find_map(|k| json.get(*k).and_then(serde_json::Value::as_str))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| auth_err(format!("token service {} answered no token", shown(&url))))
    }

    /// GETs a manifest or index by tag or digest (OCI's and Docker's schema 2 types), at
    /// most 4 MiB, verified against the reference's digest when it has one and the
    /// `Docker-Content-Digest` the registry sent when it sent one.
    pub async fn manifest(&self, r: &Reference) -> Result<Fetched> {
        let url = self
            .url(r, &format!("manifests/{}", r.tag_or_digest()))
            .await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(
                "application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json",
            ),
        );
        let resp = self
            .send(r, &Scope::Pull, Method::GET, url.clone(), headers, &no_body)
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&url, resp).await);
        }
        let header_digest = resp
            .headers()
            .get(HeaderName::from_static(DOCKER_CONTENT_DIGEST))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, MAX_JSON_BLOB, &url).await?;
        let digest = Digest::of(&bytes);
        let mismatch = |expected: &Digest, what: &str| Error::Mismatch {
            digest: expected.to_string(),
            reason: format!("{r} served a manifest of digest {digest} ({what})"),
        };
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(mismatch(want, "the reference's digest"));
            }
        }
        if let Some(said) = &header_digest {
            if *said != digest {
                return Err(mismatch(said, "its Docker-Content-Digest"));
            }
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                what: "manifest",
                digest: digest.to_string(),
                reason: format!("from {r}: not JSON: {e}"),
            })?;
        let media_type = json
            .get("mediaType")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .or(content_type.filter(|t| MANIFEST_MEDIA_TYPES.contains(&t.as_str())))
            .unwrap_or_else(|| {
                if json.get("manifests").is_some() {
                    MANIFEST_MEDIA_TYPES[1].to_string()
                } else {
                    MANIFEST_MEDIA_TYPES[0].to_string()
                }
            });
        Ok(Fetched {
            media_type,
            digest,
            bytes,
        })
    }

    /// Resolves a reference to the image for `platform`: an index (or Docker manifest
    /// list, nested ones too) is searched for the platform's manifest; then its config
    /// is read (at most 4 MiB, verified).
    pub async fn resolve(&self, r: &Reference, platform: &Platform) -> Result<RemoteImage> {
        let top = self.manifest(r).await?;
        let top_digest = top.digest.clone();
        let mut current = top;
        let mut depth = 0;
        loop {
            let media_type = MediaType::from(current.media_type.as_str());
            if is_index(&media_type) {
                if depth >= MAX_DEPTH {
                    return Err(too_deep(&current.digest));
                }
                let index = parse_index(&current.digest, &current.bytes)?;
                let entry = pick_for(&index, &current.digest, platform)?;
                let d = digest_of(entry)?;
                let size = entry.size();
                let next = self.manifest(&r.with_digest(d.clone())).await?;
                if next.bytes.len() as u64 != size {
                    return Err(Error::Mismatch {
                        digest: d.to_string(),
                        reason: format!(
                            "{r}: it has {} bytes where index {} says {size}",
                            next.bytes.len(),
                            current.digest
                        ),
                    });
                }
                current = next;
                depth += 1;
                continue;
            }
            if !is_manifest(&media_type) {
                return Err(not_an_image(&current.digest, &media_type));
            }
            let manifest = parse_manifest(&current.digest, &current.bytes)?;
            let config_digest = digest_of(manifest.config())?;
            let size = manifest.config().size();
            if size > MAX_JSON_BLOB {
                return Err(Error::Invalid {
                    what: "config",
                    digest: config_digest.to_string(),
                    reason: format!("its {size} bytes are over the {MAX_JSON_BLOB} bytes taken"),
                });
            }
            let config = self.blob_bytes(r, &config_digest, size).await?;
            if config.len() as u64 != size {
                return Err(Error::Mismatch {
                    digest: config_digest.to_string(),
                    reason: format!(
                        "{r}: it has {} bytes where its manifest says {size}",
                        config.len()
                    ),
                });
            }
            let image = image_of(current.digest, manifest, &config)?;
            return Ok(RemoteImage {
                reference: r.clone(),
                top_digest,
                image,
            });
        }
    }

    /// Downloads blob `digest` of `size` bytes into `dest`, resuming a partial file
    /// there (`Range: bytes=N-`; a registry answering 200 instead of 206 restarts it),
    /// hashing as it streams. Its size and digest are verified at the end; on a
    /// mismatch `dest` is removed. A transfer cut short keeps `dest` for a later resume.
    /// `progress(bytes_so_far)` is called as data arrives.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        dest: &Path,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<()> {
        let mut blob = BlobFile::open(dest, digest).await?;
        if blob.resume(size).await? {
            progress(size);
            return Ok(());
        }
        let resp = self.request_blob(r, &mut blob, progress).await?;
        blob.receive(r, resp, size, progress).await
    }

    /// Asks `r`'s registry for the rest of `blob` (all of it when the registry does not
    /// answer the range), the file cut to where the answer starts.
    async fn request_blob(
        &self,
        r: &Reference,
        blob: &mut BlobFile<'_>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<reqwest::Response> {
        let digest = blob.digest;
        let mut restarted = false;
        loop {
            if blob.have == 0 {
                blob.hasher = Sha256::new();
            }
            blob.cut().await?;
            progress(blob.have);
            let url = self.url(r, &format!("blobs/{digest}")).await?;
            let mut headers = HeaderMap::new();
            if blob.have > 0 {
                let v = HeaderValue::from_str(&format!("bytes={}-", blob.have))
                    .expect("a range of digits is a header value");
                headers.insert(RANGE, v);
            }
            let resp = self
                .send(r, &Scope::Pull, Method::GET, url.clone(), headers, &no_body)
                .await?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT if blob.have > 0 => {
                    let range = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if range.starts_with(&format!("bytes {}-", blob.have)) {
                        return Ok(resp);
                    }
                    if restarted {
                        return Err(Error::Http {
                            url: shown(&url),
                            status: 206,
                            reason: format!("blob {digest}: a range {range:?} not asked for"),
                        });
                    }
                }
                StatusCode::OK => {
                    if blob.have == 0 {
                        return Ok(resp);
                    }
                    // The whole blob: start over with it.
                    blob.have = 0;
                    blob.hasher = Sha256::new();
                    blob.cut().await?;
                    progress(0);
                    return Ok(resp);
                }
                StatusCode::RANGE_NOT_SATISFIABLE if blob.have > 0 && !restarted => {}
                _ => return Err(status_error(&url, resp).await),
            }
            // An answer to the range that does not fit: ask for all of it.
            restarted = true;
            blob.have = 0;
        }
    }

    /// Reads a small blob (a config, a signature) whole, verified, at most `max` bytes.
    pub async fn blob_bytes(&self, r: &Reference, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let url = self.url(r, &format!("blobs/{digest}")).await?;
        let resp = self
            .send(
                r,
                &Scope::Pull,
                Method::GET,
                url.clone(),
                HeaderMap::new(),
                &no_body,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&url, resp).await);
        }
        let bytes = read_limited(resp, max, &url).await.map_err(|e| match e {
            Error::Http { reason, .. } => Error::Mismatch {
                digest: digest.to_string(),
                reason: format!("from {r}: {reason}"),
            },
            e => e,
        })?;
        let got = Digest::of(&bytes);
        if got != *digest {
            return Err(Error::Mismatch {
                digest: digest.to_string(),
                reason: format!("from {r}: its content has the digest {got}"),
            });
        }
        Ok(bytes)
    }

    /// HEADs a blob: its size when the registry has it in `r`'s repository.
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<Option<u64>> {
        self.blob_exists_as(r, digest, &Scope::Pull).await
    }

    async fn blob_exists_as(
        &self,
        r: &Reference,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Option<u64>> {
        let url = self.url(r, &format!("blobs/{digest}")).await?;
        let resp = self
            .send(
                r,
                scope,
                Method::HEAD,
                url.clone(),
                HeaderMap::new(),
                &no_body,
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(status_error(&url, resp).await),
        }
    }

    /// Starts an upload (or mounts the blob from `mount`): the upload's URL, or `None`
    /// when the registry mounted the blob.
    async fn start_upload(
        &self,
        r: &Reference,
        digest: &Digest,
        mount: Option<&str>,
    ) -> Result<Option<Url>> {
        let mut url = self.url(r, "blobs/uploads/").await?;
        let scope = match mount {
            Some(from) => {
                url.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", from);
                Scope::Mount(from.to_string())
            }
            None => Scope::Push,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let empty = || Ok(Some(reqwest::Body::from(Vec::new())));
        let resp = self
            .send(r, &scope, Method::POST, url.clone(), headers, &empty)
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::Http {
                        url: shown(&url),
                        status: 202,
                        reason: "an upload without a Location".into(),
                    })?;
                let mut upload = url.join(location).map_err(|e| Error::Http {
                    url: shown(&url),
                    status: 202,
                    reason: format!("an upload Location {location:?} that is not a URL: {e}"),
                })?;
                upload
                    .query_pairs_mut()
                    .append_pair("digest", &digest.to_string());
                Ok(Some(upload))
            }
            _ => Err(status_error(&url, resp).await),
        }
    }

    async fn finish_upload(
        &self,
        r: &Reference,
        url: Url,
        size: u64,
        body: BodyFn<'_>,
    ) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .send(r, &Scope::Push, Method::PUT, url.clone(), headers, body)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&url, resp).await)
        }
    }

    /// Uploads the file at `path` as blob `digest` of `size` bytes (POST, then one PUT
    /// streamed from the file). Returns `false`, having sent nothing, when the
    /// repository has the blob already, and `false` too when the registry mounted it
    /// from `mount_from` (a repository of the same registry, tried first); `true` when
    /// the bytes were uploaded.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        path: &Path,
        mount_from: Option<&str>,
    ) -> Result<bool> {
        if self
            .blob_exists_as(r, digest, &Scope::Push)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::io(format!("reading {} (blob {digest})", path.display()), e))?
            .len();
        if len != size {
            return Err(Error::Mismatch {
                digest: digest.to_string(),
                reason: format!("{} has {len} bytes, not its {size}", path.display()),
            });
        }
        let mount = mount_from.filter(|m| *m != r.repository);
        let Some(url) = self.start_upload(r, digest, mount).await? else {
            return Ok(false);
        };
        let body = || file_body(path, size, digest).map(Some);
        self.finish_upload(r, url, size, &body).await?;
        Ok(true)
    }

    /// Uploads small bytes as a blob (a config, a signature payload); its digest.
    pub async fn push_blob_bytes(&self, r: &Reference, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self
            .blob_exists_as(r, &digest, &Scope::Push)
            .await?
            .is_some()
        {
            return Ok(digest);
        }
        if let Some(url) = self.start_upload(r, &digest, None).await? {
            let body = || Ok(Some(reqwest::Body::from(bytes.to_vec())));
            self.finish_upload(r, url, bytes.len() as u64, &body)
                .await?;
        }
        Ok(digest)
    }

    /// PUTs a manifest or index of `media_type` under the reference's tag (or digest,
    /// which must be the bytes'); its digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if let Some(want) = r.digest.as_ref().filter(|d| **d != digest) {
            return Err(Error::Mismatch {
                digest: want.to_string(),
                reason: format!("the manifest put as {r} has the digest {digest}"),
            });
        }
        let url = self
            .url(r, &format!("manifests/{}", r.tag_or_digest()))
            .await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Invalid {
                what: "manifest",
                digest: digest.to_string(),
                reason: format!("media type {media_type:?} is not a header value"),
            })?,
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        let body = || Ok(Some(reqwest::Body::from(bytes.to_vec())));
        let resp = self
            .send(r, &Scope::Push, Method::PUT, url.clone(), headers, &body)
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(&url, resp).await);
        }
        if let Some(said) = resp
            .headers()
            .get(HeaderName::from_static(DOCKER_CONTENT_DIGEST))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok())
        {
            if said != digest {
                return Err(Error::Registry {
                    registry: r.registry.clone(),
                    reason: format!("it stored manifest {digest} of {r} as {said}"),
                });
            }
        }
        Ok(digest)
    }

    /// The tags of `r`'s repository (all pages, following `Link` headers).
    pub async fn tags(&self, r: &Reference) -> Result<Vec<String>> {
        let mut url = self.url(r, "tags/list").await?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let resp = self
                .send(
                    r,
                    &Scope::Pull,
                    Method::GET,
                    url.clone(),
                    HeaderMap::new(),
                    &no_body,
                )
                .await?;
            if !resp.status().is_success() {
                return Err(status_error(&url, resp).await);
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(|l| url.join(&l));
            let bytes = read_limited(resp, MAX_JSON_BLOB, &url).await?;
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Http {
                    url: shown(&url),
                    status: 200,
                    reason: format!("a tag list that is not JSON: {e}"),
                })?;
            if let Some(list) = json.get("tags").and_then(serde_json::Value::as_array) {
                tags.extend(
                    list.iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(str::to_string),
                );
            }
            match next {
                None => return Ok(tags),
                Some(Ok(n)) => url = n,
                Some(Err(e)) => {
                    return Err(Error::Http {
                        url: shown(&url),
                        status: 200,
                        reason: format!("a Link that is not a URL: {e}"),
                    })
                }
            }
        }
        Err(Error::Registry {
            registry: r.registry.clone(),
            reason: format!("more than {MAX_TAG_PAGES} pages of tags for {r}"),
        })
    }
}

fn apply(req: reqwest::RequestBuilder, auth: Option<&Auth>) -> reqwest::RequestBuilder {
    match auth {
        Some(Auth::Bearer(t)) => req.bearer_auth(t),
        Some(Auth::Basic(c)) => req.basic_auth(&c.username, Some(&c.password)),
        None => req,
    }
}

/// The URL of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| url.to_string())
    })
}

/// A file's first `size` bytes as a streamed request body.
fn file_body(path: &Path, size: u64, digest: &Digest) -> Result<reqwest::Body> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {} (blob {digest})", path.display()), e))?;
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::try_unfold((file, 0u64), move |(mut f, sent)| async move {
        if sent >= size {
            return Ok::<_, std::io::Error>(None);
        }
        let want = usize::try_from(UPLOAD_CHUNK.min(size - sent)).unwrap_or(64 * 1024);
        let mut buf = vec![0u8; want];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than its blob",
            ));
        }
        buf.truncate(n);
        Ok(Some((buf, (f, sent + n as u64))))
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// A response's body, at most `max` bytes.
async fn read_limited(resp: reqwest::Response, max: u64, url: &Url) -> Result<Vec<u8>> {
    let too_big = |n: String| Error::Http {
        url: shown(url),
        status: 200,
        reason: format!("its answer of {n} bytes is over the {max} bytes taken"),
    };
    if let Some(n) = resp.content_length().filter(|n| *n > max) {
        return Err(too_big(n.to_string()));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Http {
            url: shown(url),
            status: 200,
            reason: format!("reading the answer: {}", error_chain(&e)),
        })?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(too_big("more".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The error for an answer of an unexpected status: the registry's error codes and
/// messages when it sent some.
async fn status_error(url: &Url, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let body = read_limited(resp, 64 * 1024, url).await.unwrap_or_default();
    let mut reason = String::new();
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errors) = json.get("errors").and_then(serde_json::Value::as_array) {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(serde_json::Value::as_str);
                    let msg = e.get("message").and_then(serde_json::Value::as_str);
                    match (code, msg) {
                        (Some(c), Some(m)) => format!("{c}: {m}"),
                        (Some(c), None) => c.to_string(),
                        (None, Some(m)) => m.to_string(),
                        (None, None) => e.to_string(),
                    }
                })
                .collect();
            reason = parts.join("; ");
        }
    }
    if reason.is_empty() {
        let text = String::from_utf8_lossy(&body);
        reason = text.trim().chars().take(200).collect();
    }
    if reason.is_empty() {
        reason = status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_lowercase();
    }
    Error::Http {
        url: shown(url),
        status: status.as_u16(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_parse() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(
            next_link(r#"</a>; rel="prev", <https://h/b>; rel=next"#).as_deref(),
            Some("https://h/b")
        );
    }
}
