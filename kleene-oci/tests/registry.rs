//! The registry client against Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1, with skopeo as the independent peer that pushes what the client pulls and
//! pulls what it pushes; and against small fake registries (std threads answering
//! HTTP/1.1) for authentication, resumes, redirects and registries that lie.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kleene_oci::registry::{Client, Credentials, Reference, RegistryConfig};
use kleene_oci::testing::{have_tool, skopeo, Registry};
use kleene_oci::{Digest, Error, Layout, Platform};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn client() -> Client {
    Client::new(RegistryConfig::default()).unwrap()
}

fn reference(addr: &str, rest: &str) -> Reference {
    Reference::parse(&format!("{addr}/{rest}")).unwrap()
}

/// A registry and skopeo, or `None` (the test skips, saying so).
fn registry_and_skopeo() -> Option<Registry> {
    if !have_tool("skopeo") {
        return None;
    }
    Registry::start()
}

// ---- OCI layouts made by hand ---------------------------------------------------------

/// A layout being written: blobs by content.
struct LayoutWriter {
    dir: PathBuf,
}

#[derive(Debug, Clone)]
struct Blob {
    digest: Digest,
    size: u64,
    bytes: Vec<u8>,
}

impl LayoutWriter {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn put(&self, bytes: &[u8]) -> Blob {
        let digest = Digest::of(bytes);
        std::fs::write(self.path(&digest), bytes).unwrap();
        Blob {
            digest,
            size: bytes.len() as u64,
            bytes: bytes.to_vec(),
        }
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    fn index(&self, entries: serde_json::Value) {
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// A gzipped tar of `files`, and the digest of the tar (its diff id).
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// An image of two layers for `os/arch` in the layout: (manifest, config, layers).
struct Image {
    manifest: Blob,
    config: Blob,
    layers: Vec<Blob>,
}

fn image(w: &LayoutWriter, os: &str, arch: &str) -> Image {
    let (l1, d1) = layer(&[("etc/os", os.as_bytes())]);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (l2, d2) = layer(&[("bin/tool", &big), ("etc/arch", arch.as_bytes())]);
    let layers = vec![w.put(&l1), w.put(&l2)];
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {"Cmd": ["/bin/sh"], "Env": [format!("OS={os}")]},
        "rootfs": {"type": "layers", "diff_ids": [d1.to_string(), d2.to_string()]},
    });
    let config = w.put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest.to_string(), "size": config.size},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": OCI_LAYER_GZIP, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest = w.put(manifest.to_string().as_bytes());
    Image {
        manifest,
        config,
        layers,
    }
}

/// A layout with an index (tag `multi`) of a linux/amd64 and a freebsd/amd64 image.
fn multi_platform_layout(dir: &Path) -> (LayoutWriter, Blob, Image, Image) {
    let w = LayoutWriter::new(dir);
    let linux = image(&w, "linux", "amd64");
    let freebsd = image(&w, "freebsd", "amd64");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": linux.manifest.digest.to_string(),
             "size": linux.manifest.size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": freebsd.manifest.digest.to_string(),
             "size": freebsd.manifest.size, "platform": {"os": "freebsd", "architecture": "amd64"}},
        ],
    });
    let index = w.put(index.to_string().as_bytes());
    w.index(serde_json::json!([
        {"mediaType": OCI_INDEX, "digest": index.digest.to_string(), "size": index.size,
         "annotations": {"org.opencontainers.image.ref.name": "multi"}},
        {"mediaType": OCI_MANIFEST, "digest": linux.manifest.digest.to_string(),
         "size": linux.manifest.size,
         "annotations": {"org.opencontainers.image.ref.name": "linux"}},
    ]));
    (w, index, linux, freebsd)
}

// ---- against docker-registry, with skopeo -------------------------------------------

#[tokio::test]
async fn a_multi_platform_image_pushed_by_skopeo_resolves_per_platform() {
    let Some(reg) = registry_and_skopeo() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (w, index, linux, freebsd) = multi_platform_layout(&t.path().join("layout"));
    let dest = format!("docker://{}/test/multi:v1", reg.addr());
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", w.dir.display()),
        &dest,
    ]);
    let c = client();
    let r = reference(reg.addr(), "test/multi:v1");
    assert!(r.is_loopback());

    let top = c.manifest(&r).await.unwrap();
    assert_eq!(top.media_type, OCI_INDEX);
    assert_eq!(top.digest, index.digest, "skopeo kept the index as it was");

    for (platform, img) in [("linux/amd64", &linux), ("freebsd/amd64", &freebsd)] {
        let remote = c
            .resolve(&r, &Platform::parse(platform).unwrap())
            .await
            .unwrap();
        assert_eq!(remote.top_digest, index.digest);
        assert_eq!(remote.reference, r);
        let image = &remote.image;
        assert_eq!(image.manifest_digest, img.manifest.digest, "{platform}");
        assert_eq!(image.config_digest, img.config.digest);
        assert_eq!(image.settings.cmd, ["/bin/sh"]);
        assert_eq!(
            image.settings.platform.as_ref().unwrap().to_string(),
            platform
        );
        let digests: Vec<_> = image.layers.iter().map(|l| l.digest.clone()).collect();
        let want: Vec<_> = img.layers.iter().map(|l| l.digest.clone()).collect();
        assert_eq!(digests, want);
        // The same image as the layout gives.
        let local = Layout::open(&w.dir)
            .unwrap()
            .resolve(Some("multi"), &Platform::parse(platform).unwrap())
            .unwrap();
        assert_eq!(local.layers, image.layers);
        assert_eq!(local.settings, image.settings);

        for (l, blob) in image.layers.iter().zip(&img.layers) {
            let dest = t.path().join(format!("{}.blob", l.digest.hex()));
            let mut seen = Vec::new();
            c.fetch_blob(&r, &l.digest, l.size, &dest, &mut |n| seen.push(n))
                .await
                .unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), blob.bytes);
            assert_eq!(seen.last(), Some(&l.size));
            assert!(seen.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");
            assert_eq!(c.blob_exists(&r, &l.digest).await.unwrap(), Some(l.size));
        }
        let config = c.blob_bytes(&r, &img.config.digest, 1 << 20).await.unwrap();
        assert_eq!(config, img.config.bytes);
    }
    let e = c
        .resolve(&r, &Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("linux/amd64") && e.contains("freebsd/amd64"),
        "{e}"
    );

    // By digest, the manifest is checked against it.
    let by_digest = r.with_digest(freebsd.manifest.digest.clone());
    assert_eq!(
        c.manifest(&by_digest).await.unwrap().bytes,
        freebsd.manifest.bytes
    );
    assert_eq!(
        c.blob_exists(&r, &Digest::of(b"not there")).await.unwrap(),
        None
    );
    let e = c
        .manifest(&r.with_tag("nope"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") && e.contains("/v2/test/multi/manifests/nope"),
        "{e}"
    );
    assert_eq!(c.tags(&r).await.unwrap(), ["v1"]);
}

#[tokio::test]
async fn an_image_pushed_by_the_client_reads_back_with_skopeo() {
    let Some(reg) = registry_and_skopeo() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (w, index, linux, freebsd) = multi_platform_layout(&t.path().join("layout"));
    let c = client();
    let r = reference(reg.addr(), "test/pushed:v1");

    for blob in linux.layers.iter().chain([&linux.config]) {
        let pushed = c
            .push_blob(&r, &blob.digest, blob.size, &w.path(&blob.digest), None)
            .await
            .unwrap();
        assert!(pushed, "{}", blob.digest);
        // The second time, nothing is sent.
        let again = c
            .push_blob(&r, &blob.digest, blob.size, &w.path(&blob.digest), None)
            .await
            .unwrap();
        assert!(!again);
    }
    let digest = c
        .put_manifest(&r, OCI_MANIFEST, &linux.manifest.bytes)
        .await
        .unwrap();
    assert_eq!(digest, linux.manifest.digest);

    // skopeo reads the same manifest, and copies the image to a layout of the same digest.
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/test/pushed:v1", reg.addr()),
    ]);
    assert_eq!(raw, linux.manifest.bytes);
    let out = t.path().join("out");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/test/pushed:v1", reg.addr()),
        &format!("oci:{}:v1", out.display()),
    ]);
    let copied = Layout::open(&out).unwrap();
    assert_eq!(
        copied.index().manifests()[0].digest().to_string(),
        linux.manifest.digest.to_string()
    );
    let local = copied
        .resolve(Some("v1"), &Platform::parse("linux/amd64").unwrap())
        .unwrap();
    assert_eq!(local.manifest_digest, linux.manifest.digest);
    for l in &local.layers {
        let mut b = copied.blob(&l.digest, l.size).unwrap();
        std::io::copy(&mut b, &mut std::io::sink()).unwrap();
        assert!(b.verified());
    }

    // Small blobs from bytes; a blob mounted from another repository of the registry.
    let other = reference(reg.addr(), "test/other:v1");
    let d = c.push_blob_bytes(&other, b"a signature").await.unwrap();
    assert_eq!(d, Digest::of(b"a signature"));
    assert_eq!(c.blob_exists(&other, &d).await.unwrap(), Some(11));
    assert_eq!(c.push_blob_bytes(&other, b"a signature").await.unwrap(), d);
    let l = &linux.layers[1];
    assert_eq!(c.blob_exists(&other, &l.digest).await.unwrap(), None);
    let uploaded = c
        .push_blob(
            &other,
            &l.digest,
            l.size,
            &w.path(&l.digest),
            Some("test/pushed"),
        )
        .await
        .unwrap();
    assert!(!uploaded, "mounted, not uploaded");
    assert_eq!(
        c.blob_exists(&other, &l.digest).await.unwrap(),
        Some(l.size)
    );

    // An index: its manifests by digest, then it under a tag.
    for blob in freebsd.layers.iter().chain([&freebsd.config]) {
        c.push_blob(&r, &blob.digest, blob.size, &w.path(&blob.digest), None)
            .await
            .unwrap();
    }
    let by_digest = r.with_digest(freebsd.manifest.digest.clone());
    assert_eq!(
        c.put_manifest(&by_digest, OCI_MANIFEST, &freebsd.manifest.bytes)
            .await
            .unwrap(),
        freebsd.manifest.digest
    );
    let e = c
        .put_manifest(&by_digest, OCI_MANIFEST, &linux.manifest.bytes)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&freebsd.manifest.digest.to_string()), "{e}");
    let idx = r.with_tag("multi");
    assert_eq!(
        c.put_manifest(&idx, OCI_INDEX, &index.bytes).await.unwrap(),
        index.digest
    );
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/test/pushed:multi", reg.addr()),
    ]);
    assert_eq!(raw, index.bytes);
    let remote = c
        .resolve(&idx, &Platform::parse("freebsd/amd64").unwrap())
        .await
        .unwrap();
    assert_eq!(remote.top_digest, index.digest);
    assert_eq!(remote.image.manifest_digest, freebsd.manifest.digest);

    let mut tags = c.tags(&r).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["multi", "v1"]);
}

#[tokio::test]
async fn a_partial_blob_is_resumed_and_a_tampered_one_refused() {
    let Some(reg) = Registry::start() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let c = client();
    let r = reference(reg.addr(), "test/blobs:latest");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let src = t.path().join("src");
    std::fs::write(&src, &data).unwrap();
    let d = Digest::of(&data);
    let size = data.len() as u64;
    assert!(c.push_blob(&r, &d, size, &src, None).await.unwrap());

    // The first half is there: the rest is asked for, and the whole verified.
    let dest = t.path().join("dest");
    std::fs::write(&dest, &data[..500_000]).unwrap();
    let mut seen = Vec::new();
    c.fetch_blob(&r, &d, size, &dest, &mut |n| seen.push(n))
        .await
        .unwrap();
    assert_eq!(seen.first(), Some(&500_000), "resumed at the half");
    assert_eq!(seen.last(), Some(&size));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // Complete already: verified, nothing fetched.
    c.fetch_blob(&r, &d, size, &dest, &mut |_| {})
        .await
        .unwrap();

    // A first half that is not the blob's: resumed, then refused, and removed.
    let mut wrong = data[..500_000].to_vec();
    wrong[10] ^= 1;
    std::fs::write(&dest, &wrong).unwrap();
    let e = c
        .fetch_blob(&r, &d, size, &dest, &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains(&d.to_string()), "{e}");
    assert!(!dest.exists());

    // The registry's stored bytes changed (same length), then cut short.
    let stored = reg.blob_data(&d);
    let mut other = data.clone();
    other[999_999] ^= 1;
    std::fs::write(&stored, &other).unwrap();
    let e = c
        .fetch_blob(&r, &d, size, &dest, &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&d.to_string()) && e.contains("digest"), "{e}");
    assert!(!dest.exists());
    let e = c
        .blob_bytes(&r, &d, 2_000_000)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&d.to_string()), "{e}");
    std::fs::write(&stored, &data[..1000]).unwrap();
    let e = c
        .fetch_blob(&r, &d, size, &dest, &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&d.to_string()), "{e}");
    assert!(!dest.exists());
}

// ---- fake registries ------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    Resp {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

type Handler = dyn Fn(&Req, &str) -> Resp + Send + Sync;

/// A registry that is a function of the request (and its own address), logging requests.
struct Fake {
    addr: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Req, &str) -> Resp + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (l, a) = (log.clone(), addr.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (l, a, h) = (l.clone(), a.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, &l, &a, &*h));
            }
        });
        Fake { addr, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    fn reference(&self, rest: &str) -> Reference {
        reference(&self.addr, rest)
    }
}

fn serve(stream: std::net::TcpStream, log: &Mutex<Vec<Req>>, addr: &str, h: &Handler) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut req = Req {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
    };
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).is_err() || l.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            req.headers
                .push((n.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    log.lock().unwrap().push(req.clone());
    let r = h(&req, addr);
    let mut out = format!("HTTP/1.1 {} X\r\n", r.status);
    for (n, v) in &r.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    if req.method != "HEAD" {
        let _ = stream.write_all(&r.body);
    }
    let _ = stream.flush();
}

fn small_manifest() -> Vec<u8> {
    let config = b"{}";
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(config).to_string(), "size": 2},
        "layers": [],
    })
    .to_string()
    .into_bytes()
}

/// "user:pass" in base64.
const BASIC_USER_PASS: &str = "Basic dXNlcjpwYXNz";

fn with_credentials(registry: &str, password: &str) -> Client {
    let mut config = RegistryConfig::default();
    config.credentials.insert(
        registry.to_string(),
        Credentials {
            username: "user".into(),
            password: password.into(),
        },
    );
    Client::new(config).unwrap()
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_credentials_and_cached() {
    let manifest = small_manifest();
    let m = manifest.clone();
    let fake = Fake::start(move |req, addr| {
        if req.target.starts_with("/token?") {
            return if req.header("authorization") == Some(BASIC_USER_PASS) {
                resp(200, &[], br#"{"access_token":"t0k","expires_in":300}"#)
            } else {
                resp(401, &[], br#"{"details":"bad credentials"}"#)
            };
        }
        if req.header("authorization") == Some("Bearer t0k") {
            resp(200, &[("Content-Type", OCI_MANIFEST)], &m)
        } else {
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="fake registry",scope="repository:x/y:pull",error="invalid_token""#
            );
            resp(401, &[("WWW-Authenticate", &challenge)], b"")
        }
    });
    let r = fake.reference("x/y:v1");
    let c = with_credentials(&fake.addr, "pass");
    let got = c.manifest(&r).await.unwrap();
    assert_eq!(got.bytes, manifest);
    assert_eq!(got.media_type, OCI_MANIFEST);
    c.manifest(&r).await.unwrap();
    let log = fake.requests();
    let tokens: Vec<_> = log
        .iter()
        .filter(|q| q.target.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 1, "the token is cached: {log:?}");
    assert_eq!(
        tokens[0].target,
        "/token?service=fake+registry&scope=repository%3Ax%2Fy%3Apull"
    );
    assert_eq!(tokens[0].header("authorization"), Some(BASIC_USER_PASS));
    // 401, token, retried with it; then with the cached token at once.
    let m: Vec<_> = log.iter().map(|q| q.header("authorization")).collect();
    assert_eq!(
        m,
        [
            None,
            Some(BASIC_USER_PASS),
            Some("Bearer t0k"),
            Some("Bearer t0k")
        ]
    );

    // Wrong credentials: the token service refuses, and the error says whose.
    let c = with_credentials(&fake.addr, "wrong");
    let e = c.manifest(&r).await.unwrap_err();
    assert!(matches!(e, Error::Auth { .. }), "{e}");
    assert!(e.to_string().contains(&fake.addr), "{e}");
}

#[tokio::test]
async fn basic_auth_is_answered_and_not_sent_along_redirects() {
    let blob = b"blob content".to_vec();
    let digest = Digest::of(&blob);
    let b = blob.clone();
    let storage = Fake::start(move |_, _| resp(200, &[], &b));
    let storage_addr = storage.addr.clone();
    let fake = Fake::start(move |req, _| {
        if req.header("authorization") != Some(BASIC_USER_PASS) {
            return resp(
                401,
                &[("WWW-Authenticate", r#"Basic realm="fake, with a comma""#)],
                b"",
            );
        }
        let location = format!("http://{storage_addr}/data?sig=1");
        resp(307, &[("Location", &location)], b"")
    });
    let r = fake.reference("x/y:v1");
    let c = with_credentials(&fake.addr, "pass");
    let got = c.blob_bytes(&r, &digest, 100).await.unwrap();
    assert_eq!(got, blob);
    let asked = storage.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].target, "/data?sig=1");
    assert_eq!(asked[0].header("authorization"), None);
    // Too big for what the caller takes.
    let e = c.blob_bytes(&r, &digest, 5).await.unwrap_err().to_string();
    assert!(e.contains(&digest.to_string()), "{e}");
    // No credentials for a Basic registry.
    let e = client().blob_bytes(&r, &digest, 100).await.unwrap_err();
    assert!(matches!(e, Error::Auth { .. }), "{e}");
}

/// A blob server honouring Range (or not), serving `served` for the blob.
fn blob_server(served: Vec<u8>, ranges: bool) -> Fake {
    Fake::start(move |req, _| {
        let start = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        match start {
            Some(n) if ranges && n < served.len() => {
                let range = format!("bytes {n}-{}/{}", served.len() - 1, served.len());
                resp(206, &[("Content-Range", &range)], &served[n..])
            }
            _ => resp(200, &[], &served),
        }
    })
}

#[tokio::test]
async fn resumes_ask_for_a_range_and_restart_when_it_is_ignored() {
    let t = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let d = Digest::of(&data);
    let size = data.len() as u64;
    for ranges in [true, false] {
        let fake = blob_server(data.clone(), ranges);
        let dest = t.path().join(format!("blob-{ranges}"));
        std::fs::write(&dest, &data[..40_000]).unwrap();
        let mut seen = Vec::new();
        client()
            .fetch_blob(&fake.reference("x:v"), &d, size, &dest, &mut |n| {
                seen.push(n)
            })
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let log = fake.requests();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].header("range"), Some("bytes=40000-"));
        assert_eq!(log[0].target, format!("/v2/x/blobs/{d}"));
        if !ranges {
            assert!(seen.contains(&0), "restarted from 0: {seen:?}");
        }
    }
}

#[tokio::test]
async fn lying_registries_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 239) as u8).collect();
    let d = Digest::of(&data);
    let size = data.len() as u64;
    let c = client();

    // Longer than its descriptor, shorter, other content.
    let mut longer = data.clone();
    longer.extend_from_slice(b"more");
    let mut other = data.clone();
    other[0] ^= 0xff;
    for (served, says) in [
        (longer, "longer than"),
        (data[..1000].to_vec(), "ended after 1000"),
        (other, "its content has the digest"),
    ] {
        let fake = blob_server(served, true);
        let dest = t.path().join("blob");
        let e = c
            .fetch_blob(&fake.reference("x:v"), &d, size, &dest, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Mismatch { .. }), "{e}");
        let e = e.to_string();
        assert!(e.contains(&d.to_string()) && e.contains(says), "{e}");
        assert!(!dest.exists(), "{e}");
    }

    // A manifest over 4 MiB; one whose Docker-Content-Digest differs; one not the
    // reference's digest.
    let huge = vec![b' '; 5 << 20];
    let fake = Fake::start(move |_, _| resp(200, &[("Content-Type", OCI_MANIFEST)], &huge));
    let e = c
        .manifest(&fake.reference("x:v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the 4194304 bytes"), "{e}");
    let manifest = small_manifest();
    let (m, lie) = (manifest.clone(), Digest::of(b"another").to_string());
    let fake = Fake::start(move |_, _| {
        resp(
            200,
            &[
                ("Content-Type", OCI_MANIFEST),
                ("Docker-Content-Digest", &lie),
            ],
            &m,
        )
    });
    let e = c
        .manifest(&fake.reference("x:v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&Digest::of(b"another").to_string()), "{e}");
    let m = manifest.clone();
    let fake = Fake::start(move |_, _| resp(200, &[("Content-Type", OCI_MANIFEST)], &m));
    let pinned = fake
        .reference("x:v")
        .with_digest(Digest::of(b"what was asked"));
    let e = c.manifest(&pinned).await.unwrap_err().to_string();
    assert!(
        e.contains(&Digest::of(b"what was asked").to_string()),
        "{e}"
    );

    // An index whose entry has the manifest's digest but another size.
    let md = Digest::of(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(),
            "size": manifest.len() + 10, "platform": {"os": "freebsd", "architecture": "amd64"}}],
    })
    .to_string()
    .into_bytes();
    let m = manifest.clone();
    let fake = Fake::start(move |req, _| {
        if req.target.ends_with("/manifests/v") {
            resp(200, &[("Content-Type", OCI_INDEX)], &index)
        } else {
            resp(200, &[("Content-Type", OCI_MANIFEST)], &m)
        }
    });
    let e = c
        .resolve(
            &fake.reference("x:v"),
            &Platform::parse("freebsd/amd64").unwrap(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&md.to_string()) && e.contains("says"), "{e}");
}

#[test]
fn configs_default_sanely() {
    let c = RegistryConfig::default();
    assert!(c.user_agent.starts_with("kleene/"));
    assert!(c.insecure.is_empty());
    let creds = Credentials {
        username: "u".into(),
        password: "secret".into(),
    };
    assert!(!format!("{creds:?}").contains("secret"));
    let mut m = BTreeMap::new();
    m.insert("r".to_string(), creds);
    let client = Client::new(RegistryConfig {
        credentials: m,
        ..RegistryConfig::default()
    })
    .unwrap();
    assert!(!format!("{client:?}").contains("secret"));
}

#[tokio::test]
async fn docker_manifest_lists_nest_and_tags_page() {
    const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let (l, diff) = layer(&[("etc/hello", b"hi")]);
    let config = serde_json::json!({
        "architecture": "arm64", "variant": "v8", "os": "linux",
        "config": {"Entrypoint": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": Digest::of(&l).to_string(), "size": l.len()}],
    })
    .to_string()
    .into_bytes();
    let entry = |media: &str, bytes: &[u8], platform: serde_json::Value| {
        serde_json::json!({"mediaType": media, "digest": Digest::of(bytes).to_string(),
            "size": bytes.len(), "platform": platform})
    };
    let inner = serde_json::json!({
        "schemaVersion": 2, "mediaType": LIST,
        "manifests": [entry(MANIFEST, &manifest,
            serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}))],
    })
    .to_string()
    .into_bytes();
    let outer = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [entry(LIST, &inner, serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}))],
    })
    .to_string()
    .into_bytes();
    let mut by_path: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    by_path.insert(
        "/v2/d/manifests/v1".into(),
        (OCI_INDEX.into(), outer.clone()),
    );
    for (t, b) in [(LIST, &inner), (MANIFEST, &manifest)] {
        by_path.insert(
            format!("/v2/d/manifests/{}", Digest::of(b)),
            (t.into(), b.clone()),
        );
    }
    by_path.insert(
        format!("/v2/d/blobs/{}", Digest::of(&config)),
        ("application/octet-stream".into(), config.clone()),
    );
    let fake = Fake::start(move |req, _| match req.target.as_str() {
        "/v2/d/tags/list" => resp(
            200,
            &[("Link", r#"</v2/d/tags/list?last=b&n=2>; rel="next""#)],
            br#"{"name":"d","tags":["a","b"]}"#,
        ),
        "/v2/d/tags/list?last=b&n=2" => resp(200, &[], br#"{"name":"d","tags":["c"]}"#),
        path => match by_path.get(path) {
            Some((t, b)) => resp(200, &[("Content-Type", t)], b),
            None => resp(
                404,
                &[],
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        },
    });
    let r = fake.reference("d:v1");
    let c = client();
    let remote = c
        .resolve(&r, &Platform::parse("linux/arm64/v8").unwrap())
        .await
        .unwrap();
    assert_eq!(remote.top_digest, Digest::of(&outer));
    assert_eq!(remote.image.manifest_digest, Digest::of(&manifest));
    assert_eq!(remote.image.settings.entrypoint, ["/hello"]);
    assert_eq!(remote.image.layers[0].diff_id, diff);
    assert_eq!(c.tags(&r).await.unwrap(), ["a", "b", "c"]);
    let e = c.manifest(&r.with_tag("v2")).await.unwrap_err().to_string();
    assert!(
        e.contains("404") && e.contains("MANIFEST_UNKNOWN: manifest unknown"),
        "{e}"
    );
    let e = c
        .resolve(&r, &Platform::parse("freebsd/amd64").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

/// The client's futures can be spawned (on a multi-threaded runtime).
#[test]
fn futures_are_send_and_the_client_is_shared() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Client>();
    let c = client();
    let r = Reference::parse("127.0.0.1:1/x").unwrap();
    let d = Digest::of(b"");
    let p = Platform::parse("freebsd/amd64").unwrap();
    let mut progress = |_| {};
    send(&c.manifest(&r));
    send(&c.resolve(&r, &p));
    send(&c.fetch_blob(&r, &d, 0, Path::new("x"), &mut progress));
    send(&c.blob_bytes(&r, &d, 1));
    send(&c.blob_exists(&r, &d));
    send(&c.push_blob(&r, &d, 0, Path::new("x"), Some("y")));
    send(&c.push_blob_bytes(&r, b""));
    send(&c.put_manifest(&r, OCI_MANIFEST, b""));
    send(&c.tags(&r));
}
