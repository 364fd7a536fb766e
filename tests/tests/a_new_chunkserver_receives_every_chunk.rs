//! A chunkserver that joins an existing cluster receives every chunk the files reference.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, test_data};

#[tokio::test]
async fn a_new_chunkserver_receives_every_chunk() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .controller_args(&["--chunk-size-bytes", "65536", "--repair-interval-ms", "300"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    for i in 0..6u64 {
        assert_eq!(
            c.upload(&key, &format!("f{i}"), test_data(i, 300_000), "t")
                .await
                .status(),
            201
        );
    }
    let existing = c.chunkservers[0].chunk_ids();
    assert_eq!(existing.len(), 6 * 5, "6 files of 5 chunks each");

    let newcomer = c.add_chunkserver();
    c.wait_ready(2).await;
    let everywhere = c.chunks_everywhere(Duration::from_secs(30)).await;
    assert_eq!(everywhere, existing);
    assert_eq!(c.chunkservers[newcomer].chunk_ids(), existing);

    // The new copies serve reads on their own.
    c.chunkservers[0].kill();
    for i in 0..6u64 {
        assert_eq!(
            c.download_at(1, &key, &format!("f{i}")).await,
            (200, test_data(i, 300_000))
        );
    }
}
