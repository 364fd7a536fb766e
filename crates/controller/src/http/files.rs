//! `/files` routes: upload, list, delete, tag changes and downloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::extract::{
    authenticate_first, authenticated, finish, json_body, json_object, string_list_field,
    tags_query,
};
use crate::error::{ApiError, FieldIssue};
use crate::limits::MULTIPART_TEXT_MAX_BYTES;
use crate::readmodel::FileRecord;
use crate::service::{Download, DownloadTarget, check_upload, format_timestamp, parse_tags};

fn file_json(file: &FileRecord) -> Value {
    json!({
        "file_id": file.file_id.to_string(),
        "name": file.name,
        "size": file.size,
        "tags": file.tags,
        "owner_id": file.owner_id.to_string(),
        "created_at": format_timestamp(file.created_at_ms),
    })
}

fn ids_json(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}

/// Bytes of an upload body the multipart parser may take in without handing anything on.
/// File and text bytes pass straight through, so only a part's headers or the preamble can
/// reach it: the parser buffers those whole, however long they are.
const MULTIPART_UNPARSED_MAX_BYTES: usize = 1024 * 1024;

/// How far the multipart parser is behind the body: bytes pulled from the connection since
/// the handler last received something from the parser.
#[derive(Clone, Default)]
struct Progress(Arc<(AtomicUsize, AtomicBool)>);

impl Progress {
    /// The handler received a part or a piece of one.
    fn made(&self) {
        self.0.0.store(0, Ordering::Relaxed);
    }

    /// `body`, failing once the parser has taken in too much without handing anything on.
    fn guard(&self, body: Body) -> Body {
        let progress = self.clone();
        Body::from_stream(body.into_data_stream().map(move |piece| {
            let piece = piece?;
            let pulled = progress.0.0.fetch_add(piece.len(), Ordering::Relaxed) + piece.len();
            if pulled > MULTIPART_UNPARSED_MAX_BYTES {
                progress.0.1.store(true, Ordering::Relaxed);
                return Err(axum::Error::new("multipart part headers too long"));
            }
            Ok(piece)
        }))
    }

    /// The error to answer for a parser failure.
    fn error(&self, error: MultipartError) -> ApiError {
        if self.0.1.load(Ordering::Relaxed) {
            return ApiError::PayloadTooLarge {
                what: "multipart part headers",
                limit: MULTIPART_UNPARSED_MAX_BYTES as u64,
            };
        }
        ApiError::InvalidRequest(format!("malformed multipart body: {error}"))
    }

    /// A part's bytes, marking progress with each piece.
    fn pieces<'a>(
        &self,
        field: Field<'a>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, MultipartError>> + Unpin + 'a {
        let progress = self.clone();
        field.inspect(move |_| progress.made())
    }

    /// Reads a part to its end, keeping nothing.
    async fn skip(&self, field: Field<'_>) -> Result<(), ApiError> {
        self.pieces(field)
            .map_ok(|_| ())
            .try_collect::<()>()
            .await
            .map_err(|e| self.error(e))
    }
}

/// The `tags` part as text, read only up to its limit: a larger one is refused as soon as it
/// passes the limit, without buffering the rest.
async fn text_part(progress: &Progress, field: Field<'_>) -> Result<String, ApiError> {
    let mut text = Vec::new();
    let mut pieces = progress.pieces(field);
    while let Some(piece) = pieces.try_next().await.map_err(|e| progress.error(e))? {
        if text.len() + piece.len() > MULTIPART_TEXT_MAX_BYTES {
            return Err(ApiError::PayloadTooLarge {
                what: "tags part",
                limit: MULTIPART_TEXT_MAX_BYTES as u64,
            });
        }
        text.extend_from_slice(&piece);
    }
    String::from_utf8(text)
        .map_err(|_| ApiError::InvalidRequest("The tags part is not UTF-8 text".to_owned()))
}

/// `POST /files`: multipart with a `file` part (its filename is the stored name) and a
/// `tags` text part, in either order. The file streams to chunkservers as it arrives.
/// A wrong key is refused before any part is read; without a key, the file's bytes are
/// skipped as they arrive (never buffered) so the 422 can list every missing field.
pub async fn upload(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let mut issues = Vec::new();
    let user = authenticate_first(&app.service, &headers, &mut issues).await?;
    let progress = Progress::default();
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, progress.guard(body));
    let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
        issues.push(FieldIssue::missing(&["body", "file"], Value::Null));
        issues.push(FieldIssue::missing(&["body", "tags"], Value::Null));
        return Err(ApiError::Validation(issues));
    };
    let mut tags: Option<Vec<String>> = None;
    let mut stored = None;
    let mut file_seen = false;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| progress.error(e))?
    {
        progress.made();
        match field.name() {
            Some("tags") => tags = Some(parse_tags(&text_part(&progress, field).await?)),
            Some("file") if file_seen => {
                return Err(ApiError::InvalidRequest(
                    "An upload carries one file part".to_owned(),
                ));
            }
            Some("file") => {
                file_seen = true;
                let Some(name) = field.file_name().map(str::to_owned) else {
                    issues.push(FieldIssue {
                        kind: "value_error",
                        loc: vec![json!("body"), json!("file")],
                        msg: "Value error, Expected UploadFile, received: <class 'str'>".to_owned(),
                        input: Value::Null,
                    });
                    progress.skip(field).await?;
                    continue;
                };
                let Some(owner) = user else {
                    // Unauthenticated: only report what is missing, store nothing.
                    progress.skip(field).await?;
                    continue;
                };
                check_upload(&name, tags.as_deref())?;
                let data = app.service.store_data(progress.pieces(field)).await?;
                stored = Some((owner, name, data));
            }
            _ => {
                return Err(ApiError::InvalidRequest(
                    "Unexpected multipart part: only 'file' and 'tags' are accepted".to_owned(),
                ));
            }
        }
    }
    if !file_seen {
        issues.push(FieldIssue::missing(&["body", "file"], Value::Null));
    }
    if tags.is_none() {
        issues.push(FieldIssue::missing(&["body", "tags"], Value::Null));
    }
    finish(user, issues)?;
    let (Some((owner, name, data)), Some(tags)) = (stored, tags) else {
        return Err(ApiError::internal("upload parts vanished after validation"));
    };
    let uploaded = app.service.record_file(owner, name, tags, data).await?;
    let body = json!({
        "file_id": uploaded.file_id.to_string(),
        "name": uploaded.name,
        "size": uploaded.size,
        "tags": uploaded.tags,
        "replaced_file_id": uploaded.replaced_file_id.map(|id| id.to_string()),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The caller and the parsed `tags` query of a `/files?tags=...` request.
async fn tag_query_request(
    app: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Uuid, Vec<String>), ApiError> {
    let mut issues = Vec::new();
    let user = authenticate_first(&app.service, headers, &mut issues).await?;
    let tags = tags_query(query, &mut issues);
    let user = finish(user, issues)?;
    Ok((user, parse_tags(&tags.unwrap_or_default())))
}

/// `GET /files?tags=a,b`.
pub async fn list(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (user, tags) = tag_query_request(&app, &headers, query.as_deref()).await?;
    let files = app.service.list(user, tags).await?;
    Ok(Json(
        json!({"files": files.iter().map(file_json).collect::<Vec<_>>()}),
    ))
}

/// `DELETE /files?tags=a,b`.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (user, tags) = tag_query_request(&app, &headers, query.as_deref()).await?;
    let deleted = app.service.delete(user, tags).await?;
    Ok(Json(
        json!({"deleted_count": deleted.len(), "file_ids": ids_json(&deleted)}),
    ))
}

/// Parses a JSON body of string lists named `fields`, each reported when missing or not a
/// list of strings. The caller is authenticated before the body is read.
async fn string_lists<const N: usize>(
    app: &AppState,
    request: Request,
    fields: [&str; N],
) -> Result<(Uuid, [Vec<String>; N]), ApiError> {
    let (parts, body) = request.into_parts();
    let mut issues = Vec::new();
    let user = authenticate_first(&app.service, &parts.headers, &mut issues).await?;
    let body = json_body(&parts.headers, body).await?;
    let lists = match json_object(&body, &mut issues) {
        Some(object) => {
            fields.map(|field| string_list_field(&object, field, &mut issues).unwrap_or_default())
        }
        None => fields.map(|_| Vec::new()),
    };
    let user = finish(user, issues)?;
    Ok((user, lists))
}

/// Parses a tag-change body: the query and the second list named `tags_field`.
async fn tag_change(
    app: &AppState,
    request: Request,
    tags_field: &str,
) -> Result<(Uuid, Vec<String>, Vec<String>), ApiError> {
    let (user, [query, tags]) = string_lists(app, request, ["query_tags", tags_field]).await?;
    Ok((user, query, tags))
}

/// `POST /files/tags` with `{"query_tags": [...], "new_tags": [...]}`.
pub async fn add_tags(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (user, query, new_tags) = tag_change(&app, request, "new_tags").await?;
    let updated = app.service.add_tags(user, query, new_tags).await?;
    Ok(Json(
        json!({"updated_count": updated.len(), "file_ids": ids_json(&updated)}),
    ))
}

/// `DELETE /files/tags` with `{"query_tags": [...], "tags_to_remove": [...]}`.
pub async fn remove_tags(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (user, query, remove) = tag_change(&app, request, "tags_to_remove").await?;
    let outcome = app.service.remove_tags(user, query, remove).await?;
    let skipped: Vec<Value> = outcome
        .skipped
        .iter()
        .map(|f| json!({"file_id": f.file_id.to_string(), "name": f.name, "current_tags": f.tags}))
        .collect();
    Ok(Json(json!({
        "updated_count": outcome.updated.len(),
        "file_ids": ids_json(&outcome.updated),
        "skipped_files": skipped,
    })))
}

/// A file id from the path; one that is not a UUID names no file.
fn file_id_of(raw: String) -> Result<Uuid, ApiError> {
    Uuid::parse_str(&raw).map_err(|_| ApiError::FileNotFound(raw))
}

/// `GET /files/{file_id}`: the caller's file.
pub async fn file(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let file = app.service.file(user, file_id_of(file_id)?).await?;
    Ok(Json(file_json(&file)))
}

/// `DELETE /files/{file_id}`: deletes the caller's file.
pub async fn delete_file(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let file_id = file_id_of(file_id)?;
    app.service.delete_file(user, file_id).await?;
    Ok(Json(
        json!({"deleted_count": 1, "file_ids": ids_json(&[file_id])}),
    ))
}

/// `POST /files/{file_id}/tags` with `{"tags": [...]}`: the file with its tags now.
pub async fn add_file_tags(
    State(app): State<Arc<AppState>>,
    Path(file_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (user, [tags]) = string_lists(&app, request, ["tags"]).await?;
    let file = app
        .service
        .add_file_tags(user, file_id_of(file_id)?, tags)
        .await?;
    Ok(Json(file_json(&file)))
}

/// `DELETE /files/{file_id}/tags` with `{"tags": [...]}`: the file with its tags now; 409
/// `LAST_TAGS` when no tag would be left.
pub async fn remove_file_tags(
    State(app): State<Arc<AppState>>,
    Path(file_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (user, [tags]) = string_lists(&app, request, ["tags"]).await?;
    let file = app
        .service
        .remove_file_tags(user, file_id_of(file_id)?, tags)
        .await?;
    Ok(Json(file_json(&file)))
}

/// `GET /tags`: the tags on the caller's files, each with how many files carry it.
pub async fn tags(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let counts = app.service.tag_counts(user).await?;
    let tags: Vec<Value> = counts
        .into_iter()
        .map(|counted| json!({"tag": counted.tag, "count": counted.files}))
        .collect();
    Ok(Json(json!({ "tags": tags })))
}

/// `GET /files/{file_id}/download`.
pub async fn download_by_id(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file_id): Path<String>,
) -> Result<Response, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let target = DownloadTarget::Id(file_id_of(file_id)?);
    let download = app.service.find_download(user, target).await?;
    download_response(app, download, headers.get(header::RANGE)).await
}

/// `GET /files/by-name/{filename}/download`.
pub async fn download_by_name(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let download = app
        .service
        .find_download(user, DownloadTarget::Name(name))
        .await?;
    download_response(app, download, headers.get(header::RANGE)).await
}

/// A single `bytes=` range, resolved against `size`: `Ok(None)` to send everything (no header,
/// or one this server does not honour, such as several ranges), `Err(())` when unsatisfiable.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if last.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if size == 0 || range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// `attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`: any name works,
/// and nothing in it can break out of the header.
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Streams the file (or the requested range): the first chunk is fetched before the headers
/// go out, so an unreadable file is a clean 503; a chunk that cannot be read later aborts the
/// connection rather than sending a short or corrupt body.
async fn download_response(
    app: Arc<AppState>,
    download: Download,
    range: Option<&HeaderValue>,
) -> Result<Response, ApiError> {
    let size = download.file.size;
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(&download.file.name),
        );
    let (start, end) = match parse_range(range, size) {
        Err(()) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .map_err(ApiError::internal);
        }
        Ok(Some((start, end))) => {
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (start, end)
        }
        Ok(None) => {
            builder = builder.status(StatusCode::OK);
            if size == 0 {
                return builder
                    .header(header::CONTENT_LENGTH, 0)
                    .body(Body::empty())
                    .map_err(ApiError::internal);
            }
            (0, size - 1)
        }
    };
    builder = builder.header(header::CONTENT_LENGTH, end - start + 1);
    let body = app.service.read_range(download, start, end).await?;
    builder
        .body(Body::from_stream(body))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=2-5")), 10), Ok(Some((2, 5))));
        assert_eq!(parse_range(Some(&h("bytes=2-")), 10), Ok(Some((2, 9))));
        assert_eq!(parse_range(Some(&h("bytes=-3")), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some(&h("bytes=5-100")), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some(&h("bytes=-100")), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some(&h("bytes=10-")), 10), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=0-0")), 0), Err(()));
        assert_eq!(parse_range(Some(&h("bytes=5-2")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("bytes=0-1,3-4")), 10), Ok(None));
        assert_eq!(parse_range(Some(&h("items=0-1")), 10), Ok(None));
    }

    #[test]
    fn content_disposition_survives_any_name() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        let nasty = content_disposition("\"quoted\"\r\nInjected: yes ünï.pdf");
        assert!(!nasty.contains('\r') && !nasty.contains('\n'));
        assert!(
            nasty.starts_with("attachment; filename=\"_quoted___Injected: yes _n_.pdf\""),
            "{nasty}"
        );
        assert!(nasty.contains("%C3%BCn%C3%AF.pdf"));
        assert!(HeaderValue::from_str(&nasty).is_ok());
    }
}
