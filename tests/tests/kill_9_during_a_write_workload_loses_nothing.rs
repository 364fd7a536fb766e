//! Controllers and chunkservers are killed with SIGKILL and restarted while clients keep
//! uploading through every controller: every upload that was acknowledged is, once the
//! cluster has settled, listed and byte-identical on every controller.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use redcloud_tests::{ClusterBuilder, http_client, status_json, test_data};

#[tokio::test]
async fn kill_9_during_a_write_workload_loses_nothing() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(3)
        .controller_args(&[
            "--chunk-size-bytes",
            "65536",
            "--repair-interval-ms",
            "300",
            "--chunk-io-timeout-ms",
            "3000",
        ])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;

    let urls: Vec<String> = (0..3).map(|i| c.url_of(i)).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3usize)
        .map(|w| {
            let (urls, key, stop) = (urls.clone(), key.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let http = http_client();
                let mut acknowledged = Vec::new();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("w{w}-{n}");
                    let data = test_data(w as u64 * 1000 + n, 150_000);
                    let form = reqwest::multipart::Form::new().text("tags", "load").part(
                        "file",
                        reqwest::multipart::Part::bytes(data.clone()).file_name(name.clone()),
                    );
                    // Each writer rotates through the controllers; failures are allowed,
                    // only acknowledged uploads must survive.
                    let url = &urls[(w + n as usize) % urls.len()];
                    let sent = http
                        .post(format!("{url}/files"))
                        .bearer_auth(&key)
                        .multipart(form)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        let (status, _) = status_json(response).await;
                        if status == 201 {
                            acknowledged.push((name, data));
                        }
                    }
                    n += 1;
                }
                acknowledged
            })
        })
        .collect();

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let chunkserver = round % 3;
        c.chunkservers[chunkserver].kill();
        if round == 1 {
            c.more_controllers[0].kill();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.chunkservers[chunkserver].start();
        if round == 1 {
            c.more_controllers[0].start();
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 10,
        "the workload barely ran: {} uploads acknowledged",
        acknowledged.len()
    );

    c.wait_ready(3).await;
    c.converged(Duration::from_secs(30)).await;
    for controller in 0..3 {
        // An upload may also have committed with its answer lost to a kill: more is fine,
        // less is not.
        let listed: std::collections::BTreeSet<String> = c
            .list_at(controller, &key, "load")
            .await
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect();
        let missing: Vec<&String> = acknowledged
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !listed.contains(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "controller {controller} lost acknowledged uploads: {missing:?}"
        );
    }
    for (i, (name, data)) in acknowledged.iter().enumerate() {
        let controller = i % 3;
        let (status, body) = c.download_at(controller, &key, name).await;
        assert_eq!(status, 200, "{name} from controller {controller}");
        assert!(body == *data, "{name} differs");
    }
    println!(
        "{} acknowledged uploads survived the kills",
        acknowledged.len()
    );
}
