//! Errors of the link layer: setting up TLS, and calls between nodes.

/// Why a node's TLS setup failed. Nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The cluster secret is too short to resist guessing.
    #[error(
        "the cluster secret has {got} bytes; it needs at least {min} (make one with: head -c 32 /dev/urandom | base64)"
    )]
    WeakSecret {
        /// Bytes given (after trimming white space).
        got: usize,
        /// Bytes needed.
        min: usize,
    },
    /// No secret, and a cluster listener other machines can reach.
    #[error(
        "no cluster secret, and the cluster listener {listen} is reachable from other machines: anyone who reaches it could read and change everything. Make a secret once (head -c 32 /dev/urandom | base64 > cluster.secret) and give it to every node with --cluster-token-file cluster.secret (or REDCLOUD_CLUSTER_TOKEN_FILE), or listen on loopback only, or pass --insecure on a network nobody else uses"
    )]
    NoSecret {
        /// The cluster listener.
        listen: std::net::SocketAddr,
    },
    /// Deriving the cluster key or issuing a certificate failed.
    #[error("cannot derive the cluster identity: {0}")]
    Derive(String),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Why a call to another node failed. Nothing on this node changed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterHttpError {
    /// The address is not a valid `host:port` for a URL.
    #[error("bad address {0:?}")]
    BadAddress(String),
    /// Connecting, the TLS handshake, sending or receiving failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// The call did not finish within its deadline.
    #[error("timed out")]
    Timeout,
    /// The answer was larger than the caller accepts.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The caller's limit.
        limit: usize,
    },
    /// The node answered with an error status.
    #[error("answered {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        detail: String,
    },
}
