//! RedCloud's node-to-node links. Every byte between nodes travels over TLS 1.3 with mutual
//! authentication, keyed by the cluster secret alone: the cluster's CA key is derived from the
//! secret, and each node issues its own certificate from it at start, so nothing is
//! distributed and a peer without the secret cannot complete a handshake. `--insecure`
//! clusters use plain TCP instead ([`ClusterLink::Plain`]).
//!
//! Servers accept through [`ServeListener`] (for axum); nodes call each other through
//! [`ClusterClient`] (HTTP) or tonic channels configured by [`ClusterLink::tonic_tls`].

mod client;
mod error;
mod identity;
mod listener;
mod policy;
mod sealing;

pub use client::{ClusterClient, Reply, error_chain};
pub use error::{ClusterHttpError, LinkError};
pub use identity::{
    CLUSTER_SERVER_NAME, ClusterLink, ClusterSecret, ClusterTls, MIN_SECRET_BYTES,
    client_listener_config, https_client_config,
};
pub use listener::{RemoteAddr, ServeListener, ServedStream};
pub use policy::{NodeLink, choose_link, remind_insecure};
pub use sealing::{SealError, SecretSealer};
