//! Downloads: one fetch for base images (`klee image create fetch`) and for `ADD <url>` in
//! builds. An http(s) body is streamed chunk by chunk into a blocking reader and on to its
//! destination (an archive extraction, a file), never held in memory whole; `file://` URLs
//! and paths are read in place. What is read is hashed (sha256) and counted as it goes,
//! reported as [`Event::Download`], and stops when the operation is cancelled.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::event::{Event, Events};
use crate::id::Id;

/// Tells a blocking reader whether its operation was cancelled.
pub(crate) type Cancelled = Box<dyn Fn() -> bool + Send>;

/// How often progress is reported, at most.
const PROGRESS_MS: u128 = 200;

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a sha256 (`got`) against the expected hex digest `want` (case and surrounding
/// blanks ignored); a mismatch names the URL and both sums.
pub(crate) fn verify(url: &str, got: &[u8], want: &str) -> Result<()> {
    let got = hex(got);
    if got.eq_ignore_ascii_case(want.trim()) {
        return Ok(());
    }
    Err(CoreError::Fetch {
        url: url.to_string(),
        reason: format!("sha256 is {got}, expected {want}"),
    })
}

/// An opened download: its body as a blocking reader, and its size when known.
pub(crate) struct Download {
    url: String,
    body: Box<dyn Read + Send>,
    total: Option<u64>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Opens `url`: http(s) (the request is made here, the body read later), `file://` or
    /// an absolute path.
    pub(crate) async fn open(url: &str) -> Result<Download> {
        let fetch_err = |reason: String| CoreError::Fetch {
            url: url.to_string(),
            reason,
        };
        if let Some(path) = url
            .strip_prefix("file://")
            .or_else(|| url.starts_with('/').then_some(url))
        {
            let file = File::open(path).map_err(|e| fetch_err(e.to_string()))?;
            let total = file.metadata().ok().map(|m| m.len());
            return Ok(Download {
                url: url.to_string(),
                body: Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
                total,
            });
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CoreError::InvalidInput(format!(
                "unsupported URL {url:?}: use http://, https:// or file://"
            )));
        }
        let resp = reqwest::get(url)
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fetch_err(format!("server answered {}", resp.status())));
        }
        let total = resp.content_length();
        Ok(Download {
            url: url.to_string(),
            body: Box::new(HttpBody::spawn(resp)),
            total,
        })
    }

    /// The body as a reader that hashes, reports progress to `events` and fails once
    /// `cancelled` says so.
    pub(crate) fn metered(self, events: Events, cancelled: Cancelled) -> Metered {
        let now = Instant::now();
        Metered {
            body: self.body,
            sha256: Sha256Sum(Arc::new(Mutex::new(Sha256::new()))),
            bytes: 0,
            total: self.total,
            started: now,
            last: now,
            events,
            cancelled,
        }
    }

    /// Streams the body into an anonymous file in `dir` (unlinked at once, so nothing is
    /// left behind whatever happens), checking it against the hex sha256 `want` if given.
    /// Runs on a blocking thread.
    pub(crate) fn save(
        self,
        dir: &Path,
        events: Events,
        cancelled: Cancelled,
        want: Option<&str>,
    ) -> Result<Saved> {
        let url = self.url.clone();
        let path = dir.join(format!("fetch-{}.part", Id::generate()?));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CoreError::io(format!("creating {}", path.display()), e))?;
        std::fs::remove_file(&path)
            .map_err(|e| CoreError::io(format!("removing {}", path.display()), e))?;
        let write_err = |e| CoreError::io(format!("writing the download of {url}"), e);
        let mut body = self.metered(events, cancelled);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) if (body.cancelled)() => return Err(CoreError::Cancelled),
                Err(e) => {
                    return Err(CoreError::Fetch {
                        url,
                        reason: e.to_string(),
                    })
                }
            };
            file.write_all(&buf[..n]).map_err(write_err)?;
        }
        let sha256 = body.sha256().finish();
        if let Some(want) = want {
            verify(&url, &sha256, want)?;
        }
        file.rewind().map_err(write_err)?;
        Ok(Saved { file, sha256 })
    }
}

/// A download saved by [`Download::save`]: the file, at its start, and its sha256.
#[derive(Debug)]
pub(crate) struct Saved {
    pub file: File,
    pub sha256: [u8; 32],
}

/// The sha256 of what a [`Metered`] reader read, still readable once the reader went to
/// whatever consumed it.
#[derive(Debug, Clone)]
pub(crate) struct Sha256Sum(Arc<Mutex<Sha256>>);

impl Sha256Sum {
    /// The digest of everything read so far.
    pub(crate) fn finish(&self) -> [u8; 32] {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        h.finalize().into()
    }
}

/// A reader that hashes, counts, reports and can be cancelled.
pub(crate) struct Metered {
    body: Box<dyn Read + Send>,
    sha256: Sha256Sum,
    bytes: u64,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    events: Events,
    cancelled: Cancelled,
}

impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("bytes", &self.bytes)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Metered {
    /// The hash of what it reads.
    pub(crate) fn sha256(&self) -> Sha256Sum {
        self.sha256.clone()
    }
}

impl Read for Metered {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.cancelled)() {
            // Not `Interrupted`: readers retry that, and would spin.
            return Err(std::io::Error::other("cancelled"));
        }
        let n = self.body.read(buf)?;
        self.sha256
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        self.bytes += n as u64;
        if n == 0 || self.last.elapsed().as_millis() >= PROGRESS_MS {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-6);
            self.events.emit(Event::Download {
                bytes: self.bytes,
                total: self.total,
                rate: self.bytes as f64 / secs,
            });
        }
        Ok(n)
    }
}

/// Streams an http(s) body into a blocking reader, chunk by chunk, without a temporary file.
struct HttpBody {
    rx: std::sync::mpsc::Receiver<std::result::Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    pos: usize,
}

impl HttpBody {
    /// Starts a task that reads the body and hands its chunks over (a few at a time: the
    /// download waits for the reader).
    fn spawn(resp: reqwest::Response) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let msg = chunk.map(|b| b.to_vec()).map_err(|e| e.to_string());
                let stop = msg.is_err();
                // The reader hung up (failure or cancel): stop downloading.
                if tx.send(msg).is_err() || stop {
                    break;
                }
            }
        });
        HttpBody {
            rx,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for HttpBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..n + self.pos]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::testkit::{serve, serve_chunks};

    fn collect() -> (Events, Arc<Mutex<Vec<Event>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        (Events::new(move |e| s.lock().unwrap().push(e)), seen)
    }

    #[tokio::test]
    async fn http_is_streamed_to_a_file_hashed_and_reported() {
        let body: &'static [u8] = b"one two three four five six seven eight nine ten\n";
        let url = serve_chunks(body, 4);
        let dir = tempfile::tempdir().unwrap();
        let sum = hex(&Sha256::digest(body));
        let dl = Download::open(&url).await.unwrap();
        let (events, seen) = collect();
        let d = dir.path().to_path_buf();
        let want = sum.to_uppercase();
        let mut saved = tokio::task::spawn_blocking(move || {
            dl.save(&d, events, Box::new(|| false), Some(&want))
        })
        .await
        .unwrap()
        .unwrap();
        let mut text = Vec::new();
        saved.file.read_to_end(&mut text).unwrap();
        assert_eq!(text, body);
        assert_eq!(hex(&saved.sha256), sum);
        // Nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let last = seen.lock().unwrap().last().cloned();
        assert!(
            matches!(last, Some(Event::Download { bytes, total: Some(t), .. }) if bytes == t && t == body.len() as u64),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_wrong_sum_names_the_url_and_both_sums() {
        let url = serve(b"payload");
        let dir = tempfile::tempdir().unwrap();
        let dl = Download::open(&url).await.unwrap();
        let d = dir.path().to_path_buf();
        let wrong = "0".repeat(64);
        let w = wrong.clone();
        let e = tokio::task::spawn_blocking(move || {
            dl.save(&d, Events::none(), Box::new(|| false), Some(&w))
        })
        .await
        .unwrap()
        .unwrap_err();
        let sum = hex(&Sha256::digest(b"payload"));
        assert_eq!(
            e.to_string(),
            CoreError::Fetch {
                url: url.clone(),
                reason: format!("sha256 is {sum}, expected {wrong}")
            }
            .to_string()
        );
    }

    #[tokio::test]
    async fn files_paths_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar");
        std::fs::write(&p, b"local bytes").unwrap();
        for url in [format!("file://{}", p.display()), p.display().to_string()] {
            let dl = Download::open(&url).await.unwrap();
            assert_eq!(dl.url, url);
            let mut r = dl.metered(Events::none(), Box::new(|| false));
            let sum = r.sha256();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, b"local bytes");
            verify(
                &url,
                &sum.finish(),
                &format!(" {} ", hex(&Sha256::digest(&out))),
            )
            .unwrap();
        }
        let e = Download::open("ftp://example.invalid/x").await.unwrap_err();
        assert!(matches!(e, CoreError::InvalidInput(_)), "{e}");
        let e = Download::open("file:///nonexistent/kleene")
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::Fetch { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_cancelled_read_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let dl = Download::open(p.to_str().unwrap()).await.unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        let f = Arc::clone(&flag);
        let d = dir.path().to_path_buf();
        let e = tokio::task::spawn_blocking(move || {
            dl.save(
                &d,
                Events::none(),
                Box::new(move || f.load(Ordering::SeqCst)),
                None,
            )
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(matches!(e, CoreError::Cancelled), "{e}");
    }
}
