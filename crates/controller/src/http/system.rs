//! `/`, `/health` and `/ready`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /`.
pub async fn root() -> Json<Value> {
    Json(json!({"message": "RedCloud Files Controller API", "status": "running"}))
}

/// `GET /health`: the process is alive.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "healthy", "service": "controller"}))
}

/// `GET /ready`: the log and read model are open (they are, or the process would not be
/// serving) and at least one chunkserver is healthy. A full disk leaves the node ready, since
/// reads still work; `log` says `disk full` then.
pub async fn ready(State(app): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let healthy = app.registry.healthy(Instant::now()).len();
    let ready = healthy > 0;
    let log = if app.service.log.disk_full().is_some() {
        "disk full"
    } else {
        "open"
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "node_id": app.node_id.to_string(),
        "log": log,
        "healthy_chunkservers": healthy,
    });
    (status, Json(body))
}
