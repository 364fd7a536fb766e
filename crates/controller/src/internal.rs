//! The cluster listener's routes: traffic from chunkservers, other controllers and
//! `redcloud log --server`. Served only on the cluster listener, where mutual TLS has already
//! proved that the caller holds the cluster secret (unless the node runs `--insecure`); the
//! client listener has none of these routes.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use redcloud_types::Heartbeat;
use serde_json::json;

use crate::cluster::HeartbeatNews;
use crate::error::ApiError;
use crate::http::AppState;
use crate::meta::MetaOp;

/// Largest gossip message accepted: a page of operations, with room to spare.
pub const GOSSIP_BODY_LIMIT_BYTES: usize = 32 * 1024 * 1024;
/// Largest heartbeat or log request accepted.
const SMALL_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// The cluster listener's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/internal/heartbeat", post(heartbeat))
        .route("/internal/state", get(self::state))
        .route("/internal/peers", get(peers))
        .route("/internal/log", post(read_log))
        .route("/internal/forget", post(forget))
        .route("/internal/snapshot", get(snapshot))
        .route(
            "/internal/gossip",
            post(gossip).layer(DefaultBodyLimit::max(GOSSIP_BODY_LIMIT_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            crate::http::status::count_request,
        ))
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT_BYTES))
        .fallback(crate::http::not_found)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(middleware::from_fn(crate::http::request_id))
        .with_state(state)
}

/// `POST /internal/heartbeat`: a chunkserver's heartbeat. A chunkserver first seen here, or
/// seen at a new address, is recorded in the log so every controller learns of it.
pub async fn heartbeat(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let beat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("bad heartbeat: {e}")))?;
    if beat.node_id.is_empty() || beat.address.is_empty() {
        return Err(ApiError::InvalidRequest(
            "heartbeat without node id or address".to_owned(),
        ));
    }
    match app.registry.heartbeat(&beat, Instant::now()) {
        HeartbeatNews::NewAddress => {
            tracing::info!(chunkserver = %beat.node_id, address = %beat.address, "chunkserver joined");
            app.service
                .log
                .append(vec![MetaOp::ChunkserverSeen {
                    node_id: beat.node_id,
                    address: beat.address,
                }])
                .await?;
        }
        HeartbeatNews::Recovered => {
            tracing::info!(chunkserver = %beat.node_id, "chunkserver recovered")
        }
        HeartbeatNews::Nothing => {}
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /internal/state`: this controller's id, log frontier and read-model digest, so
/// operators and tests can compare controllers.
pub async fn state(State(app): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    // The digest is a pass over the whole read model: on a read connection, never in the
    // log worker's way.
    let (applied, digest) = app.service.read(|r| r.applied_and_digest()).await?;
    let base = app.service.log.peer_frontiers().await?.base;
    let frontier: serde_json::Map<String, serde_json::Value> = applied
        .iter()
        .map(|(origin, seq)| (origin.to_string(), json!(seq.get())))
        .collect();
    Ok(Json(json!({
        "node_id": app.node_id.to_string(),
        "frontier": frontier,
        "operations": applied.op_count(),
        "digest": hex::encode(digest),
        "log_base": base.iter().map(|(origin, seq)| (origin.to_string(), json!(seq.get()))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "log_base_operations": base.op_count(),
        "snapshot_operations": app.snapshots.current().map_or(0, |s| s.base.frontier.op_count()),
    })))
}

/// The body of `POST /internal/forget`.
#[derive(serde::Deserialize)]
struct ForgetRequest {
    node_id: String,
    #[serde(default)]
    force: bool,
}

/// `POST /internal/forget` (`redcloud cluster forget`): retires a controller or a chunkserver
/// that is gone for good, so that collection no longer waits for it. A node heard from within
/// `--gc-report-max-age-ms` (the bound collection waits for) is refused (409 NODE_ALIVE)
/// unless `force` is set; retiring a node twice is harmless.
pub async fn forget(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: ForgetRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("bad forget request: {e}")))?;
    let node_id = request.node_id.trim().to_ascii_lowercase();
    if node_id.is_empty() || node_id.len() > 64 {
        return Err(ApiError::InvalidRequest(
            "node_id must be 1 to 64 characters".to_owned(),
        ));
    }
    if node_id == app.node_id.to_string() {
        return Err(ApiError::InvalidRequest(
            "a controller cannot retire itself; ask another controller".to_owned(),
        ));
    }
    let (controllers, chunkservers, retired) = app
        .service
        .read(|r| Ok((r.controllers()?, r.chunkservers()?, r.retired()?)))
        .await?;
    let reason = format!("retired by an operator through controller {}", app.node_id);
    let controller = node_id
        .parse::<redcloud_eventlog::NodeId>()
        .ok()
        .filter(|id| controllers.contains(id) || app.membership.ids().contains(id));
    let (kind, op) = if let Some(id) = controller {
        let frontiers = app.service.log.peer_frontiers().await?;
        let heard = frontiers.peers.get(&id).and_then(|view| view.last_heard);
        refuse_if_alive(
            "controller",
            &node_id,
            heard,
            app.alive_within,
            request.force,
        )?;
        let op = MetaOp::ControllerRetired {
            node_id: node_id.clone(),
            reason,
        };
        ("controller", op)
    } else if chunkservers.iter().any(|(id, _)| *id == node_id) {
        let heard = app
            .registry
            .last_heartbeat(&node_id)
            .map(|at| Instant::now().saturating_duration_since(at));
        refuse_if_alive(
            "chunkserver",
            &node_id,
            heard,
            app.alive_within,
            request.force,
        )?;
        let op = MetaOp::ChunkserverRetired {
            node_id: node_id.clone(),
            reason,
        };
        ("chunkserver", op)
    } else if let Some(node) = retired.iter().find(|n| n.node_id == node_id) {
        let kind = if node.controller {
            "controller"
        } else {
            "chunkserver"
        };
        return Ok(Json(json!({
            "node_id": node_id,
            "kind": kind,
            "already_retired": true,
        })));
    } else {
        return Err(ApiError::NodeNotFound(node_id));
    };
    app.service.log.append(vec![op]).await?;
    tracing::warn!(node = %node_id, kind, "node retired by an operator");
    Ok(Json(json!({
        "node_id": node_id,
        "kind": kind,
        "already_retired": false,
    })))
}

fn refuse_if_alive(
    kind: &'static str,
    node_id: &str,
    heard: Option<std::time::Duration>,
    alive_within: std::time::Duration,
    force: bool,
) -> Result<(), ApiError> {
    match heard {
        Some(ago) if ago < alive_within && !force => Err(ApiError::NodeAlive {
            kind,
            node_id: node_id.to_owned(),
            seconds_ago: ago.as_secs(),
        }),
        _ => Ok(()),
    }
}

/// `GET /internal/peers`: this controller and the controllers it knows.
pub async fn peers(State(app): State<Arc<AppState>>) -> Json<crate::peers::PeerList> {
    Json(app.membership.list(&app.registry))
}

/// `POST /internal/gossip`: a replication message from another controller (MessagePack).
/// Bytes that do not decode are refused without touching any state.
pub async fn gossip(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    use crate::peers::{ADVERTISE_HEADER, NODE_HEADER, WALL_CLOCK_HEADER};
    let from: redcloud_eventlog::NodeId = headers
        .get(NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::InvalidRequest(format!("gossip needs a {NODE_HEADER} header")))?;
    let message = redcloud_eventlog::GossipMessage::decode(&body).map_err(|error| {
        tracing::debug!(peer = %from, %error, "undecodable gossip dropped");
        ApiError::InvalidRequest(format!("undecodable gossip: {error}"))
    })?;
    if let Some(address) = headers.get(ADVERTISE_HEADER).and_then(|v| v.to_str().ok())
        && app.membership.learn(from, address)
    {
        tracing::info!(peer = %from, %address, "controller joined");
        app.service.log.peer_joined(from).await;
    }
    app.metrics
        .gossip_received
        .get_or_create(&crate::metrics::KindLabels::of(&message))
        .inc();
    app.metrics.gossip_received_bytes.inc_by(body.len() as u64);
    // A controller of an earlier version sends no clock; a malformed one is left out alike.
    let sent_wall_ms = headers
        .get(WALL_CLOCK_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    app.service.log.gossip(from, sent_wall_ms, message)?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /internal/snapshot`: the snapshot this controller serves, streamed from its file,
/// its frontier, newest stamp and digest in headers. For a controller that lacks operations
/// this one truncated; the receiver checks the digest before it installs anything.
pub async fn snapshot(
    State(app): State<Arc<AppState>>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let info = app.snapshots.current().ok_or(ApiError::NoSnapshot)?;
    // Opened before the answer starts: a newer snapshot may replace the file meanwhile, and
    // the open file stays this one.
    let file = tokio::fs::File::open(&info.path)
        .await
        .map_err(|e| ApiError::internal(format!("snapshot {}: {e}", info.path.display())))?;
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in crate::snapshot::snapshot_headers(&info) {
        let value = value.parse().map_err(ApiError::internal)?;
        headers.insert(name, value);
    }
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.sqlite3"),
    );
    headers.insert(axum::http::header::CONTENT_LENGTH, info.bytes.into());
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((headers, body))
}

/// Most operations `/internal/log` returns per request.
const LOG_PAGE_MAX_OPS: usize = 10_000;

/// `POST /internal/log`: for inspection tools (`redcloud log --server`). The body is a
/// replication `Frontier` message naming what the caller holds; the answer is a `Page`
/// message of what it lacks, in causal order, at most `LOG_PAGE_MAX_OPS` at a time.
pub async fn read_log(
    State(app): State<Arc<AppState>>,
    body: Bytes,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let message = redcloud_eventlog::GossipMessage::<crate::meta::MetaOp>::decode(&body)
        .map_err(|error| ApiError::InvalidRequest(format!("undecodable frontier: {error}")))?;
    let redcloud_eventlog::GossipMessage::Frontier {
        frontier,
        folded: false,
        ..
    } = message
    else {
        return Err(ApiError::InvalidRequest(
            "the body must be an unfolded Frontier message".to_owned(),
        ));
    };
    let page = app.service.log.read_log(frontier, LOG_PAGE_MAX_OPS).await?;
    let answer = redcloud_eventlog::GossipMessage::Page {
        ops: page.ops,
        more: page.more,
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/msgpack")],
        answer.encode(),
    ))
}
