//! A controller whose disk fills up keeps serving reads, answers writes with 507
//! INSUFFICIENT_STORAGE, leaves a peer's writes to anti-entropy instead of taking them, says
//! so on `/status` and in `/metrics`, and once space is freed takes writes again and
//! converges with its peer, in the same process: no acknowledged write is lost, no restart.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redcloud_tests::{Cluster, ClusterBuilder, can_partition, status_json, test_data};
use serde_json::{Value, json};

/// The names of the caller's files on controller `i`.
async fn names_at(c: &Cluster, i: usize, key: &str) -> BTreeSet<String> {
    c.list_at(i, key, "")
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `t` and 99 tags of noise: an operation larger than a page of the filesystem, which
/// the log cannot compress away, so that the log, not only the read model, finds the disk
/// full.
fn page_sized_tags(seed: u64) -> String {
    std::iter::once("t".to_owned())
        .chain((0..99).map(|n| hex::encode(test_data(seed * 1000 + n, 60))))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn a_full_controller_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    if !can_partition() {
        eprintln!("skipped: a tmpfs data directory needs root");
        return;
    }
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(1)
        .controller_data_dir_on_tmpfs(0, 32 << 20)
        .start()
        .await;
    let pid = c.controller.pid().unwrap();
    let key = c.register("alice", "pw").await;
    let mut stored = BTreeSet::new();
    c.upload_id_at(0, &key, "before.txt", test_data(1, 1000), "t")
        .await;
    stored.insert("before.txt".to_owned());
    c.converged(Duration::from_secs(10)).await;

    let filler = c.controller.fill_data_dir();
    // The log and the read model may still fit a write or two into blocks they hold already.
    // The write that first finds no room is refused; if the log took it before the read model
    // ran out, it says the change is recorded (it shows once there is room). Every write after
    // it is refused outright.
    let mut refusal = None;
    let mut recorded_while_full = BTreeSet::new();
    for i in 0..200 {
        let name = format!("during-{i}.txt");
        let (status, body) = status_json(
            c.upload_at(0, &key, &name, test_data(i, 1000), &page_sized_tags(i))
                .await,
        )
        .await;
        let detail = body["detail"].as_str().unwrap_or_default();
        match status {
            201 => {
                stored.insert(name);
            }
            507 if detail.contains("your change is recorded") => {
                recorded_while_full.insert(name);
            }
            507 => {
                refusal = Some(body);
                break;
            }
            other => panic!("an upload on a full disk answered {other}: {body}"),
        }
    }
    let refusal = refusal.expect("no write was refused on a full disk");
    assert_eq!(refusal["code"], "INSUFFICIENT_STORAGE", "{refusal}");
    let detail = refusal["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("This controller's disk has been full since ")
            && detail.contains("it accepts no changes until space is freed")
            && detail.ends_with("reads still work"),
        "{detail}"
    );
    let (status, body) = c
        .http_post_json(
            0,
            &key,
            "/files/tags",
            json!({"query_tags": ["t"], "new_tags": ["more"]}),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (507, &json!("INSUFFICIENT_STORAGE")),
        "{body}"
    );

    // Reads go on.
    assert_eq!(names_at(&c, 0, &key).await, stored);
    assert_eq!(
        c.download_at(0, &key, "before.txt").await,
        (200, test_data(1, 1000))
    );
    let status = c.status_page_of(0).await;
    assert!(
        status["disk_full"]["since_unix_ms"].as_u64().is_some(),
        "{status}"
    );
    assert!(
        status["disk_full"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("the disk holding the log is full: no space left on device"),
        "the log itself ran out of room: {status}"
    );
    let page = c.get_at(0, "", "/status").await.text().await.unwrap();
    assert!(page.contains("Disk full since"), "{page}");
    assert!(
        c.metrics_of(0)
            .await
            .lines()
            .any(|l| l == "redcloud_log_disk_full 1"),
        "the metric does not say so"
    );

    // The peer takes writes; the full controller leaves them to anti-entropy meanwhile.
    for i in 0..5 {
        let name = format!("on-the-peer-{i}.txt");
        c.upload_id_at(1, &key, &name, test_data(100 + i, 1000), "t")
            .await;
        stored.insert(name);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (full, peer) = (c.state_of(0).await, c.state_of(1).await);
    assert!(
        full["operations"].as_u64() < peer["operations"].as_u64(),
        "the full controller took operations in: {full} vs {peer}"
    );

    // Space returns: writes resume by themselves, and both controllers hold every
    // acknowledged write and every write that was recorded.
    std::fs::remove_file(filler).unwrap();
    stored.extend(recorded_while_full);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = status_json(
            c.upload_at(0, &key, "after.txt", test_data(7, 1000), "t")
                .await,
        )
        .await;
        if status == 201 {
            stored.insert("after.txt".to_owned());
            break;
        }
        assert_eq!(status, 507, "{body}");
        assert!(
            Instant::now() < deadline,
            "writes did not resume after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.converged(Duration::from_secs(30)).await;
    for i in 0..2 {
        assert_eq!(names_at(&c, i, &key).await, stored, "controller {i}");
    }
    assert_eq!(c.status_page_of(0).await["disk_full"], Value::Null);
    assert!(
        c.metrics_of(0)
            .await
            .lines()
            .any(|l| l == "redcloud_log_disk_full 0")
    );
    assert!(c.controller.is_running(), "{}", c.controller.log());
    assert_eq!(
        c.controller.pid(),
        Some(pid),
        "the controller was restarted"
    );
    assert!(
        c.controller.log().contains("space is free again"),
        "{}",
        c.controller.log()
    );
}
