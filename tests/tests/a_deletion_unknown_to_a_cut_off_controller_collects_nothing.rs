//! Scenario 8: a file deleted on one side while the other side cannot hear. Its chunks stay on
//! every chunkserver for as long as a controller that may still show the file has not heard of
//! the deletion, however long the grace period has passed; once the partition heals they are
//! collected, and the data of every live file stays.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, test_data};

const GRACE_MS: u64 = 3000;

#[tokio::test]
async fn a_deletion_unknown_to_a_cut_off_controller_collects_nothing() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .quick_gc(GRACE_MS)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let doomed_data = test_data(1, 300_000);
    let kept_data = test_data(2, 300_000);
    assert_eq!(
        c.upload_at(0, &key, "doomed.bin", doomed_data, "doomed")
            .await
            .status(),
        201
    );
    let doomed_chunks = c.chunks_everywhere(Duration::from_secs(20)).await;
    assert_eq!(doomed_chunks.len(), 5, "300 kB in 64 KiB chunks");
    assert_eq!(
        c.upload_at(0, &key, "kept.bin", kept_data.clone(), "kept")
            .await
            .status(),
        201
    );
    let all_chunks = c.chunks_everywhere(Duration::from_secs(20)).await;
    let kept_chunks: BTreeSet<String> = all_chunks.difference(&doomed_chunks).cloned().collect();
    c.converged(Duration::from_secs(10)).await;

    c.partition(
        &[
            Member::Controller(0),
            Member::Chunkserver(0),
            Member::Chunkserver(1),
        ],
        &[Member::Controller(1)],
    );
    let (status, body) = c.delete_at(0, &key, "doomed").await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(3 * GRACE_MS)).await;
    for (i, cs) in c.chunkservers.iter().enumerate() {
        assert!(
            cs.chunk_ids().is_superset(&all_chunks),
            "chunkserver {i} lost data while controller 1 cannot know of the deletion"
        );
    }
    assert_eq!(
        c.list_at(1, &key, "doomed").await.len(),
        1,
        "the cut-off controller still shows the file"
    );

    c.heal();
    c.wait_collected(&doomed_chunks, Duration::from_secs(30))
        .await;
    for cs in &c.chunkservers {
        assert!(
            cs.chunk_ids().is_superset(&kept_chunks),
            "a live file lost data"
        );
    }
    for i in 0..2 {
        assert!(c.list_at(i, &key, "doomed").await.is_empty());
        assert_eq!(
            c.download_at(i, &key, "kept.bin").await,
            (200, kept_data.clone())
        );
    }
}
