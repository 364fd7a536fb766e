//! The client listener's HTTP API: the contract of `http-api.md`, health, readiness, metrics
//! and the status page. Nothing here serves other nodes (that is `crate::internal`, on the
//! cluster listener). Errors become responses only in `ApiError`.

mod app;
mod auth;
mod extract;
mod files;
mod linger;
mod s3keys;
mod session;
pub use session::CATCH_UP_WAITERS;
pub(crate) mod status;
mod system;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use tracing::Instrument;

use crate::cluster::Registry;
use crate::service::Service;

/// What every handler can reach.
pub struct AppState {
    /// The API operations.
    pub service: Service,
    /// The chunkservers.
    pub registry: Arc<Registry>,
    /// Whether the cluster listener runs without a secret although other machines reach it
    /// (`--insecure`): the status page says so.
    pub insecure: bool,
    /// This controller.
    pub node_id: redcloud_eventlog::NodeId,
    /// The other controllers.
    pub membership: Arc<crate::peers::Membership>,
    /// How long a request carrying a frontier token may wait for this node to catch up.
    pub catch_up_timeout: std::time::Duration,
    /// Places for requests waiting to catch up ([`session::CATCH_UP_WAITERS`]).
    pub catch_up_waiters: tokio::sync::Semaphore,
    /// Counters and gauges for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What the repair service found last.
    pub ledger: Arc<crate::status::RepairLedger>,
    /// The retired controllers.
    pub retired: Arc<crate::retired::Retired>,
    /// The snapshot this controller serves.
    pub snapshots: Arc<crate::snapshot::Snapshots>,
    /// A node heard from within this long counts as alive (`--gc-report-max-age-ms`, the bound
    /// collection waits for): `redcloud cluster forget` refuses it unless forced.
    pub alive_within: std::time::Duration,
}

/// The client listener's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(system::root))
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .route("/status", get(status::page))
        .route("/metrics", get(status::metrics))
        .route("/app", get(app::root))
        .route("/app/", get(app::index))
        .route("/app/app.js", get(app::script))
        .route("/app/app.css", get(app::style))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/me", get(auth::me))
        .route(
            "/files",
            post(files::upload)
                .layer(DefaultBodyLimit::disable())
                .get(files::list)
                .delete(files::delete),
        )
        .route(
            "/files/tags",
            post(files::add_tags).delete(files::remove_tags),
        )
        .route(
            "/files/{file_id}",
            get(files::file).delete(files::delete_file),
        )
        .route(
            "/files/{file_id}/tags",
            post(files::add_file_tags).delete(files::remove_file_tags),
        )
        .route("/tags", get(files::tags))
        .route("/s3-keys", post(s3keys::create).get(s3keys::list))
        .route("/s3-keys/{key_id}", delete(s3keys::delete))
        .route("/files/{file_id}/download", get(files::download_by_id))
        .route(
            "/files/by-name/{filename}/download",
            get(files::download_by_name),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            status::count_request,
        ))
        // For the internal routes, which read their bodies through axum's extractors; client
        // routes read theirs through `extract::json_body` or the upload's own part limits.
        .layer(DefaultBodyLimit::max(crate::limits::JSON_BODY_MAX_BYTES))
        .layer(middleware::from_fn(linger::discard_unread_body))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            session::read_your_writes,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not Found"})),
    )
        .into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

const REQUEST_ID: &str = "x-request-id";

/// Echoes the client's `X-Request-ID` (or makes one) on the response and in every log line of
/// the request.
pub(crate) async fn request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::debug_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}
