//! The same user uploads the same name on both sides of a partition: after the heal both files
//! exist on every controller, the newer under the name and the other under a conflict name.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, test_data};

#[tokio::test]
async fn concurrent_uploads_of_one_name_on_two_sides_both_survive() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .controller_args(&["--chunkserver-timeout-ms", "1500"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    c.converged(Duration::from_secs(10)).await;
    c.partition(
        &[Member::Controller(0), Member::Chunkserver(0)],
        &[Member::Controller(1), Member::Chunkserver(1)],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (left, right) = (test_data(1, 20_000), test_data(2, 30_000));
    assert_eq!(
        c.upload_at(0, &key, "report.pdf", left.clone(), "t")
            .await
            .status(),
        201
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        c.upload_at(1, &key, "report.pdf", right.clone(), "t")
            .await
            .status(),
        201
    );
    c.heal();
    c.converged(Duration::from_secs(20)).await;
    for controller in 0..2 {
        let files = c.list_at(controller, &key, "").await;
        let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"report.pdf"));
        let conflict = names
            .iter()
            .find(|n| n.starts_with("report (conflict ") && n.ends_with(").pdf"))
            .unwrap();
        let (status, newest) = c.download_at(controller, &key, "report.pdf").await;
        assert_eq!(status, 200);
        assert!(newest == right, "the later upload keeps the name");
        let (status, older) = c
            .download_at(controller, &key, &conflict.replace(' ', "%20"))
            .await;
        assert_eq!(status, 200);
        assert!(older == left, "the other is kept under its conflict name");
    }
}
