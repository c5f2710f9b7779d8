//! OCI layers as ZFS datasets: a layer is a clone of the layer below (or a new dataset
//! for the bottom one) with the layer's tar applied, and its `@layer` snapshot; it is
//! keyed by its chain id (the layer and everything below it), so images sharing layers
//! share datasets, and an image whose layers are all here costs one clone.
//!
//! Crash safety follows the metadata's order: a `pending` row (with the operation's
//! token) before the dataset, `ready` once the snapshot is made. A layer whose making
//! died is removed by `Engine::open` (or by the next pull that needs it); a layer nothing
//! uses any more (no image cloned from it, no layer above it) goes when the last image
//! on it is removed.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kleene_oci::{Digest, Layer, VerifyingReader};
use kleene_zfs::{DatasetName, Properties, SnapshotName};

use crate::archive;
use crate::engine::{op_alive, Inner, OpLock, PROP_ID};
use crate::error::{CoreError, Result};
use crate::event::{Event, Events};
use crate::meta::{LayerInsert, Table};

/// The snapshot every layer has: the layer above, or an image, is cloned from it.
pub const LAYER_SNAPSHOT: &str = "layer";

/// A reader that fails once `cancel` is set (Ctrl-C, a caller gone), so that a long
/// extraction stops between reads.
pub(crate) struct Cancellable<R> {
    inner: R,
    cancel: Arc<AtomicBool>,
}

impl<R> Cancellable<R> {
    pub fn new(inner: R, cancel: &Arc<AtomicBool>) -> Self {
        Self {
            inner,
            cancel: Arc::clone(cancel),
        }
    }
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "cancelled",
            ));
        }
        self.inner.read(buf)
    }
}

impl Inner {
    /// The dataset of the layer with chain id `chain`.
    pub(crate) fn layer_dataset(&self, chain: &Digest) -> Result<DatasetName> {
        Ok(self.layer_root.child(chain.hex())?)
    }

    /// The snapshot images and upper layers are cloned from.
    pub(crate) fn layer_snapshot(&self, chain: &Digest) -> Result<SnapshotName> {
        Ok(self.layer_dataset(chain)?.snapshot(LAYER_SNAPSHOT)?)
    }

    /// Makes `layer` on `parent` (the layer below, `None` for the bottom one) unless it is
    /// here; `blob` opens its blob (compressed as it comes). The blob and the
    /// uncompressed tar are verified (the caller's reader checks the blob's digest; the
    /// tar's is checked here against the diff id) before the layer is marked ready.
    /// Returns whether it was made (false: it was here).
    pub(crate) fn make_layer(
        &self,
        layer: &Layer,
        parent: Option<&Digest>,
        blob: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
        events: &Events,
        cancel: &Arc<AtomicBool>,
    ) -> Result<bool> {
        let dataset = self.layer_dataset(&layer.chain_id)?;
        let chain = layer.chain_id.to_string();
        let parent = parent.map(|p| (p, p.to_string()));
        let op = OpLock::begin(&self.ops_dir)?;
        loop {
            let insert = self.store().insert_pending_layer(
                &chain,
                &layer.diff_id.to_string(),
                parent.as_ref().map(|(_, s)| s.as_str()),
                &dataset,
                &op.token,
            )?;
            match insert {
                LayerInsert::Inserted => break,
                LayerInsert::Ready => return Ok(false),
                LayerInsert::ParentGone => {
                    return Err(CoreError::Internal(format!(
                        "the layer below {} was removed while it was being pulled",
                        layer.diff_id
                    )))
                }
                LayerInsert::Busy(other) if op_alive(&self.ops_dir, &other) => {
                    // Another pull is making it (or a removal removing it): wait.
                    if cancel.load(Ordering::SeqCst) {
                        return Err(CoreError::Cancelled);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                LayerInsert::Busy(_) => {
                    // Left by a process that died: what `Engine::open` would do.
                    self.destroy_dataset(&dataset)?;
                    self.store().delete_row(Table::Layers, &chain)?;
                }
            }
        }
        crate::failpoint("layer-after-row");
        let made = self.fill_layer(
            layer,
            parent.map(|(p, _)| p),
            &dataset,
            blob,
            events,
            cancel,
        );
        match made {
            Ok(bytes) => {
                self.store().finish_layer(&chain, bytes)?;
                drop(op);
                Ok(true)
            }
            Err(e) => {
                if self.destroy_dataset(&dataset).is_ok() {
                    self.store().delete_row(Table::Layers, &chain)?;
                }
                Err(e)
            }
        }
    }

    fn fill_layer(
        &self,
        layer: &Layer,
        parent: Option<&Digest>,
        dataset: &DatasetName,
        blob: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
        events: &Events,
        cancel: &Arc<AtomicBool>,
    ) -> Result<u64> {
        let props = Properties::new().with(PROP_ID, layer.chain_id.hex())?;
        match parent {
            None => self.zfs.create(dataset, &props)?,
            Some(p) => self
                .zfs
                .clone_snapshot(&self.layer_snapshot(p)?, dataset, &props)?,
        }
        let root = self.mountpoint(dataset)?;
        let reader = blob()?;
        let (_, decoded) = archive::decompress(Cancellable::new(reader, cancel))?;
        let mut tar = VerifyingReader::digest_only(decoded, layer.diff_id.clone());
        let stats = archive::apply_layer(&mut tar, &root, &mut |s| {
            events.emit(Event::Extract {
                entries: s.entries,
                bytes: s.bytes,
            });
        })
        .map_err(|e| match e {
            _ if cancel.load(Ordering::SeqCst) => CoreError::Cancelled,
            source => CoreError::Layer {
                digest: layer.digest.to_string(),
                source,
            },
        })?;
        // The tar reader stops at the archive's end: the rest is read so that the layer
        // and its blob are verified whole.
        tar.finish().map_err(|source| CoreError::Layer {
            digest: layer.digest.to_string(),
            source: archive::ArchiveError::Read { source },
        })?;
        if cancel.load(Ordering::SeqCst) {
            return Err(CoreError::Cancelled);
        }
        events.emit(Event::Extract {
            entries: stats.entries,
            bytes: stats.bytes,
        });
        crate::failpoint("layer-before-snapshot");
        self.zfs
            .snapshot(&dataset.snapshot(LAYER_SNAPSHOT)?, &Properties::new())?;
        Ok(stats.bytes)
    }

    /// Removes the layers nothing uses any more (no image cloned from them, no layer
    /// above them), from the top down; returns their chain ids.
    pub(crate) fn remove_unused_layers(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        loop {
            let unused = self.store().unused_layers()?;
            if unused.is_empty() {
                return Ok(removed);
            }
            let mut progress = false;
            for chain in unused {
                let op = OpLock::begin(&self.ops_dir)?;
                if !self.store().mark_layer_unused(&chain, &op.token)? {
                    continue; // taken meanwhile
                }
                let Some(row) = self.store().layer(&chain)? else {
                    continue;
                };
                match self.destroy_dataset(&row.dataset) {
                    Ok(()) => {
                        self.store().delete_row(Table::Layers, &chain)?;
                        removed.push(chain);
                        progress = true;
                    }
                    Err(e) => {
                        // Left marked: `Engine::open` finishes the removal later.
                        log::warn!("could not remove layer {chain}: {e}");
                    }
                }
                drop(op);
            }
            if !progress {
                return Ok(removed);
            }
        }
    }
}
