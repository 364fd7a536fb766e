//! Identifier types and the few small helpers shared by the controller, the chunkserver and
//! the tools: chunk ids, the heartbeat a chunkserver sends, node identity and address detection.
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest chunk any node accepts. Controllers cut files into far smaller chunks (4 MiB by
/// default); this bounds what one request may make a node buffer.
pub const MAX_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes of chunk data per gRPC message, well under gRPC's default 4 MB message limit.
pub const PIECE_BYTES: usize = 1024 * 1024;

/// `data` cut into gRPC-message-sized pieces that share its buffer: nothing is copied.
pub fn pieces(data: &bytes::Bytes) -> impl Iterator<Item = bytes::Bytes> + '_ {
    (0..data.len())
        .step_by(PIECE_BYTES)
        .map(move |start| data.slice(start..(start + PIECE_BYTES).min(data.len())))
}

/// A chunk's identity: the SHA-256 of its content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId([u8; 32]);

impl ChunkId {
    /// The id of `content`.
    pub fn of(content: &[u8]) -> Self {
        Self(Sha256::digest(content).into())
    }

    /// Wraps a digest computed elsewhere.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads an id from wire bytes, which must be exactly 32.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidChunkId> {
        bytes.try_into().map(Self).map_err(|_| InvalidChunkId {
            input: hex::encode(bytes),
        })
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..12])
    }
}

/// Bytes or text that are not a 32-byte SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk id {input:?}: expected a 32-byte SHA-256 digest")]
pub struct InvalidChunkId {
    /// What was given (hex for bytes).
    pub input: String,
}

impl FromStr for ChunkId {
    type Err = InvalidChunkId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| InvalidChunkId {
            input: s.to_owned(),
        })?;
        Self::from_slice(&bytes).map_err(|_| InvalidChunkId {
            input: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_are_sha256_and_parse_back() {
        let id = ChunkId::of(b"abc");
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("abc".parse::<ChunkId>().is_err());
        assert!(ChunkId::from_slice(&[0; 31]).is_err());
    }
}

/// A node's persistent identity, kept in its data directory.
pub mod node_id {
    use std::io;
    use std::path::Path;
    use std::time::{SystemTime, UNIX_EPOCH};

    use sha2::{Digest, Sha256};

    /// The file in a data directory that holds the node id.
    pub const FILE_NAME: &str = "node_id";

    /// Reads the id kept in `data_dir`, or makes a fresh one from the hostname, the time and
    /// `random` and keeps it (written to a temp file, fsynced, renamed). A wiped directory
    /// therefore never brings back an old identity.
    pub fn load_or_create(data_dir: &Path, hostname: &str, random: u64) -> io::Result<u64> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return u64::from_str_radix(text.trim(), 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} does not hold a 16-digit hex node id", path.display()),
                    )
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::new()
            .chain_update(hostname.as_bytes())
            .chain_update(nanos.to_be_bytes())
            .chain_update(random.to_be_bytes())
            .finalize();
        let id = u64::from_be_bytes(
            digest[..8]
                .try_into()
                .expect("a SHA-256 digest has 32 bytes"),
        );
        std::fs::create_dir_all(data_dir)?;
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            writeln!(file, "{id:016x}")?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()?;
        Ok(id)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_id_is_kept_and_a_wiped_directory_gets_a_new_one() {
            let dir = std::env::temp_dir().join(format!("redcloud-node-id-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let first = load_or_create(&dir, "host", 1).unwrap();
            assert_eq!(load_or_create(&dir, "host", 2).unwrap(), first);
            std::fs::remove_dir_all(&dir).unwrap();
            assert_ne!(load_or_create(&dir, "host", 1).unwrap(), first);
            std::fs::write(dir.join(FILE_NAME), "not hex").unwrap();
            assert!(load_or_create(&dir, "host", 1).is_err());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// What a chunkserver tells controllers in every heartbeat (JSON on `/internal/heartbeat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The chunkserver's id (16 hex digits).
    pub node_id: String,
    /// Where its gRPC service is reached (host:port).
    pub address: String,
    /// Bytes it may use.
    pub capacity_bytes: u64,
    /// Bytes of chunks it holds.
    pub used_bytes: u64,
    /// Chunks it holds.
    pub chunk_count: u64,
}

/// The cluster secret flags every node takes: the secret itself, or a file holding it (for
/// Docker secrets), and the explicit choice to run without one.
#[cfg(feature = "process")]
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterTokenArgs {
    /// The cluster secret (16 bytes or more). Every node of a cluster must have the same one:
    /// it keys the mutual TLS that authenticates and encrypts all traffic between nodes. Make
    /// one with `head -c 32 /dev/urandom | base64`.
    #[arg(long, env = "REDCLOUD_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,

    /// File holding the cluster secret (for Docker secrets). --cluster-token, when also
    /// given, wins: the Docker images name a file baked in at build time, which a secret given
    /// directly overrides.
    #[arg(long, env = "REDCLOUD_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<std::path::PathBuf>,

    /// Run without a cluster secret although the cluster listener is reachable from other
    /// machines: anyone who can reach it can then read and change everything. Only for a
    /// network nobody else uses; the node warns about it at start, every minute and on
    /// `/status`.
    #[arg(long, env = "REDCLOUD_INSECURE")]
    pub insecure: bool,
}

#[cfg(feature = "process")]
impl ClusterTokenArgs {
    /// The secret, read from its file when given that way (the file's trailing newline trimmed).
    pub fn resolve(&self) -> std::io::Result<Option<String>> {
        match (&self.cluster_token, &self.cluster_token_file) {
            (Some(value), _) => Ok(Some(value.clone())),
            (None, Some(path)) => Ok(Some(std::fs::read_to_string(path)?.trim_end().to_owned())),
            (None, None) => Ok(None),
        }
    }
}

/// Finding the address other nodes should dial.
pub mod advertise {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

    /// The host name of this machine (the container id under Docker).
    pub fn hostname() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// The IP address this machine uses to reach `toward`, read from the routing table: a UDP
    /// socket "connected" to it sends nothing but learns its source address.
    pub fn route_source(toward: SocketAddr) -> Option<IpAddr> {
        let bind = if toward.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        };
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(toward).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    }

    /// The source address of the route toward one of `peers`, or of the default route; `None`
    /// when there is no route (no network at the moment).
    fn routed(peers: &[SocketAddr]) -> Option<IpAddr> {
        let default_route = SocketAddr::from(([192, 0, 2, 1], 9));
        peers
            .iter()
            .chain(std::iter::once(&default_route))
            .find_map(|peer| {
                route_source(*peer).filter(|ip| !ip.is_loopback() || peer.ip().is_loopback())
            })
    }

    /// The address to advertise for a service listening on `listen`: the listen address itself
    /// when it names one interface; otherwise the source address of the route toward one of
    /// `peers`, or of the default route; otherwise what the host name resolves to; otherwise
    /// loopback.
    pub fn detect(listen: SocketAddr, peers: &[SocketAddr]) -> SocketAddr {
        if !listen.ip().is_unspecified() {
            return listen;
        }
        let ip = routed(peers)
            .or_else(|| {
                use std::net::ToSocketAddrs;
                (hostname().as_str(), 0)
                    .to_socket_addrs()
                    .ok()?
                    .map(|a| a.ip())
                    .find(|ip| !ip.is_loopback())
            })
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, listen.port())
    }

    /// Where a node tells others to reach it: the configured address, or one detected from the
    /// routing table and detected again on every [`Advertise::refresh`]. A container's address
    /// changes, without its process restarting, when it is disconnected from a network and
    /// connected again (on a Swarm overlay network it always does).
    #[derive(Clone, Debug)]
    pub struct Advertise {
        /// The listen address to detect for; `None` when the address was configured.
        detect_for: Option<SocketAddr>,
        current: String,
    }

    impl Advertise {
        /// `configured` when given, else the address [`detect`]ed now for `listen`.
        pub fn new(configured: Option<String>, listen: SocketAddr, peers: &[SocketAddr]) -> Self {
            match configured {
                Some(address) => Self {
                    detect_for: None,
                    current: address,
                },
                None => Self {
                    detect_for: Some(listen),
                    current: detect(listen, peers).to_string(),
                },
            }
        }

        /// The address to give out.
        pub fn address(&self) -> &str {
            &self.current
        }

        /// Detects the address again (unless it was configured or names one interface) and
        /// returns it when it changed. With no route at all the last address is kept: a node
        /// cut off from every network has nothing better to say.
        pub fn refresh(&mut self, peers: &[SocketAddr]) -> Option<&str> {
            let listen = self.detect_for.filter(|l| l.ip().is_unspecified())?;
            let now = SocketAddr::new(routed(peers)?, listen.port()).to_string();
            if now == self.current {
                return None;
            }
            self.current = now;
            Some(&self.current)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_detected_address_follows_the_route_and_a_configured_one_stays() {
            let loopback_peer: SocketAddr = "127.0.0.1:8000".parse().unwrap();
            // Detected earlier on a network the node has since left.
            let mut detected = Advertise {
                detect_for: Some("0.0.0.0:7000".parse().unwrap()),
                current: "10.0.1.4:7000".to_owned(),
            };
            assert_eq!(detected.refresh(&[loopback_peer]), Some("127.0.0.1:7000"));
            assert_eq!(detected.address(), "127.0.0.1:7000");
            assert_eq!(detected.refresh(&[loopback_peer]), None);

            let mut configured = Advertise::new(
                Some("controller-1:7000".to_owned()),
                "0.0.0.0:7000".parse().unwrap(),
                &[loopback_peer],
            );
            assert_eq!(configured.refresh(&[loopback_peer]), None);
            assert_eq!(configured.address(), "controller-1:7000");

            let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
            let mut specific = Advertise::new(None, listen, &[]);
            assert_eq!(specific.refresh(&[loopback_peer]), None);
            assert_eq!(specific.address(), "127.0.0.1:7000");
        }

        #[test]
        fn a_specific_listen_address_is_its_own_advertisement() {
            let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
            assert_eq!(detect(listen, &[]), listen);
        }

        #[test]
        fn a_route_toward_loopback_comes_from_loopback() {
            let listen: SocketAddr = "0.0.0.0:7000".parse().unwrap();
            let peer: SocketAddr = "127.0.0.1:8000".parse().unwrap();
            assert_eq!(detect(listen, &[peer]), "127.0.0.1:7000".parse().unwrap());
        }
    }
}

/// `address` with `port` added when it names only a host (`controller` → `controller:8001`;
/// an IPv6 address must be bracketed to carry a port, `[::1]:8001`).
pub fn with_default_port(address: &str, port: u16) -> String {
    let has_port = match address.rsplit_once(':') {
        Some((host, tail)) => {
            tail.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port || address.is_empty() {
        address.to_owned()
    } else if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Every address each `host:port` resolves to, deduplicated and sorted; names that do not
/// resolve within two seconds are skipped.
#[cfg(feature = "process")]
pub async fn resolve_all(names: &[String]) -> Vec<std::net::SocketAddr> {
    const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
    let lookups = names
        .iter()
        .filter(|n| !n.is_empty())
        .map(|name| async move {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name.as_str()))
                .await
            {
                Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
                Ok(Err(error)) => {
                    tracing::debug!(%name, %error, "cannot resolve");
                    Vec::new()
                }
                Err(_) => {
                    tracing::debug!(%name, "resolution timed out");
                    Vec::new()
                }
            }
        });
    let mut all = Vec::new();
    for lookup in lookups {
        all.extend(lookup.await);
    }
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod default_port_tests {
    use super::with_default_port;

    #[test]
    fn a_bare_host_gets_the_default_port() {
        assert_eq!(with_default_port("controller", 8001), "controller:8001");
        assert_eq!(with_default_port("controller:9", 8001), "controller:9");
        assert_eq!(with_default_port("10.0.0.1", 8001), "10.0.0.1:8001");
        assert_eq!(with_default_port("[::1]:7", 8001), "[::1]:7");
        assert_eq!(with_default_port("::1", 8001), "[::1]:8001");
        assert_eq!(with_default_port("", 8001), "");
    }
}

#[cfg(all(test, feature = "process"))]
mod cluster_token_tests {
    use super::ClusterTokenArgs;

    #[test]
    fn a_token_comes_from_the_flag_or_from_its_file_without_the_newline() {
        assert_eq!(ClusterTokenArgs::default().resolve().unwrap(), None);
        let direct = ClusterTokenArgs {
            cluster_token: Some("abc".into()),
            cluster_token_file: None,
            insecure: false,
        };
        assert_eq!(direct.resolve().unwrap().as_deref(), Some("abc"));
        let path = std::env::temp_dir().join(format!("redcloud-token-{}", std::process::id()));
        std::fs::write(&path, "from-secret\n").unwrap();
        let file = ClusterTokenArgs {
            cluster_token: None,
            cluster_token_file: Some(path.clone()),
            insecure: false,
        };
        assert_eq!(file.resolve().unwrap().as_deref(), Some("from-secret"));
        std::fs::remove_file(&path).unwrap();
        assert!(
            file.resolve().is_err(),
            "a missing secret file is an error, not an empty token"
        );
    }
}

/// Process plumbing shared by the server binaries.
#[cfg(feature = "process")]
pub mod process {
    use tokio_util::sync::CancellationToken;

    /// Installs the log subscriber (`RUST_LOG` filter, JSON when `REDCLOUD_LOG_FORMAT=json`)
    /// and a panic hook that logs and aborts, so a supervisor restarts a clean process rather
    /// than one limping on with a dead task.
    pub fn init_logging() {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,lsm_tree=warn,fjall=warn"));
        use std::io::IsTerminal;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        if std::env::var("REDCLOUD_LOG_FORMAT").is_ok_and(|f| f == "json") {
            builder.json().init();
        } else {
            builder.init();
        }
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!(panic = %info, "panic; aborting so the supervisor restarts a clean process");
            default_hook(info);
            std::process::abort();
        }));
    }

    /// A token cancelled at the first SIGINT or SIGTERM.
    pub fn shutdown_on_signal() -> CancellationToken {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down");
            cancel.cancel();
        });
        token
    }
}

/// Test support: a real filesystem that runs out of space.
#[cfg(feature = "testing")]
pub mod testing {
    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A tmpfs on a fresh temporary directory, unmounted when dropped (close every file and
    /// database on it first).
    pub struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        /// A tmpfs of `bytes`; `None`, with a message, when not root: mounting needs it.
        pub fn mount(bytes: u64) -> Option<Self> {
            if !rustix::process::geteuid().is_root() {
                eprintln!("skipped: mounting a tmpfs needs root");
                return None;
            }
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mounted = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .expect("mount runs");
            assert!(mounted.success(), "mount failed");
            Some(Self(dir))
        }

        /// Where it is mounted.
        pub fn path(&self) -> &Path {
            self.0.path()
        }

        /// Fills it; see [`fill`].
        pub fn fill(&self) -> PathBuf {
            fill(self.path())
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0.path()).status();
        }
    }

    /// Writes a file in `dir` until its filesystem refuses more; returns the file, whose
    /// removal frees the space again.
    pub fn fill(dir: &Path) -> PathBuf {
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file opens");
        let block = vec![0x5a_u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {path:?}: {e}"),
            }
        }
        path
    }
}
