//! The operations of the client API, independent of HTTP or gRPC: both front ends call these,
//! so they cannot drift apart.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::chunks::ChunkIo;
use crate::clock::WallClock;
use crate::error::ApiError;
use crate::limits::{check_credentials, check_file_name, check_file_tag_count, check_tags};
use crate::log_worker::LogHandle;
use crate::meta::{ContentMd5, KeyHash, MetaOp};
use crate::readmodel::{
    Account, FileRecord, ReadModelError, ReadPool, Reader, S3KeyRecord, TagCount,
};
use crate::throttle::AuthGate;
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
    /// Serialises this controller's creations that a per-user limit counts (S3 keys,
    /// multipart uploads): the count and the append happen as one, so concurrent requests
    /// here cannot all pass the same count. (Controllers apart in a partition each count
    /// what they have seen.)
    pub(crate) counted_creations: tokio::sync::Mutex<()>,
    /// Rate limits of login and registration, and the Argon2 slots.
    pub(crate) auth: AuthGate,
    /// Dates new files.
    pub(crate) clock: WallClock,
    /// Seals S3 secret access keys for the log.
    pub(crate) sealer: Arc<redcloud_link::SecretSealer>,
}

/// A new S3 access key: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewS3Key {
    /// The access key id (20 characters, `RC` and 18 of base32).
    pub key_id: String,
    /// The secret access key (40 characters of base64's alphabet, 240 random bits).
    pub secret: String,
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
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The MD5 of its content.
    pub md5: ContentMd5,
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

/// Checks an upload's name, and its tags when they are known, before it costs anything; the
/// HTTP front end calls it before the first byte is stored, when the tags may not have
/// arrived yet.
pub fn check_upload(name: &str, tags: Option<&[String]>) -> Result<(), ApiError> {
    if tags.is_some_and(<[String]>::is_empty) {
        return Err(ApiError::UploadWithoutTags);
    }
    check_file_name(name)?;
    if let Some(tags) = tags {
        check_tags(tags)?;
    }
    Ok(())
}

/// The tags an add or a removal names: at least one (`empty` says so when there are none),
/// each within the limits, repeats dropped.
fn tags_to_change(tags: Vec<String>, empty: &'static str) -> Result<Vec<String>, ApiError> {
    if tags.is_empty() {
        return Err(ApiError::InvalidTagQuery(empty));
    }
    check_tags(&tags)?;
    Ok(dedup_tags(tags))
}

/// Whether removing `remove` would leave `file` without a tag, which the never-tagless rule
/// refuses.
fn leaves_no_tag(file: &FileRecord, remove: &[String]) -> bool {
    file.tags.iter().all(|t| remove.contains(t))
}

/// A new API key: `dfs_` and a hyphenated UUIDv4 (40 characters).
pub fn new_api_key() -> String {
    format!("dfs_{}", Uuid::new_v4())
}

/// `RC` and 18 characters of base32 (90 random bits): the shape of an AWS access key id, so
/// that tools that check it accept it.
fn new_s3_key_id() -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits: u128 = rand::random();
    let mut id = String::from("RC");
    id.extend((0..18).map(|i| char::from(BASE32[((bits >> (5 * i)) & 31) as usize])));
    id
}

/// 40 characters of base64's alphabet (240 random bits), as AWS secret access keys look.
fn new_s3_secret() -> String {
    use base64ct::Encoding as _;
    base64ct::Base64::encode_string(&rand::random::<[u8; 30]>())
}

/// The only form in which a key is stored or replicated.
pub fn hash_api_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

thread_local! {
    /// Argon2's working memory (about 19 MiB), kept for the life of the hashing thread and
    /// reused by every hash on it. Allocating it afresh per hash, as `PasswordHasher` does,
    /// made the allocator keep about 150 MiB per thread.
    static ARGON2_BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `argon2` into `out` in this thread's working memory.
fn argon2_into(
    argon2: &Argon2<'_>,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    ARGON2_BLOCKS.with_borrow_mut(|blocks| {
        blocks.resize(argon2.params().block_count(), Block::default());
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
    })
}

/// Argon2id of `password` with a fresh salt, as a PHC string (CPU- and memory-heavy: run it
/// through [`AuthGate::hash`](crate::throttle::AuthGate::hash)).
fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt_bytes = rand::random::<[u8; 16]>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(ApiError::internal)?;
    let argon2 = Argon2::default();
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(argon2_into(&argon2, password, &salt_bytes, out)?)
    })
    .map_err(ApiError::internal)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(ApiError::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string (as heavy as [`hash_password`]).
fn verify_password(password: &str, stored: &str) -> Result<bool, ApiError> {
    let parsed = PasswordHash::new(stored).map_err(ApiError::internal)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(ApiError::internal)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(ApiError::internal)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(ApiError::internal(
            "a stored password hash lacks its salt or output",
        ));
    };
    let mut salt_buffer = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buffer)
        .map_err(ApiError::internal)?;
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        Ok(argon2_into(&argon2, password, salt, out)?)
    })
    .map_err(ApiError::internal)?;
    // `Output` compares in constant time.
    Ok(computed == expected)
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

    /// Lets a registration or login attempt through the rate limits (of the caller's address,
    /// then of the username) once its credentials are within their limits.
    fn admit(
        &self,
        client: Option<IpAddr>,
        username: &str,
        password: &str,
    ) -> Result<crate::throttle::Attempt<'_>, ApiError> {
        self.auth.admit_address(client)?;
        check_credentials(username, password)?;
        self.auth.admit_username(username)
    }

    /// Registers a user; returns its first API key. `client` is the caller's address, for
    /// rate limiting, when the front end knows it.
    pub async fn register(
        &self,
        client: Option<IpAddr>,
        username: String,
        password: String,
    ) -> Result<Session, ApiError> {
        let attempt = self.admit(client, &username, &password)?;
        let password_hash = self.auth.hash(move || hash_password(&password)).await??;
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
        attempt.succeeded();
        // A registration of the name made elsewhere may have arrived since the check.
        let account = self.account(user_id).await?;
        Ok(Session {
            api_key,
            user_id,
            username_conflict: account.username_conflict,
        })
    }

    /// Checks a password against the name's accounts, earliest registration first, and issues
    /// a new key to the first that matches, revoking its previous one. `client` as for
    /// [`Service::register`].
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        username: String,
        password: String,
    ) -> Result<Session, ApiError> {
        let attempt = self.admit(client, &username, &password)?;
        let reads = Arc::clone(&self.reads);
        // The lookup and the checks run on the hashing thread too, so a login storm holds no
        // more read connections than hashing threads.
        let entered = self
            .auth
            .hash(move || {
                let candidates =
                    reads.read(|r| r.users_by_name(&username, LOGIN_CANDIDATES_MAX))?;
                if candidates.is_empty() {
                    // Spend the same effort as a real check, so timing does not reveal who
                    // exists.
                    let _ = hash_password(&password);
                    return Ok::<_, ApiError>(None);
                }
                for (rank, user) in candidates.into_iter().enumerate() {
                    if verify_password(&password, &user.password_hash)? {
                        return Ok(Some((rank, user.user_id)));
                    }
                }
                Ok(None)
            })
            .await??;
        let Some((rank, user_id)) = entered else {
            return Err(ApiError::InvalidCredentials);
        };
        let api_key = new_api_key();
        let op = MetaOp::ApiKeyIssued {
            user_id,
            api_key_hash: hash_api_key(&api_key),
        };
        self.log.append(vec![op]).await?;
        attempt.succeeded();
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
        check_upload(&name, Some(&tags))?;
        let stored = self.store_data(body).await?;
        self.record_file(owner, name, tags, stored).await
    }

    /// Streams a file's bytes to chunkservers; refused at once while this controller's disk
    /// is full, since the file could not be recorded.
    pub async fn store_data<S, E>(&self, body: S) -> Result<StoredData, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.log.refuse_if_disk_full()?;
        store_stream(&self.chunks, self.limits, body).await
    }

    /// Streams a file's bytes as [`Service::store_data`] does; when the client announced the
    /// MD5 (`Content-MD5`), data of another MD5 is refused before anything is recorded (its
    /// chunks, referenced by nothing, are collected later).
    pub async fn store_checked<S, E>(
        &self,
        body: S,
        expected_md5: Option<[u8; 16]>,
    ) -> Result<StoredData, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let stored = self.store_data(body).await?;
        if expected_md5.is_some_and(|expected| expected != stored.md5.digest) {
            return Err(ApiError::BadDigest);
        }
        Ok(stored)
    }

    /// Records a stored file under `name`, replacing the caller's file shown under that name.
    pub async fn record_file(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        stored: StoredData,
    ) -> Result<Uploaded, ApiError> {
        let md5 = stored.md5;
        self.record_as(owner, name, tags, stored, md5, Vec::new())
            .await
    }

    /// Records a stored file under `name` with the given MD5, replacing the caller's file
    /// shown under that name, and appends `also` with it.
    pub(crate) async fn record_as(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        stored: StoredData,
        md5: ContentMd5,
        also: Vec<MetaOp>,
    ) -> Result<Uploaded, ApiError> {
        check_upload(&name, Some(&tags))?;
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
        let created_at_ms = self.clock.now_ms();
        let op = MetaOp::FileAdded {
            file_id,
            owner_id: owner,
            name: name.clone(),
            size: stored.size,
            chunk_size: stored.chunk_size,
            chunks: stored.chunks,
            tags: tags.clone(),
            created_at_ms,
            replaces: replaced.into_iter().collect(),
            md5: Some(md5),
        };
        self.log
            .append(std::iter::once(op).chain(also).collect())
            .await?;
        Ok(Uploaded {
            file_id,
            name,
            size: stored.size,
            tags,
            created_at_ms,
            md5,
            replaced_file_id: replaced,
        })
    }

    /// The caller's files carrying every tag of `tags` (all files when empty).
    pub async fn list(&self, owner: Uuid, tags: Vec<String>) -> Result<Vec<FileRecord>, ApiError> {
        check_tags(&tags)?;
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
        let tags = tags_to_change(new_tags, "New tags cannot be empty")?;
        let files = self.list(owner, dedup_tags(query)).await?;
        self.append_tags_added(&files, tags).await
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
        let remove = tags_to_change(remove, "Tags to remove cannot be empty")?;
        let (skipped, updated): (Vec<FileRecord>, Vec<FileRecord>) = self
            .list(owner, dedup_tags(query))
            .await?
            .into_iter()
            .partition(|file| leaves_no_tag(file, &remove));
        let updated: Vec<Uuid> = updated.into_iter().map(|f| f.file_id).collect();
        self.append_tags_removed(&updated, remove).await?;
        Ok(TagsRemoved { updated, skipped })
    }

    /// The caller's live file `file_id`. Another user's file is not found, like a missing one:
    /// an id tells nobody but its owner whether it exists.
    pub async fn file(&self, owner: Uuid, file_id: Uuid) -> Result<FileRecord, ApiError> {
        self.read(move |r| r.file_by_id(&file_id))
            .await?
            .filter(|file| file.owner_id == owner)
            .ok_or_else(|| ApiError::FileNotFound(file_id.to_string()))
    }

    /// Makes the caller a new S3 access key; the secret is returned here once and travels
    /// only sealed.
    pub async fn create_s3_key(&self, user_id: Uuid) -> Result<NewS3Key, ApiError> {
        let _one_at_a_time = self.counted_creations.lock().await;
        let held = self.read(move |r| r.s3_keys_of(&user_id)).await?.len();
        if held >= crate::limits::S3_KEYS_PER_USER_MAX {
            return Err(crate::limits::LimitError::TooManyS3Keys {
                max: crate::limits::S3_KEYS_PER_USER_MAX,
            }
            .into());
        }
        let key = NewS3Key {
            key_id: new_s3_key_id(),
            secret: new_s3_secret(),
        };
        let sealed_secret = self
            .sealer
            .seal(key.key_id.as_bytes(), key.secret.as_bytes())
            .map_err(ApiError::internal)?;
        self.log
            .append(vec![MetaOp::S3KeyCreated {
                key_id: key.key_id.clone(),
                user_id,
                sealed_secret,
                created_at_ms: self.clock.now_ms(),
            }])
            .await?;
        Ok(key)
    }

    /// The owner and the opened secret of the live S3 access key `key_id`.
    pub async fn s3_access_key(&self, key_id: String) -> Result<Option<(Uuid, String)>, ApiError> {
        if key_id.len() > crate::limits::S3_KEY_ID_MAX_BYTES {
            return Ok(None);
        }
        let id = key_id.clone();
        let Some(key) = self.read(move |r| r.s3_key(&id)).await? else {
            return Ok(None);
        };
        let secret = self
            .sealer
            .open(key_id.as_bytes(), &key.sealed_secret)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "the sealed secret of S3 key {key_id} does not open under this cluster's secret"
                ))
            })?;
        Ok(Some((key.user_id, secret)))
    }

    /// The caller's S3 access keys (ids and dates; never the secrets).
    pub async fn s3_keys(&self, user_id: Uuid) -> Result<Vec<S3KeyRecord>, ApiError> {
        self.read(move |r| r.s3_keys_of(&user_id)).await
    }

    /// Deletes the caller's S3 access key `key_id`, on every controller and for good.
    pub async fn delete_s3_key(&self, user_id: Uuid, key_id: String) -> Result<(), ApiError> {
        let id = key_id.clone();
        let owner = self
            .read(move |r| r.s3_key(&id))
            .await?
            .map(|key| key.user_id);
        if owner != Some(user_id) {
            return Err(ApiError::S3KeyNotFound(key_id));
        }
        self.log
            .append(vec![MetaOp::S3KeyDeleted { key_id }])
            .await?;
        Ok(())
    }

    /// Deletes the caller's file `file_id`.
    pub async fn delete_file(&self, owner: Uuid, file_id: Uuid) -> Result<(), ApiError> {
        self.file(owner, file_id).await?;
        self.log
            .append(vec![MetaOp::FilesDeleted {
                file_ids: vec![file_id],
            }])
            .await?;
        Ok(())
    }

    /// Adds `tags` to the caller's file `file_id`; returns the file as it now is.
    pub async fn add_file_tags(
        &self,
        owner: Uuid,
        file_id: Uuid,
        tags: Vec<String>,
    ) -> Result<FileRecord, ApiError> {
        let tags = tags_to_change(tags, "New tags cannot be empty")?;
        let mut file = self.file(owner, file_id).await?;
        self.append_tags_added(std::slice::from_ref(&file), tags.clone())
            .await?;
        file.tags.extend(tags);
        file.tags.sort_unstable();
        file.tags.dedup();
        Ok(file)
    }

    /// Removes `tags` from the caller's file `file_id`, unless none would be left; returns the
    /// file as it now is.
    pub async fn remove_file_tags(
        &self,
        owner: Uuid,
        file_id: Uuid,
        tags: Vec<String>,
    ) -> Result<FileRecord, ApiError> {
        let tags = tags_to_change(tags, "Tags to remove cannot be empty")?;
        let mut file = self.file(owner, file_id).await?;
        if leaves_no_tag(&file, &tags) {
            return Err(ApiError::LastTags {
                name: file.name,
                tags: file.tags,
            });
        }
        self.append_tags_removed(&[file_id], tags.clone()).await?;
        file.tags.retain(|t| !tags.contains(t));
        Ok(file)
    }

    /// Adds `tags` to `files` in one operation. Every file is checked before anything is
    /// written, so a change that would take one file over the tag limit changes none.
    async fn append_tags_added(
        &self,
        files: &[FileRecord],
        tags: Vec<String>,
    ) -> Result<Vec<Uuid>, ApiError> {
        for file in files {
            // `FileRecord::tags` is sorted, so each lookup is a binary search.
            let added = tags
                .iter()
                .filter(|t| file.tags.binary_search(t).is_err())
                .count();
            check_file_tag_count(file.file_id, file.tags.len() + added)?;
        }
        let file_ids: Vec<Uuid> = files.iter().map(|f| f.file_id).collect();
        if !file_ids.is_empty() {
            self.log
                .append(vec![MetaOp::TagsAdded {
                    file_ids: file_ids.clone(),
                    tags,
                }])
                .await?;
        }
        Ok(file_ids)
    }

    /// Removes `tags` from `file_ids` in one operation (none when there are no files).
    async fn append_tags_removed(
        &self,
        file_ids: &[Uuid],
        tags: Vec<String>,
    ) -> Result<(), ApiError> {
        if !file_ids.is_empty() {
            self.log
                .append(vec![MetaOp::TagsRemoved {
                    file_ids: file_ids.to_vec(),
                    tags,
                }])
                .await?;
        }
        Ok(())
    }

    /// The caller's buckets, by name: the tags on their live files (since the earliest of
    /// those files) and the buckets they made (since they made them).
    pub async fn buckets(&self, owner: Uuid) -> Result<Vec<(String, u64)>, ApiError> {
        let (tags, made) = self
            .read(move |r| Ok((r.tag_counts(&owner)?, r.buckets_of(&owner)?)))
            .await?;
        let mut buckets: std::collections::BTreeMap<String, u64> = made.into_iter().collect();
        for tag in tags {
            let since = buckets.entry(tag.tag).or_insert(tag.first_created_at_ms);
            *since = (*since).min(tag.first_created_at_ms);
        }
        Ok(buckets.into_iter().collect())
    }

    /// Makes bucket `name` of the caller's: the tag is listed as a bucket before files carry it.
    pub async fn create_bucket(&self, owner: Uuid, name: String) -> Result<(), ApiError> {
        check_tags(std::slice::from_ref(&name))?;
        self.log
            .append(vec![MetaOp::BucketCreated {
                owner_id: owner,
                name,
                created_at_ms: self.clock.now_ms(),
            }])
            .await?;
        Ok(())
    }

    /// Deletes the caller's bucket `name`, unless live files carry the tag.
    pub async fn delete_bucket(&self, owner: Uuid, name: String) -> Result<(), ApiError> {
        let wanted = name.clone();
        let (carried, made) = self
            .read(move |r| {
                Ok((
                    r.tag_counts(&owner)?.iter().any(|t| t.tag == wanted),
                    r.buckets_of(&owner)?.iter().any(|(b, _)| *b == wanted),
                ))
            })
            .await?;
        if carried {
            return Err(ApiError::BucketNotEmpty(name));
        }
        if !made {
            return Err(ApiError::BucketNotFound(name));
        }
        self.log
            .append(vec![MetaOp::BucketDeleted {
                owner_id: owner,
                name,
            }])
            .await?;
        Ok(())
    }

    /// The tags on the caller's live files, each with how many files carry it, by tag.
    pub async fn tag_counts(&self, owner: Uuid) -> Result<Vec<TagCount>, ApiError> {
        self.read(move |r| r.tag_counts(&owner)).await
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

    /// The bytes `first..=last` of a found file, streamed from chunkservers; the first chunk
    /// is read before this returns.
    pub async fn read_range(
        &self,
        download: Download,
        first: u64,
        last: u64,
    ) -> Result<
        impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        ApiError,
    > {
        crate::download::stream_range(&self.chunks, download, first, last).await
    }

    /// Reads one chunk, verified.
    pub async fn read_chunk(&self, id: ChunkId) -> Result<Bytes, ApiError> {
        self.chunks.read(id).await
    }
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
    fn password_hashes_are_standard_argon2id_phc_strings() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_password("s3cret").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok(),
            "the argon2 crate accepts our hashes"
        );
        assert!(verify_password("s3cret", &ours).unwrap());
        assert!(!verify_password("s3cret!", &ours).unwrap());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"older", &salt)
            .unwrap()
            .to_string();
        assert!(
            verify_password("older", &theirs).unwrap(),
            "hashes stored before keep working"
        );
        assert!(!verify_password("newer", &theirs).unwrap());
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
