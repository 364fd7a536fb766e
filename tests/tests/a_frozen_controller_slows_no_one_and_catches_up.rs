//! One controller is frozen (SIGSTOP: its sockets accept connections but nothing answers):
//! writes on the others still reach each other as fast as before, and the frozen one catches
//! up within seconds of resuming.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_tests::{Cluster, ClusterBuilder};

/// How long a registration on controller 0 takes to be usable on controller 1, each time.
async fn propagation(c: &Cluster, rounds: usize, prefix: &str) -> Vec<Duration> {
    let mut samples = Vec::new();
    for i in 0..rounds {
        let key = c.register_at(0, &format!("{prefix}{i}"), "pw").await;
        let started = Instant::now();
        loop {
            if c.get_at(1, &key, "/files?tags=").await.status() == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{prefix}{i} never reached controller 1"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

#[tokio::test]
async fn a_frozen_controller_slows_no_one_and_catches_up() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .start()
        .await;
    let before = propagation(&c, 15, "before").await;
    c.more_controllers[1].freeze();
    let frozen = propagation(&c, 30, "frozen").await;
    let (before_max, frozen_p50, frozen_max) = (
        before[before.len() - 1],
        frozen[frozen.len() / 2],
        frozen[frozen.len() - 1],
    );
    println!(
        "propagation before the freeze: max {before_max:?}; while frozen: p50 {frozen_p50:?}, max {frozen_max:?}"
    );
    assert!(
        frozen_max < Duration::from_secs(1),
        "a frozen peer slowed the others: {frozen:?}"
    );

    c.more_controllers[1].thaw();
    let resumed = Instant::now();
    c.converged(Duration::from_secs(10)).await;
    println!("the thawed controller caught up in {:?}", resumed.elapsed());
}
