//! Request parsing that reproduces the wire contract's validation: FastAPI-style 422 bodies
//! listing every missing or mistyped field, and authentication before validation whenever an
//! `Authorization` header is present.

use axum::http::HeaderMap;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, FieldIssue};
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
