//! `/auth` routes: registration and login. The service applies the rate limits; this file
//! only hands it the client's address and the bounded body.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{client_ip, json_body, json_object, string_field};
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
    let (api_key, user_id) = app.service.register(client, username, password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": api_key, "user_id": user_id.to_string()})),
    ))
}

/// `POST /auth/login`.
pub async fn login(
    State(app): State<Arc<AppState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (client, username, password) = credentials(request).await?;
    let api_key = app.service.login(client, username, password).await?;
    Ok(Json(json!({"api_key": api_key})))
}
