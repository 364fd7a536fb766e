//! The controller is killed with SIGKILL and restarted: every user, key, file and tag is back.
//! Then its read model is deleted: the restart rebuilds it from the log, digest for digest.
#![allow(clippy::unwrap_used)]

use redcloud_tests::{ClusterBuilder, test_data};

#[tokio::test]
async fn controller_restarts_recover_all_metadata() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    for i in 0..20u64 {
        let tags = if i % 2 == 0 { "even,all" } else { "odd,all" };
        assert_eq!(
            c.upload(
                &key,
                &format!("f{i}"),
                test_data(i, 1000 + i as usize),
                tags
            )
            .await
            .status(),
            201
        );
    }
    let before = c.list(&key, "").await;
    let state_before = c.state().await;
    assert_eq!(before.len(), 20);

    c.restart_controller().await;
    assert_eq!(c.list(&key, "").await, before, "metadata survives kill -9");
    assert_eq!(c.state().await["digest"], state_before["digest"]);
    assert_eq!(c.download(&key, "f7").await, (200, test_data(7, 1007)));

    c.controller.kill();
    let read_model = c.controller.data_dir.join("readmodel.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", read_model.display()));
    }
    c.controller.start();
    c.wait_ready(1).await;
    assert_eq!(
        c.state().await["digest"],
        state_before["digest"],
        "rebuilt from the log"
    );
    assert_eq!(c.list(&key, "even").await.len(), 10);
    assert!(
        c.controller
            .log()
            .contains("bringing the read model up to the log")
    );
}
