//! The conflict rules of `system.md` as plain in-memory Rust: the reference the SQLite
//! projection is held to by the differential tests (`model_tests.rs`). Written to be obviously
//! right, not fast: every answer is worked out again from the whole set of operations, and
//! each rule sits beside the sentence of the spec it implements. Arrival order cannot matter
//! here: nothing but the set of operations is ever looked at.

use std::collections::{BTreeMap, BTreeSet};

use redcloud_eventlog::{Hlc, NodeId, Op};
use uuid::Uuid;

use super::conflict_names;
use super::queries::{Account, FileRecord, MultipartUpload, S3KeyRecord, S3KeySecret, UserRecord};
use crate::meta::{ContentMd5, KeyHash, MetaOp};

/// The last-writer-wins order: "ordered by (HLC, origin)".
type Stamp = (Hlc, NodeId);

/// A set of operations and the queries the read model answers over it.
pub struct Model {
    ops: Vec<Op<MetaOp>>,
}

struct User {
    username: String,
    password_hash: String,
    registered: Stamp,
    key: (Stamp, KeyHash),
}

struct File {
    owner: Uuid,
    name: String,
    size: u64,
    created_at_ms: u64,
    stamp: Stamp,
    deleted: bool,
    md5: Option<ContentMd5>,
}

impl Model {
    /// The model of `ops` (any order; only the set counts).
    pub fn new(ops: &[Op<MetaOp>]) -> Self {
        Self { ops: ops.to_vec() }
    }

    /// The operations sorted by stamp, oldest first: "last writer wins" is then "the last one
    /// seen wins".
    fn by_stamp(&self) -> Vec<&Op<MetaOp>> {
        let mut ops: Vec<&Op<MetaOp>> = self.ops.iter().collect();
        ops.sort_by_key(|op| op.stamp());
        ops
    }

    fn users(&self) -> BTreeMap<Uuid, User> {
        let mut users: BTreeMap<Uuid, User> = BTreeMap::new();
        for op in self.by_stamp() {
            match &op.payload {
                // "Every registration keeps its account, files and password." (A second
                // registration of one id is never made by a healthy node; the earliest
                // describes the account.)
                MetaOp::UserRegistered {
                    user_id,
                    username,
                    password_hash,
                    api_key_hash,
                } => {
                    let user = users.entry(*user_id).or_insert_with(|| User {
                        username: username.clone(),
                        password_hash: password_hash.clone(),
                        registered: op.stamp(),
                        key: (op.stamp(), *api_key_hash),
                    });
                    // "Current API key hash: last-writer-wins register ordered by (HLC, origin)."
                    user.key = (op.stamp(), *api_key_hash);
                }
                MetaOp::ApiKeyIssued {
                    user_id,
                    api_key_hash,
                } => {
                    if let Some(user) = users.get_mut(user_id) {
                        user.key = (op.stamp(), *api_key_hash);
                    }
                }
                _ => {}
            }
        }
        users
    }

    /// "Login by name tries that name's accounts in (HLC, origin) order."
    pub fn users_by_name(&self, username: &str) -> Vec<UserRecord> {
        let users = self.users();
        let mut named: Vec<(Stamp, UserRecord)> = users
            .iter()
            .filter(|(_, user)| user.username == username)
            .map(|(id, user)| {
                (
                    user.registered,
                    UserRecord {
                        user_id: *id,
                        password_hash: user.password_hash.clone(),
                    },
                )
            })
            .collect();
        named.sort_by_key(|(registered, _)| *registered);
        named.into_iter().map(|(_, user)| user).collect()
    }

    /// The account whose current key hashes to `key_hash` (keys are unique).
    pub fn user_by_key(&self, key_hash: &KeyHash) -> Option<Uuid> {
        self.users()
            .into_iter()
            .find(|(_, user)| &user.key.1 == key_hash)
            .map(|(id, _)| id)
    }

    /// An account as its owner sees it.
    pub fn account(&self, user_id: &Uuid) -> Option<Account> {
        let users = self.users();
        let user = users.get(user_id)?;
        // "The later registrations are reported to their owners as a conflict."
        let username_conflict = users
            .values()
            .any(|other| other.username == user.username && other.registered < user.registered);
        Some(Account {
            user_id: *user_id,
            username: user.username.clone(),
            username_conflict,
        })
    }

    fn files(&self) -> BTreeMap<Uuid, File> {
        let mut files: BTreeMap<Uuid, File> = BTreeMap::new();
        for op in self.by_stamp() {
            if let MetaOp::FileAdded {
                file_id,
                owner_id,
                name,
                size,
                created_at_ms,
                md5,
                ..
            } = &op.payload
            {
                // "File metadata: last-writer-wins register." A file id is added once; were it
                // added twice, the earliest add describes it (the projection's choice).
                files.entry(*file_id).or_insert_with(|| File {
                    owner: *owner_id,
                    name: name.clone(),
                    size: *size,
                    created_at_ms: *created_at_ms,
                    stamp: op.stamp(),
                    deleted: false,
                    md5: *md5,
                });
            }
        }
        for op in &self.ops {
            let deleted: &[Uuid] = match &op.payload {
                // "An upload that causally follows the file it replaces deletes it."
                MetaOp::FileAdded { replaces, .. } => replaces,
                // "File delete vs concurrent tag change: the delete wins": a delete is final,
                // whatever the stamps of tag changes.
                MetaOp::FilesDeleted { file_ids } => file_ids,
                _ => &[],
            };
            for id in deleted {
                if let Some(file) = files.get_mut(id) {
                    file.deleted = true;
                }
            }
        }
        files
    }

    /// The tags `file` shows.
    fn tags_of(&self, file: &Uuid) -> BTreeSet<String> {
        // "Per (file, tag) element, add and remove ordered by (HLC, origin)."
        let mut newest: BTreeMap<&str, (Stamp, bool)> = BTreeMap::new();
        let mut carried: BTreeSet<&str> = BTreeSet::new();
        for op in self.by_stamp() {
            let (files, tags, present): (&[Uuid], &[String], bool) = match &op.payload {
                MetaOp::FileAdded { file_id, tags, .. } => {
                    (std::slice::from_ref(file_id), tags, true)
                }
                MetaOp::TagsAdded { file_ids, tags } => (file_ids, tags, true),
                MetaOp::TagsRemoved { file_ids, tags } => (file_ids, tags, false),
                _ => continue,
            };
            if files.contains(file) {
                for tag in tags {
                    newest.insert(tag, (op.stamp(), present));
                    if present {
                        carried.insert(tag);
                    }
                }
            }
        }
        let present: BTreeSet<String> = newest
            .iter()
            .filter(|(_, (_, present))| *present)
            .map(|(tag, _)| (*tag).to_owned())
            .collect();
        if !present.is_empty() {
            return present;
        }
        // "A file never ends with no tag: if concurrent removals would empty it, the tags the
        // file had that the newest removal took away stay; a tag the file never carried never
        // appears." The newest removal that took away a tag the file had, that is: a removal
        // of only tags it never carried took nothing away.
        let newest_taking = carried.iter().map(|tag| newest[tag].0).max();
        carried
            .into_iter()
            .filter(|tag| Some(newest[tag].0) == newest_taking)
            .map(str::to_owned)
            .collect()
    }

    /// Every live file with the name it is shown under and its tags.
    fn shown(&self) -> BTreeMap<Uuid, FileRecord> {
        let live: BTreeMap<Uuid, File> = self
            .files()
            .into_iter()
            .filter(|(_, file)| !file.deleted)
            .collect();
        let mut display: BTreeMap<Uuid, String> = BTreeMap::new();
        let owners: BTreeSet<Uuid> = live.values().map(|file| file.owner).collect();
        for owner in owners {
            let mine: Vec<(&Uuid, &File)> = live.iter().filter(|(_, f)| f.owner == owner).collect();
            // "Two concurrent uploads of one name both survive: the LWW winner keeps the name."
            let mut winners: BTreeMap<&str, (Stamp, Uuid)> = BTreeMap::new();
            for (id, file) in &mine {
                let best = winners.entry(&file.name).or_insert((file.stamp, **id));
                if file.stamp > best.0 {
                    *best = (file.stamp, **id);
                }
            }
            let mut taken: BTreeSet<String> = BTreeSet::new();
            for (name, (_, id)) in &winners {
                display.insert(*id, (*name).to_owned());
                taken.insert((*name).to_owned());
            }
            // "The other is shown under a deterministic conflict name, unique among the owner's
            // live files": the shortest candidate no live file of the owner shows, the copies
            // taking theirs in file id order.
            for (id, file) in mine {
                if display.contains_key(id) {
                    continue;
                }
                let name = conflict_names(&file.name, id)
                    .find(|candidate| !taken.contains(candidate))
                    .expect("the candidates never run out");
                taken.insert(name.clone());
                display.insert(*id, name);
            }
        }
        live.into_iter()
            .map(|(id, file)| {
                let record = FileRecord {
                    file_id: id,
                    owner_id: file.owner,
                    name: display[&id].clone(),
                    original_name: file.name,
                    size: file.size,
                    created_at_ms: file.created_at_ms,
                    tags: self.tags_of(&id).into_iter().collect(),
                    md5: file.md5,
                };
                (id, record)
            })
            .collect()
    }

    /// The owner's live files carrying every tag of `tags` (all of them when empty), by shown
    /// name then id. "A query is an AND."
    pub fn files_matching(&self, owner: &Uuid, tags: &[String]) -> Vec<FileRecord> {
        let mut files: Vec<FileRecord> = self
            .shown()
            .into_values()
            .filter(|f| &f.owner_id == owner && tags.iter().all(|t| f.tags.contains(t)))
            .collect();
        files.sort_by(|a, b| (&a.name, a.file_id).cmp(&(&b.name, b.file_id)));
        files
    }

    /// A live file by id, whoever owns it.
    pub fn file_by_id(&self, file_id: &Uuid) -> Option<FileRecord> {
        self.shown().remove(file_id)
    }

    /// The owner's live file shown under `name`.
    pub fn file_by_name(&self, owner: &Uuid, name: &str) -> Option<FileRecord> {
        self.shown()
            .into_values()
            .find(|f| &f.owner_id == owner && f.name == name)
    }

    /// The live S3 access keys: per key id, the earliest creation describes it ("a second
    /// creation of one id is never made by a healthy node"), and a deletion is for good,
    /// whichever stamp it has.
    fn s3_keys(&self) -> BTreeMap<String, (Uuid, Vec<u8>, u64)> {
        let mut keys = BTreeMap::new();
        for op in self.by_stamp() {
            if let MetaOp::S3KeyCreated {
                key_id,
                user_id,
                sealed_secret,
                created_at_ms,
            } = &op.payload
            {
                keys.entry(key_id.clone())
                    .or_insert_with(|| (*user_id, sealed_secret.clone(), *created_at_ms));
            }
        }
        for op in &self.ops {
            if let MetaOp::S3KeyDeleted { key_id } = &op.payload {
                keys.remove(key_id);
            }
        }
        keys
    }

    /// The user's live S3 access keys, by key id.
    pub fn s3_keys_of(&self, user_id: &Uuid) -> Vec<S3KeyRecord> {
        self.s3_keys()
            .into_iter()
            .filter(|(_, (owner, _, _))| owner == user_id)
            .map(|(key_id, (_, _, created_at_ms))| S3KeyRecord {
                key_id,
                created_at_ms,
            })
            .collect()
    }

    /// The multipart uploads in progress: per upload id, the earliest start describes it, and
    /// an end is for good, whichever stamp it has (the S3 key rule).
    fn multipart_uploads(&self) -> Vec<MultipartUpload> {
        let mut uploads = BTreeMap::new();
        for op in self.by_stamp() {
            if let MetaOp::MultipartStarted {
                upload_id,
                owner_id,
                name,
                tags,
                started_at_ms,
            } = &op.payload
            {
                uploads
                    .entry(*upload_id)
                    .or_insert_with(|| MultipartUpload {
                        upload_id: *upload_id,
                        owner_id: *owner_id,
                        name: name.clone(),
                        tags: tags.clone(),
                        started_at_ms: *started_at_ms,
                    });
            }
        }
        for op in &self.ops {
            if let MetaOp::MultipartEnded { upload_id } = &op.payload {
                uploads.remove(upload_id);
            }
        }
        let mut uploads: Vec<MultipartUpload> = uploads.into_values().collect();
        uploads.sort_by(|a, b| {
            (&a.name, a.started_at_ms, a.upload_id).cmp(&(&b.name, b.started_at_ms, b.upload_id))
        });
        uploads
    }

    /// The owner's buckets made with `CreateBucket`: per (owner, name), the newest creation or
    /// deletion by stamp decides.
    pub fn buckets_of(&self, owner: &Uuid) -> Vec<(String, u64)> {
        let mut newest: BTreeMap<&str, Option<u64>> = BTreeMap::new();
        for op in self.by_stamp() {
            match &op.payload {
                MetaOp::BucketCreated {
                    owner_id,
                    name,
                    created_at_ms,
                } if owner_id == owner => {
                    newest.insert(name, Some(*created_at_ms));
                }
                MetaOp::BucketDeleted { owner_id, name } if owner_id == owner => {
                    newest.insert(name, None);
                }
                _ => {}
            }
        }
        newest
            .into_iter()
            .filter_map(|(name, created)| Some((name.to_owned(), created?)))
            .collect()
    }

    /// The multipart upload `upload_id`, while it is in progress.
    pub fn multipart_upload(&self, upload_id: &Uuid) -> Option<MultipartUpload> {
        self.multipart_uploads()
            .into_iter()
            .find(|u| &u.upload_id == upload_id)
    }

    /// The owner's multipart uploads in progress.
    pub fn multipart_uploads_of(&self, owner: &Uuid) -> Vec<MultipartUpload> {
        self.multipart_uploads()
            .into_iter()
            .filter(|u| &u.owner_id == owner)
            .collect()
    }

    /// The live S3 access key `key_id`.
    pub fn s3_key(&self, key_id: &str) -> Option<S3KeySecret> {
        self.s3_keys()
            .remove(key_id)
            .map(|(user_id, sealed_secret, _)| S3KeySecret {
                user_id,
                sealed_secret,
            })
    }
}
