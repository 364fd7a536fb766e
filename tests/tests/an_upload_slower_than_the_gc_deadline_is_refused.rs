//! Garbage collection may take chunks written more than the grace period ago that no recorded
//! file references, so an upload must be recorded within half the grace period of its first
//! chunk write. A slower one is refused with a retryable error and leaves no file behind.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt;
use redcloud_tests::{ClusterBuilder, status_json, test_data};

#[tokio::test]
async fn an_upload_slower_than_the_gc_deadline_is_refused() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(1)
        .chunkservers(1)
        .controller_args(&[
            "--chunk-size-bytes",
            "65536",
            "--gc-grace-ms",
            "2000",
            "--gc-report-max-age-ms",
            "500",
        ])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let slow_upload = |pause: Duration| {
        let halves = vec![test_data(1, 100_000), test_data(2, 100_000)];
        let body = futures_util::stream::iter(halves.into_iter().enumerate()).then(
            move |(i, half)| async move {
                if i == 1 {
                    tokio::time::sleep(pause).await;
                }
                Ok::<_, std::io::Error>(half)
            },
        );
        let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body))
            .file_name("slow.bin");
        let form = reqwest::multipart::Form::new()
            .text("tags", "t")
            .part("file", part);
        redcloud_tests::http_client()
            .post(format!("{}/files", c.url_of(0)))
            .bearer_auth(&key)
            .multipart(form)
            .send()
    };

    let (status, body) = status_json(slow_upload(Duration::from_millis(1500)).await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "CHUNKSERVER_UNAVAILABLE");
    assert!(c.list_at(0, &key, "t").await.is_empty());

    let (status, body) = status_json(slow_upload(Duration::from_millis(100)).await.unwrap()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(c.list_at(0, &key, "t").await.len(), 1);
}
