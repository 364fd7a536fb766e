//! Two controllers partitioned, different writes on each: `redcloud log diff` names exactly the
//! operations each lacks and the entities whose state differs, with the operations behind each
//! side; it works on live controllers and on data directories alike; after the heal it reports
//! nothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use redcloud_cli::logtool::{self, Reader, Source};
use redcloud_tests::{Cluster, ClusterBuilder, Member, test_data};
use serde_json::Value;

fn seq_of(state: &Value, node: &str) -> u64 {
    state["frontier"][node].as_u64().unwrap_or(0)
}

async fn diff(a: Source, b: Source) -> logtool::Diff {
    let link = redcloud_tests::cluster_link();
    logtool::diff(
        &Reader::new(a, &link).unwrap(),
        &Reader::new(b, &link).unwrap(),
    )
    .await
    .unwrap()
}

fn live(c: &Cluster, i: usize) -> Source {
    Source::Server(format!("http://{}", c.controller_at(i).cluster_address()))
}

#[tokio::test]
async fn log_diff_names_what_a_partition_split() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let shared_id = c
        .upload_id_at(0, &key, "shared.txt", test_data(1, 1000), "t")
        .await;
    c.converged(Duration::from_secs(10)).await;
    assert!(diff(live(&c, 0), live(&c, 1)).await.is_empty());
    let before = c.state_of(0).await;
    let (id0, id1) = (
        before["node_id"].as_str().unwrap().to_owned(),
        c.state_of(1).await["node_id"].as_str().unwrap().to_owned(),
    );

    c.partition(
        &[Member::Controller(0), Member::Chunkserver(0)],
        &[Member::Controller(1), Member::Chunkserver(1)],
    );
    let left_id = c
        .upload_id_at(0, &key, "left.txt", test_data(2, 1000), "t")
        .await;
    let right_id = c
        .upload_id_at(1, &key, "right.txt", test_data(3, 1000), "t")
        .await;
    let tagged = c
        .http_post_json(
            1,
            &key,
            "/files/tags",
            serde_json::json!({"query_tags": ["t"], "new_tags": ["urgent"]}),
        )
        .await;
    assert_eq!(tagged.0, 200, "{}", tagged.1);
    let (after0, after1) = (c.state_of(0).await, c.state_of(1).await);

    let found = diff(live(&c, 0), live(&c, 1)).await;
    let ranges = |m: &[redcloud_controller::inspect::Missing]| -> Vec<(String, u64, u64)> {
        m.iter().map(|m| (m.origin.clone(), m.from, m.to)).collect()
    };
    assert_eq!(
        ranges(&found.only_in_a),
        [(
            id0.clone(),
            seq_of(&before, &id0) + 1,
            seq_of(&after0, &id0)
        )],
        "controller 1 lacks exactly controller 0's upload"
    );
    assert_eq!(
        ranges(&found.only_in_b),
        [(
            id1.clone(),
            seq_of(&before, &id1) + 1,
            seq_of(&after1, &id1)
        )],
        "controller 0 lacks exactly controller 1's upload and tag change"
    );
    let differing: BTreeSet<String> = found.entities.iter().map(|e| e.entity.clone()).collect();
    let expected: BTreeSet<String> = [&left_id, &right_id, &shared_id]
        .iter()
        .map(|id| format!("file:{id}"))
        .collect();
    assert_eq!(differing, expected);
    let shared_diff = found
        .entities
        .iter()
        .find(|e| e.entity == format!("file:{shared_id}"))
        .unwrap();
    assert!(
        shared_diff
            .ops_b
            .iter()
            .any(|op| op.starts_with(&id1) && op.ends_with('*')),
        "the tag change decided the state on controller 1 and is marked as lacking on 0: {shared_diff:?}"
    );
    assert!(shared_diff.b.as_ref().unwrap().contains("urgent"));
    assert!(!shared_diff.a.as_ref().unwrap().contains("urgent"));

    let from_dirs = diff(
        Source::Dir(c.controller_at(0).data_dir().to_owned()),
        Source::Dir(c.controller_at(1).data_dir().to_owned()),
    )
    .await;
    assert_eq!(
        from_dirs, found,
        "a running node's data directory reads the same"
    );

    c.heal();
    c.converged(Duration::from_secs(20)).await;
    let healed = diff(live(&c, 0), live(&c, 1)).await;
    assert!(healed.is_empty(), "{healed:?}");
}
