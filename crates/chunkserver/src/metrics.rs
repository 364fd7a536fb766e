//! `GET /metrics` on the chunkserver's own port (HTTP/1.1 beside gRPC): calls and latency per
//! gRPC method, bytes moved, and the store's capacity, use and chunk count, in the Prometheus
//! (OpenMetrics) text format. Each chunkserver owns its registry, so several in one process
//! report separately.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::ChunkStore;

/// The gRPC methods, as their paths; anything else is counted as `other`, so a caller cannot
/// create unbounded series.
const METHODS: [&str; 6] = [
    "WriteChunk",
    "ReadChunk",
    "DeleteChunk",
    "Ping",
    "ListChunks",
    "ReplicateChunk",
];
/// The path prefix of the chunkserver's gRPC service.
pub const GRPC_PREFIX: &str = "/redcloud.chunkserver.v1.Chunkserver/";

/// One method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The gRPC method (or `metrics`, or `other`).
    pub method: String,
}

/// Every metric of one chunkserver.
pub struct Metrics {
    registry: Registry,
    calls: Family<MethodLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    /// Bytes of chunks written (new chunks only).
    pub bytes_written: Counter,
    /// Bytes of chunks served.
    pub bytes_read: Counter,
    /// Chunk copies removed by garbage collection.
    pub chunks_deleted: Counter,
    capacity: Gauge,
    used: Gauge,
    chunks: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("redcloud_chunkserver");
        let calls = Family::<MethodLabels, Counter>::default();
        registry.register("calls", "Requests by gRPC method", calls.clone());
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "call_duration_seconds",
            "Time to response headers by gRPC method",
            latency.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let bytes_written = counter("written_bytes", "Bytes of new chunks stored");
        let bytes_read = counter("read_bytes", "Bytes of chunks served");
        let chunks_deleted = counter("deleted_chunks", "Chunks removed by garbage collection");
        let mut gauge = |name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let capacity = gauge("capacity_bytes", "Bytes this chunkserver may use");
        let used = gauge("used_bytes", "Bytes of chunks held");
        let chunks = gauge("chunks", "Chunks held");
        Self {
            registry,
            calls,
            latency,
            bytes_written,
            bytes_read,
            chunks_deleted,
            capacity,
            used,
            chunks,
        }
    }

    fn render(&self, store: &ChunkStore) -> String {
        if let Ok(stats) = store.stats() {
            let set =
                |gauge: &Gauge, value: u64| gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            set(&self.capacity, stats.capacity_bytes);
            set(&self.used, stats.used_bytes);
            set(&self.chunks, stats.chunk_count);
        }
        let mut text = String::with_capacity(4096);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        text
    }
}

/// What the metrics routes need.
#[derive(Clone)]
pub struct MetricsState {
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The store, for its gauges.
    pub store: Arc<ChunkStore>,
}

/// `GET /metrics`.
pub async fn serve(State(state): State<MetricsState>) -> Response {
    let store = Arc::clone(&state.store);
    let metrics = Arc::clone(&state.metrics);
    match tokio::task::spawn_blocking(move || metrics.render(&store)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "metrics task failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Counts every request by gRPC method and times it to the response headers.
pub async fn count(State(state): State<MetricsState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let method = match path.strip_prefix(GRPC_PREFIX) {
        Some(name) if METHODS.contains(&name) => name.to_owned(),
        None if path == "/metrics" => "metrics".to_owned(),
        _ => "other".to_owned(),
    };
    let labels = MethodLabels { method };
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.calls.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
