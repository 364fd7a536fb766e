//! `/metrics`: the controller's counters and gauges in the Prometheus (OpenMetrics) text format.
//!
//! Every controller owns its own registry (no process-global recorder), so several nodes in one
//! process — `redcloud up` — each report only their own numbers. Counters are bumped where
//! things happen; the gauges that describe state are filled from [`ClusterStatus`] at scrape
//! time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::status::ClusterStatus;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One HTTP route and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template (`/files/{file_id}/download`), never the raw path.
    pub route: String,
    /// The HTTP method.
    pub method: String,
}

/// One HTTP route, method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    /// The route template.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// A label set of one `source` of log operations: `local` (written through this controller)
/// or `peer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where the operations came from.
    pub source: &'static str,
}

/// A label set of one kind of replication message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `push`, `page`, `frontier_request` (one per anti-entropy round), `frontier_reply` or
    /// `truncated` (the receiver needs the sender's snapshot).
    pub kind: &'static str,
}

impl KindLabels {
    /// The labels of `message`.
    pub fn of<P>(message: &redcloud_eventlog::GossipMessage<P>) -> Self {
        let kind = match message {
            redcloud_eventlog::GossipMessage::Push { .. } => "push",
            redcloud_eventlog::GossipMessage::Page { .. } => "page",
            redcloud_eventlog::GossipMessage::Frontier { reply: true, .. } => "frontier_request",
            redcloud_eventlog::GossipMessage::Frontier { reply: false, .. } => "frontier_reply",
            redcloud_eventlog::GossipMessage::Truncated { .. } => "truncated",
        };
        Self { kind }
    }
}

/// A label set naming one node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node id.
    pub node: String,
}

/// Every metric of one controller.
pub struct Metrics {
    registry: Registry,
    /// Responses by route, method and status.
    pub http_responses: Family<ResponseLabels, Counter>,
    /// Response latency by route and method.
    pub http_latency: Family<RouteLabels, Histogram>,
    /// Operations appended to the log, by source.
    pub log_appended: Family<SourceLabels, Counter>,
    /// Operations dropped from the log below a snapshot.
    pub log_truncated: Counter,
    /// Replication messages sent, by kind.
    pub gossip_sent: Family<KindLabels, Counter>,
    /// Bytes of replication messages sent.
    pub gossip_sent_bytes: Counter,
    /// Replication messages that could not be delivered.
    pub gossip_send_failures: Counter,
    /// Replication messages received, by kind.
    pub gossip_received: Family<KindLabels, Counter>,
    /// Bytes of replication messages received.
    pub gossip_received_bytes: Counter,
    /// Origins named in the newest frontier sent to a peer.
    pub gossip_frontier_origins: Gauge,
    log_operations: Gauge,
    log_held: Gauge,
    snapshot_operations: Gauge,
    log_disk_full: Gauge,
    clock_offset: Gauge<f64, AtomicU64>,
    peer_clock_offset: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    peer_clock_refused: Family<NodeLabels, Gauge>,
    peer_behind: Family<NodeLabels, Gauge>,
    peer_ahead: Family<NodeLabels, Gauge>,
    peer_reachable: Family<NodeLabels, Gauge>,
    referenced_chunks: Gauge,
    under_replicated: Gauge,
    unavailable: Gauge,
    repair_queue: Gauge,
    repair_rounds: Gauge,
    repair_copies_made: Gauge,
    repair_copies_failed: Gauge,
    gc_candidates: Gauge,
    gc_waiting: Gauge,
    gc_deleted: Gauge,
    gc_blocked: Family<NodeLabels, Gauge>,
    chunkserver_healthy: Family<NodeLabels, Gauge>,
    chunkserver_capacity: Family<NodeLabels, Gauge>,
    chunkserver_used: Family<NodeLabels, Gauge>,
    chunkserver_chunks: Family<NodeLabels, Gauge>,
    chunkserver_missing: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("redcloud");
        let http_responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "http_responses",
            "HTTP responses by route, method and status",
            http_responses.clone(),
        );
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route and method",
            http_latency.clone(),
        );
        let log_appended = Family::<SourceLabels, Counter>::default();
        registry.register(
            "log_appended_operations",
            "Operations appended to the event log, by source",
            log_appended.clone(),
        );
        let log_truncated = Counter::default();
        registry.register(
            "log_truncated_operations",
            "Operations dropped from the event log below a causally stable snapshot",
            log_truncated.clone(),
        );
        let gossip_sent = Family::<KindLabels, Counter>::default();
        registry.register(
            "gossip_sent_messages",
            "Replication messages sent, by kind (frontier_request counts anti-entropy rounds)",
            gossip_sent.clone(),
        );
        let gossip_sent_bytes = Counter::default();
        registry.register(
            "gossip_sent_bytes",
            "Bytes of replication messages sent",
            gossip_sent_bytes.clone(),
        );
        let gossip_send_failures = Counter::default();
        registry.register(
            "gossip_send_failures",
            "Replication messages that could not be delivered",
            gossip_send_failures.clone(),
        );
        let gossip_received = Family::<KindLabels, Counter>::default();
        registry.register(
            "gossip_received_messages",
            "Replication messages received, by kind",
            gossip_received.clone(),
        );
        let gossip_received_bytes = Counter::default();
        registry.register(
            "gossip_received_bytes",
            "Bytes of replication messages received",
            gossip_received_bytes.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let log_operations = gauge("log_operations", "Operations in the event log");
        let gossip_frontier_origins = gauge(
            "gossip_frontier_origins",
            "Origins named in the newest frontier sent to a peer (retired controllers folded out once every live controller holds their operations)",
        );
        let log_held = gauge(
            "log_held_operations",
            "Operations the event log holds one by one (the older ones are only in the snapshot)",
        );
        let snapshot_operations = gauge(
            "snapshot_operations",
            "Operations the snapshot this controller serves covers (0 before the first)",
        );
        let log_disk_full = gauge(
            "log_disk_full",
            "1 while the disk under the event log or read model is full: writes get 507 and peers' operations wait",
        );
        let referenced_chunks = gauge("chunks_referenced", "Chunks live files reference");
        let under_replicated = gauge(
            "chunks_under_replicated",
            "Referenced chunks some live chunkserver lacks",
        );
        let unavailable = gauge(
            "chunks_unavailable",
            "Referenced chunks no live chunkserver holds",
        );
        let repair_queue = gauge(
            "repair_queued_copies",
            "Copies the last repair round planned",
        );
        let repair_rounds = gauge("repair_rounds", "Repair rounds since start");
        let repair_copies_made = gauge("repair_copies_made", "Chunk copies made since start");
        let repair_copies_failed = gauge(
            "repair_copies_failed",
            "Chunk copies that failed since start",
        );
        let gc_candidates = gauge(
            "gc_candidates",
            "Chunks held somewhere that no live file references",
        );
        let gc_waiting = gauge(
            "gc_waiting",
            "Chunks of deleted files waiting for every controller to learn of the deletion",
        );
        let gc_deleted = gauge("gc_deleted", "Chunk copies collected since start");
        let mut family = |name: &str, help: &str| {
            let family = Family::<NodeLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let peer_behind = family(
            "peer_operations_behind",
            "Operations this controller holds that a peer lacked at its last report",
        );
        let peer_ahead = family(
            "peer_operations_ahead",
            "Operations a peer held at its last report that this controller lacks",
        );
        let peer_reachable = family(
            "peer_reachable",
            "1 when a peer controller answered recently",
        );
        let gc_blocked = family(
            "gc_blocked_seconds",
            "Seconds collection has waited for this controller (it never reported, reported long ago, or holds operations this one lacks); `redcloud cluster forget` retires a controller that is gone for good",
        );
        let chunkserver_healthy = family(
            "chunkserver_healthy",
            "1 when a chunkserver was heard from within the failure timeout",
        );
        let chunkserver_capacity =
            family("chunkserver_capacity_bytes", "Bytes a chunkserver may use");
        let chunkserver_used = family("chunkserver_used_bytes", "Bytes a chunkserver uses");
        let chunkserver_chunks = family("chunkserver_chunks", "Chunks a chunkserver holds");
        let chunkserver_missing = family(
            "chunkserver_missing_chunks",
            "Referenced chunks a chunkserver lacked at the last repair round",
        );
        let peer_clock_refused = family(
            "peer_clock_refused",
            "1 while this controller refuses a peer's operations for stamps too far ahead of its clock",
        );
        let clock_offset = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "clock_offset_seconds",
            "This controller's wall clock minus the median of its peers' (0 before any peer said)",
            clock_offset.clone(),
        );
        let peer_clock_offset = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_clock_offset_seconds",
            "A peer's wall clock minus this controller's, from its newest message that said",
            peer_clock_offset.clone(),
        );
        Self {
            registry,
            http_responses,
            http_latency,
            log_appended,
            log_truncated,
            gossip_sent,
            gossip_sent_bytes,
            gossip_send_failures,
            gossip_received,
            gossip_received_bytes,
            gossip_frontier_origins,
            log_operations,
            log_held,
            snapshot_operations,
            log_disk_full,
            clock_offset,
            peer_clock_offset,
            peer_clock_refused,
            peer_behind,
            peer_ahead,
            peer_reachable,
            referenced_chunks,
            under_replicated,
            unavailable,
            repair_queue,
            repair_rounds,
            repair_copies_made,
            repair_copies_failed,
            gc_candidates,
            gc_waiting,
            gc_deleted,
            gc_blocked,
            chunkserver_healthy,
            chunkserver_capacity,
            chunkserver_used,
            chunkserver_chunks,
            chunkserver_missing,
        }
    }

    /// Sets the state gauges from `status` and encodes everything.
    pub fn render(&self, status: &ClusterStatus) -> String {
        let set = |gauge: &Gauge, value: u64| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.log_operations, status.operations);
        set(&self.log_held, status.log.held_operations);
        set(
            &self.snapshot_operations,
            status.log.snapshot_operations.unwrap_or(0),
        );
        set(&self.log_disk_full, u64::from(status.disk_full.is_some()));
        self.clock_offset.set(
            status
                .clock
                .as_ref()
                .map_or(0.0, |clock| clock.offset_ms as f64 / 1000.0),
        );
        let r = &status.replication;
        set(&self.referenced_chunks, r.referenced_chunks);
        set(&self.under_replicated, r.under_replicated_chunks);
        set(&self.unavailable, r.unavailable_chunks);
        let p = &status.repair;
        set(&self.repair_queue, p.queued_copies);
        set(&self.repair_rounds, p.rounds);
        set(&self.repair_copies_made, p.copies_made);
        set(&self.repair_copies_failed, p.copies_failed);
        set(&self.gc_candidates, p.gc_candidates);
        set(&self.gc_waiting, p.gc_waiting);
        set(&self.gc_deleted, p.gc_deleted);
        self.gc_blocked.clear();
        if let (Some(node), Some(for_ms)) = (&p.gc_blocked_by, p.gc_blocked_for_ms) {
            let labels = NodeLabels { node: node.clone() };
            set(&self.gc_blocked.get_or_create(&labels), for_ms / 1000);
        }
        for family in [
            &self.peer_behind,
            &self.peer_ahead,
            &self.peer_reachable,
            &self.peer_clock_refused,
        ] {
            family.clear();
        }
        self.peer_clock_offset.clear();
        for c in status.controllers.iter().filter(|c| !c.is_self) {
            let labels = NodeLabels {
                node: c.node_id.clone(),
            };
            if let Some(behind) = c.operations_behind {
                set(&self.peer_behind.get_or_create(&labels), behind);
            }
            if let Some(ahead) = c.operations_ahead {
                set(&self.peer_ahead.get_or_create(&labels), ahead);
            }
            set(
                &self.peer_reachable.get_or_create(&labels),
                u64::from(c.reachable),
            );
            set(
                &self.peer_clock_refused.get_or_create(&labels),
                u64::from(c.refused_ahead_ms.is_some()),
            );
            if let Some(offset_ms) = c.clock_offset_ms {
                self.peer_clock_offset
                    .get_or_create(&labels)
                    .set(offset_ms as f64 / 1000.0);
            }
        }
        for family in [
            &self.chunkserver_healthy,
            &self.chunkserver_capacity,
            &self.chunkserver_used,
            &self.chunkserver_chunks,
            &self.chunkserver_missing,
        ] {
            family.clear();
        }
        for c in &status.chunkservers {
            let labels = NodeLabels {
                node: c.node_id.clone(),
            };
            set(
                &self.chunkserver_healthy.get_or_create(&labels),
                u64::from(c.healthy),
            );
            set(
                &self.chunkserver_capacity.get_or_create(&labels),
                c.capacity_bytes,
            );
            set(&self.chunkserver_used.get_or_create(&labels), c.used_bytes);
            set(&self.chunkserver_chunks.get_or_create(&labels), c.chunks);
            if let Some(missing) = c.missing_chunks {
                set(&self.chunkserver_missing.get_or_create(&labels), missing);
            }
        }
        let mut text = String::with_capacity(16 * 1024);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        text
    }
}
