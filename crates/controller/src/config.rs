//! Command-line and environment configuration of `redcloud-controller`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
const DEFAULT_CLUSTER_LISTEN: &str = "0.0.0.0:8001";
const DEFAULT_S3_LISTEN: &str = "0.0.0.0:9000";
/// The cluster listener's port where a peer or seed names only a host.
pub const DEFAULT_CLUSTER_PORT: u16 = 8001;
const DEFAULT_CHUNK_WRITE_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_DATA_DIR: &str = "redcloud-data/controller";
const DEFAULT_DISCOVERY_DNS: &str = "controller";
const DEFAULT_CHUNK_SIZE_BYTES: u64 = 4 * 1024 * 1024;
const DEFAULT_MIN_REPLICAS: usize = 1;
const DEFAULT_CHUNKSERVER_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 1_000;
const DEFAULT_UPLOAD_PIPELINE_CHUNKS: usize = 4;
const DEFAULT_CHUNK_IO_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_DISCOVERY_INTERVAL_MS: u64 = 2_000;
const DEFAULT_CATCH_UP_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_REPAIR_INTERVAL_MS: u64 = 2_000;
const DEFAULT_REPAIR_COPIES_PER_ROUND: usize = 256;
const DEFAULT_REPAIR_CONCURRENCY_MAX: usize = 4;
const DEFAULT_GC_GRACE_MS: u64 = 2 * 60 * 60 * 1000;
const DEFAULT_GC_REPORT_MAX_AGE_MS: u64 = 60_000;
const DEFAULT_GC_DELETIONS_PER_ROUND: usize = 1024;
const DEFAULT_RETIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(10 * 60);
const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
const DEFAULT_AUTH_RATE_ADDRESS_BURST: u32 = 300;
const DEFAULT_AUTH_RATE_ADDRESS_PER_MINUTE: u32 = 600;
const DEFAULT_AUTH_RATE_USERNAME_BURST: u32 = 10;
const DEFAULT_AUTH_RATE_USERNAME_PER_MINUTE: u32 = 6;
const DEFAULT_AUTH_RATE_TRACKED_KEYS_MAX: usize = 16_384;
const DEFAULT_PASSWORD_HASH_CONCURRENCY_MIN: usize = 2;
const DEFAULT_PASSWORD_HASH_WAIT_MS: u64 = 5_000;

/// Serves RedCloud's metadata and client APIs and places file chunks on chunkservers.
#[derive(Parser, Debug, Clone)]
#[command(name = "redcloud-controller", version)]
pub struct Config {
    /// Address the client listener binds: the HTTP and gRPC APIs, `/health`, `/ready`,
    /// `/metrics` and `/status`. Serves nothing to other nodes.
    #[arg(long, env = "REDCLOUD_CONTROLLER_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Address the cluster listener binds: other controllers, chunkservers and `redcloud log
    /// --server`, over mutual TLS keyed by the cluster secret.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CLUSTER_LISTEN", default_value = DEFAULT_CLUSTER_LISTEN)]
    pub cluster_listen: SocketAddr,

    /// Address the S3 listener binds: the S3 protocol for `aws`, `rclone`, `s3cmd` and SDKs,
    /// with access keys from `redcloud s3-key create` (TLS as on --listen). Serves nothing to
    /// other nodes.
    #[arg(long, env = "REDCLOUD_S3_LISTEN", default_value = DEFAULT_S3_LISTEN)]
    pub s3_listen: SocketAddr,

    /// The region S3 clients sign their requests for; requests signed for another are refused.
    #[arg(long, env = "REDCLOUD_S3_REGION", default_value = "redcloud")]
    pub s3_region: String,

    /// Domain for virtual-host-style S3 requests: a request to `BUCKET.DOMAIN` names bucket
    /// `BUCKET`. Without it, buckets are named in the path only (`http://host:9000/BUCKET/key`).
    #[arg(long, env = "REDCLOUD_S3_ROOT_DOMAIN")]
    pub s3_root_domain: Option<String>,

    /// An S3 multipart upload neither completed nor aborted this long after it started is
    /// aborted (`7d`, `12h`): its parts are deleted and their space collected.
    #[arg(long, env = "REDCLOUD_S3_MULTIPART_EXPIRY", default_value = "7d")]
    pub s3_multipart_expiry: humantime::Duration,

    /// Address (host:port) of the cluster listener that other nodes dial. Detected from the
    /// routing table when not given.
    #[arg(long, env = "REDCLOUD_CONTROLLER_ADVERTISE")]
    pub advertise: Option<String>,

    /// PEM certificate chain for TLS on the client listener (with --tls-key). Without it the
    /// client listener speaks plain HTTP.
    #[arg(long, env = "REDCLOUD_CONTROLLER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "REDCLOUD_CONTROLLER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Directory holding the event log, the read model and the node id.
    #[arg(long, env = "REDCLOUD_CONTROLLER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Node id (16 hex digits). Default: the one kept in the data directory, or a fresh one.
    #[arg(long, env = "REDCLOUD_CONTROLLER_NODE_ID")]
    pub node_id: Option<String>,

    /// Other controllers to start from: their cluster listeners (host:port, or a host for port
    /// 8001), comma-separated.
    #[arg(long, env = "REDCLOUD_CONTROLLER_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// DNS name whose every address is a controller (Docker's network alias); empty to disable.
    #[arg(long, env = "REDCLOUD_CONTROLLER_DISCOVERY_DNS", default_value = DEFAULT_DISCOVERY_DNS)]
    pub discovery_dns: String,

    /// The cluster secret.
    #[command(flatten)]
    pub cluster_token: redcloud_types::ClusterTokenArgs,

    /// Bytes per chunk that uploads are cut into.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CHUNK_SIZE_BYTES", default_value_t = DEFAULT_CHUNK_SIZE_BYTES)]
    pub chunk_size_bytes: u64,

    /// Chunkservers that must hold every chunk durably before an upload succeeds.
    #[arg(long, env = "REDCLOUD_CONTROLLER_MIN_REPLICAS", default_value_t = DEFAULT_MIN_REPLICAS)]
    pub min_replicas: usize,

    /// Chunks of one upload in flight to chunkservers at once (memory per upload is about
    /// this many chunks).
    #[arg(long, env = "REDCLOUD_CONTROLLER_UPLOAD_PIPELINE_CHUNKS", default_value_t = DEFAULT_UPLOAD_PIPELINE_CHUNKS)]
    pub upload_pipeline_chunks: usize,

    /// Largest file an upload may store, in bytes (413 beyond; over S3, EntityTooLarge, also
    /// for the whole of a multipart upload). Default: no limit.
    #[arg(long, env = "REDCLOUD_CONTROLLER_UPLOAD_MAX_BYTES")]
    pub upload_max_bytes: Option<u64>,

    /// A chunkserver silent this long is marked failed.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CHUNKSERVER_TIMEOUT_MS", default_value_t = DEFAULT_CHUNKSERVER_TIMEOUT_MS)]
    pub chunkserver_timeout_ms: u64,

    /// Longest an upload waits for a chunkserver to store one chunk once `--min-replicas`
    /// copies are durable; a slower chunkserver is left behind and gets the chunk from repair.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CHUNK_WRITE_TIMEOUT_MS", default_value_t = DEFAULT_CHUNK_WRITE_TIMEOUT_MS)]
    pub chunk_write_timeout_ms: u64,

    /// Longest a single chunk read or write to a chunkserver may take.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CHUNK_IO_TIMEOUT_MS", default_value_t = DEFAULT_CHUNK_IO_TIMEOUT_MS)]
    pub chunk_io_timeout_ms: u64,

    /// Mean milliseconds between anti-entropy rounds.
    #[arg(long, env = "REDCLOUD_CONTROLLER_GOSSIP_INTERVAL_MS", default_value_t = DEFAULT_GOSSIP_INTERVAL_MS)]
    pub gossip_interval_ms: u64,

    /// Milliseconds between looks for new controllers (DNS name, seeds, peers' lists).
    #[arg(long, env = "REDCLOUD_CONTROLLER_DISCOVERY_INTERVAL_MS", default_value_t = DEFAULT_DISCOVERY_INTERVAL_MS)]
    pub discovery_interval_ms: u64,

    /// Longest a request carrying a newer frontier token waits for this controller to catch up
    /// before it gets 503 NOT_CAUGHT_UP.
    #[arg(long, env = "REDCLOUD_CONTROLLER_CATCH_UP_TIMEOUT_MS", default_value_t = DEFAULT_CATCH_UP_TIMEOUT_MS)]
    pub catch_up_timeout_ms: u64,

    /// Milliseconds between repair rounds (copying chunks to chunkservers that lack them).
    #[arg(long, env = "REDCLOUD_CONTROLLER_REPAIR_INTERVAL_MS", default_value_t = DEFAULT_REPAIR_INTERVAL_MS)]
    pub repair_interval_ms: u64,

    /// Most chunk copies one repair round starts.
    #[arg(long, env = "REDCLOUD_CONTROLLER_REPAIR_COPIES_PER_ROUND", default_value_t = DEFAULT_REPAIR_COPIES_PER_ROUND)]
    pub repair_copies_per_round: usize,

    /// Most chunk copies running at once.
    #[arg(long, env = "REDCLOUD_CONTROLLER_REPAIR_CONCURRENCY_MAX", default_value_t = DEFAULT_REPAIR_CONCURRENCY_MAX)]
    pub repair_concurrency_max: usize,

    /// Chunks written (or written again) this recently are never collected. Uploads must
    /// finish within half of it: a slower one is refused, since its first chunks may have been
    /// collected meanwhile.
    #[arg(long, env = "REDCLOUD_CONTROLLER_GC_GRACE_MS", default_value_t = DEFAULT_GC_GRACE_MS)]
    pub gc_grace_ms: u64,

    /// Unneeded chunks are collected only while every controller ever seen has reported its
    /// log frontier within this long; must be under half the grace period.
    #[arg(long, env = "REDCLOUD_CONTROLLER_GC_REPORT_MAX_AGE_MS", default_value_t = DEFAULT_GC_REPORT_MAX_AGE_MS)]
    pub gc_report_max_age_ms: u64,

    /// Most chunk copies deleted in one repair round.
    #[arg(long, env = "REDCLOUD_CONTROLLER_GC_DELETIONS_PER_ROUND", default_value_t = DEFAULT_GC_DELETIONS_PER_ROUND)]
    pub gc_deletions_per_round: usize,

    /// Retire a controller or chunkserver silent this long (`7d`, `36h`, `90m`; `0`: never),
    /// as `redcloud cluster forget` would: collection of deleted data waits for every
    /// controller, so one that is gone for good would hold it back forever. The risk: a
    /// controller cut off for longer than this that comes back takes no more writes (it must
    /// rejoin on an empty data directory), and the data of files uploaded through it while it
    /// was away may have been collected by then; its metadata operations stay valid.
    #[arg(long, env = "REDCLOUD_CONTROLLER_RETIRE_AFTER", default_value = "7d")]
    pub retire_after: humantime::Duration,

    /// Time between snapshots of the read model at the frontier every live controller has
    /// reached (`10m`, `30s`). Each one lets the log drop what it covers (beyond
    /// `--log-retention`), and is what a new controller starts from.
    #[arg(
        long,
        env = "REDCLOUD_CONTROLLER_SNAPSHOT_INTERVAL",
        default_value = "10m"
    )]
    pub snapshot_interval: humantime::Duration,

    /// Operations younger than this stay in the log even when a snapshot covers them, for
    /// `redcloud log` to show (`7d`, `12h`; `0`: keep only what no snapshot covers).
    #[arg(long, env = "REDCLOUD_CONTROLLER_LOG_RETENTION", default_value = "7d")]
    pub log_retention: humantime::Duration,

    /// Login and registration attempts one client address (an IPv6 /64) may make at once
    /// before it is slowed to `--auth-rate-address-per-minute` (429 beyond); 0 turns the
    /// limit off, e.g. behind a proxy that hides client addresses.
    #[arg(long, env = "REDCLOUD_CONTROLLER_AUTH_RATE_ADDRESS_BURST", default_value_t = DEFAULT_AUTH_RATE_ADDRESS_BURST)]
    pub auth_rate_address_burst: u32,

    /// Login and registration attempts a client address gets back per minute.
    #[arg(long, env = "REDCLOUD_CONTROLLER_AUTH_RATE_ADDRESS_PER_MINUTE", default_value_t = DEFAULT_AUTH_RATE_ADDRESS_PER_MINUTE)]
    pub auth_rate_address_per_minute: u32,

    /// Failed logins and registrations one username may see at once before it is slowed to
    /// `--auth-rate-username-per-minute` (429 beyond); successful attempts do not count. 0
    /// turns the limit off.
    #[arg(long, env = "REDCLOUD_CONTROLLER_AUTH_RATE_USERNAME_BURST", default_value_t = DEFAULT_AUTH_RATE_USERNAME_BURST)]
    pub auth_rate_username_burst: u32,

    /// Failed attempts a username gets back per minute.
    #[arg(long, env = "REDCLOUD_CONTROLLER_AUTH_RATE_USERNAME_PER_MINUTE", default_value_t = DEFAULT_AUTH_RATE_USERNAME_PER_MINUTE)]
    pub auth_rate_username_per_minute: u32,

    /// Client addresses, and usernames, whose rate-limit state is remembered (each); beyond
    /// it the state touched longest ago is forgotten, so memory stays bounded.
    #[arg(long, env = "REDCLOUD_CONTROLLER_AUTH_RATE_TRACKED_KEYS_MAX", default_value_t = DEFAULT_AUTH_RATE_TRACKED_KEYS_MAX)]
    pub auth_rate_tracked_keys_max: usize,

    /// Argon2 password hashes computed at once (each takes about 19 MiB). Default: the
    /// number of cores, at least 2.
    #[arg(long, env = "REDCLOUD_CONTROLLER_PASSWORD_HASH_CONCURRENCY_MAX")]
    pub password_hash_concurrency_max: Option<usize>,

    /// Longest a login or registration waits for a free Argon2 slot before it gets 429.
    #[arg(long, env = "REDCLOUD_CONTROLLER_PASSWORD_HASH_WAIT_MS", default_value_t = DEFAULT_PASSWORD_HASH_WAIT_MS)]
    pub password_hash_wait_ms: u64,

    /// A test aid, hidden from `--help`: shifts this controller's wall clock by this many
    /// milliseconds (negative: behind), so scenario tests can play a controller whose clock
    /// is wrong. It has no environment twin, so that no deployment picks it up by accident;
    /// a controller started with it says so in its log.
    #[arg(long, hide = true, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_ms: i64,
}

impl Config {
    /// A configuration for tests: loopback, data in `dir`, no discovery.
    pub fn for_test(dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            s3_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            s3_region: "redcloud".to_owned(),
            s3_root_domain: None,
            s3_multipart_expiry: Duration::from_secs(7 * 24 * 3600).into(),
            advertise: None,
            tls_cert: None,
            tls_key: None,
            data_dir: dir,
            node_id: None,
            peers: Vec::new(),
            discovery_dns: String::new(),
            cluster_token: redcloud_types::ClusterTokenArgs::default(),
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
            min_replicas: DEFAULT_MIN_REPLICAS,
            upload_pipeline_chunks: DEFAULT_UPLOAD_PIPELINE_CHUNKS,
            upload_max_bytes: None,
            chunkserver_timeout_ms: DEFAULT_CHUNKSERVER_TIMEOUT_MS,
            chunk_write_timeout_ms: DEFAULT_CHUNK_WRITE_TIMEOUT_MS,
            chunk_io_timeout_ms: DEFAULT_CHUNK_IO_TIMEOUT_MS,
            gossip_interval_ms: DEFAULT_GOSSIP_INTERVAL_MS,
            discovery_interval_ms: DEFAULT_DISCOVERY_INTERVAL_MS,
            catch_up_timeout_ms: DEFAULT_CATCH_UP_TIMEOUT_MS,
            repair_interval_ms: DEFAULT_REPAIR_INTERVAL_MS,
            repair_copies_per_round: DEFAULT_REPAIR_COPIES_PER_ROUND,
            repair_concurrency_max: DEFAULT_REPAIR_CONCURRENCY_MAX,
            gc_grace_ms: DEFAULT_GC_GRACE_MS,
            gc_report_max_age_ms: DEFAULT_GC_REPORT_MAX_AGE_MS,
            gc_deletions_per_round: DEFAULT_GC_DELETIONS_PER_ROUND,
            retire_after: DEFAULT_RETIRE_AFTER.into(),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL.into(),
            log_retention: DEFAULT_LOG_RETENTION.into(),
            auth_rate_address_burst: DEFAULT_AUTH_RATE_ADDRESS_BURST,
            auth_rate_address_per_minute: DEFAULT_AUTH_RATE_ADDRESS_PER_MINUTE,
            auth_rate_username_burst: DEFAULT_AUTH_RATE_USERNAME_BURST,
            auth_rate_username_per_minute: DEFAULT_AUTH_RATE_USERNAME_PER_MINUTE,
            auth_rate_tracked_keys_max: DEFAULT_AUTH_RATE_TRACKED_KEYS_MAX,
            password_hash_concurrency_max: None,
            password_hash_wait_ms: DEFAULT_PASSWORD_HASH_WAIT_MS,
            clock_offset_ms: 0,
        }
    }

    /// The longest an upload may take from its first chunk write to its record in the log.
    pub fn upload_deadline(&self) -> Duration {
        Duration::from_millis(self.gc_grace_ms / 2)
    }

    /// `--retire-after`, `None` for never.
    pub fn retire_after(&self) -> Option<Duration> {
        Some(*self.retire_after).filter(|d| !d.is_zero())
    }

    /// How snapshots are taken and the log truncated.
    pub fn snapshots(&self) -> crate::snapshot::SnapshotConfig {
        crate::snapshot::SnapshotConfig {
            // A round costs a pass over new operations and a copy of the read model.
            interval: (*self.snapshot_interval).max(Duration::from_millis(100)),
            retention: *self.log_retention,
        }
    }

    /// Checks the settings that must agree with each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.gc_report_max_age_ms.saturating_mul(2) >= self.gc_grace_ms {
            return Err(format!(
                "--gc-report-max-age-ms ({}) must be under half of --gc-grace-ms ({}): otherwise an upload in flight on a controller that reported long ago could lose chunks",
                self.gc_report_max_age_ms, self.gc_grace_ms
            ));
        }
        Ok(())
    }

    /// The cluster secret, read from its file when given that way.
    pub fn cluster_token(&self) -> std::io::Result<Option<String>> {
        self.cluster_token.resolve()
    }

    /// `--peers` as cluster listener addresses: a bare host means the default cluster port.
    pub fn peer_addresses(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|peer| redcloud_types::with_default_port(peer, DEFAULT_CLUSTER_PORT))
            .collect()
    }

    /// The rate limits and Argon2 slots of login and registration.
    pub fn auth_gate(&self) -> crate::throttle::AuthGateConfig {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        crate::throttle::AuthGateConfig {
            per_address: crate::throttle::Rate {
                burst: self.auth_rate_address_burst,
                per_minute: self.auth_rate_address_per_minute,
            },
            per_username: crate::throttle::Rate {
                burst: self.auth_rate_username_burst,
                per_minute: self.auth_rate_username_per_minute,
            },
            tracked_keys_max: self.auth_rate_tracked_keys_max,
            hashing_concurrency: self
                .password_hash_concurrency_max
                .unwrap_or_else(|| cores.max(DEFAULT_PASSWORD_HASH_CONCURRENCY_MIN)),
            hashing_wait: Duration::from_millis(self.password_hash_wait_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_hidden_and_takes_negative_values() {
        use clap::CommandFactory;
        let help = Config::command().render_long_help().to_string();
        assert!(!help.contains("clock-offset"), "{help}");
        let config =
            Config::try_parse_from(["redcloud-controller", "--clock-offset-ms", "-900000"])
                .unwrap();
        assert_eq!(config.clock_offset_ms, -900_000);
        assert_eq!(
            Config::try_parse_from(["redcloud-controller"])
                .unwrap()
                .clock_offset_ms,
            0
        );
    }

    #[test]
    fn reports_must_be_fresher_than_half_the_grace_period() {
        let mut config = Config::for_test(PathBuf::from("unused"));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.upload_deadline(),
            Duration::from_millis(DEFAULT_GC_GRACE_MS / 2)
        );
        config.gc_grace_ms = 10_000;
        config.gc_report_max_age_ms = 5_000;
        let error = config.validate().unwrap_err();
        assert!(error.contains("--gc-report-max-age-ms"), "{error}");
        config.gc_report_max_age_ms = 4_999;
        assert_eq!(config.validate(), Ok(()));
    }
}
