//! API errors and their one mapping to HTTP and gRPC. Every handler returns [`ApiError`];
//! nothing else decides a status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A request-shape problem, reported FastAPI-style in a 422 body.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldIssue {
    /// `missing`, `string_type`, `list_type`, `json_invalid`, ...
    pub kind: &'static str,
    /// Where: `["body", "username"]`, `["header", "authorization"]`, `["query", "tags"]`.
    pub loc: Vec<Value>,
    /// Human message.
    pub msg: String,
    /// The offending input (`null` when missing).
    pub input: Value,
}

impl FieldIssue {
    /// A required field that is absent.
    pub fn missing(loc: &[&str], input: Value) -> Self {
        Self {
            kind: "missing",
            loc: loc.iter().map(|s| json!(s)).collect(),
            msg: "Field required".to_owned(),
            input,
        }
    }
}

/// Everything a client request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: missing or mistyped fields (422).
    #[error("request validation failed")]
    Validation(Vec<FieldIssue>),
    /// `Authorization` is present but not `Bearer <key>` (401, no code).
    #[error("Invalid authorization header format")]
    BadAuthHeader,
    /// Unknown, revoked or malformed key (401, no code).
    #[error("Invalid or expired API Key")]
    InvalidApiKey,
    /// Registration of a taken username (400).
    #[error("Username already exists")]
    UserAlreadyExists,
    /// Login with an unknown user or a wrong password (401).
    #[error("Invalid username or password")]
    InvalidCredentials,
    /// An empty tag list where one is required (400).
    #[error("{0}")]
    InvalidTagQuery(&'static str),
    /// A request that is well-formed but not acceptable (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// An upload with no tag (400, no code, as existing clients expect).
    #[error("At least one tag is required for file upload")]
    UploadWithoutTags,
    /// No such file for this caller (404, no code: a coded 404 makes old clients retry).
    #[error("File {0} not found")]
    FileNotFound(String),
    /// Another user's file (403, no code).
    #[error("You do not have permission to download this file")]
    Forbidden,
    /// A removal would take every tag a file carries, and a file always keeps one.
    #[error(
        "'{name}' would be left without tags: a file always keeps at least one, so add another tag before removing {}",
        quoted(tags)
    )]
    LastTags {
        /// The file's shown name.
        name: String,
        /// The tags it carries.
        tags: Vec<String>,
    },
    /// No chunkserver could take or serve the data (503).
    #[error("{0}")]
    ChunkserverUnavailable(String),
    /// Every copy of a chunk that could be read failed verification (500).
    #[error(
        "Stored data failed its integrity check (chunk {chunk}, {corrupt_copies} corrupt copies)"
    )]
    ChecksumMismatch {
        /// The chunk.
        chunk: redcloud_types::ChunkId,
        /// How many copies were found corrupt.
        corrupt_copies: usize,
    },
    /// Every chunkserver that could take the data is full (507).
    #[error("Storage is full")]
    StorageFull,
    /// This controller's own disk is full (507): it accepts no change until space is freed,
    /// and reads go on.
    #[error("{}", insufficient_storage_detail(*since_unix_ms, *recorded))]
    InsufficientStorage {
        /// When the disk was found full, in milliseconds since the Unix epoch.
        since_unix_ms: u64,
        /// Whether this change made it into the log before the read model ran out of room:
        /// then it is durable and on its way to the other controllers, and shows here once
        /// space is freed (a retry would make it twice). Otherwise nothing changed.
        recorded: bool,
    },
    /// A body or body part over its size limit (413); nothing was stored.
    #[error("The {what} exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// What was too large: `file`, `JSON body`, `tags part`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An input over one of the other limits (400 INVALID_REQUEST); nothing changed.
    #[error(transparent)]
    OverLimit(#[from] crate::limits::LimitError),
    /// Too many login or registration attempts, or no password-hashing slot in time (429).
    #[error("Too many attempts; retry in {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until a retry may succeed (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The node could not catch up with the client's frontier in time (503).
    #[error("This controller has not caught up with your earlier writes yet; retry shortly")]
    NotCaughtUp,
    /// A frontier token names operations of an origin this node never heard of (400); nothing
    /// was waited for.
    #[error("The frontier token names {unknown_origins} origin(s) this cluster never had")]
    InvalidFrontier {
        /// How many of its origins are unknown here.
        unknown_origins: usize,
    },
    /// This controller was retired from the cluster and takes no more writes (503).
    #[error(
        "This controller was retired from the cluster and takes no more writes; use another controller"
    )]
    Retired,
    /// A node to retire is unknown (404).
    #[error("No controller or chunkserver {0} is known to this cluster")]
    NodeNotFound(String),
    /// A node to retire was heard from recently (409): retiring a live node would let it be
    /// collected around while it still serves.
    #[error(
        "{kind} {node_id} was heard from {seconds_ago} s ago; retire only a node that is gone for good (or force it)"
    )]
    NodeAlive {
        /// "controller" or "chunkserver".
        kind: &'static str,
        /// Its id.
        node_id: String,
        /// Seconds since it was last heard from.
        seconds_ago: u64,
    },
    /// No such S3 access key of the caller's (404).
    #[error("You have no S3 access key {0}")]
    S3KeyNotFound(String),
    /// No multipart upload of the caller's with this id is in progress (404).
    #[error("No multipart upload {0} of yours is in progress")]
    UploadNotFound(String),
    /// A completion names a part that was not uploaded, or with another ETag (400).
    #[error("{0}")]
    InvalidPart(String),
    /// The caller has no bucket of this name (404).
    #[error("You have no bucket (tag) {0:?}")]
    BucketNotFound(String),
    /// A bucket whose tag files still carry cannot be deleted (409).
    #[error("Files still carry the tag {0:?}: delete them or remove the tag first")]
    BucketNotEmpty(String),
    /// The content does not have the MD5 the client announced (400).
    #[error("The Content-MD5 you specified did not match what we received")]
    BadDigest,
    /// A completion names its parts out of order (400).
    #[error("The parts must be listed in ascending order of part number, each once")]
    InvalidPartOrder,
    /// A part other than the last is under the least size of a part (400).
    #[error("Part {part} has {size} bytes; every part but the last must have at least {min}")]
    PartTooSmall {
        /// The part number.
        part: u32,
        /// Its bytes.
        size: u64,
        /// The least allowed.
        min: u64,
    },
    /// This controller has taken no snapshot yet (404).
    #[error("This controller has no snapshot yet")]
    NoSnapshot,
    /// Anything else (500). The detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a client is told when this controller's disk is full.
/// `'a', 'b'`: tags as a sentence names them.
fn quoted(tags: &[String]) -> String {
    let quoted: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
    quoted.join(", ")
}

fn insufficient_storage_detail(since_unix_ms: u64, recorded: bool) -> String {
    let since = crate::service::format_timestamp(since_unix_ms);
    if recorded {
        format!(
            "This controller's disk has been full since {since} UTC: your change is recorded and reaches the other controllers, but shows here only once space is freed in its data directory (do not repeat it); until then it accepts no further changes; reads still work"
        )
    } else {
        format!(
            "This controller's disk has been full since {since} UTC: it accepts no changes until space is freed in its data directory; reads still work"
        )
    }
}

/// Broad classes of error, each with one HTTP status and one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 422 / INVALID_ARGUMENT.
    Unprocessable,
    /// 400 / INVALID_ARGUMENT.
    BadRequest,
    /// 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// 403 / PERMISSION_DENIED.
    Forbidden,
    /// 404 / NOT_FOUND.
    NotFound,
    /// 400 / ALREADY_EXISTS.
    AlreadyExists,
    /// 413 / OUT_OF_RANGE.
    TooLarge,
    /// 409 / FAILED_PRECONDITION.
    Conflict,
    /// 429 / RESOURCE_EXHAUSTED.
    TooManyRequests,
    /// 503 / UNAVAILABLE.
    Unavailable,
    /// 507 / RESOURCE_EXHAUSTED.
    Full,
    /// 500 / INTERNAL.
    Internal,
}

impl ErrorCode {
    /// The HTTP status.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest | ErrorCode::AlreadyExists => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Full => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::Unprocessable | ErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::TooLarge => tonic::Code::OutOfRange,
            ErrorCode::Conflict => tonic::Code::FailedPrecondition,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Full | ErrorCode::TooManyRequests => tonic::Code::ResourceExhausted,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }
}

impl ApiError {
    /// The class of the error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation(_) => ErrorCode::Unprocessable,
            ApiError::BadAuthHeader | ApiError::InvalidApiKey | ApiError::InvalidCredentials => {
                ErrorCode::Unauthenticated
            }
            ApiError::UserAlreadyExists => ErrorCode::AlreadyExists,
            ApiError::InvalidTagQuery(_)
            | ApiError::InvalidRequest(_)
            | ApiError::UploadWithoutTags
            | ApiError::OverLimit(_)
            | ApiError::InvalidFrontier { .. } => ErrorCode::BadRequest,
            ApiError::FileNotFound(_)
            | ApiError::NodeNotFound(_)
            | ApiError::NoSnapshot
            | ApiError::S3KeyNotFound(_)
            | ApiError::UploadNotFound(_)
            | ApiError::BucketNotFound(_) => ErrorCode::NotFound,
            ApiError::BucketNotEmpty(_) => ErrorCode::Conflict,
            ApiError::InvalidPart(_)
            | ApiError::BadDigest
            | ApiError::InvalidPartOrder
            | ApiError::PartTooSmall { .. } => ErrorCode::BadRequest,
            ApiError::NodeAlive { .. } | ApiError::LastTags { .. } => ErrorCode::Conflict,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::ChunkserverUnavailable(_) | ApiError::NotCaughtUp | ApiError::Retired => {
                ErrorCode::Unavailable
            }
            ApiError::StorageFull | ApiError::InsufficientStorage { .. } => ErrorCode::Full,
            ApiError::PayloadTooLarge { .. } => ErrorCode::TooLarge,
            ApiError::RateLimited { .. } => ErrorCode::TooManyRequests,
            ApiError::Internal(_) | ApiError::ChecksumMismatch { .. } => ErrorCode::Internal,
        }
    }

    /// The machine-readable `code` of the JSON body, where the wire contract has one.
    pub fn wire_code(&self) -> Option<&'static str> {
        match self {
            ApiError::UserAlreadyExists => Some("USER_ALREADY_EXISTS"),
            ApiError::InvalidCredentials => Some("INVALID_CREDENTIALS"),
            ApiError::InvalidTagQuery(_) => Some("INVALID_TAG_QUERY"),
            ApiError::InvalidRequest(_) | ApiError::OverLimit(_) => Some("INVALID_REQUEST"),
            ApiError::ChunkserverUnavailable(_) => Some("CHUNKSERVER_UNAVAILABLE"),
            ApiError::StorageFull => Some("STORAGE_FULL"),
            ApiError::InsufficientStorage { .. } => Some("INSUFFICIENT_STORAGE"),
            ApiError::PayloadTooLarge { .. } => Some("PAYLOAD_TOO_LARGE"),
            ApiError::RateLimited { .. } => Some("RATE_LIMITED"),
            ApiError::NotCaughtUp => Some("NOT_CAUGHT_UP"),
            ApiError::InvalidFrontier { .. } => Some("INVALID_FRONTIER"),
            ApiError::Retired => Some("CONTROLLER_RETIRED"),
            ApiError::NodeNotFound(_) => Some("NODE_NOT_FOUND"),
            ApiError::NoSnapshot => Some("SNAPSHOT_NOT_FOUND"),
            ApiError::S3KeyNotFound(_) => Some("S3_KEY_NOT_FOUND"),
            ApiError::UploadNotFound(_) => Some("UPLOAD_NOT_FOUND"),
            ApiError::BucketNotFound(_) => Some("BUCKET_NOT_FOUND"),
            ApiError::BucketNotEmpty(_) => Some("BUCKET_NOT_EMPTY"),
            ApiError::BadDigest => Some("BAD_DIGEST"),
            ApiError::InvalidPart(_)
            | ApiError::InvalidPartOrder
            | ApiError::PartTooSmall { .. } => Some("INVALID_PART"),
            ApiError::NodeAlive { .. } => Some("NODE_ALIVE"),
            ApiError::LastTags { .. } => Some("LAST_TAGS"),
            ApiError::Internal(_) => Some("INTERNAL_ERROR"),
            ApiError::ChecksumMismatch { .. } => Some("CHECKSUM_MISMATCH"),
            ApiError::Validation(_)
            | ApiError::BadAuthHeader
            | ApiError::InvalidApiKey
            | ApiError::UploadWithoutTags
            | ApiError::FileNotFound(_)
            | ApiError::Forbidden => None,
        }
    }

    /// The message a client may see: internal details stay in the log.
    pub fn public_detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Shorthand for wrapping any failure that is the server's fault.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        ApiError::Internal(error.to_string())
    }
}

/// The S3 gateway's view of an error: it picks the S3 code from the kind.
impl From<ApiError> for redcloud_s3::BackendError {
    fn from(error: ApiError) -> Self {
        use redcloud_s3::ErrorKind;
        let kind = match (&error, error.code()) {
            (ApiError::UploadNotFound(_), _) => ErrorKind::NoSuchUpload,
            (ApiError::BucketNotFound(_), _) => ErrorKind::NoSuchBucket,
            (ApiError::BucketNotEmpty(_), _) => ErrorKind::BucketNotEmpty,
            (ApiError::InvalidPart(_), _) => ErrorKind::InvalidPart,
            (ApiError::InvalidPartOrder, _) => ErrorKind::InvalidPartOrder,
            (ApiError::BadDigest, _) => ErrorKind::BadDigest,
            (ApiError::PartTooSmall { .. }, _) => ErrorKind::TooSmall,
            (_, code) => match code {
                ErrorCode::Unprocessable
                | ErrorCode::BadRequest
                | ErrorCode::AlreadyExists
                | ErrorCode::Conflict => ErrorKind::Invalid,
                ErrorCode::Unauthenticated | ErrorCode::Forbidden => ErrorKind::Denied,
                ErrorCode::NotFound => ErrorKind::NotFound,
                ErrorCode::TooLarge => ErrorKind::TooLarge,
                ErrorCode::TooManyRequests => ErrorKind::SlowDown,
                ErrorCode::Unavailable => ErrorKind::Unavailable,
                ErrorCode::Full => ErrorKind::InsufficientStorage,
                ErrorCode::Internal => {
                    tracing::error!(%error, "S3 request failed with an internal error");
                    ErrorKind::Internal
                }
            },
        };
        redcloud_s3::BackendError::new(kind, error.public_detail())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code().http_status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed with an internal error");
        }
        let body = match &self {
            ApiError::Validation(issues) => json!({
                "detail": issues.iter().map(|i| json!({
                    "type": i.kind, "loc": i.loc, "msg": i.msg, "input": i.input,
                })).collect::<Vec<_>>()
            }),
            other => match other.wire_code() {
                Some(code) => json!({"detail": other.public_detail(), "code": code}),
                None => json!({"detail": other.public_detail()}),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        if let ApiError::Internal(detail) = &error {
            tracing::error!(%detail, "gRPC request failed with an internal error");
        }
        let message = match &error {
            ApiError::Validation(issues) => issues
                .iter()
                .map(|i| {
                    format!(
                        "{}: {}",
                        i.loc
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join("."),
                        i.msg
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.public_detail(),
        };
        let mut status = tonic::Status::new(error.code().grpc_code(), message);
        if let ApiError::RateLimited { retry_after_secs } = error {
            status
                .metadata_mut()
                .insert("retry-after", retry_after_secs.into());
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Every row of the contract's error table, in one place.
    #[tokio::test]
    async fn every_error_has_its_contracted_status_and_code() {
        let chunk = redcloud_types::ChunkId::of(b"x");
        let rows: Vec<(ApiError, u16, Option<&str>)> = vec![
            (
                ApiError::Validation(vec![FieldIssue::missing(&["query", "tags"], Value::Null)]),
                422,
                None,
            ),
            (ApiError::BadAuthHeader, 401, None),
            (ApiError::InvalidApiKey, 401, None),
            (
                ApiError::UserAlreadyExists,
                400,
                Some("USER_ALREADY_EXISTS"),
            ),
            (
                ApiError::InvalidCredentials,
                401,
                Some("INVALID_CREDENTIALS"),
            ),
            (
                ApiError::InvalidTagQuery("Query tags cannot be empty"),
                400,
                Some("INVALID_TAG_QUERY"),
            ),
            (
                ApiError::InvalidRequest("x".into()),
                400,
                Some("INVALID_REQUEST"),
            ),
            (ApiError::UploadWithoutTags, 400, None),
            (ApiError::FileNotFound("f".into()), 404, None),
            (ApiError::Forbidden, 403, None),
            (
                ApiError::ChunkserverUnavailable("x".into()),
                503,
                Some("CHUNKSERVER_UNAVAILABLE"),
            ),
            (ApiError::StorageFull, 507, Some("STORAGE_FULL")),
            (
                ApiError::InsufficientStorage {
                    since_unix_ms: 1_800_000_000_000,
                    recorded: false,
                },
                507,
                Some("INSUFFICIENT_STORAGE"),
            ),
            (
                ApiError::ChecksumMismatch {
                    chunk,
                    corrupt_copies: 2,
                },
                500,
                Some("CHECKSUM_MISMATCH"),
            ),
            (
                ApiError::PayloadTooLarge {
                    what: "file",
                    limit: 1,
                },
                413,
                Some("PAYLOAD_TOO_LARGE"),
            ),
            (
                ApiError::OverLimit(crate::limits::LimitError::TagComma),
                400,
                Some("INVALID_REQUEST"),
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 7,
                },
                429,
                Some("RATE_LIMITED"),
            ),
            (ApiError::NotCaughtUp, 503, Some("NOT_CAUGHT_UP")),
            (
                ApiError::InvalidFrontier { unknown_origins: 3 },
                400,
                Some("INVALID_FRONTIER"),
            ),
            (ApiError::Retired, 503, Some("CONTROLLER_RETIRED")),
            (
                ApiError::NodeNotFound("00aa".into()),
                404,
                Some("NODE_NOT_FOUND"),
            ),
            (
                ApiError::NodeAlive {
                    kind: "chunkserver",
                    node_id: "00aa".into(),
                    seconds_ago: 2,
                },
                409,
                Some("NODE_ALIVE"),
            ),
            (
                ApiError::Internal("disk /secret/path exploded".into()),
                500,
                Some("INTERNAL_ERROR"),
            ),
        ];
        for (error, status, code) in rows {
            let grpc = error.code().grpc_code();
            let (got_status, body) = body_of(error).await;
            assert_eq!(got_status.as_u16(), status, "{body}");
            assert_eq!(body.get("code").and_then(Value::as_str), code, "{body}");
            assert_ne!(grpc, tonic::Code::Ok);
        }
        let (_, body) = body_of(ApiError::Internal("disk /secret/path exploded".into())).await;
        assert_eq!(
            body["detail"], "Internal server error",
            "internal details never leak"
        );
        let status = tonic::Status::from(ApiError::Internal("/secret/path".into()));
        assert!(!status.message().contains("secret"));
    }

    #[tokio::test]
    async fn a_full_controller_disk_says_since_when_whether_the_change_counts_and_that_reads_work()
    {
        let full = |recorded| ApiError::InsufficientStorage {
            since_unix_ms: 1_800_000_000_000,
            recorded,
        };
        assert_eq!(
            tonic::Status::from(full(false)).code(),
            tonic::Code::ResourceExhausted
        );
        let (status, body) = body_of(full(false)).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(
            body["detail"],
            "This controller's disk has been full since 2027-01-15T08:00:00.000000 UTC: it accepts no changes until space is freed in its data directory; reads still work"
        );
        let (status, body) = body_of(full(true)).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("your change is recorded"),
            "{body}"
        );
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let response = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "7");
        let status = tonic::Status::from(ApiError::RateLimited {
            retry_after_secs: 7,
        });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "7");
    }
}
