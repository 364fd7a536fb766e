//! Reads from the read model, on pooled read-only connections (SQLite WAL lets them run while
//! the projection writes). Synchronous: call from blocking threads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redcloud_eventlog::{Dot, NodeId, Seq, VersionVector};

use redcloud_types::ChunkId;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use uuid::Uuid;

use super::{ReadModelError, open_connection};
use crate::meta::{ContentMd5, KeyHash};
use crate::repair::gc::ChunkPast;

/// A node retired from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredNode {
    /// A controller (else a chunkserver).
    pub controller: bool,
    /// Its node id.
    pub node_id: String,
    /// When (the retiring operation's stamp), milliseconds since the Unix epoch.
    pub retired_at_ms: u64,
    /// Who retired it and why.
    pub reason: String,
}

/// Most idle connections kept for reuse.
const POOL_MAX_IDLE: usize = 8;

/// A pool of read connections.
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// A pool over the database at `path` (which the projection has created).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a pooled connection.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Reader<'_>) -> Result<T, ReadModelError>,
    ) -> Result<T, ReadModelError> {
        let conn = self
            .idle
            .lock()
            .expect("read pool lock poisoned by a panic in another thread")
            .pop();
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true)?;
                conn
            }
        };
        let result = read(&Reader { conn: &conn });
        let mut idle = self
            .idle
            .lock()
            .expect("read pool lock poisoned by a panic in another thread");
        if idle.len() < POOL_MAX_IDLE {
            idle.push(conn);
        }
        result
    }
}

/// A user as the API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user.
    pub user_id: Uuid,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// An account as its owner sees it (`GET /auth/me`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user.
    pub user_id: Uuid,
    /// The name it registered.
    pub username: String,
    /// Whether another account registered the same name earlier (by stamp), concurrently:
    /// login by name tries that one first.
    pub username_conflict: bool,
}

/// A live file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The file.
    pub file_id: Uuid,
    /// Its owner.
    pub owner_id: Uuid,
    /// The name shown (a conflict name when another live file holds the name).
    pub name: String,
    /// The name it was uploaded under.
    pub original_name: String,
    /// Bytes.
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Effective tags, sorted.
    pub tags: Vec<String>,
    /// The MD5 S3 clients see as its ETag, where one was kept.
    pub md5: Option<ContentMd5>,
}

/// A tag on an owner's live files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCount {
    /// The tag.
    pub tag: String,
    /// How many of the owner's live files carry it.
    pub files: u64,
    /// When the earliest of them was uploaded, in milliseconds since the Unix epoch.
    pub first_created_at_ms: u64,
}

/// A live S3 access key as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3KeyRecord {
    /// The access key id.
    pub key_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A live S3 access key as the gateway needs it to check a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3KeySecret {
    /// Whose key it is.
    pub user_id: Uuid,
    /// The secret, sealed (`s3keys`).
    pub sealed_secret: Vec<u8>,
}

/// An S3 multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The upload, and the owner of its parts' files.
    pub upload_id: Uuid,
    /// Who started it.
    pub owner_id: Uuid,
    /// The file name it completes into.
    pub name: String,
    /// The tags the completed file gets.
    pub tags: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// Queries over one connection.
pub struct Reader<'c> {
    pub(super) conn: &'c Connection,
}

fn uuid(bytes: Vec<u8>, what: &'static str) -> Result<Uuid, ReadModelError> {
    Uuid::from_slice(&bytes).map_err(|e| ReadModelError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

const FILE_COLUMNS: &str =
    "f.file_id, f.owner_id, f.display_name, f.name, f.size, f.created_at_ms, f.md5, f.md5_parts";

impl Reader<'_> {
    /// The frontier the read model has applied and the digest of exactly that state, read
    /// in one transaction (a pass over every table: on a read connection, so the writer and
    /// every write go on meanwhile).
    pub fn applied_and_digest(&self) -> Result<(VersionVector, [u8; 32]), ReadModelError> {
        let tx = self.conn.unchecked_transaction()?;
        let (applied, _) = super::read_position(&tx)?;
        let digest = super::digest(&tx)?;
        tx.commit()?;
        Ok((applied, digest))
    }

    /// Up to `limit` accounts registered under `username`, earliest registration first: the
    /// order in which login by name tries them.
    pub fn users_by_name(
        &self,
        username: &str,
        limit: usize,
    ) -> Result<Vec<UserRecord>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, password_hash FROM users WHERE username = ?1
             ORDER BY registered_stamp LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(rusqlite::params![username, limit], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut users = Vec::new();
        for row in rows {
            let (id, password_hash) = row?;
            users.push(UserRecord {
                user_id: uuid(id, "users.user_id")?,
                password_hash,
            });
        }
        Ok(users)
    }

    /// The account `user_id` as its owner sees it.
    pub fn account(&self, user_id: &Uuid) -> Result<Option<Account>, ReadModelError> {
        self.conn
            .prepare_cached(
                "SELECT u.username, EXISTS (SELECT 1 FROM users o WHERE o.username = u.username
                   AND o.registered_stamp < u.registered_stamp)
                 FROM users u WHERE u.user_id = ?1",
            )?
            .query_row([user_id.as_bytes()], |row| {
                Ok(Account {
                    user_id: *user_id,
                    username: row.get(0)?,
                    username_conflict: row.get(1)?,
                })
            })
            .optional()
            .map_err(ReadModelError::from)
    }

    /// The user whose current key hashes to `key_hash`.
    pub fn user_by_key(&self, key_hash: &KeyHash) -> Result<Option<Uuid>, ReadModelError> {
        self.conn
            .query_row(
                "SELECT user_id FROM users WHERE key_hash = ?1",
                [key_hash],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(|id| uuid(id, "users.user_id"))
            .transpose()
    }

    /// The user's live S3 access keys, by key id.
    pub fn s3_keys_of(&self, user_id: &Uuid) -> Result<Vec<S3KeyRecord>, ReadModelError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT key_id, created_at_ms FROM s3_keys
             WHERE user_id = ?1 AND deleted = 0 ORDER BY key_id",
        )?;
        let rows = statement.query_map([user_id.as_bytes()], |row| {
            Ok(S3KeyRecord {
                key_id: row.get(0)?,
                created_at_ms: row.get::<_, i64>(1)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live S3 access key `key_id`.
    pub fn s3_key(&self, key_id: &str) -> Result<Option<S3KeySecret>, ReadModelError> {
        self.conn
            .prepare_cached(
                "SELECT user_id, sealed_secret FROM s3_keys
                 WHERE key_id = ?1 AND deleted = 0 AND user_id IS NOT NULL",
            )?
            .query_row([key_id], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?
            .map(|(user_id, sealed_secret)| {
                Ok(S3KeySecret {
                    user_id: uuid(user_id, "s3_keys.user_id")?,
                    sealed_secret,
                })
            })
            .transpose()
    }

    /// The owner's buckets made with `CreateBucket` and not deleted since, by name, with their
    /// creation times.
    pub fn buckets_of(&self, owner: &Uuid) -> Result<Vec<(String, u64)>, ReadModelError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT name, created_at_ms FROM buckets WHERE owner_id = ?1 AND present = 1 ORDER BY name",
        )?;
        let rows = statement.query_map([owner.as_bytes()], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The multipart upload `upload_id`, while it is in progress.
    pub fn multipart_upload(
        &self,
        upload_id: &Uuid,
    ) -> Result<Option<MultipartUpload>, ReadModelError> {
        Ok(self
            .multipart_uploads_where("upload_id = ?1", upload_id.as_bytes())?
            .pop())
    }

    /// The owner's multipart uploads in progress, by name, then start, then id.
    pub fn multipart_uploads_of(
        &self,
        owner: &Uuid,
    ) -> Result<Vec<MultipartUpload>, ReadModelError> {
        self.multipart_uploads_where("owner_id = ?1", owner.as_bytes())
    }

    /// Every multipart upload in progress that started before `ms`.
    pub fn multipart_uploads_started_before(
        &self,
        ms: u64,
    ) -> Result<Vec<MultipartUpload>, ReadModelError> {
        self.multipart_uploads_where("started_at_ms < ?1", ms as i64)
    }

    /// Live files owned by a multipart upload that has ended: parts recorded on one controller
    /// while another completed or aborted their upload. Nothing else deletes them.
    pub fn parts_of_ended_uploads(&self, limit: usize) -> Result<Vec<Uuid>, ReadModelError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT f.file_id FROM multipart_uploads u CROSS JOIN files f ON f.owner_id = u.upload_id
             WHERE u.ended = 1 AND f.deleted = 0 LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| row.get::<_, Vec<u8>>(0))?;
        rows.map(|id| uuid(id?, "files.file_id")).collect()
    }

    fn multipart_uploads_where(
        &self,
        condition: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<Vec<MultipartUpload>, ReadModelError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT upload_id, owner_id, name, tags, started_at_ms FROM multipart_uploads
             WHERE {condition} AND ended = 0 AND owner_id IS NOT NULL
             ORDER BY name, started_at_ms, upload_id"
        ))?;
        let mut rows = statement.query([value])?;
        let mut uploads = Vec::new();
        while let Some(row) = rows.next()? {
            let tags: Vec<u8> = row.get(3)?;
            uploads.push(MultipartUpload {
                upload_id: uuid(row.get(0)?, "multipart_uploads.upload_id")?,
                owner_id: uuid(row.get(1)?, "multipart_uploads.owner_id")?,
                name: row.get(2)?,
                tags: rmp_serde::from_slice(&tags).map_err(|e| ReadModelError::Corrupt {
                    what: "multipart_uploads.tags",
                    reason: e.to_string(),
                })?,
                started_at_ms: row.get::<_, i64>(4)? as u64,
            });
        }
        Ok(uploads)
    }

    /// The owner's live files carrying every tag of `tags` (all of them when empty), by name
    /// then id.
    pub fn files_matching(
        &self,
        owner: &Uuid,
        tags: &[String],
    ) -> Result<Vec<FileRecord>, ReadModelError> {
        let matching = if tags.is_empty() {
            "SELECT file_id FROM files WHERE owner_id = ?1 AND deleted = 0".to_owned()
        } else {
            // Drive the query from the tag index: the few files carrying every tag are found
            // first and then looked up by key, instead of scanning all the owner's files.
            let marks: Vec<String> = (0..tags.len()).map(|i| format!("?{}", i + 2)).collect();
            format!(
                "SELECT file_id FROM file_tags WHERE effective = 1 AND tag IN ({})
                 GROUP BY file_id HAVING count(*) = {}",
                marks.join(", "),
                tags.len()
            )
        };
        // Each file's tags come in the same pass, one row per (file, tag) in file order: a
        // query per file cost more than the whole list at a hundred thousand files.
        let sql = format!(
            "SELECT {FILE_COLUMNS}, t.tag FROM ({matching}) AS m
               CROSS JOIN files f ON f.file_id = m.file_id
               LEFT JOIN file_tags t ON t.file_id = f.file_id AND t.effective = 1
             WHERE f.owner_id = ?1 AND f.deleted = 0
             ORDER BY f.display_name, f.file_id, t.tag"
        );
        let args = std::iter::once(rusqlite::types::Value::Blob(owner.as_bytes().to_vec()))
            .chain(tags.iter().map(|t| rusqlite::types::Value::Text(t.clone())));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut files: Vec<FileRecord> = Vec::new();
        while let Some(row) = rows.next()? {
            let tag: Option<String> = row.get(8)?;
            let file_id = row.get_ref(0)?.as_blob().unwrap_or_default();
            match files.last_mut() {
                Some(last) if last.file_id.as_bytes().as_slice() == file_id => {
                    last.tags.extend(tag);
                }
                _ => {
                    let mut file = file_row(row)?;
                    file.tags.extend(tag);
                    files.push(file);
                }
            }
        }
        Ok(files)
    }

    /// The tags shown on the owner's live files, by tag.
    pub fn tag_counts(&self, owner: &Uuid) -> Result<Vec<TagCount>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.tag, count(*), min(f.created_at_ms) FROM files f
               CROSS JOIN file_tags t ON t.file_id = f.file_id
             WHERE f.owner_id = ?1 AND f.deleted = 0 AND t.effective = 1
             GROUP BY t.tag ORDER BY t.tag",
        )?;
        let rows = stmt.query_map([owner.as_bytes()], |row| {
            Ok(TagCount {
                tag: row.get(0)?,
                files: row.get::<_, i64>(1)? as u64,
                first_created_at_ms: row.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A live file by id, whoever owns it.
    pub fn file_by_id(&self, file_id: &Uuid) -> Result<Option<FileRecord>, ReadModelError> {
        let sql =
            format!("SELECT {FILE_COLUMNS} FROM files f WHERE f.file_id = ?1 AND f.deleted = 0");
        let row = self
            .conn
            .query_row(&sql, [file_id.as_bytes()], file_row)
            .optional()?;
        row.map(|row| self.with_tags(row)).transpose()
    }

    /// The owner's live file shown under `name`.
    pub fn file_by_name(
        &self,
        owner: &Uuid,
        name: &str,
    ) -> Result<Option<FileRecord>, ReadModelError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files f WHERE f.owner_id = ?1 AND f.display_name = ?2 AND f.deleted = 0
             ORDER BY f.stamp DESC LIMIT 1"
        );
        let row = self
            .conn
            .query_row(&sql, rusqlite::params![owner.as_bytes(), name], file_row)
            .optional()?;
        row.map(|row| self.with_tags(row)).transpose()
    }

    /// The chunks of a file, in order.
    pub fn chunks_of(&self, file_id: &Uuid) -> Result<Vec<ChunkId>, ReadModelError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT chunk_id FROM file_chunks WHERE file_id = ?1 ORDER BY idx")?;
        let rows = stmt.query_map([file_id.as_bytes()], |row| row.get::<_, Vec<u8>>(0))?;
        rows.map(|bytes| {
            ChunkId::from_slice(&bytes?).map_err(|e| ReadModelError::Corrupt {
                what: "file_chunks.chunk_id",
                reason: e.to_string(),
            })
        })
        .collect()
    }

    /// Bytes per chunk of a file.
    pub fn chunk_size_of(&self, file_id: &Uuid) -> Result<u64, ReadModelError> {
        Ok(self.conn.query_row(
            "SELECT chunk_size FROM files WHERE file_id = ?1",
            [file_id.as_bytes()],
            |row| row.get::<_, i64>(0),
        )? as u64)
    }

    /// Every chunk some live file references.
    pub fn referenced_chunks(&self) -> Result<BTreeSet<ChunkId>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT c.chunk_id FROM file_chunks c JOIN files f ON f.file_id = c.file_id WHERE f.deleted = 0",
        )?;
        let rows = stmt.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
        rows.map(|bytes| {
            ChunkId::from_slice(&bytes?).map_err(|e| ReadModelError::Corrupt {
                what: "file_chunks.chunk_id",
                reason: e.to_string(),
            })
        })
        .collect()
    }

    /// Every controller that ever joined and was not retired.
    pub fn controllers(&self) -> Result<Vec<NodeId>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT node_id FROM controllers WHERE node_id NOT IN
               (SELECT node_id FROM retired_nodes WHERE kind = 'controller')
             ORDER BY node_id",
        )?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|id| {
            let id = id?;
            id.parse().map_err(|e| ReadModelError::Corrupt {
                what: "controllers.node_id",
                reason: format!("{id}: {e}"),
            })
        })
        .collect()
    }

    /// For each of `chunks`: whether a live file references it, or else which deleted files
    /// did and the operations that deleted each.
    pub fn chunk_pasts(
        &self,
        chunks: &BTreeSet<ChunkId>,
    ) -> Result<BTreeMap<ChunkId, ChunkPast>, ReadModelError> {
        let mut files = self.conn.prepare_cached(
            "SELECT DISTINCT f.file_id, f.deleted FROM file_chunks c JOIN files f ON f.file_id = c.file_id
             WHERE c.chunk_id = ?1",
        )?;
        let mut deletions = self
            .conn
            .prepare_cached("SELECT origin, seq FROM file_deletions WHERE file_id = ?1")?;
        let mut pasts = BTreeMap::new();
        for chunk in chunks {
            let referencing: Vec<(Vec<u8>, bool)> = files
                .query_map([chunk.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let past = if referencing.is_empty() {
                ChunkPast::Unreferenced
            } else if referencing.iter().any(|(_, deleted)| !deleted) {
                ChunkPast::Live
            } else {
                let mut by_file = Vec::with_capacity(referencing.len());
                for (file_id, _) in &referencing {
                    let dots: Vec<Dot> = deletions
                        .query_map([file_id], |row| {
                            Ok(Dot::new(
                                NodeId::new(row.get::<_, i64>(0)? as u64),
                                Seq::new(row.get::<_, i64>(1)? as u64),
                            ))
                        })?
                        .collect::<Result<_, _>>()?;
                    by_file.push(dots);
                }
                ChunkPast::Deleted(by_file)
            };
            pasts.insert(*chunk, past);
        }
        Ok(pasts)
    }

    /// Every chunkserver ever seen, with its last known address.
    pub fn chunkservers(&self) -> Result<Vec<(String, String)>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.node_id, c.address FROM chunkservers c WHERE NOT EXISTS
               (SELECT 1 FROM retired_nodes r WHERE r.kind = 'chunkserver'
                  AND r.node_id = c.node_id AND r.stamp > c.stamp)
             ORDER BY c.node_id",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every node retired now: controllers for good, chunkservers not seen again since.
    pub fn retired(&self) -> Result<Vec<RetiredNode>, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.kind, r.node_id, r.stamp, r.reason FROM retired_nodes r
             WHERE r.kind = 'controller' OR NOT EXISTS
               (SELECT 1 FROM chunkservers c WHERE c.node_id = r.node_id AND c.stamp > r.stamp)
             ORDER BY r.kind DESC, r.node_id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (kind, node_id, stamp, reason) = row?;
            let wall: [u8; 8] =
                stamp
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ReadModelError::Corrupt {
                        what: "retired_nodes.stamp",
                        reason: format!("{} bytes", stamp.len()),
                    })?;
            Ok(RetiredNode {
                controller: kind == super::RETIRED_CONTROLLER,
                node_id,
                retired_at_ms: u64::from_be_bytes(wall),
                reason,
            })
        })
        .collect()
    }

    fn with_tags(&self, mut file: FileRecord) -> Result<FileRecord, ReadModelError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT tag FROM file_tags WHERE file_id = ?1 AND effective = 1 ORDER BY tag",
        )?;
        file.tags = stmt
            .query_map([file.file_id.as_bytes()], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(file)
    }
}

fn file_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    let bad = |i: usize, e: uuid::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
    };
    let file_id = Uuid::from_slice(&row.get::<_, Vec<u8>>(0)?).map_err(|e| bad(0, e))?;
    let owner_id = Uuid::from_slice(&row.get::<_, Vec<u8>>(1)?).map_err(|e| bad(1, e))?;
    Ok(FileRecord {
        file_id,
        owner_id,
        name: row.get(2)?,
        original_name: row.get(3)?,
        size: row.get::<_, i64>(4)? as u64,
        created_at_ms: row.get::<_, i64>(5)? as u64,
        tags: Vec::new(),
        md5: md5_columns(row.get(6)?, row.get(7)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Blob, e.into())
        })?,
    })
}

/// The `md5` and `md5_parts` columns as one value.
pub(super) fn md5_columns(
    digest: Option<Vec<u8>>,
    parts: i64,
) -> Result<Option<ContentMd5>, String> {
    let Some(digest) = digest else {
        return Ok(None);
    };
    Ok(Some(ContentMd5 {
        digest: digest
            .try_into()
            .map_err(|d: Vec<u8>| format!("an MD5 of {} bytes", d.len()))?,
        parts: u32::try_from(parts).map_err(|_| format!("{parts} parts"))?,
    }))
}
