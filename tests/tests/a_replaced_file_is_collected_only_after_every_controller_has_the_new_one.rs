//! Scenario 10: a user replaces a file on one controller while another is cut off. Every
//! controller ends up with the new version and its data; the old version's data stays until
//! the cut-off controller has heard of the replacement, and is collected after that.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, test_data};

const GRACE_MS: u64 = 3000;

#[tokio::test]
async fn a_replaced_file_is_collected_only_after_every_controller_has_the_new_one() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(2)
        .quick_gc(GRACE_MS)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let old = test_data(1, 200_000);
    let new = test_data(2, 250_000);
    assert_eq!(
        c.upload_at(0, &key, "report.pdf", old.clone(), "work")
            .await
            .status(),
        201
    );
    let old_chunks = c.chunks_everywhere(Duration::from_secs(20)).await;
    c.converged(Duration::from_secs(10)).await;

    c.partition(
        &[
            Member::Controller(0),
            Member::Controller(1),
            Member::Chunkserver(0),
            Member::Chunkserver(1),
        ],
        &[Member::Controller(2)],
    );
    let response = c
        .upload_at(0, &key, "report.pdf", new.clone(), "work")
        .await;
    assert_eq!(response.status(), 201);
    let all_chunks = c.chunks_everywhere(Duration::from_secs(20)).await;
    let new_chunks: BTreeSet<String> = all_chunks.difference(&old_chunks).cloned().collect();
    assert!(!new_chunks.is_empty());
    tokio::time::sleep(Duration::from_millis(3 * GRACE_MS)).await;
    assert!(
        c.chunks_anywhere().is_superset(&old_chunks),
        "the old version was collected while controller 2 still shows it"
    );
    let shown = c.list_at(2, &key, "work").await;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0]["size"], 200_000,
        "controller 2 still shows the old version"
    );
    for i in 0..2 {
        assert_eq!(
            c.download_at(i, &key, "report.pdf").await,
            (200, new.clone())
        );
    }

    c.heal();
    c.wait_collected(&old_chunks, Duration::from_secs(30)).await;
    for cs in &c.chunkservers {
        assert!(cs.chunk_ids().is_superset(&new_chunks));
    }
    c.converged(Duration::from_secs(10)).await;
    for i in 0..3 {
        let shown = c.list_at(i, &key, "work").await;
        assert_eq!(shown.len(), 1, "controller {i}: {shown:?}");
        assert_eq!(shown[0]["size"], 250_000);
        assert_eq!(
            c.download_at(i, &key, "report.pdf").await,
            (200, new.clone())
        );
    }
}
