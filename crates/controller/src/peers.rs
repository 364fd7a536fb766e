//! Controller membership and the gossip transport.
//!
//! Peers are found by resolving the discovery DNS name (every address it has), the `--peers`
//! seeds, and each known peer's own list (`GET /internal/peers`); an unknown address is asked
//! who it is. Messages from the replication core go out as `POST /internal/gossip` with a
//! MessagePack body; every request has short connect and response timeouts, and requests run
//! concurrently under one bound, so a slow or frozen peer never holds up the others.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::header::{CONTENT_TYPE, HeaderName};
use bytes::Bytes;
use redcloud_eventlog::{NodeId, Transmit};
use redcloud_link::{ClusterClient, ClusterLink};
use redcloud_types::advertise::Advertise;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cluster::{HeardFrom, Registry};
use crate::meta::MetaOp;
use crate::retired::Retired;

/// The header naming the sending controller on gossip requests.
pub const NODE_HEADER: &str = "x-redcloud-node";
/// The header giving the sending controller's address on gossip requests.
pub const ADVERTISE_HEADER: &str = "x-redcloud-advertise";
/// The header giving the sending controller's wall clock (milliseconds since the Unix epoch)
/// when it sent a gossip request: the receiver compares it with its own clock to tell how far
/// apart the two are. A header rather than a message field, so that a controller of an
/// earlier version still decodes the message (it refuses a message longer than it knows).
pub const WALL_CLOCK_HEADER: &str = "x-redcloud-wall-ms";
/// Longest a peer may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a peer may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/internal/peers` answer read.
const PEER_LIST_LIMIT_BYTES: usize = 4 * 1024 * 1024;
/// Largest answer to a gossip post read (it answers with a status only).
const GOSSIP_REPLY_LIMIT_BYTES: usize = 64 * 1024;
/// Gossip requests in flight at once to one peer. Each peer has its own allowance, so a
/// frozen peer (whose requests all hang until they time out) never takes another's.
const SENDS_IN_FLIGHT_PER_PEER: usize = 8;

/// One controller as `/internal/peers` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its node id (16 hex digits).
    pub node_id: String,
    /// Where it serves (host:port).
    pub address: String,
}

/// What `/internal/peers` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerList {
    /// The answering controller.
    #[serde(flatten)]
    pub me: PeerInfo,
    /// The controllers it knows.
    pub peers: Vec<PeerInfo>,
    /// The chunkservers it has heard from, and when.
    #[serde(default)]
    pub chunkservers: Vec<HeardFrom>,
}

/// The controllers this one knows, with their addresses.
pub struct Membership {
    me: NodeId,
    address: RwLock<Advertise>,
    peers: RwLock<BTreeMap<NodeId, String>>,
    /// Retired controllers are neither learned nor listed: a new controller may serve at a
    /// retired one's address.
    retired: Arc<Retired>,
}

impl Membership {
    /// Membership of `me`, reachable at `address`.
    pub fn new(me: NodeId, address: Advertise, retired: Arc<Retired>) -> Self {
        Self {
            me,
            address: RwLock::new(address),
            peers: RwLock::new(BTreeMap::new()),
            retired,
        }
    }

    /// The live peers and their addresses.
    fn live(&self) -> Vec<(NodeId, String)> {
        let retired = self.retired.controllers();
        self.peers
            .read()
            .expect("membership lock poisoned by a panic in another thread")
            .iter()
            .filter(|(id, _)| !retired.contains(id))
            .map(|(id, address)| (*id, address.clone()))
            .collect()
    }

    /// This controller's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Where this controller is reached.
    pub fn address(&self) -> String {
        self.address
            .read()
            .expect("membership lock poisoned by a panic in another thread")
            .address()
            .to_owned()
    }

    /// Detects this controller's address again (see [`Advertise::refresh`]), so that peers
    /// learn the new one from its next message.
    fn refresh_address(&self, peers: &[std::net::SocketAddr]) {
        let mut address = self
            .address
            .write()
            .expect("membership lock poisoned by a panic in another thread");
        if let Some(now) = address.refresh(peers) {
            tracing::info!(address = %now, "advertised address changed");
        }
    }

    /// Records `peer` at `address`; returns whether it was new.
    pub fn learn(&self, peer: NodeId, address: &str) -> bool {
        if peer == self.me || address.is_empty() || self.retired.contains(peer) {
            return false;
        }
        let mut peers = self
            .peers
            .write()
            .expect("membership lock poisoned by a panic in another thread");
        peers.insert(peer, address.to_owned()).is_none()
    }

    /// Where `peer` is reached.
    pub fn address_of(&self, peer: NodeId) -> Option<String> {
        self.peers
            .read()
            .expect("membership lock poisoned by a panic in another thread")
            .get(&peer)
            .cloned()
    }

    /// The ids of every known live peer.
    pub fn ids(&self) -> Vec<NodeId> {
        self.live().into_iter().map(|(id, _)| id).collect()
    }

    /// Every known live peer.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.live()
            .into_iter()
            .map(|(id, address)| PeerInfo {
                node_id: id.to_string(),
                address,
            })
            .collect()
    }

    /// What `/internal/peers` answers: this controller, its peers, and the chunkservers
    /// `registry` has heard from.
    pub fn list(&self, registry: &Registry) -> PeerList {
        PeerList {
            me: PeerInfo {
                node_id: self.me.to_string(),
                address: self.address(),
            },
            peers: self.peers(),
            chunkservers: registry.heard(Instant::now()),
        }
    }

    fn knows_address(&self, address: &str) -> bool {
        address == self.address() || self.live().iter().any(|(_, a)| a == address)
    }
}

/// The client every controller-to-controller request uses.
pub fn peer_client(link: &ClusterLink) -> ClusterClient {
    ClusterClient::new(link, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
}

/// Sends the core's messages until the channel closes or `shutdown` is cancelled.
pub async fn run_sender(
    membership: Arc<Membership>,
    metrics: Arc<crate::metrics::Metrics>,
    mut outbound: mpsc::Receiver<Transmit<MetaOp>>,
    link: ClusterLink,
    clock: crate::clock::WallClock,
    shutdown: CancellationToken,
) {
    // One client, and so one connection pool, per peer: when a request to a peer fails, its
    // client is replaced, so connections that died during a partition are dropped rather than
    // waited on again after it heals.
    let mut clients: BTreeMap<NodeId, ClusterClient> = BTreeMap::new();
    let (failed, mut failures) = mpsc::channel::<NodeId>(SENDS_IN_FLIGHT_PER_PEER * 4);
    let mut slots: BTreeMap<NodeId, Arc<Semaphore>> = BTreeMap::new();
    loop {
        let transmit = tokio::select! {
            () = shutdown.cancelled() => return,
            Some(peer) = failures.recv() => {
                if clients.remove(&peer).is_some() {
                    tracing::debug!(%peer, "dropped the connections to a peer after a failed request");
                }
                continue;
            }
            transmit = outbound.recv() => match transmit { Some(t) => t, None => return },
        };
        let Some(address) = membership.address_of(transmit.to) else {
            tracing::debug!(peer = %transmit.to, "no address for peer; message dropped");
            continue;
        };
        let peer_slots = slots
            .entry(transmit.to)
            .or_insert_with(|| Arc::new(Semaphore::new(SENDS_IN_FLIGHT_PER_PEER)));
        let Ok(slot) = Arc::clone(peer_slots).try_acquire_owned() else {
            tracing::debug!(peer = %transmit.to, "too many gossip requests in flight to this peer; message dropped");
            continue;
        };
        let http = clients
            .entry(transmit.to)
            .or_insert_with(|| peer_client(&link))
            .clone();
        let body = Bytes::from(transmit.message.encode());
        metrics
            .gossip_sent
            .get_or_create(&crate::metrics::KindLabels::of(&transmit.message))
            .inc();
        metrics.gossip_sent_bytes.inc_by(body.len() as u64);
        let headers = [
            (
                HeaderName::from_static(NODE_HEADER),
                membership.me().to_string(),
            ),
            (
                HeaderName::from_static(ADVERTISE_HEADER),
                membership.address(),
            ),
            (
                HeaderName::from_static(WALL_CLOCK_HEADER),
                clock.now_ms().to_string(),
            ),
            (CONTENT_TYPE, "application/msgpack".to_owned()),
        ];
        let failed = failed.clone();
        let send_failures = metrics.gossip_send_failures.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let sent = http
                .post(
                    &address,
                    "/internal/gossip",
                    &headers,
                    body,
                    GOSSIP_REPLY_LIMIT_BYTES,
                )
                .await;
            match sent {
                Ok(reply) if reply.status.is_success() => {}
                Ok(reply) => {
                    tracing::debug!(peer = %transmit.to, status = %reply.status, "gossip refused");
                }
                Err(error) => {
                    tracing::debug!(peer = %transmit.to, %error, "gossip failed");
                    send_failures.inc();
                    let _ = failed.try_send(transmit.to);
                }
            }
        });
    }
}

/// Finds controllers every `interval`: resolves the discovery name and the seeds, detects this
/// controller's own address again, asks every unknown address who it is, and merges each
/// answering peer's own list, with the chunkservers it heard from, into `registry`. New peers
/// are handed to `joined`.
pub async fn run_discovery(
    membership: Arc<Membership>,
    registry: Arc<Registry>,
    seeds: Vec<String>,
    link: ClusterLink,
    interval: Duration,
    joined: mpsc::Sender<NodeId>,
    shutdown: CancellationToken,
) {
    let http = peer_client(&link);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let resolved = redcloud_types::resolve_all(&seeds).await;
        membership.refresh_address(&resolved);
        let mut addresses: Vec<String> = resolved.iter().map(ToString::to_string).collect();
        let known = membership.peers();
        // Ask one known peer at random for its list too, so membership spreads.
        if let Some(peer) = known.get(rand::random_range(0..known.len().max(1))) {
            addresses.push(peer.address.clone());
        }
        addresses.sort();
        addresses.dedup();
        for address in addresses {
            let already = membership.knows_address(&address);
            if already && !known.iter().any(|p| p.address == address) {
                continue;
            }
            let list = match http
                .get(&address, "/internal/peers", PEER_LIST_LIMIT_BYTES)
                .await
            {
                Ok(reply) if reply.status.is_success() => {
                    serde_json::from_slice::<PeerList>(&reply.body)
                }
                Ok(reply) => {
                    tracing::debug!(%address, status = %reply.status, "peer list refused");
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%address, %error, "cannot ask for the peer list");
                    continue;
                }
            };
            let Ok(list) = list else {
                tracing::debug!(%address, "undecodable peer list");
                continue;
            };
            registry.merge_heard(&list.chunkservers, Instant::now());
            for info in std::iter::once(list.me).chain(list.peers) {
                let Ok(id) = info.node_id.parse::<NodeId>() else {
                    continue;
                };
                if membership.learn(id, &info.address) {
                    tracing::info!(peer = %id, address = %info.address, "controller joined");
                    if joined.send(id).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
