//! RedCloud's chunkserver: stores chunks named by their SHA-256, verifies them on every read,
//! serves them over gRPC and announces itself to controllers by heartbeats.

mod config;
mod error;
mod grpc;
mod heartbeat;
mod metrics;
mod store;

use std::sync::Arc;
use std::time::Duration;

use redcloud_proto::chunkserver::chunkserver_server::ChunkserverServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::StoreError;
pub use grpc::ChunkService;
pub use store::{ChunkStore, MAX_CHUNK_BYTES, StoreStats, Written};

/// Longest the calls in flight may run on after the shutdown signal. A connection from a peer
/// cut off by a network partition is never closed by that peer, and waiting for it would hold
/// the process until the supervisor kills it; an abandoned write leaves only a temp file, which
/// the next start sweeps.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Why a chunkserver could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory cannot be used.
    #[error("chunk store: {0}")]
    Store(#[from] StoreError),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The cluster link cannot be set up (no secret on an exposed listener, a weak secret).
    #[error("{0}")]
    Link(#[from] redcloud_link::LinkError),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
}

/// The two sockets a chunkserver serves: nodes on one, Prometheus on the other.
pub struct Listeners {
    /// The cluster listener (`--listen`): gRPC for controllers and chunkservers.
    pub cluster: TcpListener,
    /// The plain-HTTP metrics listener (`--metrics-listen`).
    pub metrics: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            cluster: TcpListener::bind(config.listen).await?,
            metrics: TcpListener::bind(config.metrics_listen).await?,
        })
    }
}

/// Serves on `listeners` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let store = {
        let dir = config.data_dir.clone();
        let capacity = config.capacity_bytes;
        tokio::task::spawn_blocking(move || ChunkStore::open(&dir, capacity))
            .await
            .map_err(|e| RunError::Config(format!("store open task failed: {e}")))??
    };
    let store = Arc::new(store);
    let node_id = match &config.node_id {
        Some(id) => id.clone(),
        None => {
            let id = redcloud_types::node_id::load_or_create(
                &config.data_dir,
                &redcloud_types::advertise::hostname(),
                rand::random(),
            )
            .map_err(|e| {
                RunError::Config(format!("node id in {}: {e}", config.data_dir.display()))
            })?;
            format!("{id:016x}")
        }
    };
    let local = listeners
        .cluster
        .local_addr()
        .map_err(|e| RunError::Config(format!("listener address: {e}")))?;
    let metrics_local = listeners.metrics.local_addr()?;
    let controllers = config.controller_addresses();
    let advertise = redcloud_types::advertise::Advertise::new(
        config.advertise.clone(),
        local,
        &redcloud_types::resolve_all(&controllers).await,
    );
    let cluster_token = config
        .cluster_token()
        .map_err(|e| RunError::Config(format!("cluster secret file: {e}")))?;
    let redcloud_link::NodeLink { link, exposed } = redcloud_link::choose_link(
        cluster_token.as_deref(),
        config.cluster_token.insecure,
        local,
    )?;
    let stats = store.stats()?;
    tracing::info!(
        node_id = %node_id,
        listen = %local,
        metrics_listen = %metrics_local,
        advertise = %advertise.address(),
        data_dir = %config.data_dir.display(),
        chunks = stats.chunk_count,
        used_bytes = stats.used_bytes,
        capacity_bytes = stats.capacity_bytes,
        controllers = ?controllers,
        cluster_link = if link.is_secure() { "mutual TLS" } else { "plain TCP" },
        "chunkserver starting"
    );
    if exposed {
        tokio::spawn(redcloud_link::remind_insecure(local, shutdown.clone()));
    }

    let worker = heartbeat::HeartbeatWorker {
        store: Arc::clone(&store),
        node_id: node_id.clone(),
        advertise,
        controllers,
        interval: Duration::from_millis(config.heartbeat_interval_ms.max(10)),
        link: link.clone(),
    };
    let heartbeats = tokio::spawn(worker.run(shutdown.clone()));

    let metrics = Arc::new(metrics::Metrics::new());
    let service = ChunkserverServer::new(ChunkService::new(
        Arc::clone(&store),
        node_id,
        Arc::clone(&metrics),
        link.clone(),
    ))
    .max_decoding_message_size(2 * redcloud_types::PIECE_BYTES)
    .max_encoding_message_size(2 * redcloud_types::PIECE_BYTES);
    let state = metrics::MetricsState { metrics, store };
    let grpc = axum::Router::new()
        .route_service(&format!("{}{{*method}}", metrics::GRPC_PREFIX), service)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .with_state(state.clone());
    let metrics_app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics::serve))
        .with_state(state);
    let cluster_server = axum::serve(
        redcloud_link::ServeListener::new(listeners.cluster, link.server_config()),
        grpc,
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .into_future();
    let metrics_server = axum::serve(
        redcloud_link::ServeListener::new(listeners.metrics, None),
        metrics_app,
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .into_future();
    let serve = async {
        let served = tokio::try_join!(cluster_server, metrics_server);
        served.map(|_| ())
    };
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
    };
    let served = tokio::select! {
        served = serve => served,
        () = drained => {
            tracing::warn!("connections still open after the shutdown drain period; stopping anyway");
            Ok(())
        }
    };
    shutdown.cancel();
    let _ = heartbeats.await;
    served?;
    tracing::info!("chunkserver stopped");
    Ok(())
}
