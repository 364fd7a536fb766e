//! The chunkserver registry: who is out there, where, how full, and whether it is healthy.
//! Fed by heartbeats; a chunkserver silent for the configured timeout is marked failed and
//! recovers with its next heartbeat. Pure bookkeeping plus lazily connected gRPC channels.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use redcloud_link::ClusterLink;
use redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient;
use redcloud_types::Heartbeat;
use tonic::transport::{Channel, Endpoint};

/// How long connecting to a chunkserver may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest gRPC message exchanged with chunkservers (pieces are 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A chunkserver as this controller knows it.
#[derive(Clone, Debug)]
pub struct ChunkserverInfo {
    /// Its node id.
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// Bytes it may use.
    pub capacity_bytes: u64,
    /// Bytes it holds.
    pub used_bytes: u64,
    /// Chunks it holds.
    pub chunk_count: u64,
    /// When it was last heard from (never, if only known from the log).
    pub last_heartbeat: Option<Instant>,
    /// Whether it has been heard from within the timeout.
    pub healthy: bool,
}

struct Entry {
    info: ChunkserverInfo,
    client: ChunkserverClient<Channel>,
}

/// What a heartbeat changed, so the caller can record news in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatNews {
    /// Never seen before, or at a new address.
    NewAddress,
    /// Failed and now back.
    Recovered,
    /// Nothing worth recording.
    Nothing,
}

/// Every chunkserver known, by node id.
pub struct Registry {
    timeout: Duration,
    link: ClusterLink,
    entries: RwLock<BTreeMap<String, Entry>>,
}

/// A lazily connected client for the chunkserver at `address`, over `link`.
pub fn client_for(link: &ClusterLink, address: &str) -> Option<ChunkserverClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("{}://{address}", link.grpc_scheme())).ok()?;
    let endpoint = link
        .tonic_endpoint(endpoint)
        .map_err(|error| tracing::warn!(%address, %error, "cannot set up TLS to a chunkserver"))
        .ok()?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Some(
        ChunkserverClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

impl Registry {
    /// An empty registry; chunkservers silent for `timeout` count as failed; they are called
    /// over `link`.
    pub fn new(timeout: Duration, link: ClusterLink) -> Self {
        Self {
            timeout,
            link,
            entries: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records a heartbeat received at `now`. A heartbeat with an unusable address is ignored.
    pub fn heartbeat(&self, beat: &Heartbeat, now: Instant) -> HeartbeatNews {
        let mut entries = self
            .entries
            .write()
            .expect("registry lock poisoned by a panic in another thread");
        let known = entries.get(&beat.node_id);
        let news = match known {
            None => HeartbeatNews::NewAddress,
            Some(entry) if entry.info.address != beat.address => HeartbeatNews::NewAddress,
            Some(entry) if !self.is_healthy(&entry.info, now) => HeartbeatNews::Recovered,
            Some(_) => HeartbeatNews::Nothing,
        };
        let client = match (news, known) {
            (HeartbeatNews::NewAddress, _) | (_, None) => {
                match client_for(&self.link, &beat.address) {
                    Some(client) => client,
                    None => {
                        tracing::warn!(node = %beat.node_id, address = %beat.address, "heartbeat with an unusable address");
                        return HeartbeatNews::Nothing;
                    }
                }
            }
            (_, Some(entry)) => entry.client.clone(),
        };
        let info = ChunkserverInfo {
            node_id: beat.node_id.clone(),
            address: beat.address.clone(),
            capacity_bytes: beat.capacity_bytes,
            used_bytes: beat.used_bytes,
            chunk_count: beat.chunk_count,
            last_heartbeat: Some(now),
            healthy: true,
        };
        entries.insert(beat.node_id.clone(), Entry { info, client });
        news
    }

    /// Makes a chunkserver known from the log (seen by another controller), without vouching
    /// for its health: it is tried for reads but not chosen for writes until it beats here.
    pub fn learn(&self, node_id: &str, address: &str) {
        let mut entries = self
            .entries
            .write()
            .expect("registry lock poisoned by a panic in another thread");
        if entries
            .get(node_id)
            .is_some_and(|e| e.info.address == address)
        {
            return;
        }
        let Some(client) = client_for(&self.link, address) else {
            return;
        };
        let previous = entries.remove(node_id).map(|e| e.info);
        let info = ChunkserverInfo {
            node_id: node_id.to_owned(),
            address: address.to_owned(),
            capacity_bytes: previous.as_ref().map_or(0, |p| p.capacity_bytes),
            used_bytes: previous.as_ref().map_or(0, |p| p.used_bytes),
            chunk_count: previous.as_ref().map_or(0, |p| p.chunk_count),
            last_heartbeat: previous.and_then(|p| p.last_heartbeat),
            healthy: false,
        };
        entries.insert(node_id.to_owned(), Entry { info, client });
    }

    /// Drops a retired chunkserver; whether it was known. A heartbeat from it makes it known
    /// again.
    pub fn forget(&self, node_id: &str) -> bool {
        self.entries
            .write()
            .expect("registry lock poisoned by a panic in another thread")
            .remove(node_id)
            .is_some()
    }

    /// When `node_id` last sent this controller a heartbeat, if it ever did (since this
    /// process started).
    pub fn last_heartbeat(&self, node_id: &str) -> Option<Instant> {
        self.entries
            .read()
            .expect("registry lock poisoned by a panic in another thread")
            .get(node_id)
            .and_then(|e| e.info.last_heartbeat)
    }

    fn is_healthy(&self, info: &ChunkserverInfo, now: Instant) -> bool {
        info.last_heartbeat
            .is_some_and(|at| now.saturating_duration_since(at) < self.timeout)
    }

    /// Every chunkserver with its health as of `now`, healthy ones first.
    /// Every chunkserver heard from (directly or through a peer), as peers are told.
    pub fn heard(&self, now: Instant) -> Vec<HeardFrom> {
        let entries = self
            .entries
            .read()
            .expect("registry lock poisoned by a panic in another thread");
        entries
            .values()
            .filter_map(|entry| {
                let at = entry.info.last_heartbeat?;
                Some(HeardFrom {
                    node_id: entry.info.node_id.clone(),
                    address: entry.info.address.clone(),
                    heard_ms_ago: u64::try_from(now.saturating_duration_since(at).as_millis())
                        .unwrap_or(u64::MAX),
                    capacity_bytes: entry.info.capacity_bytes,
                    used_bytes: entry.info.used_bytes,
                    chunk_count: entry.info.chunk_count,
                })
            })
            .collect()
    }

    /// Takes in what a peer heard: a heartbeat another controller received counts as if this
    /// one had received it then, so every controller agrees on health within a gossip round
    /// even when a chunkserver reaches only some of them. Ages, not clock readings, travel, so
    /// clock differences between controllers do not matter.
    pub fn merge_heard(&self, heard: &[HeardFrom], now: Instant) {
        let mut entries = self
            .entries
            .write()
            .expect("registry lock poisoned by a panic in another thread");
        for news in heard {
            let Some(at) = now.checked_sub(Duration::from_millis(news.heard_ms_ago)) else {
                continue;
            };
            let newer = entries
                .get(&news.node_id)
                .is_none_or(|e| e.info.last_heartbeat.is_none_or(|last| last < at));
            if !newer {
                continue;
            }
            let client = match entries.get(&news.node_id) {
                Some(entry) if entry.info.address == news.address => entry.client.clone(),
                _ => match client_for(&self.link, &news.address) {
                    Some(client) => client,
                    None => continue,
                },
            };
            let info = ChunkserverInfo {
                node_id: news.node_id.clone(),
                address: news.address.clone(),
                capacity_bytes: news.capacity_bytes,
                used_bytes: news.used_bytes,
                chunk_count: news.chunk_count,
                last_heartbeat: Some(at),
                healthy: true,
            };
            entries.insert(news.node_id.clone(), Entry { info, client });
        }
    }

    pub fn snapshot(&self, now: Instant) -> Vec<(ChunkserverInfo, ChunkserverClient<Channel>)> {
        let entries = self
            .entries
            .read()
            .expect("registry lock poisoned by a panic in another thread");
        let mut all: Vec<_> = entries
            .values()
            .map(|entry| {
                let mut info = entry.info.clone();
                info.healthy = self.is_healthy(&info, now);
                (info, entry.client.clone())
            })
            .collect();
        all.sort_by_key(|(info, _)| !info.healthy);
        all
    }

    /// The healthy chunkservers: the targets for writes.
    pub fn healthy(&self, now: Instant) -> Vec<(ChunkserverInfo, ChunkserverClient<Channel>)> {
        let mut all = self.snapshot(now);
        all.retain(|(info, _)| info.healthy);
        all
    }
}

/// A chunkserver's newest heartbeat, as one controller tells another.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeardFrom {
    /// The chunkserver.
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// How long before the answer its newest heartbeat arrived.
    pub heard_ms_ago: u64,
    /// Bytes it may use.
    pub capacity_bytes: u64,
    /// Bytes it uses.
    pub used_bytes: u64,
    /// Chunks it holds.
    pub chunk_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, address: &str) -> Heartbeat {
        Heartbeat {
            node_id: id.to_owned(),
            address: address.to_owned(),
            capacity_bytes: 100,
            used_bytes: 10,
            chunk_count: 1,
        }
    }

    #[tokio::test]
    async fn health_follows_heartbeats() {
        let registry = Registry::new(Duration::from_secs(30), redcloud_link::ClusterLink::Plain);
        let t0 = Instant::now();
        assert_eq!(
            registry.heartbeat(&beat("a", "127.0.0.1:1"), t0),
            HeartbeatNews::NewAddress
        );
        assert_eq!(
            registry.heartbeat(&beat("a", "127.0.0.1:1"), t0),
            HeartbeatNews::Nothing
        );
        assert_eq!(registry.healthy(t0 + Duration::from_secs(29)).len(), 1);
        assert!(registry.healthy(t0 + Duration::from_secs(30)).is_empty());
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            registry.snapshot(later).len(),
            1,
            "a failed chunkserver is still tried for reads"
        );
        assert_eq!(
            registry.heartbeat(&beat("a", "127.0.0.1:1"), later),
            HeartbeatNews::Recovered
        );
        assert_eq!(registry.healthy(later).len(), 1);
        assert_eq!(
            registry.heartbeat(&beat("a", "127.0.0.1:2"), later),
            HeartbeatNews::NewAddress
        );
    }

    #[tokio::test]
    async fn chunkservers_learned_from_the_log_are_not_write_targets() {
        let registry = Registry::new(Duration::from_secs(30), redcloud_link::ClusterLink::Plain);
        let now = Instant::now();
        registry.learn("b", "127.0.0.1:3");
        assert!(registry.healthy(now).is_empty());
        assert_eq!(registry.snapshot(now).len(), 1);
        registry.heartbeat(&beat("c", "127.0.0.1:4"), now);
        let order: Vec<_> = registry
            .snapshot(now)
            .into_iter()
            .map(|(i, _)| i.node_id)
            .collect();
        assert_eq!(order, ["c", "b"], "healthy first");
    }

    #[tokio::test]
    async fn a_heartbeat_heard_by_a_peer_counts_here_too() {
        let t0 = Instant::now() + Duration::from_secs(60);
        let (here, there) = (
            Registry::new(Duration::from_secs(30), redcloud_link::ClusterLink::Plain),
            Registry::new(Duration::from_secs(30), redcloud_link::ClusterLink::Plain),
        );
        there.heartbeat(&beat("a", "127.0.0.1:1"), t0);
        let told = there.heard(t0 + Duration::from_secs(5));
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].heard_ms_ago, 5_000);

        here.merge_heard(&told, t0 + Duration::from_secs(6));
        let healthy = here.healthy(t0 + Duration::from_secs(30));
        assert_eq!(
            healthy.len(),
            1,
            "heard 1 s before this controller was told"
        );
        assert_eq!(healthy[0].0.used_bytes, 10);
        assert!(
            here.healthy(t0 + Duration::from_secs(31)).is_empty(),
            "and failed 30 s after the peer heard it, as on the peer"
        );

        here.heartbeat(&beat("a", "127.0.0.1:1"), t0 + Duration::from_secs(20));
        here.merge_heard(&told, t0 + Duration::from_secs(21));
        assert_eq!(
            here.healthy(t0 + Duration::from_secs(49)).len(),
            1,
            "older news never rolls back a newer heartbeat"
        );
    }
}
