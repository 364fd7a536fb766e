//! [C0, C1, CS0] | [C2, CS1]: uploads, tag changes and deletes on both sides while cut off;
//! after the heal every controller has the same read model, and every acknowledged upload
//! downloads byte-identical from every controller.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::{ClusterBuilder, Member, status_json, test_data};
use serde_json::json;

#[tokio::test]
async fn partitioned_sides_write_and_converge_after_heal() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(2)
        .controller_args(&[
            "--chunkserver-timeout-ms",
            "1500",
            "--chunk-size-bytes",
            "100000",
        ])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    assert_eq!(
        c.upload(&key, "before.bin", test_data(0, 50_000), "old,shared")
            .await
            .status(),
        201
    );
    c.converged(Duration::from_secs(10)).await;

    c.partition(
        &[
            Member::Controller(0),
            Member::Controller(1),
            Member::Chunkserver(0),
        ],
        &[Member::Controller(2), Member::Chunkserver(1)],
    );
    // Let each side notice the other side's chunkserver is gone, so writes stop trying it.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let mut acknowledged = Vec::new();
    for (side, controller) in [("left", 0), ("right", 2)] {
        for i in 0..3u64 {
            let name = format!("{side}-{i}.bin");
            let data = test_data(i + controller as u64 * 10, 250_000);
            let (status, body) = status_json(
                c.upload_at(
                    controller,
                    &key,
                    &name,
                    data.clone(),
                    &format!("{side},shared"),
                )
                .await,
            )
            .await;
            assert_eq!(status, 201, "{name}: {body}");
            acknowledged.push((name, data));
        }
        let tagged = c
            .http
            .post(format!("{}/files/tags", c.url_of(controller)))
            .bearer_auth(&key)
            .json(&json!({"query_tags": [side], "new_tags": [format!("{side}-extra")]}))
            .send()
            .await
            .unwrap();
        assert_eq!(tagged.status(), 200);
    }
    // Delete on the left a file the right keeps tagging: the delete wins after the heal.
    let deleted = c
        .http
        .delete(format!("{}/files?tags=old", c.url_of(0)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(deleted).await.1["deleted_count"], 1);
    let retagged = c
        .http
        .post(format!("{}/files/tags", c.url_of(2)))
        .bearer_auth(&key)
        .json(&json!({"query_tags": ["old"], "new_tags": ["still-here?"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_json(retagged).await.1["updated_count"],
        1,
        "the right side does not know of the delete yet"
    );
    assert_eq!(
        c.list_at(1, &key, "right").await.len(),
        0,
        "the left cannot see the right's writes"
    );

    c.heal();
    let states = c.converged(Duration::from_secs(20)).await;
    assert!(states[0]["operations"].as_u64().unwrap() > 10);
    for controller in 0..3 {
        assert_eq!(
            c.list_at(controller, &key, "shared").await.len(),
            6,
            "controller {controller}"
        );
        assert!(
            c.list_at(controller, &key, "old").await.is_empty(),
            "the delete wins everywhere"
        );
        for (name, data) in &acknowledged {
            let (status, body) = c.download_at(controller, &key, name).await;
            assert_eq!(status, 200, "{name} from controller {controller}");
            assert!(body == *data, "{name} differs on controller {controller}");
        }
    }
}
