//! The metadata store: one SQLite file in the root dataset, WAL, versioned schema.
//!
//! Every change that spans ZFS and metadata follows one order so that a crash anywhere
//! leaves a state `Engine::open` repairs: a row is written `pending` (with the token of the
//! operation, whose lock file the operation holds) before any dataset is made, and turned
//! `ready` in one transaction when the work is done. A pending row whose operation holds
//! no lock any more belongs to a dead process: its dataset and row are removed.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use kleene_zfs::{DatasetName, SnapshotName};

use crate::error::{CoreError, MetadataError, Object, Result};
use crate::id::Id;
use crate::model::{
    Container, ContainerConfig, Endpoint, Image, ImageConfig, ImageSnapshot, MountSource, Network,
    NetworkSpec, Runtime, Volume,
};

/// The tables whose rows own a dataset, each with its key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Containers,
    Images,
    Layers,
    Volumes,
}

impl Table {
    /// Every table that owns datasets, dependents first: containers (clones of images),
    /// images (clones of layers), layers (clones of the layer below).
    pub const ALL: [Table; 4] = [
        Table::Containers,
        Table::Images,
        Table::Layers,
        Table::Volumes,
    ];

    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Containers => "containers",
            Table::Images => "images",
            Table::Layers => "layers",
            Table::Volumes => "volumes",
        }
    }

    /// Its key column.
    pub fn key(self) -> &'static str {
        match self {
            Table::Volumes => "name",
            Table::Layers => "chain_id",
            Table::Containers | Table::Images => "id",
        }
    }
}

/// A dataset name read from a row.
fn dataset_of(table: Table, key: &str, text: &str) -> Result<DatasetName> {
    DatasetName::new(text).map_err(|e| {
        CoreError::Metadata(MetadataError::msg(format!(
            "{} row {key} names an invalid dataset {text:?}: {e}",
            table.name()
        )))
    })
}

/// An endpoint's address read from a row.
fn parse_addr<A: std::str::FromStr>(network: &str, text: Option<String>) -> Result<Option<A>>
where
    A::Err: std::fmt::Display,
{
    text.map(|t| {
        t.parse().map_err(|e| {
            CoreError::Metadata(MetadataError::msg(format!(
                "an endpoint on network {network} has an invalid address {t:?}: {e}"
            )))
        })
    })
    .transpose()
}

/// Schema migrations, applied in order; `PRAGMA user_version` is how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: images, volumes, containers and their mounts.
    "CREATE TABLE images (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        tag TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL,
        parent TEXT,
        dataset TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        op TEXT
    );
    CREATE UNIQUE INDEX images_nametag ON images(name, tag) WHERE name != '';
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        dataset TEXT NOT NULL,
        mountpoint TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL,
        filled INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        op TEXT
    );
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        dataset TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        created INTEGER NOT NULL,
        state TEXT NOT NULL,
        op TEXT,
        runtime TEXT
    );
    CREATE INDEX containers_image ON containers(image_id);
    CREATE TABLE mounts (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        read_only INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX mounts_source ON mounts(kind, source);",
    // 2: the build cache: a step's key -> the image and snapshot an earlier build made.
    "CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX build_cache_image ON build_cache(image_id);",
    // 3: networks and the endpoints on them; an address is unique per network, so two
    // processes can never hand out the same one. An endpoint belongs to a container (and
    // goes with its row) or to a build, whose operation token it keeps (and goes with the
    // build, or with the repair once the build's process is dead).
    "CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        interface TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL REFERENCES networks(id),
        slot INTEGER NOT NULL,
        ipv4 TEXT,
        ipv6 TEXT,
        op TEXT,
        PRIMARY KEY (container_id, network_id),
        UNIQUE (container_id, slot)
    );
    CREATE TRIGGER endpoints_of_removed_containers AFTER DELETE ON containers
    BEGIN DELETE FROM endpoints WHERE container_id = OLD.id; END;
    CREATE UNIQUE INDEX endpoints_ipv4 ON endpoints(network_id, ipv4) WHERE ipv4 IS NOT NULL;
    CREATE UNIQUE INDEX endpoints_ipv6 ON endpoints(network_id, ipv6) WHERE ipv6 IS NOT NULL;",
    // 4: OCI layers, each a dataset (a clone of the layer below, the layer applied) and
    // its `@layer` snapshot, keyed by chain id so that images sharing layers share them;
    // an image of an OCI image is a clone of its top layer (`images.layer`).
    "CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT,
        dataset TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        state TEXT NOT NULL,
        op TEXT
    );
    CREATE INDEX layers_parent ON layers(parent);
    ALTER TABLE images ADD COLUMN layer TEXT;
    CREATE INDEX images_layer ON images(layer);",
];

/// The store of one engine root.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

/// A row whose operation has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub table: Table,
    pub key: String,
    pub dataset: DatasetName,
    pub op: String,
}

/// A database result as the engine's: `.sql()?` where `?` alone would need a public
/// `From<rusqlite::Error>`.
trait Sql<T> {
    fn sql(self) -> Result<T>;
}

impl<T> Sql<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(|e| CoreError::Metadata(MetadataError::sql(e)))
    }
}

/// Unix time now, in seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A `layers` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    pub dataset: DatasetName,
    pub size: u64,
    pub created: i64,
    pub ready: bool,
    pub op: Option<String>,
}

/// What recording a new layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerInsert {
    /// The row is ours, pending.
    Inserted,
    /// The layer is there already.
    Ready,
    /// Another operation (this token) is making or removing it.
    Busy(String),
    /// The layer below is not (any more) there.
    ParentGone,
}

const LAYER_COLUMNS: &str = "chain_id, diff_id, parent, dataset, size, created, state, op";

type LayerTuple = (
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    String,
    Option<String>,
);

fn layer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LayerTuple> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_layer(
    (chain_id, diff_id, parent, dataset, size, created, state, op): LayerTuple,
) -> Result<LayerRow> {
    Ok(LayerRow {
        dataset: dataset_of(Table::Layers, &chain_id, &dataset)?,
        chain_id,
        diff_id,
        parent,
        size: u64::try_from(size).unwrap_or(0),
        created,
        ready: state == "ready",
        op,
    })
}

/// An `images` row as read: id, name, tag, created, parent, dataset, config.
type ImageRow = (String, String, String, i64, Option<String>, String, String);

fn image_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

const IMAGE_COLUMNS: &str = "id, name, tag, created, parent, dataset, config";

fn to_image((id, name, tag, created, parent, dataset, config): ImageRow) -> Result<Image> {
    let config: ImageConfig = serde_json::from_str(&config).map_err(|e| {
        CoreError::Metadata(MetadataError::msg(format!(
            "image {id} has unreadable metadata: {e}"
        )))
    })?;
    Ok(Image {
        dataset: dataset_of(Table::Images, &id, &dataset)?,
        parent: parent.map(|p| p.parse()).transpose()?,
        id: Id::parse(&id)?,
        name,
        tag,
        created,
        config,
    })
}

impl Store {
    /// Opens (creating) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).sql()?;
        conn.busy_timeout(Duration::from_secs(30)).sql()?;
        conn.pragma_update(None, "journal_mode", "WAL").sql()?;
        conn.pragma_update(None, "synchronous", "FULL").sql()?;
        conn.pragma_update(None, "foreign_keys", "ON").sql()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql()?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql()?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(CoreError::Metadata(MetadataError::msg(format!(
                "metadata at {} has schema version {version}, newer than this kleene ({}): upgrade kleene",
                path.display(),
                MIGRATIONS.len()
            ))));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql).sql()?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .sql()?;
        }
        tx.commit().sql()?;
        Ok(Self { conn })
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .sql()
    }

    // ---- pending operations ----

    /// Every row whose operation has not finished.
    pub fn pending(&self) -> Result<Vec<Pending>> {
        let mut out = Vec::new();
        for table in Table::ALL {
            let sql = format!(
                "SELECT {}, dataset, op FROM {} WHERE state = 'pending'",
                table.key(),
                table.name()
            );
            let mut stmt = self.conn.prepare(&sql).sql()?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    ))
                })
                .sql()?;
            for row in rows {
                let (key, dataset, op) = row.sql()?;
                out.push(Pending {
                    table,
                    dataset: dataset_of(table, &key, &dataset)?,
                    key,
                    op,
                });
            }
        }
        Ok(out)
    }

    /// Drops a row (any state) of `table` by key.
    pub fn delete_row(&self, table: Table, key: &str) -> Result<()> {
        self.conn
            .execute(
                &format!("DELETE FROM {} WHERE {} = ?1", table.name(), table.key()),
                [key],
            )
            .sql()?;
        Ok(())
    }

    /// Every dataset any row names, with its table and key.
    pub fn datasets(&self) -> Result<Vec<(Table, String, DatasetName)>> {
        let mut out = Vec::new();
        for table in Table::ALL {
            let sql = format!(
                "SELECT {}, dataset FROM {} WHERE state = 'ready'",
                table.key(),
                table.name()
            );
            let mut stmt = self.conn.prepare(&sql).sql()?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .sql()?;
            for row in rows {
                let (key, dataset) = row.sql()?;
                let dataset = dataset_of(table, &key, &dataset)?;
                out.push((table, key, dataset));
            }
        }
        Ok(out)
    }

    // ---- images ----

    /// Records an image being made (before its dataset exists).
    pub fn insert_pending_image(&self, id: &Id, dataset: &DatasetName, op: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO images (id, created, dataset, state, op) VALUES (?1, ?2, ?3, 'pending', ?4)",
            params![id.as_str(), now(), dataset.as_str(), op],
        ).sql()?;
        Ok(())
    }

    /// Marks an image made: its metadata, and its name:tag taken from any previous holder,
    /// in one transaction.
    pub fn finish_image(
        &mut self,
        id: &Id,
        name: &str,
        tag: &str,
        parent: Option<&ImageSnapshot>,
        config: &ImageConfig,
    ) -> Result<Image> {
        let json = json(config)?;
        let parent = parent.map(|p| p.to_string());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql()?;
        if !name.is_empty() {
            tx.execute(
                "UPDATE images SET name = '', tag = '' WHERE name = ?1 AND tag = ?2 AND id != ?3",
                params![name, tag, id.as_str()],
            )
            .sql()?;
        }
        let n = tx
            .execute(
                "UPDATE images SET name = ?2, tag = ?3, parent = ?4, config = ?5, created = ?6,
                state = 'ready', op = NULL WHERE id = ?1",
                params![id.as_str(), name, tag, parent, json, now()],
            )
            .sql()?;
        if n != 1 {
            return Err(CoreError::Internal(format!(
                "image {id} vanished while being made"
            )));
        }
        tx.commit().sql()?;
        self.image(id)?
            .ok_or_else(|| CoreError::Internal(format!("image {id} vanished")))
    }

    /// A ready image by id.
    pub fn image(&self, id: &Id) -> Result<Option<Image>> {
        self.conn
            .query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?1 AND state = 'ready'"),
                [id.as_str()],
                image_from_row,
            )
            .optional()
            .sql()?
            .map(to_image)
            .transpose()
    }

    /// The ready image holding `name:tag`.
    pub fn image_by_nametag(&self, name: &str, tag: &str) -> Result<Option<Image>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1 AND tag = ?2 AND state = 'ready'"
                ),
                [name, tag],
                image_from_row,
            )
            .optional().sql()?
            .map(to_image)
            .transpose()
    }

    /// Ready images whose id starts with `prefix`.
    pub fn images_by_prefix(&self, prefix: &str) -> Result<Vec<Image>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE substr(id, 1, ?2) = ?1 AND state = 'ready' ORDER BY id"
        )).sql()?;
        let rows = stmt
            .query_map(params![prefix, prefix.len() as i64], image_from_row)
            .sql()?;
        rows.map(|r| to_image(r.sql()?)).collect()
    }

    /// Every ready image, newest first.
    pub fn images(&self) -> Result<Vec<Image>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE state = 'ready' ORDER BY created DESC, rowid DESC"
        )).sql()?;
        let rows = stmt.query_map([], image_from_row).sql()?;
        rows.map(|r| to_image(r.sql()?)).collect()
    }

    /// Gives `name:tag` to an image; the previous holder becomes untagged.
    pub fn tag_image(&mut self, id: &Id, name: &str, tag: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql()?;
        tx.execute(
            "UPDATE images SET name = '', tag = '' WHERE name = ?1 AND tag = ?2 AND id != ?3",
            params![name, tag, id.as_str()],
        )
        .sql()?;
        tx.execute(
            "UPDATE images SET name = ?2, tag = ?3 WHERE id = ?1",
            params![id.as_str(), name, tag],
        )
        .sql()?;
        tx.commit().sql()?;
        Ok(())
    }

    /// Ready images built on `id` (their parent is `id@...`).
    pub fn image_children(&self, id: &Id) -> Result<Vec<Image>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE (parent = ?1 OR parent LIKE ?1 || '@%') AND state != 'removing'"
        )).sql()?;
        let rows = stmt.query_map([id.as_str()], image_from_row).sql()?;
        rows.map(|r| to_image(r.sql()?)).collect()
    }

    /// Ids and names of the containers made from image `id`.
    pub fn image_containers(&self, id: &Id) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM containers WHERE image_id = ?1 ORDER BY created")
            .sql()?;
        let rows = stmt
            .query_map([id.as_str()], |r| {
                Ok(format!(
                    "{} ({})",
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(0)?
                ))
            })
            .sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()
    }

    /// Marks a row as being removed (so nothing new may use it), returning whether it was
    /// there and ready.
    pub fn mark_removing(&self, table: Table, key: &str, op: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE {} SET state = 'pending', op = ?2 WHERE {} = ?1 AND state = 'ready'",
                    table.name(),
                    table.key()
                ),
                params![key, op],
            )
            .sql()?;
        Ok(n == 1)
    }

    // ---- layers ----

    /// A layer row, whatever its state.
    pub fn layer(&self, chain_id: &str) -> Result<Option<LayerRow>> {
        self.conn
            .query_row(
                &format!("SELECT {LAYER_COLUMNS} FROM layers WHERE chain_id = ?1"),
                [chain_id],
                layer_from_row,
            )
            .optional()
            .sql()?
            .map(to_layer)
            .transpose()
    }

    /// Records a layer being made (before its dataset exists), on `parent` when given,
    /// which must be ready: in one statement, so that a concurrent removal of unused
    /// layers sees the new user or this sees the parent gone.
    pub fn insert_pending_layer(
        &self,
        chain_id: &str,
        diff_id: &str,
        parent: Option<&str>,
        dataset: &DatasetName,
        op: &str,
    ) -> Result<LayerInsert> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO layers (chain_id, diff_id, parent, dataset, created, state, op)
             SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6
             WHERE ?3 IS NULL OR EXISTS (SELECT 1 FROM layers WHERE chain_id = ?3 AND state = 'ready')",
            params![chain_id, diff_id, parent, dataset.as_str(), now(), op],
        ).sql()?;
        if n == 1 {
            return Ok(LayerInsert::Inserted);
        }
        Ok(match self.layer(chain_id)? {
            Some(row) if row.ready => LayerInsert::Ready,
            Some(row) => LayerInsert::Busy(row.op.unwrap_or_default()),
            None => LayerInsert::ParentGone,
        })
    }

    /// Marks a layer made.
    pub fn finish_layer(&self, chain_id: &str, size: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE layers SET state = 'ready', op = NULL, size = ?2, created = ?3 WHERE chain_id = ?1",
            params![chain_id, size as i64, now()],
        ).sql()?;
        Ok(())
    }

    /// Marks a ready layer as being removed when nothing uses it (no image cloned from it,
    /// no layer above it), in one statement; whether it did.
    pub fn mark_layer_unused(&self, chain_id: &str, op: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE layers SET state = 'pending', op = ?2 WHERE chain_id = ?1 AND state = 'ready'
             AND NOT EXISTS (SELECT 1 FROM images WHERE layer = ?1)
             AND NOT EXISTS (SELECT 1 FROM layers WHERE parent = ?1)",
            params![chain_id, op],
        ).sql()?;
        Ok(n == 1)
    }

    /// Ready layers that nothing uses: no image, no layer above.
    pub fn unused_layers(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT chain_id FROM layers l WHERE state = 'ready'
             AND NOT EXISTS (SELECT 1 FROM images WHERE layer = l.chain_id)
             AND NOT EXISTS (SELECT 1 FROM layers WHERE parent = l.chain_id)",
            )
            .sql()?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()
    }

    /// Records an image being made as a clone of a ready layer; false (nothing written)
    /// when the layer is not (any more) there.
    pub fn insert_pending_image_on_layer(
        &self,
        id: &Id,
        dataset: &DatasetName,
        op: &str,
        layer: &str,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT INTO images (id, created, dataset, state, op, layer)
             SELECT ?1, ?2, ?3, 'pending', ?4, ?5
             WHERE EXISTS (SELECT 1 FROM layers WHERE chain_id = ?5 AND state = 'ready')",
                params![id.as_str(), now(), dataset.as_str(), op, layer],
            )
            .sql()?;
        Ok(n == 1)
    }

    // ---- volumes ----

    /// Records a volume being made.
    pub fn insert_pending_volume(&self, name: &str, dataset: &DatasetName, op: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO volumes (name, dataset, created, state, op) VALUES (?1, ?2, ?3, 'pending', ?4)",
            params![name, dataset.as_str(), now(), op],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                CoreError::AlreadyExists { kind: Object::Volume, name: name.to_string() }
            }
            other => CoreError::Metadata(MetadataError::sql(other)),
        })?;
        Ok(())
    }

    /// Marks a volume made.
    pub fn finish_volume(&self, name: &str, mountpoint: &Path) -> Result<()> {
        let mountpoint = mountpoint.to_str().ok_or_else(|| {
            CoreError::InvalidInput(format!(
                "volume {name}: mountpoint {} is not UTF-8",
                mountpoint.display()
            ))
        })?;
        self.conn
            .execute(
                "UPDATE volumes SET mountpoint = ?2, state = 'ready', op = NULL WHERE name = ?1",
                params![name, mountpoint],
            )
            .sql()?;
        Ok(())
    }

    /// A ready volume by name.
    pub fn volume(&self, name: &str) -> Result<Option<Volume>> {
        self.conn
            .query_row(
                "SELECT name, dataset, mountpoint, created FROM volumes WHERE name = ?1 AND state = 'ready'",
                [name],
                volume_from_row,
            )
            .optional().sql()?
            .map(to_volume)
            .transpose()
    }

    /// Every ready volume, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, dataset, mountpoint, created FROM volumes WHERE state = 'ready' ORDER BY name",
        ).sql()?;
        let rows = stmt.query_map([], volume_from_row).sql()?;
        rows.map(|r| to_volume(r.sql()?)).collect()
    }

    /// Names and ids of the containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT c.name, c.id FROM mounts m JOIN containers c ON c.id = m.container_id
             WHERE m.kind = 'volume' AND m.source = ?1 ORDER BY c.name",
        ).sql()?;
        let rows = stmt
            .query_map([name], |r| {
                Ok(format!(
                    "{} ({})",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()
    }
}

/// A `volumes` row as read: name, dataset, mountpoint, created.
type VolumeRow = (String, String, String, i64);

fn volume_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_volume((name, dataset, mountpoint, created): VolumeRow) -> Result<Volume> {
    Ok(Volume {
        dataset: dataset_of(Table::Volumes, &name, &dataset)?,
        mountpoint: mountpoint.into(),
        name,
        created,
    })
}

// ---- build cache ----

impl Store {
    /// The image id and snapshot name a build step's key was made with, if any.
    pub fn cache_lookup(&self, key: &str) -> Result<Option<(Id, String)>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT image_id, snapshot FROM build_cache WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .sql()?;
        row.map(|(id, snap)| Ok((Id::parse(&id)?, snap)))
            .transpose()
    }

    /// Records that the step `key` made `snapshot` in image `image_id` (replacing an older
    /// entry).
    pub fn cache_insert(&self, key: &str, image_id: &Id, snapshot: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO build_cache (key, image_id, snapshot, created) VALUES (?1, ?2, ?3, ?4)",
            params![key, image_id.as_str(), snapshot, now()],
        ).sql()?;
        Ok(())
    }

    /// Forgets a cache entry (its snapshot is gone).
    pub fn cache_delete(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM build_cache WHERE key = ?1", [key])
            .sql()?;
        Ok(())
    }

    /// Sets the parent of an image still being made, so that its parent cannot be
    /// removed from under it. Not synced to disk: every cached step of a rebuild sets it,
    /// and a power cut that loses it loses it on a pending image, which the repair
    /// removes; the image's next synced commit (its making ready) syncs it too, as the
    /// write-ahead log is written in order. Other processes see it at once either way.
    pub fn set_image_parent(&self, id: &Id, parent: &ImageSnapshot) -> Result<()> {
        self.unsynced(|conn| {
            conn.execute(
                "UPDATE images SET parent = ?2 WHERE id = ?1",
                params![id.as_str(), parent.to_string()],
            )
            .sql()?;
            Ok(())
        })
    }

    /// Runs `f` with `synchronous = NORMAL` (commits without an fsync), then back to FULL.
    fn unsynced<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .sql()?;
        let out = f(&self.conn);
        let back = self.conn.pragma_update(None, "synchronous", "FULL").sql();
        let out = out?;
        back?;
        Ok(out)
    }
}

// ---- containers ----

/// A `containers` row as read.
type ContainerRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
);

const CONTAINER_COLUMNS: &str = "id, name, image_id, snapshot, dataset, config, created, runtime";

fn container_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_container(
    (id, name, image_id, snapshot, dataset, config, created, runtime): ContainerRow,
) -> Result<Container> {
    let bad = |what: &str, e: serde_json::Error| {
        CoreError::Metadata(MetadataError::msg(format!(
            "container {id} has unreadable {what}: {e}"
        )))
    };
    let config: ContainerConfig = serde_json::from_str(&config).map_err(|e| bad("config", e))?;
    let runtime: Runtime = match runtime {
        Some(r) => serde_json::from_str(&r).map_err(|e| bad("runtime state", e))?,
        None => Runtime::default(),
    };
    let snapshot = SnapshotName::new(&snapshot).map_err(|e| {
        CoreError::Metadata(MetadataError::msg(format!(
            "container {id} names an invalid snapshot {snapshot:?}: {e}"
        )))
    })?;
    Ok(Container {
        dataset: dataset_of(Table::Containers, &id, &dataset)?,
        id: Id::parse(&id)?,
        name,
        image_id: Id::parse(&image_id)?,
        snapshot,
        config,
        created,
        runtime,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| CoreError::Internal(format!("serializing: {e}")))
}

impl Store {
    /// Records a container being made, with its mounts, before its dataset exists.
    pub fn insert_pending_container(&mut self, c: &Container, op: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql()?;
        tx.execute(
            "INSERT INTO containers (id, name, image_id, snapshot, dataset, config, created, state, op, runtime)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
            params![
                c.id.as_str(),
                c.name,
                c.image_id.as_str(),
                c.snapshot.as_str(),
                c.dataset.as_str(),
                json(&c.config)?,
                now(),
                op,
                json(&c.runtime)?
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                CoreError::AlreadyExists { kind: Object::Container, name: c.name.clone() }
            }
            other => CoreError::Metadata(MetadataError::sql(other)),
        })?;
        for m in &c.config.mounts {
            let (kind, source) = match &m.source {
                MountSource::Volume(v) => ("volume", v.as_str()),
                MountSource::HostPath(p) => ("path", p.as_str()),
            };
            tx.execute(
                "INSERT INTO mounts (container_id, kind, source, destination, read_only) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.id.as_str(), kind, source, m.destination, m.read_only],
            ).sql()?;
        }
        tx.commit().sql()?;
        Ok(())
    }

    /// Marks a container made.
    pub fn finish_container(&self, id: &Id) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET state = 'ready', op = NULL WHERE id = ?1",
                [id.as_str()],
            )
            .sql()?;
        Ok(())
    }

    /// A ready container by id.
    pub fn container(&self, id: &Id) -> Result<Option<Container>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {CONTAINER_COLUMNS} FROM containers WHERE id = ?1 AND state = 'ready'"
                ),
                [id.as_str()],
                container_from_row,
            )
            .optional()
            .sql()?
            .map(to_container)
            .transpose()
    }

    /// A ready container by name.
    pub fn container_by_name(&self, name: &str) -> Result<Option<Container>> {
        self.conn
            .query_row(
                &format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE name = ?1 AND state = 'ready'"),
                [name],
                container_from_row,
            )
            .optional().sql()?
            .map(to_container)
            .transpose()
    }

    /// Ready containers whose id starts with `prefix`.
    pub fn containers_by_prefix(&self, prefix: &str) -> Result<Vec<Container>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE substr(id, 1, ?2) = ?1 AND state = 'ready' ORDER BY id"
        )).sql()?;
        let rows = stmt
            .query_map(params![prefix, prefix.len() as i64], container_from_row)
            .sql()?;
        rows.map(|r| to_container(r.sql()?)).collect()
    }

    /// Every ready container, newest first.
    pub fn containers(&self) -> Result<Vec<Container>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CONTAINER_COLUMNS} FROM containers WHERE state = 'ready' ORDER BY created DESC, rowid DESC"
        )).sql()?;
        let rows = stmt.query_map([], container_from_row).sql()?;
        rows.map(|r| to_container(r.sql()?)).collect()
    }

    /// Records a container's end and marks it being removed by operation `op`, in one
    /// statement: whether it was there (ready) to mark.
    pub fn end_and_mark_removing(&self, id: &Id, runtime: &Runtime, op: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE containers SET runtime = ?2, state = 'pending', op = ?3 WHERE id = ?1 AND state = 'ready'",
                params![id.as_str(), json(runtime)?, op],
            )
            .sql()?;
        Ok(n == 1)
    }

    /// The ready containers whose runtime says running or starting (whether their monitors
    /// live is the caller's to check): what a repair or a firewall looks at, without
    /// reading every row.
    pub fn containers_said_running(&self) -> Result<Vec<Container>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {CONTAINER_COLUMNS} FROM containers WHERE state = 'ready' \
             AND json_extract(runtime, '$.state') IN ('Starting', 'Running') \
             ORDER BY created DESC, rowid DESC"
            ))
            .sql()?;
        let rows = stmt.query_map([], container_from_row).sql()?;
        rows.map(|r| to_container(r.sql()?)).collect()
    }

    /// Replaces a container's runtime state.
    pub fn set_runtime(&self, id: &Id, runtime: &Runtime) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET runtime = ?2 WHERE id = ?1",
                params![id.as_str(), json(runtime)?],
            )
            .sql()?;
        Ok(())
    }

    /// Replaces a container's runtime state only if it is still `seen`: whether it was.
    /// (A monitor may record the exit between a check and this write.)
    pub fn replace_runtime(&self, id: &Id, seen: &Runtime, runtime: &Runtime) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE containers SET runtime = ?3 WHERE id = ?1 AND runtime = ?2",
                params![id.as_str(), json(seen)?, json(runtime)?],
            )
            .sql()?;
        Ok(n == 1)
    }

    /// Renames a container.
    pub fn rename_container(&self, id: &Id, name: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET name = ?2 WHERE id = ?1",
                params![id.as_str(), name],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    CoreError::AlreadyExists {
                        kind: Object::Container,
                        name: name.to_string(),
                    }
                }
                other => CoreError::Metadata(MetadataError::sql(other)),
            })?;
        Ok(())
    }

    /// Replaces a container's configuration.
    pub fn set_container_config(&self, id: &Id, config: &ContainerConfig) -> Result<()> {
        self.conn
            .execute(
                "UPDATE containers SET config = ?2 WHERE id = ?1",
                params![id.as_str(), json(config)?],
            )
            .sql()?;
        Ok(())
    }

    /// Adds a network; its name and interface must be free.
    pub fn insert_network(&self, n: &Network) -> Result<()> {
        let spec = serde_json::to_string(&n.spec)
            .map_err(|e| CoreError::Internal(format!("network {}: {e}", n.name)))?;
        self.conn
            .execute(
                "INSERT INTO networks (id, name, interface, spec, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![n.id.as_str(), n.name, n.interface(), spec, n.created],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, Some(msg))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    if msg.contains("interface") {
                        CoreError::InvalidInput(format!(
                            "interface {} is used by another network",
                            n.interface()
                        ))
                    } else {
                        CoreError::AlreadyExists {
                            kind: Object::Network,
                            name: n.name.clone(),
                        }
                    }
                }
                other => CoreError::Metadata(MetadataError::sql(other)),
            })?;
        Ok(())
    }

    /// Every network, oldest first.
    pub fn networks(&self) -> Result<Vec<Network>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, spec, created FROM networks ORDER BY created, rowid")
            .sql()?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .sql()?;
        rows.map(|r| {
            let (id, name, spec, created) = r.sql()?;
            let spec: NetworkSpec = serde_json::from_str(&spec).map_err(|e| {
                CoreError::Metadata(MetadataError::msg(format!(
                    "network {name} has unreadable metadata: {e}"
                )))
            })?;
            Ok(Network {
                id: Id::parse(&id)?,
                name,
                spec,
                created,
            })
        })
        .collect()
    }

    /// Removes a network's row (its endpoints must be gone).
    pub fn delete_network(&self, id: &Id) -> Result<()> {
        self.conn
            .execute("DELETE FROM networks WHERE id = ?1", [id.as_str()])
            .sql()?;
        Ok(())
    }

    /// Every endpoint, of one container or network when given.
    pub fn endpoints(&self, container: Option<&Id>, network: Option<&Id>) -> Result<Vec<Endpoint>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.container_id, e.network_id, n.name, e.ipv4, e.ipv6, e.slot
             FROM endpoints e JOIN networks n ON n.id = e.network_id
             WHERE (?1 IS NULL OR e.container_id = ?1) AND (?2 IS NULL OR e.network_id = ?2)
             ORDER BY e.container_id, e.slot",
            )
            .sql()?;
        let rows = stmt
            .query_map(
                params![container.map(Id::as_str), network.map(Id::as_str)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, u8>(5)?,
                    ))
                },
            )
            .sql()?;
        rows.map(|r| {
            let (c, n, name, v4, v6, slot) = r.sql()?;
            Ok(Endpoint {
                slot,
                container: Id::parse(&c)?,
                network: Id::parse(&n)?,
                ipv4: parse_addr(&name, v4)?,
                ipv6: parse_addr(&name, v6)?,
                network_name: name,
            })
        })
        .collect()
    }

    /// Adds an endpoint. `Ok(false)`: one of its addresses was taken meanwhile (by another
    /// process); the caller picks again.
    pub fn insert_endpoint(&self, e: &Endpoint, op: Option<&str>) -> Result<bool> {
        let r = self.conn.execute(
            "INSERT INTO endpoints (container_id, network_id, slot, ipv4, ipv6, op) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                e.container.as_str(),
                e.network.as_str(),
                e.slot,
                e.ipv4.map(|a| a.to_string()),
                e.ipv6.map(|a| a.to_string()),
                op,
            ],
        );
        match r {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(f, Some(msg)))
                if f.code == rusqlite::ErrorCode::ConstraintViolation
                    && (msg.contains("endpoints.ipv") || msg.contains("endpoints.slot")) =>
            {
                Ok(false)
            }
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(CoreError::InvalidInput(format!(
                    "container {} is already connected to network {}",
                    e.container, e.network_name
                )))
            }
            Err(other) => Err(CoreError::Metadata(MetadataError::sql(other))),
        }
    }

    /// Removes every endpoint of `owner` (a build's); how many there were.
    pub fn delete_endpoints_of(&self, owner: &Id) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM endpoints WHERE container_id = ?1",
                [owner.as_str()],
            )
            .sql()
    }

    /// The builds' endpoints: owner and operation token.
    pub fn build_endpoints(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT container_id, op FROM endpoints WHERE op IS NOT NULL")
            .sql()?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).sql()?;
        rows.collect::<rusqlite::Result<_>>().sql()
    }

    /// Removes an endpoint; whether there was one.
    pub fn delete_endpoint(&self, container: &Id, network: &Id) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM endpoints WHERE container_id = ?1 AND network_id = ?2",
                [container.as_str(), network.as_str()],
            )
            .sql()?;
        Ok(n == 1)
    }

    /// Marks volume `name` filled from an image (done once, on its first mount).
    pub fn mark_volume_filled(&self, name: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE volumes SET filled = 1 WHERE name = ?1 AND filled = 0",
                [name],
            )
            .sql()?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::RunState;

    #[test]
    fn migrations_run_once_and_refuse_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer than this kleene"), "{err}");
    }

    #[test]
    fn containers_said_running_are_the_ready_starting_and_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("m.sqlite")).unwrap();
        let image = Id::parse("aaaaaaaaaaa1").unwrap();
        s.insert_pending_image(&image, &"p/image/a".parse().unwrap(), "op1")
            .unwrap();
        s.finish_image(&image, "web", "latest", None, &ImageConfig::default())
            .unwrap();
        let states = [
            ("made", RunState::Created, true),
            ("starting", RunState::Starting, true),
            ("running", RunState::Running, true),
            ("ended", RunState::Exited, true),
            ("half", RunState::Running, false),
        ];
        for (name, state, finished) in states {
            let mut c = crate::testkit::container(name);
            c.image_id = image.clone();
            c.runtime.state = state;
            s.insert_pending_container(&c, "op2").unwrap();
            if finished {
                s.finish_container(&c.id).unwrap();
            }
        }
        let mut names: Vec<String> = s
            .containers_said_running()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        names.sort();
        assert_eq!(names, ["running", "starting"]);
    }

    #[test]
    fn image_lifecycle_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("m.sqlite")).unwrap();
        let a = Id::parse("aaaaaaaaaaa1").unwrap();
        let b = Id::parse("aaaaaaaaaab2").unwrap();
        s.insert_pending_image(&a, &"p/image/a".parse().unwrap(), "op1")
            .unwrap();
        assert!(
            s.image(&a).unwrap().is_none(),
            "pending images are invisible"
        );
        assert_eq!(s.pending().unwrap().len(), 1);
        s.finish_image(&a, "web", "latest", None, &ImageConfig::default())
            .unwrap();
        s.insert_pending_image(&b, &"p/image/b".parse().unwrap(), "op2")
            .unwrap();
        s.finish_image(&b, "web", "latest", None, &ImageConfig::default())
            .unwrap();
        assert_eq!(
            s.image(&a).unwrap().unwrap().name,
            "",
            "previous holder is untagged"
        );
        assert_eq!(s.image_by_nametag("web", "latest").unwrap().unwrap().id, b);
        assert_eq!(s.images_by_prefix("aaaaaaaaaa").unwrap().len(), 2);
        assert_eq!(s.images_by_prefix("aaaaaaaaaab").unwrap().len(), 1);
        s.tag_image(&a, "web", "latest").unwrap();
        assert_eq!(s.image_by_nametag("web", "latest").unwrap().unwrap().id, a);
        assert_eq!(s.image(&b).unwrap().unwrap().name, "");
        assert_eq!(s.images().unwrap().len(), 2);
    }
}
