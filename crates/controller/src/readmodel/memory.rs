//! The read model's tables held in memory: the projection of a whole history at once.
//!
//! [`Projection`](super::Projection) keeps SQLite up to date one transaction at a time, and
//! pays for that with index work on every operation (about 30 k operations/s). A rebuild
//! (`redcloud log rebuild`) only needs the state a history ends in and its digest, so
//! [`MemoryProjection`] folds operations into hash maps with the same rules, leaves the
//! columns that depend on other rows (which tag shows, which file is a conflict copy and
//! under which name) to be derived once at the end, and hashes the rows in the order the
//! SQLite digest reads them. The two must agree to the byte: `model_tests.rs` checks the
//! digests of both over every generated history, in every delivery order, and over histories
//! with operations left out (what `--exclude` makes).
//!
//! The derived columns are a function of the other columns: [`Projection`](super::Projection)
//! recomputes a file's shown tags whenever one of its tags changes, and an owner's names
//! whenever one of their files is added, replaced or deleted, from the rows alone.

use std::collections::hash_map::Entry;

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use std::path::Path;

use redcloud_eventlog::{Dot, Hlc, LogBase, Op, VersionVector};
use redcloud_types::ChunkId;
use rusqlite::Connection;
use uuid::Uuid;

use super::queries::md5_columns;
use super::{
    RETIRED_CHUNKSERVER, RETIRED_CONTROLLER, ReadModelError, Rows, StampBytes, conflict_names,
    encode_tags, open_snapshot, record, stamp_bytes,
};
use crate::meta::{ContentMd5, KeyHash, MetaOp};

struct User {
    username: String,
    registered_stamp: StampBytes,
    password_hash: String,
    key_hash: KeyHash,
    key_stamp: StampBytes,
}

struct File {
    owner_id: Uuid,
    name: String,
    size: i64,
    chunk_size: i64,
    created_at_ms: i64,
    stamp: StampBytes,
    deleted: bool,
    chunks: Vec<ChunkId>,
    md5: Option<ContentMd5>,
}

/// A `file_tags` row, its tag by [`TagNames`] number.
struct Tag {
    name: u32,
    present: bool,
    stamp: StampBytes,
    carried: bool,
}

/// A `file_tags` row as the digest encodes it.
struct TagRow<'a> {
    file_id: &'a Uuid,
    name: &'a str,
    tag: &'a Tag,
    effective: bool,
}

/// Every tag name, held once and numbered: a history repeats a few thousand names over
/// millions of rows, and a row then takes 28 bytes rather than 48 and a string of its own.
#[derive(Default)]
struct TagNames {
    numbers: HashMap<String, u32>,
    names: Vec<String>,
}

impl TagNames {
    fn number(&mut self, name: String) -> u32 {
        if let Some(&number) = self.numbers.get(name.as_str()) {
            return number;
        }
        let number = u32::try_from(self.names.len())
            .expect("fewer than 2^32 distinct tags: each took an operation");
        self.names.push(name.clone());
        self.numbers.insert(name, number);
        number
    }

    fn name(&self, number: u32) -> &str {
        &self.names[number as usize]
    }
}

struct Node {
    address: String,
    stamp: StampBytes,
}

struct Retirement {
    stamp: StampBytes,
    reason: String,
}

/// An S3 access key: its creation (absent while only its deletion has arrived) and whether
/// it is deleted.
#[derive(Default)]
struct S3Key {
    created: Option<S3KeyCreation>,
    deleted: bool,
}

struct S3KeyCreation {
    user_id: Uuid,
    sealed_secret: Vec<u8>,
    created_at_ms: i64,
    stamp: StampBytes,
}

/// An S3 multipart upload: its start (absent while only its end has arrived) and whether it
/// ended.
#[derive(Default)]
struct Upload {
    started: Option<UploadStart>,
    ended: bool,
}

struct UploadStart {
    owner_id: Uuid,
    name: String,
    /// As `multipart_uploads.tags` holds them ([`encode_tags`]).
    tags: Vec<u8>,
    started_at_ms: i64,
    stamp: StampBytes,
}

/// The read model's tables in memory, fed operations in causal order like
/// [`Projection`](super::Projection), read only through [`MemoryProjection::digest`].
#[derive(Default)]
pub struct MemoryProjection {
    users: HashMap<Uuid, User>,
    /// Boxed: the table then holds pointers, and its spare capacity (up to half of it after
    /// a doubling) costs 8 bytes a slot rather than a whole record's 150.
    files: HashMap<Uuid, Box<File>>,
    /// Per file, in no order (a file carries a handful of tags).
    tags: HashMap<Uuid, Vec<Tag>>,
    tag_names: TagNames,
    /// Per file, the (origin, seq) of every operation that deleted it, in no order.
    deletions: HashMap<Uuid, Vec<(u64, u64)>>,
    controllers: HashMap<String, Node>,
    chunkservers: HashMap<String, Node>,
    retired: HashMap<(&'static str, String), Retirement>,
    s3_keys: HashMap<String, S3Key>,
    uploads: HashMap<Uuid, Upload>,
    /// Per (owner, name): present, creation time, stamp.
    buckets: HashMap<(Uuid, String), (bool, i64, StampBytes)>,
    applied: VersionVector,
    newest: Hlc,
    folds: VersionVector,
}

impl MemoryProjection {
    /// An empty read model.
    pub fn new() -> Self {
        Self::default()
    }

    /// The read model of the snapshot file at `path`, if its digest is `expected` and it is of
    /// this format (what [`Projection::install`](super::Projection::install) accepts). The file
    /// is only read.
    pub fn install(path: &Path, expected: &[u8; 32]) -> Result<Self, ReadModelError> {
        let (conn, (applied, newest), folds) = open_snapshot(path, expected)?;
        let mut projection = Self {
            applied,
            newest,
            folds,
            ..Self::default()
        };
        projection.load(&conn)?;
        Ok(projection)
    }

    fn load(&mut self, conn: &Connection) -> Result<(), ReadModelError> {
        let mut users = conn.prepare(
            "SELECT user_id, username, registered_stamp, password_hash, key_hash, key_stamp FROM users",
        )?;
        let mut rows = users.query([])?;
        while let Some(row) = rows.next()? {
            self.users.insert(
                uuid_at(row, 0, "users.user_id")?,
                User {
                    username: row.get(1)?,
                    registered_stamp: blob(row, 2, "users.registered_stamp")?,
                    password_hash: row.get(3)?,
                    key_hash: blob(row, 4, "users.key_hash")?,
                    key_stamp: blob(row, 5, "users.key_stamp")?,
                },
            );
        }
        let mut files = conn.prepare(
            "SELECT file_id, owner_id, name, size, chunk_size, created_at_ms, stamp, deleted, md5, md5_parts FROM files",
        )?;
        let mut rows = files.query([])?;
        while let Some(row) = rows.next()? {
            self.files.insert(
                uuid_at(row, 0, "files.file_id")?,
                Box::new(File {
                    owner_id: uuid_at(row, 1, "files.owner_id")?,
                    name: row.get(2)?,
                    size: row.get(3)?,
                    chunk_size: row.get(4)?,
                    created_at_ms: row.get(5)?,
                    stamp: blob(row, 6, "files.stamp")?,
                    deleted: row.get(7)?,
                    chunks: Vec::new(),
                    md5: md5_columns(row.get(8)?, row.get(9)?)
                        .map_err(|e| corrupt("files.md5", e))?,
                }),
            );
        }
        let mut chunks =
            conn.prepare("SELECT file_id, chunk_id FROM file_chunks ORDER BY file_id, idx")?;
        let mut rows = chunks.query([])?;
        while let Some(row) = rows.next()? {
            let file_id = uuid_at(row, 0, "file_chunks.file_id")?;
            let chunk = ChunkId::from_digest(blob(row, 1, "file_chunks.chunk_id")?);
            let Some(file) = self.files.get_mut(&file_id) else {
                return Err(corrupt("file_chunks.file_id", "a chunk of no file"));
            };
            file.chunks.push(chunk);
        }
        let mut tags =
            conn.prepare("SELECT file_id, tag, present, stamp, carried FROM file_tags")?;
        let mut rows = tags.query([])?;
        while let Some(row) = rows.next()? {
            let name = self.tag_names.number(row.get(1)?);
            self.tags
                .entry(uuid_at(row, 0, "file_tags.file_id")?)
                .or_default()
                .push(Tag {
                    name,
                    present: row.get(2)?,
                    stamp: blob(row, 3, "file_tags.stamp")?,
                    carried: row.get(4)?,
                });
        }
        let mut deletions = conn.prepare("SELECT file_id, origin, seq FROM file_deletions")?;
        let mut rows = deletions.query([])?;
        while let Some(row) = rows.next()? {
            self.deletions
                .entry(uuid_at(row, 0, "file_deletions.file_id")?)
                .or_default()
                .push((row.get::<_, i64>(1)? as u64, row.get::<_, i64>(2)? as u64));
        }
        for (table, nodes) in [
            ("controllers", &mut self.controllers),
            ("chunkservers", &mut self.chunkservers),
        ] {
            let mut statement =
                conn.prepare(&format!("SELECT node_id, address, stamp FROM {table}"))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                nodes.insert(
                    row.get(0)?,
                    Node {
                        address: row.get(1)?,
                        stamp: blob(row, 2, "node stamp")?,
                    },
                );
            }
        }
        let mut retired = conn.prepare("SELECT kind, node_id, stamp, reason FROM retired_nodes")?;
        let mut rows = retired.query([])?;
        while let Some(row) = rows.next()? {
            let kind = match row.get::<_, String>(0)?.as_str() {
                RETIRED_CONTROLLER => RETIRED_CONTROLLER,
                RETIRED_CHUNKSERVER => RETIRED_CHUNKSERVER,
                other => {
                    return Err(corrupt(
                        "retired_nodes.kind",
                        format!("unknown kind {other:?}"),
                    ));
                }
            };
            self.retired.insert(
                (kind, row.get(1)?),
                Retirement {
                    stamp: blob(row, 2, "retired_nodes.stamp")?,
                    reason: row.get(3)?,
                },
            );
        }
        let mut keys = conn.prepare(
            "SELECT key_id, user_id, sealed_secret, created_at_ms, created_stamp, deleted FROM s3_keys",
        )?;
        let mut rows = keys.query([])?;
        while let Some(row) = rows.next()? {
            let created = match row.get_ref(4)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(S3KeyCreation {
                    user_id: uuid_at(row, 1, "s3_keys.user_id")?,
                    sealed_secret: row.get(2)?,
                    created_at_ms: row.get(3)?,
                    stamp: blob(row, 4, "s3_keys.created_stamp")?,
                }),
            };
            self.s3_keys.insert(
                row.get(0)?,
                S3Key {
                    created,
                    deleted: row.get(5)?,
                },
            );
        }
        let mut buckets =
            conn.prepare("SELECT owner_id, name, present, created_at_ms, stamp FROM buckets")?;
        let mut rows = buckets.query([])?;
        while let Some(row) = rows.next()? {
            self.buckets.insert(
                (uuid_at(row, 0, "buckets.owner_id")?, row.get(1)?),
                (row.get(2)?, row.get(3)?, blob(row, 4, "buckets.stamp")?),
            );
        }
        let mut uploads = conn.prepare(
            "SELECT upload_id, owner_id, name, tags, started_at_ms, started_stamp, ended FROM multipart_uploads",
        )?;
        let mut rows = uploads.query([])?;
        while let Some(row) = rows.next()? {
            let started = match row.get_ref(5)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(UploadStart {
                    owner_id: uuid_at(row, 1, "multipart_uploads.owner_id")?,
                    name: row.get(2)?,
                    tags: row.get(3)?,
                    started_at_ms: row.get(4)?,
                    stamp: blob(row, 5, "multipart_uploads.started_stamp")?,
                }),
            };
            self.uploads.insert(
                uuid_at(row, 0, "multipart_uploads.upload_id")?,
                Upload {
                    started,
                    ended: row.get(6)?,
                },
            );
        }
        Ok(())
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

    /// Folds `ops` (in causal order), skipping those already applied. The operations are
    /// taken: their names and tags move into the tables.
    pub fn apply(&mut self, ops: impl IntoIterator<Item = Op<MetaOp>>) {
        for op in ops {
            if self.applied.contains(op.dot) {
                continue;
            }
            record(&op, &mut self.applied, &mut self.newest, &mut self.folds);
            self.apply_one(op.dot, stamp_bytes(op.hlc, op.dot.origin), op.payload);
        }
    }

    fn apply_one(&mut self, dot: Dot, stamp: StampBytes, payload: MetaOp) {
        match payload {
            MetaOp::UserRegistered {
                user_id,
                username,
                password_hash,
                api_key_hash,
            } => match self.users.get_mut(&user_id) {
                None => {
                    self.users.insert(
                        user_id,
                        User {
                            username,
                            registered_stamp: stamp,
                            password_hash,
                            key_hash: api_key_hash,
                            key_stamp: stamp,
                        },
                    );
                }
                Some(user) => {
                    if stamp < user.registered_stamp {
                        user.username = username;
                        user.password_hash = password_hash;
                        user.registered_stamp = stamp;
                    }
                    if stamp > user.key_stamp {
                        user.key_hash = api_key_hash;
                        user.key_stamp = stamp;
                    }
                }
            },
            MetaOp::ApiKeyIssued {
                user_id,
                api_key_hash,
            } => {
                if let Some(user) = self.users.get_mut(&user_id)
                    && user.key_stamp < stamp
                {
                    user.key_hash = api_key_hash;
                    user.key_stamp = stamp;
                }
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
                let deleted = match self.files.get(&file_id) {
                    Some(earlier) if earlier.stamp <= stamp => None,
                    Some(earlier) => Some(earlier.deleted),
                    None => Some(false),
                };
                if let Some(deleted) = deleted {
                    self.files.insert(
                        file_id,
                        Box::new(File {
                            owner_id,
                            name,
                            size: size as i64,
                            chunk_size: chunk_size as i64,
                            created_at_ms: created_at_ms as i64,
                            stamp,
                            deleted,
                            chunks,
                            md5,
                        }),
                    );
                }
                self.set_tags(&[file_id], tags, true, stamp);
                self.delete_files(&replaces, dot);
            }
            MetaOp::FilesDeleted { file_ids } => self.delete_files(&file_ids, dot),
            MetaOp::TagsAdded { file_ids, tags } => self.set_tags(&file_ids, tags, true, stamp),
            MetaOp::TagsRemoved { file_ids, tags } => self.set_tags(&file_ids, tags, false, stamp),
            MetaOp::S3KeyCreated {
                key_id,
                user_id,
                sealed_secret,
                created_at_ms,
            } => {
                let key = self.s3_keys.entry(key_id).or_default();
                if key
                    .created
                    .as_ref()
                    .is_none_or(|earlier| stamp < earlier.stamp)
                {
                    key.created = Some(S3KeyCreation {
                        user_id,
                        sealed_secret,
                        created_at_ms: created_at_ms as i64,
                        stamp,
                    });
                }
            }
            MetaOp::S3KeyDeleted { key_id } => {
                self.s3_keys.entry(key_id).or_default().deleted = true
            }
            MetaOp::BucketCreated {
                owner_id,
                name,
                created_at_ms,
            } => self.set_bucket(owner_id, name, true, created_at_ms as i64, stamp),
            MetaOp::BucketDeleted { owner_id, name } => {
                self.set_bucket(owner_id, name, false, 0, stamp);
            }
            MetaOp::MultipartStarted {
                upload_id,
                owner_id,
                name,
                tags,
                started_at_ms,
            } => {
                let upload = self.uploads.entry(upload_id).or_default();
                if upload
                    .started
                    .as_ref()
                    .is_none_or(|earlier| stamp < earlier.stamp)
                {
                    upload.started = Some(UploadStart {
                        owner_id,
                        name,
                        tags: encode_tags(&tags),
                        started_at_ms: started_at_ms as i64,
                        stamp,
                    });
                }
            }
            MetaOp::MultipartEnded { upload_id } => {
                self.uploads.entry(upload_id).or_default().ended = true
            }
            MetaOp::ControllerSeen { node_id, address } => {
                see(&mut self.controllers, node_id, address, stamp);
            }
            MetaOp::ChunkserverSeen { node_id, address } => {
                see(&mut self.chunkservers, node_id, address, stamp);
            }
            MetaOp::ControllerRetired { node_id, reason } => {
                self.retire(RETIRED_CONTROLLER, node_id, reason, stamp);
            }
            MetaOp::ChunkserverRetired { node_id, reason } => {
                self.retire(RETIRED_CHUNKSERVER, node_id, reason, stamp);
            }
            MetaOp::OriginsFolded { .. } => {}
        }
    }

    fn retire(&mut self, kind: &'static str, node_id: String, reason: String, stamp: StampBytes) {
        match self.retired.entry((kind, node_id)) {
            Entry::Vacant(entry) => {
                entry.insert(Retirement { stamp, reason });
            }
            Entry::Occupied(mut entry) => {
                if stamp > entry.get().stamp {
                    entry.insert(Retirement { stamp, reason });
                }
            }
        }
    }

    fn set_bucket(
        &mut self,
        owner: Uuid,
        name: String,
        present: bool,
        created_at_ms: i64,
        stamp: StampBytes,
    ) {
        let entry = self
            .buckets
            .entry((owner, name))
            .or_insert((present, created_at_ms, stamp));
        if stamp > entry.2 {
            *entry = (present, created_at_ms, stamp);
        }
    }

    fn delete_files(&mut self, file_ids: &[Uuid], by: Dot) {
        for file_id in file_ids {
            let by = (by.origin.get(), by.seq.get());
            let deletions = self.deletions.entry(*file_id).or_default();
            if !deletions.contains(&by) {
                deletions.push(by);
            }
            if let Some(file) = self.files.get_mut(file_id) {
                file.deleted = true;
            }
        }
    }

    fn set_tags(&mut self, file_ids: &[Uuid], tags: Vec<String>, present: bool, stamp: StampBytes) {
        let names: Vec<u32> = tags
            .into_iter()
            .map(|tag| self.tag_names.number(tag))
            .collect();
        for file_id in file_ids {
            let rows = self.tags.entry(*file_id).or_default();
            set_tags_of(rows, &names, present, stamp);
        }
    }

    /// SHA-256 over the canonical contents of every table, equal to
    /// [`Projection::digest`](super::Projection::digest) of a read model fed the same
    /// operations. Putting the rows in key order costs far more than encoding and hashing
    /// them: the files (with their conflict names) are ordered on this thread while the tags
    /// and deletions are on another; then every table is encoded and hashed in order, a
    /// block at a time.
    pub fn digest(&self) -> [u8; 32] {
        let (files, copies, (tags, deletions)) = std::thread::scope(|scope| {
            let tags_and_deletions = scope.spawn(|| (self.tag_rows(), self.deletion_rows()));
            let files = sorted(&self.files);
            let copies = self.conflict_copies();
            let tags_and_deletions = tags_and_deletions
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (files, copies, tags_and_deletions)
        });
        let mut out = Rows::default();
        out.table("users");
        for (user_id, user) in sorted(&self.users) {
            out.bytes(user_id.as_bytes());
            out.bytes(user.username.as_bytes());
            out.bytes(&user.registered_stamp);
            out.bytes(user.password_hash.as_bytes());
            out.bytes(&user.key_hash);
            out.bytes(&user.key_stamp);
        }

        out.table("files");
        for (file_id, file) in &files {
            out.bytes(file_id.as_bytes());
            out.bytes(file.owner_id.as_bytes());
            out.bytes(file.name.as_bytes());
            out.int(file.size);
            out.int(file.chunk_size);
            out.int(file.created_at_ms);
            out.bytes(&file.stamp);
            out.int(i64::from(file.deleted));
            if file.deleted {
                out.null();
                out.int(0);
            } else if let Some(name) = copies.get(file_id) {
                out.bytes(name.as_bytes());
                out.int(1);
            } else {
                out.bytes(file.name.as_bytes());
                out.int(0);
            }
            match file.md5 {
                Some(md5) => out.bytes(&md5.digest),
                None => out.null(),
            }
            out.int(file.md5.map_or(0, |m| i64::from(m.parts)));
        }
        out.table("file_chunks");
        for (file_id, file) in &files {
            for (idx, chunk) in file.chunks.iter().enumerate() {
                out.bytes(file_id.as_bytes());
                out.int(idx as i64);
                out.bytes(chunk.as_bytes());
            }
        }

        out.table("file_tags");
        for row in &tags {
            out.bytes(row.file_id.as_bytes());
            out.bytes(row.name.as_bytes());
            out.int(i64::from(row.tag.present));
            out.bytes(&row.tag.stamp);
            out.int(i64::from(row.effective));
            out.int(i64::from(row.tag.carried));
        }

        out.table("file_deletions");
        for (file_id, (origin, seq)) in deletions {
            out.bytes(file_id.as_bytes());
            out.int(origin as i64);
            out.int(seq as i64);
        }

        for (table, nodes) in [
            ("controllers", &self.controllers),
            ("chunkservers", &self.chunkservers),
        ] {
            out.table(table);
            for (node_id, node) in sorted(nodes) {
                out.bytes(node_id.as_bytes());
                out.bytes(node.address.as_bytes());
                out.bytes(&node.stamp);
            }
        }

        out.table("retired_nodes");
        for ((kind, node_id), retirement) in sorted(&self.retired) {
            out.bytes(kind.as_bytes());
            out.bytes(node_id.as_bytes());
            out.bytes(&retirement.stamp);
            out.bytes(retirement.reason.as_bytes());
        }

        out.table("s3_keys");
        for (key_id, key) in sorted(&self.s3_keys) {
            out.bytes(key_id.as_bytes());
            match &key.created {
                Some(created) => {
                    out.bytes(created.user_id.as_bytes());
                    out.bytes(&created.sealed_secret);
                    out.int(created.created_at_ms);
                    out.bytes(&created.stamp);
                }
                None => (0..4).for_each(|_| out.null()),
            }
            out.int(i64::from(key.deleted));
        }

        out.table("buckets");
        for ((owner, name), (present, created_at_ms, stamp)) in sorted(&self.buckets) {
            out.bytes(owner.as_bytes());
            out.bytes(name.as_bytes());
            out.int(i64::from(*present));
            out.int(*created_at_ms);
            out.bytes(stamp);
        }

        out.table("multipart_uploads");
        for (upload_id, upload) in sorted(&self.uploads) {
            out.bytes(upload_id.as_bytes());
            match &upload.started {
                Some(started) => {
                    out.bytes(started.owner_id.as_bytes());
                    out.bytes(started.name.as_bytes());
                    out.bytes(&started.tags);
                    out.int(started.started_at_ms);
                    out.bytes(&started.stamp);
                }
                None => (0..5).for_each(|_| out.null()),
            }
            out.int(i64::from(upload.ended));
        }
        out.finish()
    }

    /// The rows of `file_tags` in (file, tag) order, each with whether it shows: every tag
    /// present does; with none present on a file, the carried tags its newest removal took
    /// away do (the never-tagless rule).
    fn tag_rows(&self) -> Vec<TagRow<'_>> {
        let mut rows = Vec::with_capacity(self.tags.values().map(Vec::len).sum());
        for (file_id, tags) in sorted(&self.tags) {
            let first = rows.len();
            rows.extend(tags.iter().map(|tag| TagRow {
                file_id,
                name: self.tag_names.name(tag.name),
                tag,
                effective: tag.present,
            }));
            let of_file = &mut rows[first..];
            of_file.sort_unstable_by(|a, b| a.name.cmp(b.name));
            if of_file.iter().any(|row| row.tag.present) {
                continue;
            }
            let newest_carried = of_file
                .iter()
                .filter(|row| row.tag.carried)
                .map(|row| row.tag.stamp)
                .max();
            for row in of_file {
                row.effective = row.tag.carried && Some(row.tag.stamp) == newest_carried;
            }
        }
        rows
    }

    /// The rows of `file_deletions` in (file, origin, seq) order.
    fn deletion_rows(&self) -> Vec<(&Uuid, (u64, u64))> {
        let mut rows = Vec::with_capacity(self.deletions.values().map(Vec::len).sum());
        for (file_id, deletions) in sorted(&self.deletions) {
            let first = rows.len();
            rows.extend(deletions.iter().map(|&dot| (file_id, dot)));
            rows[first..].sort_unstable();
        }
        rows
    }

    /// The names of the conflict copies: every live file but the newest of its (owner,
    /// name) is one, named per owner in file id order as [`Projection`](super::Projection)
    /// names them; every other live file shows under its own name. One sort of the live
    /// files by (owner, name, newest first) finds both the copies and, by binary search,
    /// whether a live file was uploaded under a candidate name.
    fn conflict_copies(&self) -> HashMap<Uuid, String> {
        let mut live: Vec<(&[u8; 16], &str, &StampBytes, &Uuid)> = self
            .files
            .iter()
            .filter(|(_, file)| !file.deleted)
            .map(|(id, file)| {
                (
                    file.owner_id.as_bytes(),
                    file.name.as_str(),
                    &file.stamp,
                    id,
                )
            })
            .collect();
        live.sort_unstable_by(|a, b| (a.0, a.1, b.2).cmp(&(b.0, b.1, a.2)));
        let mut copies: Vec<(&[u8; 16], &Uuid, &str)> = live
            .windows(2)
            .filter(|pair| (pair[0].0, pair[0].1) == (pair[1].0, pair[1].1))
            .map(|pair| (pair[1].0, pair[1].3, pair[1].1))
            .collect();
        copies.sort_unstable();
        let uploaded_under = |owner: &[u8; 16], name: &str| {
            let at = live.partition_point(|probe| (probe.0, probe.1) < (owner, name));
            live.get(at)
                .is_some_and(|probe| (probe.0, probe.1) == (owner, name))
        };
        let mut named = HashMap::with_capacity(copies.len());
        let mut taken: HashSet<String> = HashSet::new();
        let mut owner_of_taken = None;
        for (owner, file_id, name) in copies {
            if owner_of_taken != Some(owner) {
                taken.clear();
                owner_of_taken = Some(owner);
            }
            let shown = conflict_names(name, file_id)
                .find(|candidate| !taken.contains(candidate) && !uploaded_under(owner, candidate))
                .expect("conflict_names ends with an endless counter");
            taken.insert(shown.clone());
            named.insert(*file_id, shown);
        }
        named
    }
}

/// Records a node's address; the newest sighting wins.
fn see(nodes: &mut HashMap<String, Node>, node_id: String, address: String, stamp: StampBytes) {
    match nodes.entry(node_id) {
        Entry::Vacant(entry) => {
            entry.insert(Node { address, stamp });
        }
        Entry::Occupied(mut entry) => {
            if stamp > entry.get().stamp {
                entry.insert(Node { address, stamp });
            }
        }
    }
}

/// Sets the tags numbered `names` present or absent on a file's `rows`, where `stamp` is newer.
fn set_tags_of(rows: &mut Vec<Tag>, names: &[u32], present: bool, stamp: StampBytes) {
    for &name in names {
        match rows.iter_mut().find(|row| row.name == name) {
            None => rows.push(Tag {
                name,
                present,
                stamp,
                carried: present,
            }),
            Some(row) => {
                if stamp > row.stamp {
                    row.present = present;
                    row.stamp = stamp;
                }
                row.carried |= present;
            }
        }
    }
}

/// The entries of `map` in key order (byte order, as SQLite orders BLOB and TEXT keys).
fn sorted<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

fn corrupt(what: &'static str, reason: impl Into<String>) -> ReadModelError {
    ReadModelError::Corrupt {
        what,
        reason: reason.into(),
    }
}

/// The BLOB of `N` bytes in column `idx` of `row`.
fn blob<const N: usize>(
    row: &rusqlite::Row<'_>,
    idx: usize,
    what: &'static str,
) -> Result<[u8; N], ReadModelError> {
    let bytes = row
        .get_ref(idx)?
        .as_blob()
        .map_err(|e| corrupt(what, e.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("{} bytes where {N} belong", bytes.len())))
}

fn uuid_at(
    row: &rusqlite::Row<'_>,
    idx: usize,
    what: &'static str,
) -> Result<Uuid, ReadModelError> {
    blob(row, idx, what).map(Uuid::from_bytes)
}
