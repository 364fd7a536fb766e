//! A chunkserver that accepts connections and never answers (SIGSTOP) holds an upload back
//! by at most `--chunk-write-timeout-ms` once `--min-replicas` copies are durable: the upload
//! is acknowledged, later chunks of it skip the stalled chunkserver, and repair copies every
//! chunk to it once it answers again.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_tests::{ClusterBuilder, test_data};

#[tokio::test]
async fn a_stalled_chunkserver_delays_an_upload_by_at_most_the_write_timeout() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .chunkservers(2)
        .controller_args(&[
            "--chunk-size-bytes",
            "65536",
            "--chunk-write-timeout-ms",
            "1000",
            // Without the write timeout, every chunk would wait this long for the stalled one.
            "--chunk-io-timeout-ms",
            "60000",
            "--repair-interval-ms",
            "300",
        ])
        .start()
        .await;
    let key = c.register("carol", "pw").await;
    c.chunkservers[1].freeze();
    let data = test_data(7, 20 * 65536);
    let started = Instant::now();
    let response = c.upload(&key, "big.bin", data.clone(), "stalled").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    assert!(
        took < Duration::from_secs(15),
        "a 20-chunk upload took {took:?} beside a stalled chunkserver"
    );
    println!("upload of 20 chunks beside a stalled chunkserver took {took:?}");
    let (status, body) = c.download(&key, "big.bin").await;
    assert_eq!(status, 200);
    assert_eq!(body, data);

    c.chunkservers[1].thaw();
    let everywhere = c.chunks_everywhere(Duration::from_secs(60)).await;
    assert_eq!(
        everywhere.len(),
        20,
        "repair brought every chunk to the stalled chunkserver"
    );
}
