//! A chunkserver that reaches only one controller is healthy on every controller (they share
//! what they hear), and once it stops, every controller marks it failed at about the same time.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_tests::{ClusterBuilder, Member};

async fn healthy_on(c: &redcloud_tests::Cluster, i: usize) -> u64 {
    let response = c.get_at(i, "", "/ready").await;
    let body: serde_json::Value = response.json().await.unwrap();
    body["healthy_chunkservers"].as_u64().unwrap()
}

#[tokio::test]
async fn chunkserver_health_is_the_same_on_every_controller() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(1)
        .controller_args(&[
            "--chunkserver-timeout-ms",
            "3000",
            "--discovery-interval-ms",
            "300",
        ])
        .start()
        .await;
    // The chunkserver's heartbeats reach controller 0 only.
    c.partition(
        &[Member::Chunkserver(0)],
        &[Member::Controller(1), Member::Controller(2)],
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    for i in 0..3 {
        assert_eq!(
            healthy_on(&c, i).await,
            1,
            "controller {i} no longer counts a chunkserver that controller 0 hears"
        );
    }

    c.chunkservers[0].kill();
    let killed = Instant::now();
    for i in 0..3 {
        while healthy_on(&c, i).await != 0 {
            assert!(
                killed.elapsed() < Duration::from_secs(8),
                "controller {i} still counts a chunkserver silent for {:?}",
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
