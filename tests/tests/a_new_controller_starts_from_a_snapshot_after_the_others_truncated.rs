//! Controllers take snapshots at the frontier every live controller has reached and truncate
//! their logs below them. A controller that then joins with an empty data directory (here: one
//! wiped and started again, under a new id) cannot be sent the truncated operations: it fetches
//! a peer's snapshot, checks its digest, installs it, and catches up with ordinary
//! anti-entropy. It ends with the same digest as the others, serves the data written before
//! it joined, and what is written through it reaches the others. `redcloud log` says where a
//! truncated history starts and rebuilds it on top of the snapshot; a controller whose read
//! model is lost rebuilds it from its own snapshot and log.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_cli::logtool::{self, Reader, Source};
use redcloud_tests::{ClusterBuilder, test_data};

#[tokio::test]
async fn a_new_controller_starts_from_a_snapshot_after_the_others_truncated() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(1)
        .controller_args(&["--snapshot-interval", "300ms", "--log-retention", "0s"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    for n in 0..12u64 {
        let tag = if n % 2 == 0 { "even" } else { "odd" };
        c.upload_at(
            (n % 2) as usize,
            &key,
            &format!("f{n}.bin"),
            test_data(n, 2000),
            tag,
        )
        .await;
    }
    c.converged(Duration::from_secs(20)).await;
    let (status, _) = c.delete_at(0, &key, "odd").await;
    assert_eq!(status, 200);
    let before = c.converged(Duration::from_secs(20)).await;
    let operations = before[0]["operations"].as_u64().unwrap();

    // Both truncate everything (retention 0) once both have it.
    for i in 0..2 {
        c.state_until(i, Duration::from_secs(20), |s| {
            s["log_base_operations"].as_u64() == Some(operations)
                && s["snapshot_operations"].as_u64() == Some(operations)
        })
        .await;
    }

    // The status page, `redcloud status` and the metrics say where the history starts.
    let log = &c.status_page_of(0).await["log"];
    assert_eq!(
        log["truncated_operations"].as_u64(),
        Some(operations),
        "{log}"
    );
    assert_eq!(
        log["snapshot_operations"].as_u64(),
        Some(operations),
        "{log}"
    );
    let metrics = c.metrics_of(0).await;
    assert!(
        metrics.contains(&format!("redcloud_snapshot_operations {operations}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("redcloud_log_truncated_operations_total "),
        "{metrics}"
    );

    // The log tool replays a truncated history on top of the snapshot, live and offline.
    let link = redcloud_tests::cluster_link();
    let live = Source::Server(format!("http://{}", c.controller.cluster_address()));
    let offline = Source::Dir(c.controller.data_dir().to_owned());
    for source in [live, offline] {
        let reader = Reader::new(source.clone(), &link).unwrap();
        let rebuilt = logtool::rebuild(&reader, None, &[]).await.unwrap();
        assert_eq!(
            rebuilt.digest,
            before[0]["digest"].as_str().unwrap(),
            "{source}"
        );
        assert_eq!(rebuilt.from_snapshot, operations, "{source}");
        let state = reader.state().await.unwrap();
        assert_eq!(
            state.history_starts_after.values().sum::<u64>(),
            operations,
            "{source}"
        );
    }

    // Controller 1 comes back empty, under a new id: the log it needs is gone everywhere.
    let node = &mut c.more_controllers[0];
    node.wipe();
    node.start();
    c.wait_ready(1).await;
    let joined = c
        .state_until(1, Duration::from_secs(30), |s| {
            s["log_base_operations"].as_u64().unwrap_or(0) >= operations
        })
        .await;
    assert!(
        joined["snapshot_operations"].as_u64().unwrap() >= operations,
        "the snapshot it started from is the one it serves: {joined}"
    );
    let after = c.converged(Duration::from_secs(20)).await;
    assert_eq!(after[0]["digest"], after[1]["digest"]);
    assert!(
        c.controller_at(1)
            .log()
            .contains("started from a peer's snapshot")
    );

    // It serves what was written before it joined, and what is written through it spreads.
    let listed = c.list_at(1, &key, "even").await;
    assert_eq!(listed.len(), 6, "{listed:?}");
    assert!(
        c.list_at(1, &key, "odd").await.is_empty(),
        "the deletion came with the snapshot"
    );
    let (status, bytes) = c.download_at(1, &key, "f4.bin").await;
    assert_eq!((status, bytes), (200, test_data(4, 2000)));
    c.upload_at(1, &key, "late.bin", test_data(99, 3000), "even")
        .await;
    c.converged(Duration::from_secs(20)).await;
    assert_eq!(c.list_at(0, &key, "even").await.len(), 7);
}
