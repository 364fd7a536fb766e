//! `/status` (the cluster at a glance, as HTML or JSON) and `/metrics` (Prometheus text), and
//! the middleware that counts every request by route.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use crate::error::ApiError;
use crate::metrics::{ResponseLabels, RouteLabels};
use crate::status::{ClusterStatus, Sources, gather, render_html};

/// The query of `/status`.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// `json` for the data behind the page.
    #[serde(default)]
    format: Option<String>,
}

async fn cluster_status(app: &AppState) -> Result<ClusterStatus, ApiError> {
    let frontiers = app.service.log.peer_frontiers().await?;
    Ok(gather(Sources {
        membership: &app.membership,
        registry: &app.registry,
        ledger: &app.ledger,
        frontiers: &frontiers,
        insecure: app.insecure,
        disk_full: app.service.log.disk_full(),
        snapshot: app.snapshots.current(),
        now_unix_ms: app.service.clock.now_ms(),
    }))
}

/// `GET /status`: a self-contained page that refreshes itself; `?format=json` for the data.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let status = cluster_status(&app).await?;
    Ok(match query.format.as_deref() {
        Some("json") => Json(status).into_response(),
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "unknown format {other:?}: leave it out for HTML, or use json"
            )));
        }
        None => Html(render_html(&status)).into_response(),
    })
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let status = cluster_status(&app).await?;
    let text = app.metrics.render(&status);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Counts every routed request and its latency, labelled by route template (never the raw
/// path, so a million file ids make one series).
pub async fn count_request(
    State(app): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .http_latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .http_responses
        .get_or_create(&ResponseLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
