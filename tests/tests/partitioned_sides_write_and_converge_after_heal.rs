//! [C0, C1, CS0] | [C2, CS1]: uploads, tag changes and deletes on both sides while cut off;
//! after the heal every controller has the same read model, and every acknowledged upload
//! downloads byte-identical from every controller, and the history checker finds every request's
//! answer kept.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::history::{History, tags};
use redcloud_tests::{ClusterBuilder, Member, test_data};

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
    let history = History::default();
    let mut left = history.client(&c, 0);
    assert!(left.register("alice", "pw").await);
    let key = left.api_key().to_owned();
    assert!(
        left.upload(
            "before.bin",
            test_data(0, 50_000),
            &tags(&["old", "shared"])
        )
        .await
        .is_some()
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

    let mut right = left.same_session_at(&c, 2);
    let mut acknowledged = Vec::new();
    for (side, client) in [("left", &mut left), ("right", &mut right)] {
        for i in 0..3u64 {
            let name = format!("{side}-{i}.bin");
            let data = test_data(i + client.controller() as u64 * 10, 250_000);
            let stored = client
                .upload(&name, data.clone(), &tags(&[side, "shared"]))
                .await;
            assert!(stored.is_some(), "{name}: {:?}", history.entries().last());
            acknowledged.push((name, data));
        }
        let extra = format!("{side}-extra");
        let tagged = client.add_tags(&tags(&[side]), &tags(&[&extra])).await;
        assert_eq!(tagged.map(|ids| ids.len()), Some(3));
    }
    // Delete on the left a file the right keeps tagging: the delete wins after the heal.
    let deleted = left.delete(&tags(&["old"])).await;
    assert_eq!(deleted.map(|ids| ids.len()), Some(1));
    let retagged = right
        .add_tags(&tags(&["old"]), &tags(&["still-here?"]))
        .await;
    assert_eq!(
        retagged.map(|ids| ids.len()),
        Some(1),
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
    history.check(&c).await;
}
