//! `/s3-keys`: the caller's S3 access keys. A secret is shown once, in the answer that makes
//! it; lists show ids and dates only.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::extract::authenticated;
use crate::error::ApiError;
use crate::service::format_timestamp;

/// `POST /s3-keys`: a new key, 201 with its secret (never shown again).
pub async fn create(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let key = app.service.create_s3_key(user).await?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({
            "access_key_id": key.key_id,
            "secret_access_key": key.secret,
        })),
    )
        .into_response();
    // A secret must not linger in a cache between the server and its owner.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /s3-keys`: the caller's keys, by id.
pub async fn list(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let keys: Vec<Value> = app
        .service
        .s3_keys(user)
        .await?
        .into_iter()
        .map(|key| {
            json!({
                "access_key_id": key.key_id,
                "created_at": format_timestamp(key.created_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /s3-keys/{key_id}`: the key stops working on every controller, for good.
pub async fn delete(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    app.service.delete_s3_key(user, key_id.clone()).await?;
    Ok(Json(json!({ "deleted": key_id })))
}
