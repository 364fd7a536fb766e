//! The operations of the client API, independent of HTTP or gRPC: both front ends call these,
//! so they cannot drift apart.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::chunks::ChunkIo;
use crate::error::ApiError;
use crate::log_worker::LogHandle;
use crate::meta::{KeyHash, MetaOp};
use crate::readmodel::{Account, FileRecord, ReadModelError, ReadPool, Reader};
use crate::upload::{StoredData, UploadLimits, store_stream};
use redcloud_types::ChunkId;

/// Most accounts of one name a login tries, earliest registration first. Each try costs an
/// Argon2 verification, and a name is shared only by registrations made concurrently on
/// different sides of a partition, so a few always suffice.
const LOGIN_CANDIDATES_MAX: usize = 8;

/// Everything the API operations need.
pub struct Service {
    pub(crate) log: LogHandle,
    pub(crate) reads: Arc<ReadPool>,
    pub(crate) chunks: ChunkIo,
    pub(crate) limits: UploadLimits,
    /// Serialises this controller's registrations, so two requests here cannot both claim a
    /// name. (Registrations on different controllers during a partition both keep their
    /// accounts; the later one is told of the conflict.)
    pub(crate) registering: tokio::sync::Mutex<()>,
}

/// What a registration or login gave the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The new API key (the previous one is revoked).
    pub api_key: String,
    /// The account.
    pub user_id: Uuid,
    /// Whether another account registered the same name earlier, concurrently.
    pub username_conflict: bool,
}

/// What an upload produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The new file.
    pub file_id: Uuid,
    /// Its name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Its tags, de-duplicated, in input order.
    pub tags: Vec<String>,
    /// The file of the same name it replaced.
    pub replaced_file_id: Option<Uuid>,
}

/// The outcome of removing tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsRemoved {
    /// Files changed.
    pub updated: Vec<Uuid>,
    /// Files left alone because they would have had no tag left.
    pub skipped: Vec<FileRecord>,
}

/// A file to download and its chunks.
#[derive(Debug, Clone)]
pub struct Download {
    /// The file.
    pub file: FileRecord,
    /// Its chunks, in order.
    pub chunks: Vec<ChunkId>,
    /// Bytes per chunk (all but the last are this long).
    pub chunk_size: u64,
}

/// Which file to download.
#[derive(Debug, Clone)]
pub enum DownloadTarget {
    /// By id (403 when it is someone else's).
    Id(Uuid),
    /// By the name the caller sees.
    Name(String),
}

/// Splits the comma-separated tag syntax: trims, drops empty pieces and duplicates, keeps order.
pub fn parse_tags(raw: &str) -> Vec<String> {
    dedup_tags(
        raw.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    )
}

/// Drops repeated tags, keeping the first of each.
pub fn dedup_tags(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// A new API key: `dfs_` and a hyphenated UUIDv4 (40 characters).
pub fn new_api_key() -> String {
    format!("dfs_{}", Uuid::new_v4())
}

/// The only form in which a key is stored or replicated.
pub fn hash_api_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(ApiError::internal)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

async fn verify_password(password: String, stored: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(ApiError::internal)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
}

impl From<ReadModelError> for ApiError {
    fn from(error: ReadModelError) -> Self {
        ApiError::internal(error)
    }
}

impl Service {
    /// Runs a read-model query on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Reader<'_>) -> Result<T, ReadModelError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let reads = Arc::clone(&self.reads);
        Ok(tokio::task::spawn_blocking(move || reads.read(query))
            .await
            .map_err(ApiError::internal)??)
    }

    /// Registers a user; returns its first API key.
    pub async fn register(&self, username: String, password: String) -> Result<Session, ApiError> {
        if username.is_empty() || password.is_empty() {
            return Err(ApiError::InvalidRequest(
                "Username and password must not be empty".to_owned(),
            ));
        }
        let password_hash = hash_password(password).await?;
        let _one_at_a_time = self.registering.lock().await;
        let name = username.clone();
        if !self
            .read(move |r| r.users_by_name(&name, 1))
            .await?
            .is_empty()
        {
            return Err(ApiError::UserAlreadyExists);
        }
        let user_id = Uuid::new_v4();
        let api_key = new_api_key();
        let op = MetaOp::UserRegistered {
            user_id,
            username,
            password_hash,
            api_key_hash: hash_api_key(&api_key),
        };
        self.log.append(vec![op]).await?;
        // A registration of the name made elsewhere may have arrived since the check.
        let account = self.account(user_id).await?;
        Ok(Session {
            api_key,
            user_id,
            username_conflict: account.username_conflict,
        })
    }

    /// Checks a password against the name's accounts, earliest registration first, and issues
    /// a new key to the first that matches, revoking its previous one.
    pub async fn login(&self, username: String, password: String) -> Result<Session, ApiError> {
        let candidates = self
            .read(move |r| r.users_by_name(&username, LOGIN_CANDIDATES_MAX))
            .await?;
        if candidates.is_empty() {
            // Spend the same effort as a real check, so timing does not reveal who exists.
            let _ = hash_password(password).await;
            return Err(ApiError::InvalidCredentials);
        }
        let mut entered = None;
        for (rank, user) in candidates.into_iter().enumerate() {
            if verify_password(password.clone(), user.password_hash).await? {
                entered = Some((rank, user.user_id));
                break;
            }
        }
        let Some((rank, user_id)) = entered else {
            return Err(ApiError::InvalidCredentials);
        };
        let api_key = new_api_key();
        let op = MetaOp::ApiKeyIssued {
            user_id,
            api_key_hash: hash_api_key(&api_key),
        };
        self.log.append(vec![op]).await?;
        Ok(Session {
            api_key,
            user_id,
            // Candidates come earliest registration first: any before this one registered the
            // name earlier.
            username_conflict: rank > 0,
        })
    }

    /// The account `user_id` (an authenticated caller).
    pub async fn account(&self, user_id: Uuid) -> Result<Account, ApiError> {
        self.read(move |r| r.account(&user_id))
            .await?
            .ok_or(ApiError::InvalidApiKey)
    }

    /// The user holding `api_key`.
    pub async fn authenticate(&self, api_key: &str) -> Result<Uuid, ApiError> {
        if !api_key.starts_with("dfs_") {
            return Err(ApiError::InvalidApiKey);
        }
        let hash = hash_api_key(api_key);
        self.read(move |r| r.user_by_key(&hash))
            .await?
            .ok_or(ApiError::InvalidApiKey)
    }

    /// Stores a file: streams `body` to chunkservers, then records it. `tags` must not be empty.
    pub async fn upload<S, E>(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        body: S,
    ) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if tags.is_empty() {
            return Err(ApiError::UploadWithoutTags);
        }
        let stored = self.store_data(body).await?;
        self.record_file(owner, name, tags, stored).await
    }

    /// Streams a file's bytes to chunkservers.
    pub async fn store_data<S, E>(&self, body: S) -> Result<StoredData, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        store_stream(&self.chunks, self.limits, body).await
    }

    /// Records a stored file under `name`, replacing the caller's file shown under that name.
    pub async fn record_file(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        stored: StoredData,
    ) -> Result<Uploaded, ApiError> {
        if tags.is_empty() {
            return Err(ApiError::UploadWithoutTags);
        }
        if name.is_empty() {
            return Err(ApiError::InvalidRequest("The file needs a name".to_owned()));
        }
        let took = stored.started.elapsed();
        if took > self.limits.deadline {
            return Err(ApiError::ChunkserverUnavailable(format!(
                "the upload took {} s, longer than the {} s allowed: its first chunks may have been collected meanwhile; upload it again",
                took.as_secs(),
                self.limits.deadline.as_secs()
            )));
        }
        let lookup = name.clone();
        let replaced = self
            .read(move |r| r.file_by_name(&owner, &lookup))
            .await?
            .map(|f| f.file_id);
        let file_id = Uuid::new_v4();
        let op = MetaOp::FileAdded {
            file_id,
            owner_id: owner,
            name: name.clone(),
            size: stored.size,
            chunk_size: self.limits.chunk_size as u64,
            chunks: stored.chunks,
            tags: tags.clone(),
            created_at_ms: now_ms(),
            replaces: replaced.into_iter().collect(),
        };
        self.log.append(vec![op]).await?;
        Ok(Uploaded {
            file_id,
            name,
            size: stored.size,
            tags,
            replaced_file_id: replaced,
        })
    }

    /// The caller's files carrying every tag of `tags` (all files when empty).
    pub async fn list(&self, owner: Uuid, tags: Vec<String>) -> Result<Vec<FileRecord>, ApiError> {
        self.read(move |r| r.files_matching(&owner, &tags)).await
    }

    /// Deletes the caller's files carrying every tag of `tags`; an empty query deletes nothing.
    pub async fn delete(&self, owner: Uuid, tags: Vec<String>) -> Result<Vec<Uuid>, ApiError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let file_ids: Vec<Uuid> = self
            .list(owner, tags)
            .await?
            .into_iter()
            .map(|f| f.file_id)
            .collect();
        if !file_ids.is_empty() {
            self.log
                .append(vec![MetaOp::FilesDeleted {
                    file_ids: file_ids.clone(),
                }])
                .await?;
        }
        Ok(file_ids)
    }

    /// Adds `new_tags` to the caller's files matching `query`.
    pub async fn add_tags(
        &self,
        owner: Uuid,
        query: Vec<String>,
        new_tags: Vec<String>,
    ) -> Result<Vec<Uuid>, ApiError> {
        if query.is_empty() {
            return Err(ApiError::InvalidTagQuery("Query tags cannot be empty"));
        }
        if new_tags.is_empty() {
            return Err(ApiError::InvalidTagQuery("New tags cannot be empty"));
        }
        let file_ids: Vec<Uuid> = self
            .list(owner, dedup_tags(query))
            .await?
            .into_iter()
            .map(|f| f.file_id)
            .collect();
        if !file_ids.is_empty() {
            let tags = dedup_tags(new_tags);
            self.log
                .append(vec![MetaOp::TagsAdded {
                    file_ids: file_ids.clone(),
                    tags,
                }])
                .await?;
        }
        Ok(file_ids)
    }

    /// Removes `remove` from the caller's files matching `query`, except where no tag would be
    /// left.
    pub async fn remove_tags(
        &self,
        owner: Uuid,
        query: Vec<String>,
        remove: Vec<String>,
    ) -> Result<TagsRemoved, ApiError> {
        if query.is_empty() {
            return Err(ApiError::InvalidTagQuery("Query tags cannot be empty"));
        }
        if remove.is_empty() {
            return Err(ApiError::InvalidTagQuery("Tags to remove cannot be empty"));
        }
        let remove = dedup_tags(remove);
        let (mut updated, mut skipped) = (Vec::new(), Vec::new());
        for file in self.list(owner, dedup_tags(query)).await? {
            if file.tags.iter().all(|t| remove.contains(t)) {
                skipped.push(file);
            } else {
                updated.push(file.file_id);
            }
        }
        if !updated.is_empty() {
            self.log
                .append(vec![MetaOp::TagsRemoved {
                    file_ids: updated.clone(),
                    tags: remove,
                }])
                .await?;
        }
        Ok(TagsRemoved { updated, skipped })
    }

    /// Finds the file to download for `owner`.
    pub async fn find_download(
        &self,
        owner: Uuid,
        target: DownloadTarget,
    ) -> Result<Download, ApiError> {
        let found = self
            .read(move |r| {
                let file = match &target {
                    DownloadTarget::Id(id) => r.file_by_id(id)?,
                    DownloadTarget::Name(name) => r.file_by_name(&owner, name)?,
                };
                let Some(file) = file else {
                    return Ok(Err(match target {
                        DownloadTarget::Id(id) => ApiError::FileNotFound(id.to_string()),
                        DownloadTarget::Name(name) => ApiError::FileNotFound(format!("'{name}'")),
                    }));
                };
                let chunks = r.chunks_of(&file.file_id)?;
                let chunk_size = r.chunk_size_of(&file.file_id)?;
                Ok(Ok(Download {
                    file,
                    chunks,
                    chunk_size,
                }))
            })
            .await??;
        if found.file.owner_id != owner {
            return Err(ApiError::Forbidden);
        }
        Ok(found)
    }

    /// Reads one chunk, verified.
    pub async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, ApiError> {
        self.chunks.read(id).await
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `created_at` as the wire contract writes it: UTC, ISO-8601, microseconds, no offset.
pub fn format_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let micros = (ms % 1000) * 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_trimmed_and_deduplicated() {
        assert_eq!(
            parse_tags(" work, urgent ,,work,big  cat"),
            ["work", "urgent", "big  cat"]
        );
        assert!(parse_tags(" , ,").is_empty());
        assert_eq!(parse_tags("Work,work"), ["Work", "work"]);
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let key = new_api_key();
        assert_eq!(key.len(), 40);
        assert!(key.starts_with("dfs_"));
        assert_eq!(Uuid::parse_str(&key[4..]).unwrap().get_version_num(), 4);
    }

    #[test]
    fn timestamps_are_iso_8601_utc_with_microseconds() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000");
        assert_eq!(
            format_timestamp(1_795_776_729_873),
            "2026-11-27T10:52:09.873000"
        );
        assert_eq!(
            format_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000000"
        );
    }
}
