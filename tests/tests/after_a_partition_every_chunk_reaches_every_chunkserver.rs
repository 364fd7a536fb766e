//! [C0, CS0] | [C1, CS1, CS2]: uploads on both sides; after the heal every chunk is on every
//! chunkserver.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, test_data};

#[tokio::test]
async fn after_a_partition_every_chunk_reaches_every_chunkserver() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(3)
        .controller_args(&[
            "--chunkserver-timeout-ms",
            "1500",
            "--chunk-size-bytes",
            "65536",
            "--repair-interval-ms",
            "300",
        ])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;
    c.partition(
        &[Member::Controller(0), Member::Chunkserver(0)],
        &[
            Member::Controller(1),
            Member::Chunkserver(1),
            Member::Chunkserver(2),
        ],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for i in 0..3u64 {
        assert_eq!(
            c.upload_at(0, &key, &format!("left{i}"), test_data(i, 200_000), "t")
                .await
                .status(),
            201
        );
        assert_eq!(
            c.upload_at(
                1,
                &key,
                &format!("right{i}"),
                test_data(10 + i, 200_000),
                "t"
            )
            .await
            .status(),
            201
        );
    }
    let left = c.chunkservers[0].chunk_ids();
    let right = c.chunkservers[1].chunk_ids();
    assert!(
        left.is_disjoint(&right),
        "during the partition each side holds only its own chunks"
    );

    c.heal();
    let everywhere = c.chunks_everywhere(Duration::from_secs(30)).await;
    assert_eq!(everywhere, left.union(&right).cloned().collect());
    assert_eq!(everywhere.len(), 6 * 4, "six files of four chunks");
}
