//! Volumes: datasets below `<root>/volumes`, mounted into containers.

use kleene_zfs::Properties;

use crate::engine::{Engine, Inner, OpLock};
use crate::error::{CoreError, Object, Result};
use crate::meta::Table;
use crate::model::Volume;

/// The user property naming a volume's dataset.
const PROP_VOLUME: &str = "kleene:volume";

/// Checks a volume name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, as Docker has it.
pub fn check_volume_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidInput(format!(
            "invalid volume name {name:?}: use letters, digits, '_', '.' and '-', beginning with a letter or digit"
        )))
    }
}

impl Engine {
    /// Creates a volume.
    pub async fn create_volume(&self, name: &str) -> Result<Volume> {
        check_volume_name(name)?;
        let name = name.to_string();
        self.blocking(move |inner| inner.create_volume(&name)).await
    }

    /// Every volume, by name.
    pub async fn volumes(&self) -> Result<Vec<Volume>> {
        self.blocking(|inner| inner.store().volumes()).await
    }

    /// One volume.
    pub async fn volume(&self, name: &str) -> Result<Volume> {
        let name = name.to_string();
        self.blocking(move |inner| inner.volume(&name)).await
    }

    /// Removes a volume; refused while a container mounts it, naming the containers.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |inner| inner.remove_volume(&name)).await
    }

    /// Removes every volume no container mounts; returns their names.
    pub async fn prune_volumes(&self) -> Result<Vec<String>> {
        self.blocking(|inner| {
            let mut removed = Vec::new();
            let volumes = inner.store().volumes()?;
            for v in volumes {
                match inner.remove_volume(&v.name) {
                    Ok(()) => removed.push(v.name),
                    Err(CoreError::InUse { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(removed)
        })
        .await
    }
}

impl Inner {
    pub fn volume(&self, name: &str) -> Result<Volume> {
        self.store()
            .volume(name)?
            .ok_or_else(|| CoreError::NotFound {
                kind: Object::Volume,
                reference: name.to_string(),
            })
    }

    pub fn create_volume(&self, name: &str) -> Result<Volume> {
        let op = OpLock::begin(&self.ops_dir)?;
        let dataset = self.volume_root.child(name)?;
        self.store()
            .insert_pending_volume(name, &dataset, &op.token)?;
        let made = (|| {
            self.zfs
                .create(&dataset, &Properties::new().with(PROP_VOLUME, name)?)?;
            let mp = self.mountpoint(&dataset)?;
            self.store().finish_volume(name, &mp)?;
            Ok(())
        })();
        if let Err(e) = made {
            if self.destroy_dataset(&dataset).is_ok() {
                self.store().delete_row(Table::Volumes, name)?;
            }
            return Err(e);
        }
        drop(op);
        self.volume(name)
    }

    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let op = OpLock::begin(&self.ops_dir)?;
        let volume = {
            let store = self.store();
            let volume = store.volume(name)?.ok_or_else(|| CoreError::NotFound {
                kind: Object::Volume,
                reference: name.to_string(),
            })?;
            let users = store.volume_users(name)?;
            if !users.is_empty() {
                return Err(CoreError::InUse {
                    kind: Object::Volume,
                    name: name.to_string(),
                    users,
                });
            }
            store.mark_removing(Table::Volumes, name, &op.token)?;
            volume
        };
        self.destroy_dataset(&volume.dataset)?;
        self.store().delete_row(Table::Volumes, name)?;
        drop(op);
        Ok(())
    }
}
