//! A chunkserver is killed with SIGKILL while uploads stream through the controller and then
//! restarted: every upload the controller acknowledged downloads byte-identical.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redcloud_tests::{ClusterBuilder, status_json, test_data};

const FILE_BYTES: usize = 24 * 1024 * 1024;

#[tokio::test]
async fn chunkserver_killed_mid_upload_loses_nothing_acknowledged() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .chunkservers(2)
        .controller_args(&[
            "--chunk-size-bytes",
            "262144",
            "--chunk-io-timeout-ms",
            "5000",
        ])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let (url, http) = (c.url(), c.http.clone());
    let uploads: Vec<_> = (0..6u64)
        .map(|i| {
            let (url, http, key) = (url.clone(), http.clone(), key.clone());
            tokio::spawn(async move {
                let data = Arc::new(test_data(i, FILE_BYTES));
                let form = reqwest::multipart::Form::new().text("tags", "load").part(
                    "file",
                    reqwest::multipart::Part::bytes(data.to_vec()).file_name(format!("f{i}")),
                );
                let started = Instant::now();
                let response = http
                    .post(format!("{url}/files"))
                    .bearer_auth(&key)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = status_json(response).await;
                (i, status, body, data, started, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed_at = Instant::now();
    c.chunkservers[0].kill();

    let mut acknowledged = Vec::new();
    let mut straddled = 0;
    for upload in uploads {
        let (i, status, body, data, started, finished) = upload.await.unwrap();
        assert!(
            status == 201 || status == 503,
            "upload {i}: {status} {body}"
        );
        if status == 201 {
            if started < killed_at && killed_at < finished {
                straddled += 1;
            }
            acknowledged.push((format!("f{i}"), data));
        }
    }
    assert!(
        straddled > 0,
        "no acknowledged upload was in flight when the chunkserver died"
    );

    c.chunkservers[0].start();
    c.wait_ready(2).await;
    for (name, data) in &acknowledged {
        let (status, body) = c.download(&key, name).await;
        assert_eq!(status, 200, "{name}");
        assert!(body == **data, "{name} came back different");
    }
}
