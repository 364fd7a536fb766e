//! The SQLite read model: the projection of the event log that every read is served from.
//!
//! [`Projection`] is the single writer: it folds operations, in causal order, into the tables
//! and records the applied frontier in the same transaction, so after a crash it resumes from
//! the log. The conflict rules (the projection's whole contract, see `system.md`):
//! - scalar fields (password hash, current key, file metadata) are LWW registers by stamp;
//! - every registration of a username keeps its account, files and password; login by name
//!   tries them earliest first, and the later ones are reported as conflicts;
//! - tags are LWW elements per (file, tag); a file whose tags are all removed keeps the tags
//!   it had that the newest removal took away, never a tag it did not carry;
//! - an upload deletes the files it causally replaces; concurrent uploads of one name both
//!   live, the newest under the name, the others under deterministic conflict names unique
//!   among the owner's live files;
//! - a delete wins over concurrent tag changes (files are never undeleted).
//!
//! Every rule depends only on the set of operations, never on their arrival order. `model.rs`
//! states the same rules in plain Rust; `model_tests.rs` holds the projection to it.

mod memory;
#[cfg(test)]
mod model;
mod queries;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use redcloud_eventlog::{Dot, Hlc, LogBase, NodeId, Op, VersionVector};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use memory::MemoryProjection;
pub use queries::{
    Account, FileRecord, MultipartUpload, ReadPool, Reader, RetiredNode, S3KeyRecord, TagCount,
};

use crate::meta::MetaOp;

const SCHEMA: &str = include_str!("schema.sql");
/// The read model's format, kept in SQLite's `user_version`. Bump it whenever the tables or a
/// rule change: a read model of another format is emptied when opened and rebuilt from the
/// log, the source of truth. 2: tags record whether the file ever carried them. 3: conflict
/// names unique among the owner's live files. 4: retired nodes. 5: S3 access keys.
const FORMAT: i64 = 8;
const APPLIED_FRONTIER_KEY: &str = "applied_frontier";
/// The newest stamp among the operations applied (MessagePack of an `Hlc`): a snapshot of
/// this read model hands it on, so that the new log's stamps exceed everything it covers.
const NEWEST_STAMP_KEY: &str = "newest_stamp";
/// `meta` key of the retired origins folded so far (`OriginsFolded`).
const FOLDED_ORIGINS_KEY: &str = "folded_origins";
/// Prepared statements kept per connection: more than the projection and queries use.
const STATEMENT_CACHE_CAPACITY: usize = 64;
/// Page cache of the projection's connection, in KiB: a replay of millions of operations
/// touches index pages all over the file.
const PROJECTION_CACHE_KIB: i64 = 64 * 1024;

/// A read-model failure. The transaction in progress is rolled back.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not decode (a damaged or foreign database file).
    #[error("read model value {what} is corrupt: {reason}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// A read model written by another version, whose tables this one cannot read (a
    /// controller rebuilds its own from the log at start; a snapshot must be taken again).
    #[error("the {what} is in format {found}; this version reads format {reads}")]
    OtherFormat {
        /// `snapshot` or `read model`.
        what: &'static str,
        /// Its format.
        found: i64,
        /// This version's.
        reads: i64,
    },
}

impl ReadModelError {
    /// Whether SQLite found the disk full (`SQLITE_FULL`): the transaction was rolled back,
    /// and the same operations apply once there is room again.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            ReadModelError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

/// The 20-byte, byte-ordered form of an operation's LWW stamp.
pub type StampBytes = [u8; 20];

/// Encodes `(hlc, origin)` so that byte order is stamp order.
pub fn stamp_bytes(hlc: Hlc, origin: NodeId) -> StampBytes {
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&hlc.wall_ms.to_be_bytes());
    out[8..12].copy_from_slice(&hlc.logical.to_be_bytes());
    out[12..].copy_from_slice(&origin.to_be_bytes());
    out
}

/// Opens `path` with the settings every connection uses.
pub(crate) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The log is the durable record; after a power loss the projection resumes from the
    // frontier it last committed, so the read model need not fsync every transaction.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Every statement of the projection and the queries stays prepared.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

/// The one writer of the read model.
pub struct Projection {
    conn: Connection,
    applied: VersionVector,
    newest: Hlc,
    folds: VersionVector,
}

impl Projection {
    /// Opens (creating if needed) the read model at `path`.
    pub fn open(path: &Path) -> Result<Self, ReadModelError> {
        let conn = open_connection(path)?;
        conn.pragma_update(None, "cache_size", -PROJECTION_CACHE_KIB)?;
        drop_other_format(&conn)?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", FORMAT)?;
        let (applied, newest) = read_position(&conn)?;
        let folds = read_meta(&conn, FOLDED_ORIGINS_KEY, "folded origins")?;
        Ok(Self {
            conn,
            applied,
            newest,
            folds,
        })
    }

    /// The retired origins folded so far (`OriginsFolded`), for the replication core.
    pub fn folds(&self) -> &VersionVector {
        &self.folds
    }

    /// The frontier of the operations folded in.
    pub fn applied(&self) -> &VersionVector {
        &self.applied
    }

    /// The operations folded in, as the base of a log that starts from this read model.
    pub fn position(&self) -> LogBase {
        LogBase {
            frontier: self.applied.clone(),
            hlc: self.newest,
        }
    }

    /// Writes a compact, self-contained copy of the read model to `path` (which must not
    /// exist): a snapshot that another controller can install.
    pub fn export(&self, path: &Path) -> Result<(), ReadModelError> {
        let target = path.to_str().ok_or_else(|| ReadModelError::Corrupt {
            what: "snapshot path",
            reason: format!("{} is not UTF-8", path.display()),
        })?;
        self.conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// Replaces the whole read model with the snapshot in the file at `path`, if its digest
    /// is `expected` and it is of this format; readers see the old state or the new, never a
    /// mix. Returns the snapshot's position. The file is only read.
    pub fn install(&mut self, path: &Path, expected: &[u8; 32]) -> Result<LogBase, ReadModelError> {
        let (snapshot, position, _) = open_snapshot(path, expected)?;
        let backup = rusqlite::backup::Backup::new(&snapshot, &mut self.conn)?;
        // One step: readers of the destination must never see a half-copied database.
        backup.run_to_completion(i32::MAX, Duration::ZERO, None)?;
        drop(backup);
        // The copy carries the snapshot's pages; the connection's own settings stay.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        (self.applied, self.newest) = read_position(&self.conn)?;
        self.folds = read_meta(&self.conn, FOLDED_ORIGINS_KEY, "folded origins")?;
        debug_assert_eq!((self.applied.clone(), self.newest), position);
        Ok(self.position())
    }

    /// Runs `read` against the writer's own connection (for what the worker itself needs to
    /// know after installing a snapshot).
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Reader<'_>) -> Result<T, ReadModelError>,
    ) -> Result<T, ReadModelError> {
        read(&Reader { conn: &self.conn })
    }

    /// Folds `ops` (in causal order) in one transaction, skipping those already applied.
    pub fn apply(&mut self, ops: &[Op<MetaOp>]) -> Result<(), ReadModelError> {
        let fresh: Vec<&Op<MetaOp>> = ops
            .iter()
            .filter(|op| !self.applied.contains(op.dot))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        let mut newest = self.newest;
        let mut folds = self.folds.clone();
        let tx = self.conn.transaction()?;
        for op in fresh {
            apply_one(&tx, op)?;
            record(op, &mut applied, &mut newest, &mut folds);
        }
        let encode = |what: &'static str, bytes: Result<Vec<u8>, rmp_serde::encode::Error>| {
            bytes.map_err(|e| ReadModelError::Corrupt {
                what,
                reason: e.to_string(),
            })
        };
        let encoded = encode("applied frontier", rmp_serde::to_vec(&applied))?;
        let stamp = encode("newest stamp", rmp_serde::to_vec(&newest))?;
        let mut upsert = tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?;
        upsert.execute(params![APPLIED_FRONTIER_KEY, encoded])?;
        upsert.execute(params![NEWEST_STAMP_KEY, stamp])?;
        if folds != self.folds {
            let encoded = encode("folded origins", rmp_serde::to_vec(&folds))?;
            upsert.execute(params![FOLDED_ORIGINS_KEY, encoded])?;
        }
        drop(upsert);
        tx.commit()?;
        self.applied = applied;
        self.newest = newest;
        self.folds = folds;
        Ok(())
    }

    /// SHA-256 over the canonical contents of every table: equal digests, equal read models.
    pub fn digest(&self) -> Result<[u8; 32], ReadModelError> {
        digest(&self.conn)
    }

    /// Every user and file as one line of text each (`user:UUID`, `file:UUID`), for
    /// comparing two read models entity by entity.
    pub fn entities(&self) -> Result<BTreeMap<String, String>, ReadModelError> {
        let mut entities = BTreeMap::new();
        let mut users = self.conn.prepare(
            "SELECT user_id, username, hex(registered_stamp), hex(key_stamp) FROM users",
        )?;
        let rows = users.query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (id, username, registered, key) = row?;
            entities.insert(
                format!("user:{}", uuid_text(&id)),
                format!("username={username:?} registered_stamp={registered} key_stamp={key}"),
            );
        }
        let mut files = self.conn.prepare(
            "SELECT f.file_id, f.owner_id, f.name, f.size, f.deleted, f.display_name,
                    (SELECT group_concat(tag, ',') FROM (SELECT tag FROM file_tags t
                       WHERE t.file_id = f.file_id AND t.effective = 1 ORDER BY tag)),
                    (SELECT count(*) FROM file_chunks c WHERE c.file_id = f.file_id)
             FROM files f",
        )?;
        let rows = files.query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, bool>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })?;
        for row in rows {
            let (id, owner, name, size, deleted, shown, tags, chunks) = row?;
            let state = if deleted {
                "deleted".to_owned()
            } else {
                format!("shown as {:?}", shown.unwrap_or_default())
            };
            entities.insert(
                format!("file:{}", uuid_text(&id)),
                format!(
                    "owner={} name={name:?} size={size} chunks={chunks} {state} tags=[{}]",
                    uuid_text(&owner),
                    tags.unwrap_or_default()
                ),
            );
        }
        Ok(entities)
    }
}

/// Where the snapshot in the file at `path` stands: its frontier and newest stamp. Refuses a
/// file of another format.
pub fn snapshot_position(path: &Path) -> Result<LogBase, ReadModelError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    check_format(&conn, "snapshot")?;
    let (frontier, hlc) = read_position(&conn)?;
    Ok(LogBase { frontier, hlc })
}

/// The snapshot file at `path`, opened read-only, once it is known to be of this format, to
/// have the digest `expected`, and to fold nothing beyond its frontier; with its position
/// (applied frontier, newest stamp) and its folds.
fn open_snapshot(
    path: &Path,
    expected: &[u8; 32],
) -> Result<(Connection, (VersionVector, Hlc), VersionVector), ReadModelError> {
    let snapshot = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    check_format(&snapshot, "snapshot")?;
    let found = digest(&snapshot)?;
    if &found != expected {
        return Err(ReadModelError::Corrupt {
            what: "snapshot",
            reason: format!(
                "digest {} where {} was promised",
                hex::encode(found),
                hex::encode(expected)
            ),
        });
    }
    let position = read_position(&snapshot)?;
    let folds: VersionVector = read_meta(&snapshot, FOLDED_ORIGINS_KEY, "folded origins")?;
    if !position.0.dominates(&folds) {
        return Err(ReadModelError::Corrupt {
            what: "snapshot",
            reason: format!("folds {folds} beyond its frontier {}", position.0),
        });
    }
    Ok((snapshot, position, folds))
}

/// Refuses a read model (`what`: a snapshot, or a data directory's) of another format,
/// whose tables this version cannot read.
fn check_format(conn: &Connection, what: &'static str) -> Result<(), ReadModelError> {
    let format: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if format == FORMAT {
        Ok(())
    } else {
        Err(ReadModelError::OtherFormat {
            what,
            found: format,
            reads: FORMAT,
        })
    }
}

/// The applied frontier and newest stamp a read model records.
pub(crate) fn read_position(conn: &Connection) -> Result<(VersionVector, Hlc), ReadModelError> {
    Ok((
        read_meta(conn, APPLIED_FRONTIER_KEY, "applied frontier")?,
        read_meta(conn, NEWEST_STAMP_KEY, "newest stamp")?,
    ))
}

/// The value of `meta.key`, or the default when the row is absent.
fn read_meta<T: serde::de::DeserializeOwned + Default>(
    conn: &Connection,
    key: &str,
    what: &'static str,
) -> Result<T, ReadModelError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get::<_, Vec<u8>>(0)
    })
    .optional()?
    .map(|bytes| {
        rmp_serde::from_slice::<T>(&bytes).map_err(|e| ReadModelError::Corrupt {
            what,
            reason: e.to_string(),
        })
    })
    .transpose()
    .map(Option::unwrap_or_default)
}

/// Drops every table of a read model written in another format (its applied frontier with
/// them, so the caller replays the whole log).
fn drop_other_format(conn: &Connection) -> Result<(), ReadModelError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found == FORMAT {
        return Ok(());
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if !tables.is_empty() {
        tracing::info!(
            found,
            format = FORMAT,
            "the read model has another format: rebuilding it from the log"
        );
    }
    for table in tables {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
    }
    Ok(())
}

fn uuid_text(bytes: &[u8]) -> String {
    Uuid::from_slice(bytes).map_or_else(|_| hex::encode(bytes), |id| id.to_string())
}

/// What every projection keeps of an operation besides its tables: the applied frontier, the
/// newest stamp, and the folds an `OriginsFolded` adds, each capped by the operation's causal
/// past (never beyond what its author held: a fold names only operations every holder of the
/// fold holds too).
fn record(
    op: &Op<MetaOp>,
    applied: &mut VersionVector,
    newest: &mut Hlc,
    folds: &mut VersionVector,
) {
    if let MetaOp::OriginsFolded { folded } = &op.payload {
        for (origin, seq) in folded.iter() {
            folds.raise(origin, seq.min(op.deps.get(origin)));
        }
    }
    applied.raise(op.dot.origin, op.dot.seq);
    *newest = (*newest).max(op.hlc);
}

fn apply_one(tx: &Transaction<'_>, op: &Op<MetaOp>) -> Result<(), ReadModelError> {
    let stamp = stamp_bytes(op.hlc, op.dot.origin);
    match &op.payload {
        MetaOp::UserRegistered {
            user_id,
            username,
            password_hash,
            api_key_hash,
        } => {
            // A second registration of one id (never made by a healthy node) is settled by
            // stamp, not by arrival: the earliest registration, the latest key.
            tx.prepare_cached("INSERT INTO users (user_id, username, registered_stamp, password_hash, key_hash, key_stamp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET
                   username = CASE WHEN excluded.registered_stamp < users.registered_stamp THEN excluded.username ELSE users.username END,
                   password_hash = CASE WHEN excluded.registered_stamp < users.registered_stamp THEN excluded.password_hash ELSE users.password_hash END,
                   registered_stamp = min(excluded.registered_stamp, users.registered_stamp),
                   key_hash = CASE WHEN excluded.key_stamp > users.key_stamp THEN excluded.key_hash ELSE users.key_hash END,
                   key_stamp = max(excluded.key_stamp, users.key_stamp)")?.execute(params![user_id.as_bytes(), username, stamp, password_hash, api_key_hash],
            )?;
        }
        MetaOp::ApiKeyIssued {
            user_id,
            api_key_hash,
        } => {
            tx.prepare_cached("UPDATE users SET key_hash = ?2, key_stamp = ?3 WHERE user_id = ?1 AND key_stamp < ?3")?.execute(params![user_id.as_bytes(), api_key_hash, stamp],
            )?;
        }
        MetaOp::FileAdded {
            file_id,
            owner_id,
            name,
            size,
            chunk_size,
            chunks,
            tags,
            created_at_ms,
            replaces,
            md5,
        } => {
            // A second add of one id (never made by a healthy node) is settled by stamp: the
            // earliest add describes the file.
            let previous: Option<(Vec<u8>, String, Vec<u8>)> = tx
                .query_row(
                    "SELECT owner_id, name, stamp FROM files WHERE file_id = ?1",
                    [file_id.as_bytes()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let wins = previous
                .as_ref()
                .is_none_or(|(_, _, earlier)| stamp.as_slice() < earlier.as_slice());
            if wins {
                tx.prepare_cached("INSERT INTO files (file_id, owner_id, name, size, chunk_size, created_at_ms, stamp, md5, md5_parts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (file_id) DO UPDATE SET owner_id = excluded.owner_id, name = excluded.name,
                       size = excluded.size, chunk_size = excluded.chunk_size,
                       created_at_ms = excluded.created_at_ms, stamp = excluded.stamp,
                       md5 = excluded.md5, md5_parts = excluded.md5_parts")?.execute(params![file_id.as_bytes(), owner_id.as_bytes(), name, *size as i64, *chunk_size as i64, *created_at_ms as i64, stamp,
                       md5.map(|m| m.digest.to_vec()), md5.map_or(0, |m| i64::from(m.parts))],
                )?;
                tx.prepare_cached("DELETE FROM file_chunks WHERE file_id = ?1")?
                    .execute([file_id.as_bytes()])?;
                for (idx, chunk) in chunks.iter().enumerate() {
                    tx.prepare_cached(
                        "INSERT INTO file_chunks (file_id, idx, chunk_id) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        file_id.as_bytes(),
                        idx as i64,
                        chunk.as_bytes()
                    ])?;
                }
            }
            set_tags(tx, &[*file_id], tags, true, &stamp)?;
            delete_files(tx, replaces, op.dot)?;
            refresh_display_names(tx, owner_id, name)?;
            if let Some((old_owner, old_name, _)) = previous.filter(|_| wins) {
                let old_owner =
                    Uuid::from_slice(&old_owner).map_err(|e| ReadModelError::Corrupt {
                        what: "files.owner_id",
                        reason: e.to_string(),
                    })?;
                refresh_display_names(tx, &old_owner, &old_name)?;
            }
        }
        MetaOp::FilesDeleted { file_ids } => delete_files(tx, file_ids, op.dot)?,
        MetaOp::TagsAdded { file_ids, tags } => set_tags(tx, file_ids, tags, true, &stamp)?,
        MetaOp::TagsRemoved { file_ids, tags } => set_tags(tx, file_ids, tags, false, &stamp)?,
        MetaOp::ControllerSeen { node_id, address } => {
            tx.prepare_cached("INSERT INTO controllers (node_id, address, stamp) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node_id) DO UPDATE SET address = excluded.address, stamp = excluded.stamp
                 WHERE excluded.stamp > controllers.stamp")?.execute(params![node_id, address, stamp],
            )?;
        }
        MetaOp::ChunkserverSeen { node_id, address } => {
            tx.prepare_cached("INSERT INTO chunkservers (node_id, address, stamp) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node_id) DO UPDATE SET address = excluded.address, stamp = excluded.stamp
                 WHERE excluded.stamp > chunkservers.stamp")?.execute(params![node_id, address, stamp],
            )?;
        }
        MetaOp::ControllerRetired { node_id, reason } => {
            retire(tx, RETIRED_CONTROLLER, node_id, reason, &stamp)?;
        }
        MetaOp::ChunkserverRetired { node_id, reason } => {
            retire(tx, RETIRED_CHUNKSERVER, node_id, reason, &stamp)?;
        }
        MetaOp::S3KeyCreated {
            key_id,
            user_id,
            sealed_secret,
            created_at_ms,
        } => {
            tx.prepare_cached("INSERT INTO s3_keys (key_id, user_id, sealed_secret, created_at_ms, created_stamp, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)
                 ON CONFLICT (key_id) DO UPDATE SET user_id = excluded.user_id,
                   sealed_secret = excluded.sealed_secret, created_at_ms = excluded.created_at_ms,
                   created_stamp = excluded.created_stamp
                 WHERE s3_keys.created_stamp IS NULL OR excluded.created_stamp < s3_keys.created_stamp")?
                .execute(params![key_id, user_id.as_bytes(), sealed_secret, *created_at_ms as i64, stamp])?;
        }
        MetaOp::S3KeyDeleted { key_id } => {
            tx.prepare_cached(
                "INSERT INTO s3_keys (key_id, deleted) VALUES (?1, 1)
                 ON CONFLICT (key_id) DO UPDATE SET deleted = 1",
            )?
            .execute([key_id])?;
        }
        MetaOp::BucketCreated {
            owner_id,
            name,
            created_at_ms,
        } => set_bucket(tx, owner_id, name, true, *created_at_ms, &stamp)?,
        MetaOp::BucketDeleted { owner_id, name } => {
            set_bucket(tx, owner_id, name, false, 0, &stamp)?;
        }
        MetaOp::MultipartStarted {
            upload_id,
            owner_id,
            name,
            tags,
            started_at_ms,
        } => {
            tx.prepare_cached("INSERT INTO multipart_uploads (upload_id, owner_id, name, tags, started_at_ms, started_stamp, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                 ON CONFLICT (upload_id) DO UPDATE SET owner_id = excluded.owner_id, name = excluded.name,
                   tags = excluded.tags, started_at_ms = excluded.started_at_ms,
                   started_stamp = excluded.started_stamp
                 WHERE multipart_uploads.started_stamp IS NULL OR excluded.started_stamp < multipart_uploads.started_stamp")?
                .execute(params![upload_id.as_bytes(), owner_id.as_bytes(), name, encode_tags(tags), *started_at_ms as i64, stamp])?;
        }
        MetaOp::MultipartEnded { upload_id } => {
            tx.prepare_cached(
                "INSERT INTO multipart_uploads (upload_id, ended) VALUES (?1, 1)
                 ON CONFLICT (upload_id) DO UPDATE SET ended = 1",
            )?
            .execute([upload_id.as_bytes()])?;
        }
        // Kept in `meta` by `Projection::apply`: nothing a client reads.
        MetaOp::OriginsFolded { .. } => {}
    }
    Ok(())
}

/// `multipart_uploads.tags`: MessagePack, the same bytes in every projection.
pub(crate) fn encode_tags(tags: &[String]) -> Vec<u8> {
    rmp_serde::to_vec(tags).expect("MessagePack encodes a list of strings into a Vec")
}

/// `retired_nodes.kind` of a controller.
pub(crate) const RETIRED_CONTROLLER: &str = "controller";
/// `retired_nodes.kind` of a chunkserver.
pub(crate) const RETIRED_CHUNKSERVER: &str = "chunkserver";

/// Records a retirement; the newest one of a node wins (last writer wins by stamp).
fn retire(
    tx: &Transaction<'_>,
    kind: &str,
    node_id: &str,
    reason: &str,
    stamp: &[u8],
) -> Result<(), ReadModelError> {
    tx.prepare_cached(
        "INSERT INTO retired_nodes (kind, node_id, stamp, reason) VALUES (?1, ?2, ?3, ?4)
           ON CONFLICT (kind, node_id) DO UPDATE SET stamp = excluded.stamp, reason = excluded.reason
           WHERE excluded.stamp > retired_nodes.stamp",
    )?
    .execute(params![kind, node_id, stamp, reason])?;
    Ok(())
}

/// Records a bucket's creation or deletion; the newest (by stamp) of an (owner, name) wins.
/// A deletion keeps the creation time of what it deleted out of the row: 0.
fn set_bucket(
    tx: &Transaction<'_>,
    owner: &Uuid,
    name: &str,
    present: bool,
    created_at_ms: u64,
    stamp: &[u8],
) -> Result<(), ReadModelError> {
    tx.prepare_cached(
        "INSERT INTO buckets (owner_id, name, present, created_at_ms, stamp) VALUES (?1, ?2, ?3, ?4, ?5)
           ON CONFLICT (owner_id, name) DO UPDATE SET present = excluded.present,
             created_at_ms = excluded.created_at_ms, stamp = excluded.stamp
           WHERE excluded.stamp > buckets.stamp",
    )?
    .execute(params![owner.as_bytes(), name, present, created_at_ms as i64, stamp])?;
    Ok(())
}

/// Marks files deleted (for good) by the operation `by` and refreshes the names of their
/// (owner, name) groups.
fn delete_files(tx: &Transaction<'_>, file_ids: &[Uuid], by: Dot) -> Result<(), ReadModelError> {
    for file_id in file_ids {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO file_deletions (file_id, origin, seq) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![
            file_id.as_bytes(),
            by.origin.get() as i64,
            by.seq.get() as i64
        ])?;
        let group: Option<(Vec<u8>, String)> = tx
            .query_row(
                "UPDATE files SET deleted = 1, display_name = NULL, conflict = 0 WHERE file_id = ?1 AND deleted = 0
                 RETURNING owner_id, name",
                [file_id.as_bytes()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((owner, name)) = group {
            let owner = Uuid::from_slice(&owner).map_err(|e| ReadModelError::Corrupt {
                what: "files.owner_id",
                reason: e.to_string(),
            })?;
            refresh_display_names(tx, &owner, &name)?;
        }
    }
    Ok(())
}

/// Applies an add (`present`) or remove of `tags` on each file at `stamp`, LWW per element.
/// Tag changes apply to deleted files too, so the state never depends on whether a delete
/// arrived first; a deleted file is simply never shown.
fn set_tags(
    tx: &Transaction<'_>,
    file_ids: &[Uuid],
    tags: &[String],
    present: bool,
    stamp: &StampBytes,
) -> Result<(), ReadModelError> {
    for file_id in file_ids {
        // A changed element shows exactly when it is present, and is carried once anything
        // added it, whatever the stamps...
        for tag in tags {
            tx.prepare_cached("INSERT INTO file_tags (file_id, tag, present, stamp, effective, carried) VALUES (?1, ?2, ?3, ?4, ?3, ?3)
                 ON CONFLICT (file_id, tag) DO UPDATE SET
                   present = CASE WHEN excluded.stamp > file_tags.stamp THEN excluded.present ELSE file_tags.present END,
                   effective = CASE WHEN excluded.stamp > file_tags.stamp THEN excluded.present ELSE file_tags.effective END,
                   stamp = max(excluded.stamp, file_tags.stamp),
                   carried = max(excluded.carried, file_tags.carried)")?.execute(params![file_id.as_bytes(), tag, present, stamp],
            )?;
        }
        // ...and the file is never tagless: with no tag present, each carried row holds the
        // stamp of the removal that took it away, so the carried rows with the largest stamp
        // are the tags the file had that the newest removal took away; they show. A row made
        // only by the removal of a tag the file never had never shows. Only that fallback can
        // differ from `present`, so only it is looked at (through partial indexes).
        tx.prepare_cached("UPDATE file_tags SET effective = 0 WHERE file_id = ?1 AND present = 0 AND effective = 1")?.execute([file_id.as_bytes()],
        )?;
        let any_present: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM file_tags WHERE file_id = ?1 AND present = 1)",
            )?
            .query_row([file_id.as_bytes()], |row| row.get(0))?;
        if !any_present {
            tx.prepare_cached(
                "UPDATE file_tags SET effective = 1 WHERE file_id = ?1 AND carried = 1
                   AND stamp = (SELECT max(stamp) FROM file_tags WHERE file_id = ?1 AND carried = 1)",
            )?
            .execute([file_id.as_bytes()])?;
        }
    }
    Ok(())
}

/// Gives the newest live file of (owner, name) the name itself, marks the others as conflict
/// copies, and names all the owner's conflict copies again (a change to one name can free or
/// take the name a copy of another wants).
fn refresh_display_names(
    tx: &Transaction<'_>,
    owner: &Uuid,
    name: &str,
) -> Result<(), ReadModelError> {
    let mut stmt = tx.prepare_cached(
        "SELECT file_id FROM files WHERE owner_id = ?1 AND name = ?2 AND deleted = 0 ORDER BY stamp DESC",
    )?;
    let ids: Vec<Vec<u8>> = stmt
        .query_map(params![owner.as_bytes(), name], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (rank, id) in ids.iter().enumerate() {
        tx.prepare_cached(
            "UPDATE files SET display_name = CASE WHEN ?2 THEN display_name ELSE name END,
               conflict = ?2 WHERE file_id = ?1",
        )?
        .execute(params![id, rank > 0])?;
    }
    refresh_conflict_names(tx, owner)
}

/// Names the owner's conflict copies, in file id order, each with the first of its candidate
/// names ([`conflict_names`]) that no live file of the owner was uploaded under and no copy
/// before it took. That depends only on the owner's live files, the same on every controller
/// holding the same operations, and no two live files of an owner are shown under one name.
fn refresh_conflict_names(tx: &Transaction<'_>, owner: &Uuid) -> Result<(), ReadModelError> {
    let copies: Vec<(Vec<u8>, String)> = tx
        .prepare_cached(
            "SELECT file_id, name FROM files WHERE owner_id = ?1 AND conflict = 1 ORDER BY file_id",
        )?
        .query_map([owner.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut taken = std::collections::HashSet::new();
    for (id, name) in copies {
        let file_id = Uuid::from_slice(&id).map_err(|e| ReadModelError::Corrupt {
            what: "files.file_id",
            reason: e.to_string(),
        })?;
        let mut candidates = conflict_names(&name, &file_id);
        let shown = loop {
            let candidate = candidates
                .next()
                .expect("conflict_names ends with an endless counter");
            if taken.contains(&candidate) {
                continue;
            }
            let uploaded_under: bool = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM files WHERE owner_id = ?1 AND name = ?2 AND deleted = 0)",
                )?
                .query_row(params![owner.as_bytes(), candidate], |row| row.get(0))?;
            if !uploaded_under {
                break candidate;
            }
        };
        tx.prepare_cached("UPDATE files SET display_name = ?2 WHERE file_id = ?1")?
            .execute(params![id, shown])?;
        taken.insert(shown);
    }
    Ok(())
}

/// The names a conflict copy of `name` may be shown under, in order of preference:
/// `report.pdf` → `report (conflict 3f2a91c4).pdf`, then ever more hex digits of the file id,
/// then the whole id with a counter. The first candidate has 32 bits of the id: copies of one
/// name are the few uploads made concurrently during a partition, so two of them share 32
/// bits with a chance of about n²/2³³ (one in 10⁸ for ten copies), short enough to read and
/// type. When they do, or when a live file was uploaded under that very name, the next
/// candidate is taken: 128 bits tell any two files apart, and the counter outlasts a user who
/// names files after conflict copies.
pub fn conflict_names<'a>(name: &'a str, file_id: &Uuid) -> impl Iterator<Item = String> + 'a {
    let hex = hex::encode(file_id.as_bytes());
    let digits = (8..=hex.len()).map({
        let hex = hex.clone();
        move |n| hex[..n].to_owned()
    });
    let counted = (2u64..).map(move |n| format!("{hex}-{n}"));
    digits
        .chain(counted)
        .map(move |tag| match name.rfind('.').filter(|&dot| dot > 0) {
            Some(dot) => format!("{} (conflict {tag}){}", &name[..dot], &name[dot..]),
            None => format!("{name} (conflict {tag})"),
        })
}

/// The digest of the read model in the file at `path`, read without writing (safe while its
/// controller runs).
pub fn digest_at(path: &Path) -> Result<[u8; 32], ReadModelError> {
    if !path.is_file() {
        return Err(ReadModelError::Corrupt {
            what: "read model file",
            reason: format!("{} does not exist", path.display()),
        });
    }
    let conn = open_connection(path)?;
    conn.pragma_update(None, "query_only", true)?;
    // A controller rebuilds a read model of another format from its log at start; until
    // then its tables are not this version's.
    check_format(&conn, "read model")?;
    digest(&conn)
}

/// The canonical digest of a read model: every table, in primary-key order.
pub fn digest(conn: &Connection) -> Result<[u8; 32], ReadModelError> {
    const TABLES: &[(&str, &str)] = &[
        (
            "users",
            "SELECT user_id, username, registered_stamp, password_hash, key_hash, key_stamp FROM users ORDER BY user_id",
        ),
        (
            "files",
            "SELECT file_id, owner_id, name, size, chunk_size, created_at_ms, stamp, deleted, display_name, conflict, md5, md5_parts FROM files ORDER BY file_id",
        ),
        (
            "file_chunks",
            "SELECT file_id, idx, chunk_id FROM file_chunks ORDER BY file_id, idx",
        ),
        (
            "file_tags",
            "SELECT file_id, tag, present, stamp, effective, carried FROM file_tags ORDER BY file_id, tag",
        ),
        (
            "file_deletions",
            "SELECT file_id, origin, seq FROM file_deletions ORDER BY file_id, origin, seq",
        ),
        (
            "controllers",
            "SELECT node_id, address, stamp FROM controllers ORDER BY node_id",
        ),
        (
            "chunkservers",
            "SELECT node_id, address, stamp FROM chunkservers ORDER BY node_id",
        ),
        (
            "retired_nodes",
            "SELECT kind, node_id, stamp, reason FROM retired_nodes ORDER BY kind, node_id",
        ),
        (
            "s3_keys",
            "SELECT key_id, user_id, sealed_secret, created_at_ms, created_stamp, deleted FROM s3_keys ORDER BY key_id",
        ),
        (
            "buckets",
            "SELECT owner_id, name, present, created_at_ms, stamp FROM buckets ORDER BY owner_id, name",
        ),
        (
            "multipart_uploads",
            "SELECT upload_id, owner_id, name, tags, started_at_ms, started_stamp, ended FROM multipart_uploads ORDER BY upload_id",
        ),
    ];
    let mut out = Rows::default();
    for (table, query) in TABLES {
        out.table(table);
        let mut stmt = conn.prepare(query)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => out.null(),
                    rusqlite::types::ValueRef::Integer(v) => out.int(v),
                    rusqlite::types::ValueRef::Real(v) => out.value(2, &v.to_be_bytes()),
                    rusqlite::types::ValueRef::Text(v) | rusqlite::types::ValueRef::Blob(v) => {
                        out.bytes(v);
                    }
                }
            }
        }
    }
    Ok(out.finish())
}

/// Bytes of encoded rows hashed at a time.
const DIGEST_BLOCK_BYTES: usize = 64 * 1024;
/// Encoded blocks waiting for the hashing thread: enough to ride out an uneven table, few
/// enough to keep memory flat.
const DIGEST_BLOCKS_IN_FLIGHT: usize = 4;

/// The canonical encoding of rows the read-model digest hashes: each table's name, then each
/// row's values as (type tag, length, bytes), so that no two different sets of rows encode
/// alike. Hashed as it is written, a block at a time: millions of tiny hasher updates cost
/// more than the hashing, and the encoding of a large read model whole would be hundreds of
/// MiB of fresh memory. The hashing runs on a thread of its own, a few blocks behind the
/// encoding, which it would otherwise add to: a third of the encoding's time.
struct Rows {
    block: Vec<u8>,
    hashing: BlockHasher,
}

impl Default for Rows {
    fn default() -> Self {
        Self {
            block: Vec::with_capacity(DIGEST_BLOCK_BYTES),
            hashing: BlockHasher::start(),
        }
    }
}

impl Rows {
    fn table(&mut self, name: &str) {
        self.write(name.as_bytes());
    }

    fn null(&mut self) {
        self.value(0, &[]);
    }

    fn int(&mut self, value: i64) {
        self.value(1, &value.to_be_bytes());
    }

    /// A TEXT or BLOB value (one tag: the schema never lets a column hold both).
    fn bytes(&mut self, value: &[u8]) {
        self.value(3, value);
    }

    /// Written as one header and one copy: tens of millions of values make each call count.
    #[inline]
    fn value(&mut self, tag: u8, bytes: &[u8]) {
        let mut header = [tag; 9];
        header[1..].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.block.extend_from_slice(&header);
        self.write(bytes);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.block.extend_from_slice(bytes);
        if self.block.len() >= DIGEST_BLOCK_BYTES {
            let full = std::mem::take(&mut self.block);
            self.block = self.hashing.hash(full);
        }
    }

    /// The SHA-256 of everything written.
    fn finish(self) -> [u8; 32] {
        self.hashing.finish(self.block)
    }
}

/// SHA-256 over blocks handed over in order: on a thread of its own, which hands the emptied
/// blocks back for reuse, or here when no thread could be started.
enum BlockHasher {
    Thread {
        full: std::sync::mpsc::SyncSender<Vec<u8>>,
        emptied: std::sync::mpsc::Receiver<Vec<u8>>,
        thread: std::thread::JoinHandle<[u8; 32]>,
    },
    Here(Sha256),
}

impl BlockHasher {
    fn start() -> Self {
        let (full, blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(DIGEST_BLOCKS_IN_FLIGHT);
        let (give_back, emptied) = std::sync::mpsc::sync_channel(DIGEST_BLOCKS_IN_FLIGHT + 1);
        let spawned = std::thread::Builder::new()
            .name("digest".to_owned())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for mut block in blocks {
                    hasher.update(&block);
                    block.clear();
                    // Nobody takes blocks back once the encoding ended: dropping it is fine.
                    let _ = give_back.try_send(block);
                }
                <[u8; 32]>::from(hasher.finalize())
            });
        match spawned {
            Ok(thread) => Self::Thread {
                full,
                emptied,
                thread,
            },
            Err(_) => Self::Here(Sha256::new()),
        }
    }

    /// Hashes `block` (now, or on the thread); returns an empty block to write on.
    fn hash(&mut self, mut block: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Thread { full, emptied, .. } => match full.send(block) {
                Ok(()) => emptied
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(DIGEST_BLOCK_BYTES)),
                // The thread is gone only if it panicked; `finish` says so.
                Err(std::sync::mpsc::SendError(block)) => block,
            },
            Self::Here(hasher) => {
                hasher.update(&block);
                block.clear();
                block
            }
        }
    }

    fn finish(self, last: Vec<u8>) -> [u8; 32] {
        match self {
            Self::Thread { full, thread, .. } => {
                // A send fails only if the thread panicked, which the join reports.
                let _ = full.send(last);
                drop(full);
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Self::Here(mut hasher) => {
                hasher.update(&last);
                hasher.finalize().into()
            }
        }
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
