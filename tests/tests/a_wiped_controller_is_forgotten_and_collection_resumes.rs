//! A controller's data directory is wiped and it starts again, as every `docker rm` + `docker
//! run` of the seed's ephemeral controllers does: it comes back under a new id, and the old id
//! holds back garbage collection for good. `/status` names the old id, since when, and the
//! command that unblocks it; `redcloud cluster forget` (here its route, `POST
//! /internal/forget` on the cluster listener) retires it, the deleted file's data is collected,
//! and the old id leaves frontier tokens, the status page and (folded, once both controllers
//! hold all of its operations) the frontiers controllers send each other. With
//! `--retire-after` the same happens by itself.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_eventlog::{NodeId, Seq, VersionVector};
use redcloud_tests::{Cluster, ClusterBuilder, status_json, test_data};
use serde_json::json;

const GRACE_MS: u64 = 3000;

/// Starts two controllers and two chunkservers, uploads a file through controller 0, wipes
/// controller 1 and starts it again; returns the cluster, the key, the doomed file's chunks and
/// controller 1's old id.
async fn wiped(extra: &[&str]) -> (Cluster, String, std::collections::BTreeSet<String>, NodeId) {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .quick_gc(GRACE_MS)
        .controller_args(extra)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.upload_id_at(0, &key, "doomed.bin", test_data(1, 200_000), "doomed")
        .await;
    let chunks = c.chunks_everywhere(Duration::from_secs(20)).await;
    c.converged(Duration::from_secs(10)).await;
    let old: NodeId = c.state_of(1).await["node_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let node = &mut c.more_controllers[0];
    node.wipe();
    node.start();
    c.wait_ready(2).await;
    let new: NodeId = c.state_of(1).await["node_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(old, new, "a wiped controller comes back under a new id");
    c.converged(Duration::from_secs(20)).await;
    (c, key, chunks, old)
}

/// Waits until the frontiers controller `i` sends its peer name `expected` origins.
async fn frontier_origins_become(c: &Cluster, i: usize, expected: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = c.metrics_of(i).await;
        let origins = metrics
            .lines()
            .find_map(|line| line.strip_prefix("redcloud_gossip_frontier_origins "))
            .and_then(|value| value.trim().parse::<u64>().ok());
        if origins == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller {i} sends frontiers of {origins:?} origins, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The origins of the frontier token controller `i` hands a client.
async fn token_origins(c: &Cluster, i: usize, key: &str) -> Vec<NodeId> {
    let answer = c.get_at(i, key, "/files?tags=doomed").await;
    let token = answer.headers()["x-redcloud-frontier"].to_str().unwrap();
    let frontier: VersionVector = rmp_serde::from_slice(&hex::decode(token).unwrap()).unwrap();
    frontier.iter().map(|(origin, _)| origin).collect()
}

#[tokio::test]
async fn a_wiped_controller_is_forgotten_and_collection_resumes() {
    let (c, key, chunks, old) =
        wiped(&["--retire-after", "0", "--snapshot-interval", "300ms"]).await;
    let (status, body) = c.delete_at(0, &key, "doomed").await;
    assert_eq!((status, body["deleted_count"].clone()), (200, json!(1)));
    assert!(token_origins(&c, 0, &key).await.contains(&old));
    // Controller 0, controller 1 under its old id and under its new one.
    frontier_origins_become(&c, 0, 3).await;

    // Collection waits for the old id, and the status page says what to do about it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let repair = loop {
        let repair = c.status_page_of(0).await["repair"].clone();
        if repair["gc_blocked_by"] == json!(old.to_string())
            && repair["gc_blocked_for_ms"].as_u64() > Some(GRACE_MS)
        {
            break repair;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "collection never named the old id as its blocker: {repair}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        repair["gc_unblock"]
            .as_str()
            .unwrap()
            .contains(&format!("redcloud cluster forget {old}")),
        "{repair}"
    );
    for cs in &c.chunkservers {
        assert!(cs.chunk_ids().is_superset(&chunks), "nothing collected yet");
    }
    let metrics = c.metrics_of(0).await;
    assert!(
        metrics.contains(&format!("redcloud_gc_blocked_seconds{{node=\"{old}\"}}")),
        "the metric names the blocker"
    );

    // Malformed and oversized requests, unknown ids and live nodes are refused; the old id is
    // retired.
    assert_eq!(c.forget("", false).await.0, 400);
    assert_eq!(c.forget(&"a".repeat(65), false).await.0, 400);
    let oversized = c
        .cluster_http
        .post(
            &c.controller.cluster_address(),
            "/internal/forget",
            &[],
            vec![b' '; 100 * 1024].into(),
            1 << 16,
        )
        .await
        .unwrap();
    assert_eq!(
        oversized.status, 413,
        "the cluster listener reads 64 KiB at most"
    );
    assert_eq!(c.forget("00000000000000ff", false).await.0, 404);
    let new = c.state_of(1).await["node_id"].as_str().unwrap().to_owned();
    let (status, body) = c.forget(&new, false).await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("NODE_ALIVE")),
        "{body}"
    );
    let (status, body) = c.forget(&old.to_string(), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["kind"], &body["already_retired"]),
        (&json!("controller"), &json!(false))
    );
    assert_eq!(
        c.forget(&old.to_string(), false).await.1["already_retired"],
        true
    );

    c.wait_collected(&chunks, Duration::from_secs(30)).await;
    for i in 0..2 {
        assert!(
            !token_origins(&c, i, &key).await.contains(&old),
            "controller {i} still puts the retired id in tokens"
        );
        frontier_origins_become(&c, i, 2).await;
        // The status page shows the last repair round, which may predate the retirement.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = c.status_page_of(i).await;
            let listed: Vec<&str> = status["controllers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["node_id"].as_str().unwrap())
                .collect();
            assert!(!listed.contains(&old.to_string().as_str()), "{listed:?}");
            if status["repair"]["gc_blocked_by"].is_null() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "controller {i} still waits: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Nobody waits for a retired controller: a token naming operations of the old id that no
    // live controller holds is answered at once, not after a catch-up that cannot succeed.
    let mut ahead = VersionVector::new();
    ahead.raise(old, Seq::new(1_000_000));
    let token = hex::encode(rmp_serde::to_vec(&ahead).unwrap());
    let answer = c
        .http
        .get(format!("{}/files?tags=doomed", c.url()))
        .bearer_auth(&key)
        .header("x-redcloud-frontier", token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_controller_silent_for_longer_than_retire_after_is_retired_by_itself() {
    let (c, key, chunks, old) = wiped(&["--retire-after", "4s"]).await;
    let (status, _) = c.delete_at(0, &key, "doomed").await;
    assert_eq!(status, 200);
    c.wait_collected(&chunks, Duration::from_secs(30)).await;
    for i in 0..2 {
        assert!(!token_origins(&c, i, &key).await.contains(&old));
    }
    let (status, body) = c.forget(&old.to_string(), false).await;
    assert_eq!(
        (status, &body["already_retired"]),
        (200, &json!(true)),
        "{body}"
    );
}

#[tokio::test]
async fn a_controller_retired_while_alive_takes_no_more_writes_and_its_operations_stay() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(1)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;
    c.upload_id_at(1, &key, "before.txt", b"kept".to_vec(), "t")
        .await;
    c.converged(Duration::from_secs(10)).await;
    let retiree = c.state_of(1).await["node_id"].as_str().unwrap().to_owned();
    let (status, body) = c.forget(&retiree, true).await;
    assert_eq!(status, 200, "{body}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = status_json(
            c.upload_at(1, &key, "after.txt", b"refused".to_vec(), "t")
                .await,
        )
        .await;
        if status == 503 {
            assert_eq!(body["code"], "CONTROLLER_RETIRED", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retired controller still takes writes: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..2 {
        assert_eq!(
            c.download_at(i, &key, "before.txt").await,
            (200, b"kept".to_vec()),
            "controller {i}"
        );
    }
}
