//! `/auth` routes: registration, login and the account behind a key. The service applies the
//! rate limits; this file only hands it the client's address and the bounded body.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::extract::{authenticated, client_ip, json_body, json_object, string_field};
use crate::error::ApiError;

/// The caller's address and the `username` and `password` of the body.
async fn credentials(request: Request) -> Result<(Option<IpAddr>, String, String), ApiError> {
    let client = client_ip(request.extensions());
    let (parts, body) = request.into_parts();
    let body = json_body(&parts.headers, body).await?;
    let mut issues = Vec::new();
    let (mut username, mut password) = (None, None);
    if let Some(object) = json_object(&body, &mut issues) {
        username = string_field(&object, "username", &mut issues);
        password = string_field(&object, "password", &mut issues);
    }
    match (username, password) {
        (Some(username), Some(password)) if issues.is_empty() => Ok((client, username, password)),
        _ => Err(ApiError::Validation(issues)),
    }
}

/// `POST /auth/register`.
pub async fn register(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (client, username, password) = credentials(request).await?;
    let session = app.service.register(client, username, password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "api_key": session.api_key,
            "user_id": session.user_id.to_string(),
            "username_conflict": session.username_conflict,
        })),
    ))
}

/// `POST /auth/login`.
pub async fn login(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (client, username, password) = credentials(request).await?;
    let session = app.service.login(client, username, password).await?;
    Ok(Json(json!({
        "api_key": session.api_key,
        "username_conflict": session.username_conflict,
    })))
}

/// `GET /auth/me`: the account behind the caller's key.
pub async fn me(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let user = authenticated(&app.service, &headers).await?;
    let account = app.service.account(user).await?;
    Ok(Json(json!({
        "user_id": account.user_id.to_string(),
        "username": account.username,
        "username_conflict": account.username_conflict,
    })))
}
