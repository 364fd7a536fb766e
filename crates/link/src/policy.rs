//! Secure by default: which link a node may start with.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::LinkError;
use crate::identity::{ClusterLink, ClusterSecret};

/// What a node runs with, and whether it must keep warning about it.
#[derive(Debug)]
pub struct NodeLink {
    /// The link to other nodes.
    pub link: ClusterLink,
    /// Plain TCP on a listener other machines can reach (`--insecure`): the node says so at
    /// start, every minute and on its status page.
    pub exposed: bool,
}

/// Chooses the link of a node whose cluster listener is `cluster_listen`: TLS with a secret;
/// without one, plain TCP only on loopback or with `insecure`, and otherwise a refusal that
/// says how to make a secret.
pub fn choose_link(
    secret: Option<&str>,
    insecure: bool,
    cluster_listen: SocketAddr,
) -> Result<NodeLink, LinkError> {
    if let Some(secret) = secret {
        return Ok(NodeLink {
            link: ClusterLink::new(Some(&ClusterSecret::new(secret)?))?,
            exposed: false,
        });
    }
    let loopback_only = cluster_listen.ip().is_loopback();
    if !loopback_only && !insecure {
        return Err(LinkError::NoSecret {
            listen: cluster_listen,
        });
    }
    Ok(NodeLink {
        link: ClusterLink::Plain,
        exposed: !loopback_only,
    })
}

/// How often a node running `--insecure` on an exposed listener says so again.
const INSECURE_REMINDER: Duration = Duration::from_secs(60);

/// Warns at once and then every minute, until `shutdown`, that the cluster listener at
/// `cluster_listen` takes anyone.
pub async fn remind_insecure(cluster_listen: SocketAddr, shutdown: CancellationToken) {
    let mut reminders = tokio::time::interval(INSECURE_REMINDER);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = reminders.tick() => tracing::warn!(
                %cluster_listen,
                "running --insecure: no cluster secret, so anyone who can reach the cluster listener can read and change everything this node holds"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str) -> SocketAddr {
        address.parse().unwrap()
    }

    #[test]
    fn a_reachable_listener_without_a_secret_is_refused_unless_insecure() {
        let error = choose_link(None, false, at("0.0.0.0:8001")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("--cluster-token-file"), "{message}");
        assert!(message.contains("--insecure"), "{message}");
        let insecure = choose_link(None, true, at("0.0.0.0:8001")).unwrap();
        assert!(!insecure.link.is_secure());
        assert!(insecure.exposed);
    }

    #[test]
    fn loopback_needs_nothing_and_a_secret_always_means_tls() {
        let local = choose_link(None, false, at("127.0.0.1:8001")).unwrap();
        assert!(!local.link.is_secure() && !local.exposed);
        let secure =
            choose_link(Some("a long enough cluster secret"), true, at("0.0.0.0:1")).unwrap();
        assert!(secure.link.is_secure() && !secure.exposed);
        assert!(matches!(
            choose_link(Some("short"), false, at("0.0.0.0:1")),
            Err(LinkError::WeakSecret { .. })
        ));
    }
}
