//! Command-line and environment configuration of `redcloud-chunkserver`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

const DEFAULT_LISTEN: &str = "0.0.0.0:50051";
const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:50052";
/// A controller's cluster port, where `--controllers` names only a host.
const DEFAULT_CONTROLLER_CLUSTER_PORT: u16 = 8001;
const DEFAULT_DATA_DIR: &str = "redcloud-data/chunkserver";
const DEFAULT_CONTROLLERS: &str = "controller:8001";
const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 2_000;

/// Stores RedCloud file chunks: content-addressed, verified on every read.
#[derive(Parser, Debug, Clone)]
#[command(name = "redcloud-chunkserver", version)]
pub struct Config {
    /// Address the cluster listener binds: the gRPC service for controllers and other
    /// chunkservers, over mutual TLS keyed by the cluster secret.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP listener serving `/metrics` (Prometheus) and nothing else.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,

    /// Address (host:port) controllers and other chunkservers dial. Detected from the routing
    /// table when not given.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_ADVERTISE")]
    pub advertise: Option<String>,

    /// Directory holding the chunks and the node id.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Node id (16 hex digits). Default: the one kept in the data directory, or a fresh one.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_NODE_ID")]
    pub node_id: Option<String>,

    /// Controllers to send heartbeats to: their cluster listeners (host:port, or a host for
    /// port 8001), comma-separated. Each name is resolved to every address it has, so one DNS
    /// alias reaches every controller.
    #[arg(
        long,
        env = "REDCLOUD_CHUNKSERVER_CONTROLLERS",
        value_delimiter = ',',
        default_value = DEFAULT_CONTROLLERS
    )]
    pub controllers: Vec<String>,

    /// Bytes this chunkserver may use. Default: what the filesystem holds.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,

    /// Milliseconds between heartbeats.
    #[arg(long, env = "REDCLOUD_CHUNKSERVER_HEARTBEAT_INTERVAL_MS", default_value_t = DEFAULT_HEARTBEAT_INTERVAL_MS)]
    pub heartbeat_interval_ms: u64,

    /// The cluster secret.
    #[command(flatten)]
    pub cluster_token: redcloud_types::ClusterTokenArgs,
}

impl Config {
    /// A configuration for tests: loopback, port chosen by the caller's listener, data in `dir`.
    pub fn for_test(dir: PathBuf, controllers: Vec<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            data_dir: dir,
            node_id: None,
            controllers,
            capacity_bytes: None,
            heartbeat_interval_ms: 200,
            cluster_token: redcloud_types::ClusterTokenArgs::default(),
        }
    }

    /// The cluster secret, read from its file when given that way.
    pub fn cluster_token(&self) -> std::io::Result<Option<String>> {
        self.cluster_token.resolve()
    }

    /// `--controllers` as cluster listener addresses: a bare host means port 8001.
    pub fn controller_addresses(&self) -> Vec<String> {
        self.controllers
            .iter()
            .map(|c| redcloud_types::with_default_port(c, DEFAULT_CONTROLLER_CLUSTER_PORT))
            .collect()
    }
}
