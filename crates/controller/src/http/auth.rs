//! `/auth` routes: registration and login.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{json_object, string_field};
use crate::error::ApiError;

fn credentials(body: &Bytes) -> Result<(String, String), ApiError> {
    let mut issues = Vec::new();
    let (mut username, mut password) = (None, None);
    if let Some(object) = json_object(body, &mut issues) {
        username = string_field(&object, "username", &mut issues);
        password = string_field(&object, "password", &mut issues);
    }
    match (username, password) {
        (Some(username), Some(password)) if issues.is_empty() => Ok((username, password)),
        _ => Err(ApiError::Validation(issues)),
    }
}

/// `POST /auth/register`.
pub async fn register(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (username, password) = credentials(&body)?;
    let (api_key, user_id) = app.service.register(username, password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"api_key": api_key, "user_id": user_id.to_string()})),
    ))
}

/// `POST /auth/login`.
pub async fn login(State(app): State<Arc<AppState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let (username, password) = credentials(&body)?;
    let api_key = app.service.login(username, password).await?;
    Ok(Json(json!({"api_key": api_key})))
}
