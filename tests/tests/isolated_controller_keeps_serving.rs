//! A controller alone with a chunkserver, cut from everything else, keeps serving reads and
//! writes (new users included); when the cut heals, everything converges.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, test_data};

#[tokio::test]
async fn isolated_controller_keeps_serving() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(2)
        .controller_args(&["--chunkserver-timeout-ms", "1500"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;
    c.partition(
        &[Member::Controller(2), Member::Chunkserver(1)],
        &[
            Member::Controller(0),
            Member::Controller(1),
            Member::Chunkserver(0),
        ],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let island_key = c.register_at(2, "islander", "pw").await;
    assert_eq!(
        c.upload_at(2, &island_key, "island.txt", test_data(1, 10_000), "t")
            .await
            .status(),
        201
    );
    assert_eq!(
        c.upload_at(2, &key, "alice-island.txt", test_data(2, 10_000), "t")
            .await
            .status(),
        201
    );
    assert_eq!(c.list_at(2, &key, "t").await.len(), 1);
    assert_eq!(
        c.download_at(2, &island_key, "island.txt").await,
        (200, test_data(1, 10_000))
    );
    let mainland = c.get_at(0, &island_key, "/files?tags=").await;
    assert_eq!(
        mainland.status(),
        401,
        "the mainland has not heard of the islander yet"
    );

    c.heal();
    c.converged(Duration::from_secs(20)).await;
    for controller in 0..3 {
        assert_eq!(
            c.download_at(controller, &island_key, "island.txt").await,
            (200, test_data(1, 10_000))
        );
        assert_eq!(c.list_at(controller, &key, "t").await.len(), 1);
    }
}
