//! The heartbeat worker: tells every controller it can find, every interval, where this
//! chunkserver is and how full it is. Controllers are found by resolving each configured name
//! to all of its addresses, so a DNS alias shared by many controllers reaches them all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::bytes::Bytes;
use redcloud_link::{ClusterClient, ClusterLink};
use redcloud_types::Heartbeat;
use redcloud_types::advertise::Advertise;
use tokio_util::sync::CancellationToken;

use crate::store::ChunkStore;

/// How long one heartbeat request may take, resolution included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer to a heartbeat read (a status and a short error at most).
const REPLY_LIMIT_BYTES: usize = 64 * 1024;

/// Sends heartbeats until `shutdown` is cancelled.
pub struct HeartbeatWorker {
    pub(crate) store: Arc<ChunkStore>,
    pub(crate) node_id: String,
    pub(crate) advertise: Advertise,
    pub(crate) controllers: Vec<String>,
    pub(crate) interval: Duration,
    pub(crate) link: ClusterLink,
}

impl HeartbeatWorker {
    /// Runs the worker until `shutdown` is cancelled.
    ///
    /// Each controller address gets its own request every interval, on its own task: an
    /// unreachable controller only ever delays its own heartbeats, never the others'. An address
    /// whose previous request is still pending is skipped for that round. The advertised
    /// address is detected again every round, so a new container address reaches controllers
    /// with the next heartbeat.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let http = ClusterClient::new(&self.link, REQUEST_TIMEOUT, REQUEST_TIMEOUT);
        let outcomes: Arc<Mutex<HashMap<SocketAddr, Outcome>>> = Arc::default();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reached_any = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let addresses = redcloud_types::resolve_all(&self.controllers).await;
            if let Some(now) = self.advertise.refresh(&addresses) {
                tracing::info!(address = %now, "advertised address changed");
            }
            let Some(heartbeat) = self.heartbeat().await else {
                continue;
            };
            let body = match serde_json::to_vec(&heartbeat) {
                Ok(body) => Bytes::from(body),
                Err(error) => {
                    tracing::warn!(%error, "cannot encode a heartbeat");
                    continue;
                }
            };
            let (reached, settled) = {
                let mut outcomes = outcomes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                outcomes.retain(|address, _| addresses.contains(address));
                let count = |wanted: fn(&Outcome) -> bool| {
                    outcomes.values().filter(|outcome| wanted(outcome)).count()
                };
                (
                    count(|o| *o == Outcome::Accepted),
                    count(|o| *o != Outcome::Pending),
                )
            };
            for address in addresses {
                {
                    let mut outcomes = outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if outcomes.get(&address) == Some(&Outcome::Pending) {
                        continue;
                    }
                    outcomes.insert(address, Outcome::Pending);
                }
                let outcomes = Arc::clone(&outcomes);
                let http = http.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let headers = [(
                        axum::http::header::CONTENT_TYPE,
                        "application/json".to_owned(),
                    )];
                    let sent = http
                        .post(
                            &address.to_string(),
                            "/internal/heartbeat",
                            &headers,
                            body,
                            REPLY_LIMIT_BYTES,
                        )
                        .await;
                    let outcome = match sent {
                        Ok(reply) if reply.status.is_success() => Outcome::Accepted,
                        Ok(reply) => {
                            tracing::debug!(controller = %address, status = %reply.status, "heartbeat refused");
                            Outcome::Failed
                        }
                        Err(error) => {
                            tracing::debug!(controller = %address, %error, "heartbeat failed");
                            Outcome::Failed
                        }
                    };
                    outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(address, outcome);
                });
            }
            // Judged on answers only: before the first one (at start, or while every request
            // is still in flight) nothing is known to be unreachable.
            if settled > 0 {
                if reached == 0 && reached_any {
                    tracing::warn!(controllers = ?self.controllers, "no controller reachable for heartbeats");
                } else if reached > 0 && !reached_any {
                    tracing::info!(reached, "heartbeats reach controllers again");
                }
                reached_any = reached > 0;
            }
        }
    }

    /// This round's heartbeat, or `None` when the store cannot report its statistics.
    async fn heartbeat(&self) -> Option<Heartbeat> {
        let store = Arc::clone(&self.store);
        let stats = match tokio::task::spawn_blocking(move || store.stats()).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read store statistics for a heartbeat");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "store statistics task failed");
                return None;
            }
        };
        Some(Heartbeat {
            node_id: self.node_id.clone(),
            address: self.advertise.address().to_owned(),
            capacity_bytes: stats.capacity_bytes,
            used_bytes: stats.used_bytes,
            chunk_count: stats.chunk_count,
        })
    }
}

/// How the latest heartbeat to one controller went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Accepted,
    Failed,
}
