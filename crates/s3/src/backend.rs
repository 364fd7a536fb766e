//! What the gateway needs from RedCloud, in RedCloud's terms.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

/// Bytes flowing in or out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Reads the bytes `first..=last` of the object it came with (they lie within it).
pub type Content = Box<
    dyn FnOnce(
            u64,
            u64,
        ) -> Pin<
            Box<dyn std::future::Future<Output = Result<ByteStream, BackendError>> + Send>,
        > + Send,
>;

/// The work of a checked multipart completion.
pub type Completing =
    Pin<Box<dyn std::future::Future<Output = Result<StoredObject, BackendError>> + Send>>;

/// An S3 access key as the gateway checks signatures with it.
pub struct AccessKey {
    /// The user it acts for.
    pub owner: Uuid,
    /// The secret access key, in the clear: SigV4 needs it on the server.
    pub secret: String,
}

/// A live file as S3 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The file.
    pub file_id: Uuid,
    /// The name its owner sees, which is its S3 key.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// When it was uploaded, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// Its ETag without quotes, where an MD5 was kept.
    pub etag: Option<String>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The upload.
    pub upload_id: Uuid,
    /// The file name (S3 key) it completes into.
    pub name: String,
    /// The tags the completed file gets; the first is the bucket it was started in.
    pub tags: Vec<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// A stored part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    /// Its part number.
    pub number: u32,
    /// Bytes.
    pub size: u64,
    /// Its ETag without quotes (the MD5 of its content).
    pub etag: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// What kind of failure a backend call met: the gateway turns each into one S3 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such file.
    NotFound,
    /// Not the caller's to read or change.
    Denied,
    /// The request is malformed or breaks a limit of the model (the message says which).
    Invalid,
    /// Larger than this store accepts.
    TooLarge,
    /// Files still carry the bucket's tag.
    BucketNotEmpty,
    /// No such bucket.
    NoSuchBucket,
    /// No such multipart upload in progress.
    NoSuchUpload,
    /// A completion names a part that is not there, or with another ETag.
    InvalidPart,
    /// A completion lists its parts out of order.
    InvalidPartOrder,
    /// A part other than the last is too small.
    TooSmall,
    /// The content does not match the `Content-MD5` the client sent.
    BadDigest,
    /// Too many requests; the client should slow down.
    SlowDown,
    /// No chunkserver (or not enough of them) can take or serve the data right now.
    Unavailable,
    /// The controller's disk is full: reads work, writes do not.
    InsufficientStorage,
    /// Anything else: a bug or a broken disk.
    Internal,
}

/// A failed backend call: its kind and a sentence for the client (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Said to the client.
    pub message: String,
}

impl BackendError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// RedCloud as the gateway uses it. Every call acts for `owner`, who has been authenticated
/// by the signature of the request.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The key `key_id`, if it exists and is not deleted.
    async fn access_key(&self, key_id: &str) -> Result<Option<AccessKey>, BackendError>;

    /// The owner's buckets, by name: the tags on their live files and the buckets they made,
    /// each with when it began (milliseconds since the Unix epoch).
    async fn buckets(&self, owner: Uuid) -> Result<Vec<(String, u64)>, BackendError>;

    /// Makes bucket `name` of the owner's, listed before any file carries the tag.
    async fn create_bucket(&self, owner: Uuid, name: String) -> Result<(), BackendError>;

    /// Deletes the owner's bucket `name`, unless files carry the tag ([`ErrorKind::BucketNotEmpty`]).
    async fn delete_bucket(&self, owner: Uuid, name: String) -> Result<(), BackendError>;

    /// The owner's live files carrying every tag of `tags`, sorted by name.
    async fn objects(
        &self,
        owner: Uuid,
        tags: Vec<String>,
    ) -> Result<Vec<StoredObject>, BackendError>;

    /// The owner's live file shown under `name`.
    async fn object(&self, owner: Uuid, name: String)
    -> Result<Option<StoredObject>, BackendError>;

    /// Stores `body` as the owner's file `name` with `tags`, replacing the file shown under
    /// that name. When `expected_md5` is given, a body with another MD5 is refused
    /// ([`ErrorKind::BadDigest`]) and nothing is recorded.
    async fn put(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        expected_md5: Option<[u8; 16]>,
        body: ByteStream,
    ) -> Result<StoredObject, BackendError>;

    /// The owner's live file shown under `name`, with the means to read it.
    async fn open(
        &self,
        owner: Uuid,
        name: String,
    ) -> Result<Option<(StoredObject, Content)>, BackendError>;

    /// Deletes the owner's file.
    async fn delete(&self, owner: Uuid, file_id: Uuid) -> Result<(), BackendError>;

    /// Starts a multipart upload of the owner's file `name`, to get `tags` when completed.
    async fn start_upload(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
    ) -> Result<Uuid, BackendError>;

    /// The owner's upload `upload_id`, while in progress.
    async fn upload(&self, owner: Uuid, upload_id: Uuid) -> Result<PendingUpload, BackendError>;

    /// The owner's uploads in progress, by name, then start.
    async fn uploads(&self, owner: Uuid) -> Result<Vec<PendingUpload>, BackendError>;

    /// Stores part `number` of the owner's upload (replacing an earlier part of that number);
    /// returns its ETag. With `expected_md5`, a body of another MD5 is refused.
    async fn upload_part(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        number: u32,
        expected_md5: Option<[u8; 16]>,
        body: ByteStream,
    ) -> Result<String, BackendError>;

    /// The stored parts of the owner's upload, by part number.
    async fn parts(&self, owner: Uuid, upload_id: Uuid) -> Result<Vec<UploadedPart>, BackendError>;

    /// Checks a completion of the owner's upload from `parts` (part number and ETag,
    /// ascending) and returns the work that carries it out: recording its file, which may
    /// mean reading and writing the whole object again, and ending the upload.
    async fn complete_upload(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        parts: Vec<(u32, String)>,
    ) -> Result<Completing, BackendError>;

    /// Aborts the owner's upload: its parts are deleted.
    async fn abort_upload(&self, owner: Uuid, upload_id: Uuid) -> Result<(), BackendError>;

    /// Adds `add` to and then removes `remove` from the owner's file; either may be empty.
    async fn retag(
        &self,
        owner: Uuid,
        file_id: Uuid,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), BackendError>;
}
