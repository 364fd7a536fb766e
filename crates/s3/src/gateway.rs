//! The S3 operations RedCloud serves, each translated into [`Backend`] calls. Every operation
//! not written here answers `NotImplemented` (s3s's default), never a wrong success.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::response::IntoResponse as _;
use futures_util::StreamExt;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectTaggingInput,
    DeleteObjectTaggingOutput, DeleteObjectsInput, DeleteObjectsOutput, DeletedObject, ETag,
    ETagCondition, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput,
    GetObjectOutput, GetObjectTaggingInput, GetObjectTaggingOutput, HeadBucketInput,
    HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput, ListBucketsOutput,
    ListMultipartUploadsInput, ListMultipartUploadsOutput, ListObjectsInput, ListObjectsOutput,
    ListObjectsV2Input, ListObjectsV2Output, ListPartsInput, ListPartsOutput, Object, Part,
    PutObjectInput, PutObjectOutput, PutObjectTaggingInput, PutObjectTaggingOutput, Range,
    StreamingBlob, Tag, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use uuid::Uuid;

use crate::backend::{Backend, BackendError, ByteStream, ErrorKind, PendingUpload, StoredObject};
use crate::listing::{self, PageRequest};
use crate::names::{is_bucket_name, redcloud_tag, s3_tag, tagging_header, url_encode};

/// Most keys one listing page returns, whatever `max-keys` asks, and most keys one
/// `DeleteObjects` names (S3's own bounds).
const MAX_KEYS: usize = 1000;

/// Largest XML request body (read whole before it is parsed): a completion of 10,000 parts
/// is about 1 MiB, a `DeleteObjects` of 1,000 keys a few hundred KiB.
const XML_BODY_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Longest object key: RedCloud file names are at most 255 bytes.
const KEY_MAX_BYTES: usize = 255;

/// Body pieces held between reading a file and sending it: the stream S3 bodies need must be
/// `Sync`, so the read runs in its own task and hands its pieces (chunks of up to the chunk
/// size) over this many at a time.
const BODY_PIECES_IN_FLIGHT: usize = 1;

/// The query parameter of the AND-query extension: `x-redcloud-tags=a,b`.
const TAGS_EXTENSION: &str = "x-redcloud-tags";

/// How the gateway presents itself.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The region clients must sign for (`--s3-region`).
    pub region: String,
    /// The domain under which `BUCKET.DOMAIN` names a bucket (`--s3-root-domain`); without
    /// one, only path-style requests name buckets.
    pub root_domain: Option<String>,
}

/// The S3 listener's router: signature checks by `s3s`, the mapping by [`Gateway`].
pub fn router<B: Backend>(backend: Arc<B>, config: GatewayConfig) -> axum::Router {
    let owners = Arc::new(Owners::default());
    let mut builder = s3s::service::S3ServiceBuilder::new(Gateway {
        backend: Arc::clone(&backend),
        config: config.clone(),
        owners: Arc::clone(&owners),
    });
    builder.set_auth(KeyStore { backend, owners });
    let mut limits = s3s::config::S3Config::default();
    limits.xml_max_body_size = XML_BODY_MAX_BYTES;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        limits,
    ))));
    if let Some(domain) = config.root_domain {
        builder.set_host(RootDomain { domain });
    }
    axum::Router::new()
        .fallback(serve)
        .with_state(builder.build())
}

/// Hands a request to `s3s`. A failure it cannot express as an S3 error (it logs those)
/// becomes a plain 500.
async fn serve(
    axum::extract::State(service): axum::extract::State<s3s::service::S3Service>,
    request: axum::extract::Request,
) -> axum::response::Response {
    if let Some(refused) = refuse_oversized_xml(&request) {
        return refused;
    }
    let request = request.map(s3s::Body::http_body_unsync);
    match service.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A request whose body is an XML document and whose `Content-Length` exceeds
/// [`XML_BODY_MAX_BYTES`] is answered `MaxMessageLengthExceeded` before anything is read (s3s
/// refuses it too, but as an internal error). Object data goes only in a `PUT` with no
/// sub-resource but a part's (which `CreateBucket` shares, whose body s3s then bounds); every
/// other body is XML.
fn refuse_oversized_xml(request: &axum::extract::Request) -> Option<axum::response::Response> {
    let length: u64 = request
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    if length <= XML_BODY_MAX_BYTES as u64 {
        return None;
    }
    let data_query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .all(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            matches!(name, "" | "partNumber" | "uploadId" | "x-id")
        });
    if request.method() == http::Method::PUT && data_query {
        return None;
    }
    let error = s3_error!(
        MaxMessageLengthExceeded,
        "Request bodies other than object data are at most {XML_BODY_MAX_BYTES} bytes"
    );
    Some(match error.to_http_response() {
        Ok(response) => response.map(axum::body::Body::new),
        Err(_) => http::StatusCode::BAD_REQUEST.into_response(),
    })
}

/// Most access keys whose owners [`Owners`] remembers; it starts afresh when full.
const OWNERS_REMEMBERED: usize = 10_000;

/// The owner of each access key the signature check has looked up. Every signed request looks
/// its key up afresh (so a deleted key fails at once); the operation then finds the owner here
/// instead of reading and opening the key a second time. A key's owner never changes.
#[derive(Default)]
struct Owners(std::sync::Mutex<std::collections::HashMap<String, Uuid>>);

impl Owners {
    fn remember(&self, key_id: &str, owner: Uuid) {
        let mut owners = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if owners.len() >= OWNERS_REMEMBERED {
            owners.clear();
        }
        owners.insert(key_id.to_owned(), owner);
    }

    fn of(&self, key_id: &str) -> Option<Uuid> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key_id)
            .copied()
    }
}

/// Signature checks look secrets up here.
struct KeyStore<B> {
    backend: Arc<B>,
    owners: Arc<Owners>,
}

#[async_trait::async_trait]
impl<B: Backend> s3s::auth::S3Auth for KeyStore<B> {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        match self.backend.access_key(access_key).await {
            Ok(Some(key)) => {
                self.owners.remember(access_key, key.owner);
                Ok(key.secret.into())
            }
            Ok(None) => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
            Err(error) => Err(s3_error_of(error)),
        }
    }
}

/// `BUCKET.DOMAIN` names a bucket; `DOMAIN` and every other host (an address, another name)
/// are path-style.
struct RootDomain {
    domain: String,
}

impl S3Host for RootDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(host, |(name, _)| name);
        let bucket = name
            .strip_suffix(self.domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|bucket| !bucket.is_empty());
        let virtual_host = VirtualHost::new(self.domain.as_str());
        Ok(match bucket {
            Some(bucket) => virtual_host.with_bucket(bucket),
            None => virtual_host,
        })
    }
}

/// The mapping itself.
struct Gateway<B> {
    backend: Arc<B>,
    config: GatewayConfig,
    owners: Arc<Owners>,
}

/// The one place backend failures become S3 errors.
fn s3_error_of(error: BackendError) -> S3Error {
    let code = match error.kind {
        ErrorKind::NotFound => S3ErrorCode::NoSuchKey,
        ErrorKind::Denied => S3ErrorCode::AccessDenied,
        ErrorKind::Invalid => S3ErrorCode::InvalidArgument,
        ErrorKind::TooLarge => S3ErrorCode::EntityTooLarge,
        ErrorKind::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        ErrorKind::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        ErrorKind::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        ErrorKind::InvalidPart => S3ErrorCode::InvalidPart,
        ErrorKind::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        ErrorKind::TooSmall => S3ErrorCode::EntityTooSmall,
        ErrorKind::BadDigest => S3ErrorCode::BadDigest,
        ErrorKind::SlowDown => S3ErrorCode::SlowDown,
        ErrorKind::Unavailable => S3ErrorCode::ServiceUnavailable,
        ErrorKind::InsufficientStorage => {
            let mut error = S3Error::with_message(
                S3ErrorCode::Custom("InsufficientStorage".into()),
                error.message,
            );
            error.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
            return error;
        }
        ErrorKind::Internal => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, error.message)
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

fn etag(object: &StoredObject) -> Option<ETag> {
    object.etag.clone().map(ETag::Strong)
}

fn no_such_bucket(bucket: &str) -> S3Error {
    s3_error!(
        NoSuchBucket,
        "No bucket (tag) {bucket:?} on any of your files"
    )
}

fn no_such_key(key: &str) -> S3Error {
    s3_error!(NoSuchKey, "No file named {key:?} in this bucket")
}

/// Whether `condition` (an `If-Match` or `If-None-Match` value) matches `object`.
fn matches(condition: &ETagCondition, object: &StoredObject) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(tag) => object
            .etag
            .as_deref()
            .is_some_and(|ours| tag.value() == ours),
    }
}

/// Conditional-request rules of RFC 9110 as S3 applies them to GET and HEAD.
fn check_conditions(
    object: &StoredObject,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    // HTTP dates have whole seconds: compare at that precision.
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(object.created_at_ms / 1000);
    let as_time = |t: &Timestamp| SystemTime::from(time_of(t));
    if let Some(condition) = if_match {
        if !matches(condition, object) {
            return Err(s3_error!(PreconditionFailed, "If-Match does not match"));
        }
    } else if let Some(since) = if_unmodified_since
        && modified > as_time(since)
    {
        return Err(s3_error!(
            PreconditionFailed,
            "modified since If-Unmodified-Since"
        ));
    }
    if let Some(condition) = if_none_match {
        if matches(condition, object) {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    } else if let Some(since) = if_modified_since
        && modified <= as_time(since)
    {
        return Err(S3Error::new(S3ErrorCode::NotModified));
    }
    Ok(())
}

fn time_of(t: &Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t.clone())
}

impl<B: Backend> Gateway<B> {
    /// The caller, once the request's signature is checked and its region is ours.
    async fn owner<T>(&self, request: &S3Request<T>) -> S3Result<Uuid> {
        if let Some(region) = &request.region
            && region.as_ref() != self.config.region
        {
            return Err(s3_error!(
                AuthorizationHeaderMalformed,
                "the request is signed for region {region:?}; this server is region {:?}",
                self.config.region
            ));
        }
        let Some(credentials) = &request.credentials else {
            return Err(s3_error!(AccessDenied, "anonymous requests are not served"));
        };
        // The signature was checked against this key's secret moments ago, in this request.
        if let Some(owner) = self.owners.of(&credentials.access_key) {
            return Ok(owner);
        }
        match self.backend.access_key(&credentials.access_key).await {
            Ok(Some(key)) => Ok(key.owner),
            Ok(None) => Err(s3_error!(InvalidAccessKeyId, "the access key was deleted")),
            Err(error) => Err(s3_error_of(error)),
        }
    }

    /// Fails unless `bucket` is one of the owner's buckets.
    async fn bucket_exists(&self, owner: Uuid, bucket: &str) -> S3Result<()> {
        let buckets = self.backend.buckets(owner).await.map_err(s3_error_of)?;
        if buckets.iter().any(|(name, _)| name == bucket) {
            Ok(())
        } else {
            Err(no_such_bucket(bucket))
        }
    }

    /// The object `key` in `bucket`: the owner's file of that name, if it carries the tag.
    async fn object_in(&self, owner: Uuid, bucket: &str, key: &str) -> S3Result<StoredObject> {
        match self
            .backend
            .object(owner, key.to_owned())
            .await
            .map_err(s3_error_of)?
        {
            Some(object) if object.tags.iter().any(|t| t == bucket) => Ok(object),
            _ => Err(self.not_in_bucket(owner, bucket, key).await),
        }
    }

    /// Why `key` is not in `bucket`: the bucket is not there, or the key is not in it.
    async fn not_in_bucket(&self, owner: Uuid, bucket: &str, key: &str) -> S3Error {
        match self.bucket_exists(owner, bucket).await {
            Ok(()) => no_such_key(key),
            Err(error) => error,
        }
    }

    /// The objects of `bucket` (and of the extension's extra tags), sorted by key.
    async fn bucket_objects<T>(
        &self,
        owner: Uuid,
        bucket: &str,
        request: &S3Request<T>,
    ) -> S3Result<Vec<StoredObject>> {
        let mut tags = vec![bucket.to_owned()];
        tags.extend(extension_tags(request.uri.query().unwrap_or_default()));
        let objects = self
            .backend
            .objects(owner, tags)
            .await
            .map_err(s3_error_of)?;
        if objects.is_empty() {
            self.bucket_exists(owner, bucket).await?;
        }
        Ok(objects)
    }
}

/// The tags of the `x-redcloud-tags=a,b` extension in a query string.
fn extension_tags(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == TAGS_EXTENSION)
        .flat_map(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A listing's entries in the requested encoding.
fn encoder(encoding: Option<&s3s::dto::EncodingType>) -> impl Fn(&str) -> String {
    let url = encoding.is_some_and(|e| e.as_str() == s3s::dto::EncodingType::URL);
    move |text: &str| {
        if url {
            url_encode(text)
        } else {
            text.to_owned()
        }
    }
}

fn object_entry(object: &StoredObject, encode: &impl Fn(&str) -> String) -> Object {
    Object {
        key: Some(encode(&object.name)),
        size: Some(object.size as i64),
        last_modified: Some(timestamp(object.created_at_ms)),
        e_tag: etag(object),
        storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
            s3s::dto::ObjectStorageClass::STANDARD,
        )),
        ..Object::default()
    }
}

fn max_keys(asked: Option<i32>) -> usize {
    asked.map_or(MAX_KEYS, |n| usize::try_from(n).unwrap_or(0).min(MAX_KEYS))
}

/// One page of a bucket listing, as both listing versions send it.
struct ListedPage {
    contents: Vec<Object>,
    common_prefixes: Vec<CommonPrefix>,
    /// Where the next page starts after, when there is one (not encoded).
    next_after: Option<String>,
}

/// The page of `objects` that `request` asks for, its entries in the requested encoding.
fn list_page(
    objects: &[StoredObject],
    request: PageRequest<'_>,
    encode: &impl Fn(&str) -> String,
) -> ListedPage {
    let page = listing::page(objects, |o| o.name.as_str(), request);
    ListedPage {
        contents: page
            .objects
            .iter()
            .map(|o| object_entry(o, encode))
            .collect(),
        common_prefixes: page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode(p)),
            })
            .collect(),
        next_after: page.next_after,
    }
}

/// Reads a file into a body: a task pumps the backend's stream into a small channel, which
/// is the `Sync` stream an S3 body must be. The task ends when the client goes away.
fn body_of(mut stream: ByteStream) -> StreamingBlob {
    let (sender, receiver) = tokio::sync::mpsc::channel(BODY_PIECES_IN_FLIGHT);
    tokio::spawn(async move {
        while let Some(piece) = stream.next().await {
            if sender.send(piece).await.is_err() {
                break;
            }
        }
    });
    StreamingBlob::wrap(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// The bytes of a `size`-byte object that `range` asks for, as an inclusive pair.
fn resolve_range(range: Option<&Range>, size: u64) -> S3Result<Option<(u64, u64)>> {
    let Some(range) = range else {
        return Ok(None);
    };
    let bytes = range.check(size).map_err(|_| {
        s3_error!(
            InvalidRange,
            "The requested range is not satisfiable for an object of {size} bytes"
        )
    })?;
    Ok(Some((bytes.start, bytes.end - 1)))
}

/// The `Content-Range` of a ranged answer.
fn content_range(range: Option<(u64, u64)>, size: u64) -> Option<String> {
    range.map(|(first, last)| format!("bytes {first}-{last}/{size}"))
}

/// The RedCloud tags an S3 tag set stands for.
fn tags_of_set(set: &[Tag]) -> S3Result<Vec<String>> {
    set.iter()
        .map(|tag| {
            let key = tag.key.as_deref().unwrap_or_default();
            if key.is_empty() {
                return Err(s3_error!(InvalidTag, "a tag key cannot be empty"));
            }
            Ok(redcloud_tag(key, tag.value.as_deref().unwrap_or_default()))
        })
        .collect()
}

#[async_trait::async_trait]
impl<B: Backend> S3 for Gateway<B> {
    async fn list_buckets(
        &self,
        request: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let owner = self.owner(&request).await?;
        let buckets = self.backend.buckets(owner).await.map_err(s3_error_of)?;
        let prefix = request.input.prefix.as_deref().unwrap_or_default();
        let buckets = buckets
            .into_iter()
            .filter(|(name, _)| is_bucket_name(name) && name.starts_with(prefix))
            .map(|(name, since_ms)| Bucket {
                name: Some(name),
                creation_date: Some(timestamp(since_ms)),
                bucket_region: Some(self.config.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(s3s::dto::Owner {
                id: Some(owner.to_string()),
                display_name: None,
            }),
            ..ListBucketsOutput::default()
        }))
    }

    async fn head_bucket(
        &self,
        request: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let owner = self.owner(&request).await?;
        self.bucket_exists(owner, &request.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.config.region.clone()),
            ..HeadBucketOutput::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        request: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let owner = self.owner(&request).await?;
        self.bucket_exists(owner, &request.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: Some(s3s::dto::BucketLocationConstraint::from(
                self.config.region.clone(),
            )),
        }))
    }

    async fn create_bucket(
        &self,
        request: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let owner = self.owner(&request).await?;
        let bucket = request.input.bucket;
        if self.bucket_exists(owner, &bucket).await.is_ok() {
            return Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "You already have the bucket (tag) {bucket:?}"
            ));
        }
        self.backend
            .create_bucket(owner, bucket.clone())
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        request: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let owner = self.owner(&request).await?;
        self.backend
            .delete_bucket(owner, request.input.bucket)
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn list_objects_v2(
        &self,
        request: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let owner = self.owner(&request).await?;
        let objects = self
            .bucket_objects(owner, &request.input.bucket, &request)
            .await?;
        let input = &request.input;
        let after = match &input.continuation_token {
            Some(token) => Some(
                hex::decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
            None => input.start_after.clone(),
        };
        let prefix = input.prefix.as_deref().unwrap_or_default();
        let max = max_keys(input.max_keys);
        let encode = encoder(input.encoding_type.as_ref());
        let page = list_page(
            &objects,
            PageRequest {
                prefix,
                delimiter: input.delimiter.as_deref(),
                after: after.as_deref(),
                max_keys: max,
            },
            &encode,
        );
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.as_deref().map(&encode),
            max_keys: Some(max as i32),
            key_count: Some((page.contents.len() + page.common_prefixes.len()) as i32),
            continuation_token: input.continuation_token.clone(),
            start_after: input.start_after.as_deref().map(&encode),
            is_truncated: Some(page.next_after.is_some()),
            next_continuation_token: page.next_after.map(hex::encode),
            contents: Some(page.contents),
            common_prefixes: Some(page.common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        request: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let owner = self.owner(&request).await?;
        let objects = self
            .bucket_objects(owner, &request.input.bucket, &request)
            .await?;
        let input = &request.input;
        let prefix = input.prefix.as_deref().unwrap_or_default();
        let max = max_keys(input.max_keys);
        let encode = encoder(input.encoding_type.as_ref());
        let page = list_page(
            &objects,
            PageRequest {
                prefix,
                delimiter: input.delimiter.as_deref(),
                after: input.marker.as_deref(),
                max_keys: max,
            },
            &encode,
        );
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.as_deref().map(&encode),
            marker: input.marker.as_deref().map(&encode),
            max_keys: Some(max as i32),
            is_truncated: Some(page.next_after.is_some()),
            // S3 sends NextMarker only with a delimiter; clients use the last key otherwise,
            // which is the same entry.
            next_marker: page.next_after.as_deref().map(&encode),
            contents: Some(page.contents),
            common_prefixes: Some(page.common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        request: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        check_key(&input.key)?;
        if input
            .if_none_match
            .as_ref()
            .is_some_and(ETagCondition::is_any)
            && self
                .backend
                .object(owner, input.key.clone())
                .await
                .map_err(s3_error_of)?
                .is_some()
        {
            return Err(s3_error!(
                PreconditionFailed,
                "You already have a file named {:?}",
                input.key
            ));
        }
        let mut tags = vec![input.bucket.clone()];
        if let Some(header) = &input.tagging {
            tags.extend(tagging_header(header).map_err(|e| s3_error!(InvalidTag, "{e}"))?);
        }
        let expected_md5 = match &input.content_md5 {
            Some(text) => Some(decode_content_md5(text)?),
            None => None,
        };
        let stored = self
            .backend
            .put(
                owner,
                input.key,
                tags,
                expected_md5,
                body_stream(input.body),
            )
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: etag(&stored),
            size: Some(stored.size as i64),
            ..PutObjectOutput::default()
        }))
    }

    async fn get_object(
        &self,
        request: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        if input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "partNumber reads are not served"));
        }
        let (object, content) = match self
            .backend
            .open(owner, input.key.clone())
            .await
            .map_err(s3_error_of)?
        {
            Some((object, content)) if object.tags.contains(&input.bucket) => (object, content),
            _ => return Err(self.not_in_bucket(owner, &input.bucket, &input.key).await),
        };
        check_conditions(
            &object,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = resolve_range(input.range.as_ref(), object.size)?;
        let (first, last) = range.unwrap_or((0, object.size.saturating_sub(1)));
        let length = if object.size == 0 {
            0
        } else {
            last - first + 1
        };
        let body = if length == 0 {
            StreamingBlob::wrap(futures_util::stream::empty::<
                Result<bytes::Bytes, std::io::Error>,
            >())
        } else {
            body_of(content(first, last).await.map_err(s3_error_of)?)
        };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            content_length: Some(length as i64),
            content_range: content_range(range, object.size),
            accept_ranges: Some("bytes".to_owned()),
            content_type: Some(octet_stream()),
            e_tag: etag(&object),
            last_modified: Some(timestamp(object.created_at_ms)),
            tag_count: Some(object.tags.len() as i32),
            ..GetObjectOutput::default()
        }))
    }

    async fn head_object(
        &self,
        request: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        let object = self.object_in(owner, &input.bucket, &input.key).await?;
        check_conditions(
            &object,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = resolve_range(input.range.as_ref(), object.size)?;
        let length = range.map_or(object.size, |(first, last)| last - first + 1);
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(length as i64),
            content_range: content_range(range, object.size),
            accept_ranges: Some("bytes".to_owned()),
            content_type: Some(octet_stream()),
            e_tag: etag(&object),
            last_modified: Some(timestamp(object.created_at_ms)),
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        request: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        match self.object_in(owner, &input.bucket, &input.key).await {
            Ok(object) => self
                .backend
                .delete(owner, object.file_id)
                .await
                .map_err(s3_error_of)?,
            // S3 answers a deletion of a missing key as done.
            Err(error) if *error.code() == S3ErrorCode::NoSuchKey => {}
            Err(error) => return Err(error),
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        request: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        if input.delete.objects.len() > MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "At most {MAX_KEYS} keys can be deleted in one request, not {}",
                input.delete.objects.len()
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for identifier in input.delete.objects {
            let key = identifier.key;
            let outcome = match self.object_in(owner, &input.bucket, &key).await {
                Ok(object) => self
                    .backend
                    .delete(owner, object.file_id)
                    .await
                    .map_err(s3_error_of),
                Err(error) if *error.code() == S3ErrorCode::NoSuchKey => Ok(()),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(key),
                    ..DeletedObject::default()
                }),
                Err(error) => errors.push(s3s::dto::Error {
                    code: Some(error.code().as_str().to_owned()),
                    message: error.message().map(str::to_owned),
                    key: Some(key),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        request: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        check_key(&input.key)?;
        let mut tags = vec![input.bucket.clone()];
        if let Some(header) = &input.tagging {
            tags.extend(tagging_header(header).map_err(|e| s3_error!(InvalidTag, "{e}"))?);
        }
        let upload_id = self
            .backend
            .start_upload(owner, input.key.clone(), tags)
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id.to_string()),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        request: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        let (upload_id, _) = self
            .upload_of(owner, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let number = u32::try_from(input.part_number).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000"
            )
        })?;
        let expected_md5 = input
            .content_md5
            .as_deref()
            .map(decode_content_md5)
            .transpose()?;
        let etag = self
            .backend
            .upload_part(
                owner,
                upload_id,
                number,
                expected_md5,
                body_stream(input.body),
            )
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..UploadPartOutput::default()
        }))
    }

    async fn list_parts(
        &self,
        request: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        let (upload_id, _) = self
            .upload_of(owner, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let parts = self
            .backend
            .parts(owner, upload_id)
            .await
            .map_err(s3_error_of)?;
        let after = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let max = max_keys(input.max_parts);
        let mut listed: Vec<Part> = parts
            .iter()
            .filter(|p| p.number > after)
            .take(max + 1)
            .map(|p| Part {
                part_number: Some(p.number as i32),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.etag.clone())),
                last_modified: Some(timestamp(p.created_at_ms)),
                ..Part::default()
            })
            .collect();
        let truncated = listed.len() > max;
        listed.truncate(max);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: listed
                .last()
                .and_then(|p| p.part_number)
                .filter(|_| truncated),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(listed),
            ..ListPartsOutput::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        request: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // By key, then start: S3's order. A page starts after the markers' upload, or after
        // every upload of the key marker when the upload marker is not (or no longer) there.
        let candidates: Vec<PendingUpload> = self
            .backend
            .uploads(owner)
            .await
            .map_err(s3_error_of)?
            .into_iter()
            .filter(|u| {
                u.tags.first() == Some(&input.bucket) && u.name.starts_with(prefix.as_str())
            })
            .collect();
        let start = match &input.key_marker {
            None => 0,
            Some(key) => input
                .upload_id_marker
                .as_ref()
                .and_then(|marker| {
                    candidates
                        .iter()
                        .position(|u| u.name == *key && u.upload_id.to_string() == *marker)
                })
                .map_or_else(
                    || candidates.partition_point(|u| u.name.as_str() <= key.as_str()),
                    |at| at + 1,
                ),
        };
        let max = max_keys(input.max_uploads);
        let page: Vec<&PendingUpload> = candidates[start..].iter().take(max).collect();
        let truncated = candidates.len() - start > page.len();
        let last = page.last().filter(|_| truncated);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            next_key_marker: last.map(|u| u.name.clone()),
            next_upload_id_marker: last.map(|u| u.upload_id.to_string()),
            uploads: Some(
                page.iter()
                    .map(|u| s3s::dto::MultipartUpload {
                        key: Some(u.name.clone()),
                        upload_id: Some(u.upload_id.to_string()),
                        initiated: Some(timestamp(u.started_at_ms)),
                        ..s3s::dto::MultipartUpload::default()
                    })
                    .collect(),
            ),
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            ..ListMultipartUploadsOutput::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        request: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let owner = self.owner(&request).await?;
        let input = request.input;
        let (upload_id, _) = self
            .upload_of(owner, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let parts: Vec<(u32, String)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|part| {
                let number = part
                    .part_number
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| s3_error!(InvalidPart, "a part without a valid part number"))?;
                let etag = part.e_tag.map(ETag::into_value).unwrap_or_default();
                Ok((number, etag))
            })
            .collect::<S3Result<_>>()?;
        let completing = self
            .backend
            .complete_upload(owner, upload_id, parts)
            .await
            .map_err(s3_error_of)?;
        let (bucket, key) = (input.bucket, input.key);
        // Reassembling parts that do not fall on chunk boundaries reads and writes the whole
        // object: s3s answers 200 at once and keeps the connection alive until this resolves.
        // What can be refused was checked above, so that it is refused with its own status.
        let completion = async move {
            let stored = completing.await.map_err(s3_error_of)?;
            Ok(CompleteMultipartUploadOutput {
                bucket: Some(bucket.clone()),
                key: Some(key.clone()),
                e_tag: etag(&stored),
                location: Some(format!("/{bucket}/{key}")),
                ..CompleteMultipartUploadOutput::default()
            })
        };
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            future: Some(Box::pin(completion)),
            ..CompleteMultipartUploadOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        request: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        let (upload_id, _) = self
            .upload_of(owner, &input.bucket, &input.key, &input.upload_id)
            .await?;
        self.backend
            .abort_upload(owner, upload_id)
            .await
            .map_err(s3_error_of)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn post_object(
        &self,
        _request: S3Request<s3s::dto::PostObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::PostObjectOutput>> {
        Err(s3_error!(
            NotImplemented,
            "POST (browser form) uploads are not served; use PutObject"
        ))
    }

    async fn get_object_tagging(
        &self,
        request: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        let object = self.object_in(owner, &input.bucket, &input.key).await?;
        let tag_set = object
            .tags
            .iter()
            .map(|tag| {
                let (key, value) = s3_tag(tag);
                Tag {
                    key: Some(key),
                    value: Some(value),
                }
            })
            .collect();
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: None,
        }))
    }

    async fn put_object_tagging(
        &self,
        request: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        let object = self.object_in(owner, &input.bucket, &input.key).await?;
        let mut wanted = tags_of_set(&input.tagging.tag_set)?;
        // The bucket's own tag stays: without it the object would leave the bucket.
        wanted.push(input.bucket.clone());
        self.retag_to(owner, &object, wanted).await?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id: None }))
    }

    async fn delete_object_tagging(
        &self,
        request: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let owner = self.owner(&request).await?;
        let input = &request.input;
        let object = self.object_in(owner, &input.bucket, &input.key).await?;
        self.retag_to(owner, &object, vec![input.bucket.clone()])
            .await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: None,
        }))
    }
}

impl<B: Backend> Gateway<B> {
    /// The owner's upload `upload_id`, if it is of `key` in `bucket`.
    async fn upload_of(
        &self,
        owner: Uuid,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<(Uuid, PendingUpload)> {
        let no_such_upload = || {
            s3_error!(
                NoSuchUpload,
                "No multipart upload {upload_id:?} of {key:?} is in progress"
            )
        };
        let id: Uuid = upload_id.parse().map_err(|_| no_such_upload())?;
        let upload = match self.backend.upload(owner, id).await {
            Ok(upload) => upload,
            Err(error) if error.kind == ErrorKind::NoSuchUpload => return Err(no_such_upload()),
            Err(error) => return Err(s3_error_of(error)),
        };
        if upload.name != key || upload.tags.first().map(String::as_str) != Some(bucket) {
            return Err(no_such_upload());
        }
        Ok((id, upload))
    }

    /// Changes `object`'s tags to exactly `wanted`.
    async fn retag_to(
        &self,
        owner: Uuid,
        object: &StoredObject,
        wanted: Vec<String>,
    ) -> S3Result<()> {
        let add: Vec<String> = wanted
            .iter()
            .filter(|t| !object.tags.contains(t))
            .cloned()
            .collect();
        let remove: Vec<String> = object
            .tags
            .iter()
            .filter(|t| !wanted.contains(t))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        self.backend
            .retag(owner, object.file_id, add, remove)
            .await
            .map_err(s3_error_of)
    }
}

/// Fails for a key longer than a RedCloud file name may be.
fn check_key(key: &str) -> S3Result<()> {
    if key.len() > KEY_MAX_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "A RedCloud file name is at most {KEY_MAX_BYTES} bytes; this key has {}",
            key.len()
        ));
    }
    Ok(())
}

/// A request body as the backend takes it.
fn body_stream(body: Option<StreamingBlob>) -> ByteStream {
    match body {
        Some(body) => Box::pin(body.map(|piece| piece.map_err(std::io::Error::other))),
        None => Box::pin(futures_util::stream::empty()),
    }
}

fn octet_stream() -> s3s::dto::ContentType {
    "application/octet-stream".to_owned()
}

fn decode_content_md5(text: &str) -> S3Result<[u8; 16]> {
    use base64ct::Encoding as _;
    base64ct::Base64::decode_vec(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not the base64 of 16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_domain_names_buckets_and_every_other_host_is_path_style() {
        let hosts = RootDomain {
            domain: "s3.example.com".to_owned(),
        };
        let bucket = |host: &str| {
            hosts
                .parse_host_header(host)
                .map(|v| v.bucket().map(str::to_owned))
                .ok()
                .flatten()
        };
        assert_eq!(bucket("photos.s3.example.com"), Some("photos".to_owned()));
        assert_eq!(
            bucket("photos.s3.example.com:9000"),
            Some("photos".to_owned())
        );
        assert_eq!(bucket("a.b.s3.example.com"), Some("a.b".to_owned()));
        for path_style in [
            "s3.example.com",
            "s3.example.com:9000",
            "127.0.0.1:9000",
            "controller:9000",
            "evil-s3.example.com",
            ".s3.example.com",
            "[::1]:9000",
        ] {
            assert_eq!(bucket(path_style), None, "{path_style}");
        }
    }

    #[test]
    fn conditions_follow_rfc_9110() {
        let object = StoredObject {
            file_id: Uuid::nil(),
            name: "a".to_owned(),
            size: 1,
            created_at_ms: 1_700_000_000_500,
            tags: vec!["b".to_owned()],
            etag: Some("abc".to_owned()),
        };
        let at = |secs: u64| Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let tag = |t: &str| ETagCondition::ETag(ETag::Strong(t.to_owned()));
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_owned());
        assert_eq!(
            code(check_conditions(&object, None, None, None, None)),
            None
        );
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                Some(&tag("abc")),
                None,
                None
            )),
            Some("NotModified".to_owned())
        );
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                Some(&ETagCondition::Any),
                None,
                None
            )),
            Some("NotModified".to_owned())
        );
        assert_eq!(
            code(check_conditions(
                &object,
                Some(&tag("zzz")),
                None,
                None,
                None
            )),
            Some("PreconditionFailed".to_owned())
        );
        // Modified at second 1_700_000_000 (milliseconds dropped, as HTTP dates have none).
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                None,
                Some(&at(1_700_000_000)),
                None
            )),
            Some("NotModified".to_owned())
        );
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                None,
                Some(&at(1_699_999_999)),
                None
            )),
            None
        );
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                None,
                None,
                Some(&at(1_699_999_999))
            )),
            Some("PreconditionFailed".to_owned())
        );
        // If-None-Match decides over If-Modified-Since, If-Match over If-Unmodified-Since.
        assert_eq!(
            code(check_conditions(
                &object,
                None,
                Some(&tag("zzz")),
                Some(&at(1_800_000_000)),
                None
            )),
            None
        );
        assert_eq!(
            code(check_conditions(
                &object,
                Some(&tag("abc")),
                None,
                None,
                Some(&at(1))
            )),
            None
        );
    }

    #[test]
    fn extension_tags_are_read_from_the_query() {
        assert_eq!(
            extension_tags("list-type=2&x-redcloud-tags=a%2Cb&prefix=p"),
            vec!["a", "b"]
        );
        assert_eq!(extension_tags("x-redcloud-tags=a,,%20c%20"), vec!["a", "c"]);
        assert_eq!(extension_tags("list-type=2"), Vec::<String>::new());
    }
}
