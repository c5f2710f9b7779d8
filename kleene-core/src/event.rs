//! Progress and events: one type that any frontend renders (the CLI now, an HTTP API later).

use std::sync::Arc;

use crate::id::Id;

/// Something worth telling the user while an operation runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A free-form status line.
    Status(String),
    /// Bytes of a download so far; `total` when the server said; `rate` in bytes/s.
    Download {
        bytes: u64,
        total: Option<u64>,
        rate: f64,
    },
    /// Archive extraction so far.
    Extract { entries: u64, bytes: u64 },
    /// An image was created.
    ImageCreated { id: Id },
    /// Metadata and ZFS were brought back in line by `Engine::open`.
    Repaired(String),
    /// `Engine::open` could not repair something and left it for a later open, saying
    /// why (a dataset still used by processes that will not end, a destroy ZFS refused).
    NotRepaired(String),
    /// A build began: `Started to build image with ID <id>`.
    BuildStarted { id: Id },
    /// A build step begins: `Step <n>/<total> : <text>`.
    BuildStep {
        n: usize,
        total: usize,
        text: String,
    },
    /// A line written by a `RUN` command, its line end removed (invalid UTF-8 replaced).
    Output { stream: OutputStream, data: String },
    /// A build step made a snapshot: `--> Snapshot created: @<id>`.
    SnapshotCreated { snapshot: String },
    /// A build step was not run: an earlier build made the same snapshot,
    /// `<image id>@<snapshot>`, which the build continues from.
    StepCached { snapshot: String },
    /// A build failed and its state was kept as `image` (tagged `<name>:failed`), its most
    /// recent snapshot `snapshot` (`@<id>`), if any step made one.
    BuildFailed {
        image: Id,
        snapshot: Option<String>,
        reason: String,
    },
}

/// Which stream of a process a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Where events go: a callback shared by the operation's tasks.
#[derive(Clone, Default)]
pub struct Events(Option<Arc<dyn Fn(Event) + Send + Sync>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(callback)"
        } else {
            "Events(none)"
        })
    }
}

impl Events {
    /// Events are dropped.
    pub fn none() -> Self {
        Self(None)
    }

    /// Events go to `f`.
    pub fn new(f: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Events go to a channel.
    pub fn channel(tx: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        Self::new(move |e| {
            let _ = tx.send(e);
        })
    }

    /// Sends one event.
    pub fn emit(&self, event: Event) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }

    /// Sends a status line.
    pub fn status(&self, text: impl Into<String>) {
        self.emit(Event::Status(text.into()));
    }
}
