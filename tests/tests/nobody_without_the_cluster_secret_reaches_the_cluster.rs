//! The attacks of an outsider on the same network, who has neither the cluster secret nor a
//! user's key, against every listener of a running cluster: each one gets nothing and changes
//! nothing, while nodes holding the secret (and `redcloud log` given it) work as usual.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_link::{ClusterClient, ClusterHttpError, ClusterLink, ClusterSecret};
use redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient;
use redcloud_proto::chunkserver::{DeleteChunkRequest, ListChunksRequest, ReadChunkRequest};
use redcloud_tests::{CLUSTER_SECRET, Cluster, ClusterBuilder, status_json};

fn link(secret: &str) -> ClusterLink {
    ClusterLink::new(Some(&ClusterSecret::new(secret).unwrap())).unwrap()
}

fn client(link: &ClusterLink) -> ClusterClient {
    ClusterClient::new(link, Duration::from_secs(2), Duration::from_secs(5))
}

/// Every way in an outsider has: plain HTTP (curl), TLS without a certificate, and a node of
/// another cluster (another secret).
fn outsiders() -> Vec<(&'static str, ClusterClient)> {
    vec![
        ("plain HTTP", client(&ClusterLink::Plain)),
        (
            "another cluster's node",
            client(&link("the secret of some other cluster")),
        ),
    ]
}

async fn start() -> Cluster {
    ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(1)
        // So that there is a snapshot to be refused.
        .controller_args(&["--snapshot-interval", "200ms"])
        .start()
        .await
}

#[tokio::test]
async fn the_client_listener_serves_no_internal_route() {
    let c = start().await;
    for (method, path) in [
        ("POST", "/internal/log"),
        ("POST", "/internal/gossip"),
        ("POST", "/internal/heartbeat"),
        ("POST", "/internal/forget"),
        ("GET", "/internal/snapshot"),
        ("GET", "/internal/state"),
        ("GET", "/internal/peers"),
    ] {
        let request = match method {
            "POST" => c
                .http
                .post(format!("{}{path}", c.url()))
                .body(vec![0x01, 0x90]),
            _ => c.http.get(format!("{}{path}", c.url())),
        };
        let (status, body) = status_json(request.send().await.unwrap()).await;
        assert_eq!(
            status, 404,
            "{method} {path} on the client listener: {body}"
        );
    }
}

#[tokio::test]
async fn outsiders_read_no_metadata_and_forge_no_operation() {
    let c = start().await;
    let key = c.register("alice", "correct horse").await;
    c.upload(&key, "report.txt", b"quarterly numbers".to_vec(), "work")
        .await;
    let before = c.converged(Duration::from_secs(10)).await;
    let cluster = c.controller.cluster_address();
    let other_controller = c.state_of(1).await["node_id"].clone();

    // An empty frontier asks for every operation: usernames, hashes, names, tags.
    let everything = redcloud_eventlog::GossipMessage::<redcloud_controller::MetaOp>::Frontier {
        frontier: redcloud_eventlog::VersionVector::new(),
        reply: false,
        folds: None,
        folded: false,
    }
    .encode();
    for (who, outsider) in outsiders() {
        for (path, body) in [
            ("/internal/log", Bytes::from(everything.clone())),
            // A gossip push from a made-up origin (any bytes: it must not even be decoded).
            ("/internal/gossip", Bytes::from(everything.clone())),
            (
                "/internal/heartbeat",
                Bytes::from(
                    serde_json::json!({
                        "node_id": "0000000000000bad", "address": "127.0.0.1:9",
                        "capacity_bytes": 1u64 << 40, "used_bytes": 0, "chunk_count": 0
                    })
                    .to_string(),
                ),
            ),
            // Retiring the other controller would stop it taking writes.
            (
                "/internal/forget",
                Bytes::from(
                    serde_json::json!({"node_id": other_controller, "force": true}).to_string(),
                ),
            ),
        ] {
            let answer = outsider.post(&cluster, path, &[], body, 1 << 20).await;
            assert!(
                matches!(answer, Err(ClusterHttpError::Transport(_))),
                "{who} got an answer from {path}: {answer:?}"
            );
        }
        // The snapshot holds every user's hashes, names and tags.
        for path in ["/internal/state", "/internal/snapshot"] {
            let answer = outsider.get(&cluster, path, 1 << 20).await;
            assert!(answer.is_err(), "{who} read {path}: {answer:?}");
        }
    }

    // Nothing changed: no operation, no chunkserver at the attacker's address, the key works.
    let after = c.converged(Duration::from_secs(10)).await;
    assert_eq!(before[0]["operations"], after[0]["operations"]);
    let (status, cluster_status) = status_json(
        c.http
            .get(format!("{}/status?format=json", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        cluster_status["chunkservers"].as_array().unwrap().len(),
        1,
        "{cluster_status}"
    );
    assert_eq!(c.list(&key, "work").await.len(), 1);

    // A folded frontier names nothing readable without the sender's folds: refused, not
    // misread as a request for everything.
    let folded = redcloud_eventlog::GossipMessage::<redcloud_controller::MetaOp>::Frontier {
        frontier: redcloud_eventlog::VersionVector::new(),
        reply: false,
        folds: Some(redcloud_eventlog::FoldsDigest([7; 16])),
        folded: true,
    }
    .encode();
    let answer = c
        .cluster_http
        .post(&cluster, "/internal/log", &[], Bytes::from(folded), 1 << 20)
        .await
        .unwrap();
    assert_eq!(answer.status, 400);

    // `redcloud log` reads the log with the secret, and not without it.
    use redcloud_cli::logtool::{Reader, Source};
    let url = format!("http://{cluster}");
    let refused = Reader::new(
        Source::Server(url.clone()),
        &link("not this cluster's secret"),
    )
    .unwrap()
    .ops()
    .await;
    assert!(refused.is_err(), "a wrong secret read the log");
    let ops = Reader::new(Source::Server(url), &link(CLUSTER_SECRET))
        .unwrap()
        .ops()
        .await
        .unwrap();
    assert!(
        ops.iter().any(|op| matches!(&op.payload, redcloud_controller::MetaOp::UserRegistered { username, .. } if username == "alice")),
        "the log read with the secret holds the registration"
    );
}

async fn chunkserver(
    link: &ClusterLink,
    address: &str,
) -> Option<ChunkserverClient<tonic::transport::Channel>> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("{}://{address}", link.grpc_scheme()))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5));
    let channel = link
        .tonic_endpoint(endpoint)
        .unwrap()
        .connect()
        .await
        .ok()?;
    Some(ChunkserverClient::new(channel))
}

#[tokio::test]
async fn outsiders_neither_read_nor_delete_chunks() {
    let c = start().await;
    let key = c.register("bob", "pw of bob").await;
    c.upload(
        &key,
        "secret.txt",
        b"bob's private bytes".to_vec(),
        "private",
    )
    .await;
    let held = c.chunks_everywhere(Duration::from_secs(10)).await;
    assert_eq!(held.len(), 1);
    let chunk = hex::decode(held.iter().next().unwrap()).unwrap();
    let address = c.chunkservers[0].cluster_address();

    for (who, link) in [
        ("plain gRPC", ClusterLink::Plain),
        (
            "another cluster's node",
            link("the secret of some other cluster"),
        ),
    ] {
        let Some(mut outsider) = chunkserver(&link, &address).await else {
            continue;
        };
        let listed = outsider.list_chunks(ListChunksRequest::default()).await;
        assert!(listed.is_err(), "{who} listed chunks");
        let read = outsider
            .read_chunk(ReadChunkRequest {
                chunk_id: Bytes::from(chunk.clone()),
            })
            .await;
        assert!(read.is_err(), "{who} read a chunk");
        let deleted = outsider
            .delete_chunk(DeleteChunkRequest {
                chunk_id: Bytes::from(chunk.clone()),
                ..Default::default()
            })
            .await;
        assert!(deleted.is_err(), "{who} deleted a chunk");
    }
    assert_eq!(
        c.chunkservers[0].chunk_ids(),
        held,
        "the chunk is still there"
    );
    let (status, body) = c.download(&key, "secret.txt").await;
    assert_eq!(status, 200);
    assert_eq!(body, b"bob's private bytes");

    // A node holding the secret is served (the control for the refusals above).
    let mut member = chunkserver(&link(CLUSTER_SECRET), &address).await.unwrap();
    assert!(
        member
            .list_chunks(ListChunksRequest::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_frontier_token_naming_an_unknown_origin_is_refused_at_once() {
    let c = start().await;
    let forged = |origins: u64| {
        let frontier: redcloud_eventlog::VersionVector = (1..=origins)
            .map(|n| {
                (
                    redcloud_eventlog::NodeId::new(0xdead_0000_0000 + n),
                    redcloud_eventlog::Seq::new(1),
                )
            })
            .collect();
        hex::encode(rmp_serde::to_vec(&frontier).unwrap())
    };
    // A few made-up origins: INVALID_FRONTIER. 4,000 of them (the forged-gossip attack's
    // count): too long to be a token at all. Neither waits for a catch-up.
    for (origins, code) in [(3, "INVALID_FRONTIER"), (4000, "INVALID_REQUEST")] {
        let started = Instant::now();
        let (status, body) = status_json(
            c.http
                .get(format!("{}/files?tags=", c.url()))
                .header("x-redcloud-frontier", forged(origins))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{body}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the refusal waited {:?} for a catch-up",
            started.elapsed()
        );
    }
    // Every response's frontier header stays small: it names only real members.
    let response = c
        .http
        .get(format!("{}/health", c.url()))
        .send()
        .await
        .unwrap();
    let header = response
        .headers()
        .get("x-redcloud-frontier")
        .map_or(0, |v| v.len());
    assert!(header < 200, "frontier header of {header} bytes");
}
