//! With a cluster token configured, internal routes refuse requests without it, while nodes
//! that have it (chunkservers' heartbeats, peers' gossip) work as usual.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, status_json};

#[tokio::test]
async fn internal_routes_require_the_cluster_token() {
    let token = ["--cluster-token", "s3cret-cluster"];
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .controller_args(&token)
        .chunkserver_args(&token)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;
    assert_eq!(
        c.list_at(1, &key, "").await.len(),
        0,
        "the user reached the other controller by gossip"
    );

    for path in ["/internal/state", "/internal/peers"] {
        let (status, _) = status_json(
            c.http
                .get(format!("{}{path}", c.url()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "{path} without the token");
        let with = c
            .http
            .get(format!("{}{path}", c.url()))
            .header("x-redcloud-cluster-token", "s3cret-cluster")
            .send()
            .await
            .unwrap();
        assert_eq!(with.status(), 200, "{path} with the token");
    }
    let forged = c.http.post(format!("{}/internal/heartbeat", c.url())).json(&serde_json::json!({
        "node_id": "0000000000000bad", "address": "127.0.0.1:1", "capacity_bytes": 1, "used_bytes": 0, "chunk_count": 0
    }));
    assert_eq!(forged.send().await.unwrap().status(), 401);
    let gossip = c
        .http
        .post(format!("{}/internal/gossip", c.url()))
        .body(vec![1u8, 2, 3]);
    assert_eq!(gossip.send().await.unwrap().status(), 401);

    use redcloud_cli::logtool::{Reader, Source};
    let refused = Reader::new(Source::Server(c.url()), None)
        .unwrap()
        .ops()
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs the cluster token"),
        "{refused:#}"
    );
    let ops = Reader::new(Source::Server(c.url()), Some("s3cret-cluster".to_owned()))
        .unwrap()
        .ops()
        .await
        .unwrap();
    assert!(
        ops.iter()
            .any(|op| matches!(&op.payload, redcloud_controller::MetaOp::UserRegistered { username, .. } if username == "alice")),
        "the log read with the token holds the registration"
    );
}
