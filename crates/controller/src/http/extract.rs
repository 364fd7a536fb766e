//! Request parsing that reproduces the wire contract's validation: FastAPI-style 422 bodies
//! listing every missing or mistyped field, and authentication before validation whenever an
//! `Authorization` header is present. Bodies are read here, within their size limits.

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, header};
use bytes::BytesMut;
use futures_util::StreamExt;
use redcloud_link::RemoteAddr;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, FieldIssue};
use crate::limits::JSON_BODY_MAX_BYTES;
use crate::service::Service;

/// What the `Authorization` header says.
pub enum AuthHeader {
    /// No header.
    Missing,
    /// A header that is not `Bearer <key>`.
    Malformed,
    /// A key to check.
    Key(String),
}

/// Reads the `Authorization` header.
pub fn auth_header(headers: &HeaderMap) -> AuthHeader {
    match headers.get(axum::http::header::AUTHORIZATION) {
        None => AuthHeader::Missing,
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(key) => AuthHeader::Key(key.to_owned()),
            None => AuthHeader::Malformed,
        },
    }
}

/// Authenticates when the header is there (401 on a bad one, before anything else is looked
/// at); otherwise adds the missing header to `issues`. Returns the caller when authenticated.
pub async fn authenticate_first(
    service: &Service,
    headers: &HeaderMap,
    issues: &mut Vec<FieldIssue>,
) -> Result<Option<Uuid>, ApiError> {
    match auth_header(headers) {
        AuthHeader::Missing => {
            issues.push(FieldIssue::missing(
                &["header", "authorization"],
                Value::Null,
            ));
            Ok(None)
        }
        AuthHeader::Malformed => Err(ApiError::BadAuthHeader),
        AuthHeader::Key(key) => service.authenticate(&key).await.map(Some),
    }
}

/// The caller of a request whose only input to validate is the `Authorization` header.
pub async fn authenticated(service: &Service, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let mut issues = Vec::new();
    let user = authenticate_first(service, headers, &mut issues).await?;
    finish(user, issues)
}

/// Fails with every collected issue, or returns the caller.
pub fn finish(user: Option<Uuid>, issues: Vec<FieldIssue>) -> Result<Uuid, ApiError> {
    match user {
        Some(user) if issues.is_empty() => Ok(user),
        _ => Err(ApiError::Validation(issues)),
    }
}

/// The client's address, when the server was started with connection info (a router called
/// directly, as in some tests, has none).
pub fn client_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<RemoteAddr>>()
        .map(|ConnectInfo(RemoteAddr(address))| address.ip())
}

/// Reads a JSON request body of at most [`JSON_BODY_MAX_BYTES`]: a declared length over it is
/// refused before any byte is read, and an undeclared one as soon as it passes the limit. The
/// only place a client's JSON body is read, so every route answers an oversized one alike.
pub async fn json_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::PayloadTooLarge {
        what: "JSON body",
        limit: JSON_BODY_MAX_BYTES as u64,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > JSON_BODY_MAX_BYTES as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece
            .map_err(|e| ApiError::InvalidRequest(format!("request body interrupted: {e}")))?;
        if buffer.len() + piece.len() > JSON_BODY_MAX_BYTES {
            return Err(too_large());
        }
        buffer.extend_from_slice(&piece);
    }
    Ok(buffer.freeze())
}

/// A JSON body as an object, or the issue that it is not one.
pub fn json_object(
    body: &[u8],
    issues: &mut Vec<FieldIssue>,
) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        Ok(other) => {
            issues.push(FieldIssue {
                kind: "model_attributes_type",
                loc: vec![json!("body")],
                msg: "Input should be a valid dictionary or object to extract fields from"
                    .to_owned(),
                input: other,
            });
            None
        }
        Err(error) => {
            issues.push(FieldIssue {
                kind: "json_invalid",
                loc: vec![json!("body"), json!(error.column())],
                msg: "JSON decode error".to_owned(),
                input: json!({}),
            });
            None
        }
    }
}

/// A required string field of a JSON body.
pub fn string_field(
    object: &serde_json::Map<String, Value>,
    name: &str,
    issues: &mut Vec<FieldIssue>,
) -> Option<String> {
    match object.get(name) {
        None => {
            issues.push(FieldIssue::missing(
                &["body", name],
                Value::Object(object.clone()),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            issues.push(FieldIssue {
                kind: "string_type",
                loc: vec![json!("body"), json!(name)],
                msg: "Input should be a valid string".to_owned(),
                input: other.clone(),
            });
            None
        }
    }
}

/// A required list-of-strings field of a JSON body.
pub fn string_list_field(
    object: &serde_json::Map<String, Value>,
    name: &str,
    issues: &mut Vec<FieldIssue>,
) -> Option<Vec<String>> {
    match object.get(name) {
        None => {
            issues.push(FieldIssue::missing(
                &["body", name],
                Value::Object(object.clone()),
            ));
            None
        }
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => issues.push(FieldIssue {
                        kind: "string_type",
                        loc: vec![json!("body"), json!(name), json!(i)],
                        msg: "Input should be a valid string".to_owned(),
                        input: other.clone(),
                    }),
                }
            }
            Some(out)
        }
        Some(other) => {
            issues.push(FieldIssue {
                kind: "list_type",
                loc: vec![json!("body"), json!(name)],
                msg: "Input should be a valid list".to_owned(),
                input: other.clone(),
            });
            None
        }
    }
}

/// The required `tags` query parameter (comma-separated), raw.
pub fn tags_query(query: Option<&str>, issues: &mut Vec<FieldIssue>) -> Option<String> {
    let found = query.and_then(|q| url_pairs(q).find(|(k, _)| k == "tags").map(|(_, v)| v));
    if found.is_none() {
        issues.push(FieldIssue::missing(&["query", "tags"], Value::Null));
    }
    found
}

/// Decodes `a=b&c=d` pairs, `+` as space.
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k), decode_component(v))
    })
}

fn decode_component(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[tokio::test]
    async fn json_bodies_are_read_up_to_their_limit_only() {
        let fits = vec![b' '; JSON_BODY_MAX_BYTES];
        let body = json_body(&HeaderMap::new(), Body::from(fits))
            .await
            .unwrap();
        assert_eq!(body.len(), JSON_BODY_MAX_BYTES);

        let over = vec![b' '; JSON_BODY_MAX_BYTES + 1];
        let refused = json_body(&HeaderMap::new(), Body::from(over)).await;
        assert!(
            matches!(refused, Err(ApiError::PayloadTooLarge { .. })),
            "{refused:?}"
        );

        // A declared length over the limit is refused without reading a byte: this body
        // would never end.
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "1048577".parse().unwrap());
        let endless =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let refused = json_body(&headers, endless).await;
        assert!(
            matches!(refused, Err(ApiError::PayloadTooLarge { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn the_client_address_is_optional() {
        let mut extensions = Extensions::new();
        assert_eq!(client_ip(&extensions), None);
        extensions.insert(ConnectInfo(RemoteAddr(SocketAddr::from((
            [192, 0, 2, 1],
            4000,
        )))));
        assert_eq!(client_ip(&extensions), Some(IpAddr::from([192, 0, 2, 1])));
    }

    #[test]
    fn tags_query_decodes_and_requires_the_parameter() {
        let mut issues = Vec::new();
        assert_eq!(
            tags_query(Some("tags=a%2Cb+c&x=1"), &mut issues).as_deref(),
            Some("a,b c")
        );
        assert_eq!(tags_query(Some("tags="), &mut issues).as_deref(), Some(""));
        assert!(issues.is_empty());
        assert_eq!(tags_query(Some("other=1"), &mut issues), None);
        assert_eq!(tags_query(None, &mut issues), None);
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].loc, vec![json!("query"), json!("tags")]);
    }
}
