//! The heartbeat worker: tells every controller it can find, every interval, where this
//! chunkserver is and how full it is. Controllers are found by resolving each configured name
//! to all of its addresses, so a DNS alias shared by many controllers reaches them all.

use std::sync::Arc;
use std::time::Duration;

use redcloud_types::{CLUSTER_TOKEN_HEADER, Heartbeat};
use tokio_util::sync::CancellationToken;

use crate::store::ChunkStore;

/// How long one heartbeat request may take, resolution included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends heartbeats until `shutdown` is cancelled.
pub struct HeartbeatWorker {
    pub(crate) store: Arc<ChunkStore>,
    pub(crate) node_id: String,
    pub(crate) advertise: String,
    pub(crate) controllers: Vec<String>,
    pub(crate) interval: Duration,
    pub(crate) cluster_token: Option<String>,
}

impl HeartbeatWorker {
    /// Runs the worker until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let http = match reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .build()
        {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(%error, "cannot build the heartbeat HTTP client; no heartbeats will be sent");
                return;
            }
        };
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reached_any = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let reached = self.beat(&http).await;
            if reached == 0 && reached_any {
                tracing::warn!(controllers = ?self.controllers, "no controller reachable for heartbeats");
            } else if reached > 0 && !reached_any {
                tracing::info!(reached, "heartbeats reach controllers again");
            }
            reached_any = reached > 0;
        }
    }

    /// Sends one heartbeat to every controller address; returns how many accepted it.
    async fn beat(&self, http: &reqwest::Client) -> usize {
        let store = Arc::clone(&self.store);
        let stats = match tokio::task::spawn_blocking(move || store.stats()).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read store statistics for a heartbeat");
                return 0;
            }
            Err(error) => {
                tracing::warn!(%error, "store statistics task failed");
                return 0;
            }
        };
        let heartbeat = Heartbeat {
            node_id: self.node_id.clone(),
            address: self.advertise.clone(),
            capacity_bytes: stats.capacity_bytes,
            used_bytes: stats.used_bytes,
            chunk_count: stats.chunk_count,
        };
        let addresses = redcloud_types::resolve_all(&self.controllers).await;
        let sends = addresses.iter().map(|addr| {
            let mut request = http
                .post(format!("http://{addr}/internal/heartbeat"))
                .json(&heartbeat);
            if let Some(token) = &self.cluster_token {
                request = request.header(CLUSTER_TOKEN_HEADER, token);
            }
            async move {
                match request.send().await {
                    Ok(response) if response.status().is_success() => true,
                    Ok(response) => {
                        tracing::debug!(controller = %addr, status = %response.status(), "heartbeat refused");
                        false
                    }
                    Err(error) => {
                        tracing::debug!(controller = %addr, %error, "heartbeat failed");
                        false
                    }
                }
            }
        });
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }
}
