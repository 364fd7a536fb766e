//! One chunkserver's copy of a chunk is damaged on disk: the download still succeeds from the
//! other copy, and the bad one is reported and taken out of service.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use redcloud_tests::{ClusterBuilder, test_data};

fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir.join("chunks")).unwrap() {
        for chunk in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            files.push(chunk.unwrap().path());
        }
    }
    files
}

#[tokio::test]
async fn corrupt_chunk_is_served_from_another_replica() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .chunkservers(2)
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let data = test_data(1, 100_000);
    assert_eq!(
        c.upload(&key, "precious", data.clone(), "t").await.status(),
        201
    );
    let good_copy = std::fs::read(&chunk_files(&c.chunkservers[0].data_dir)[0]).unwrap();

    // The controller asks one replica first; damage each in turn so that one round is sure to
    // hit the bad copy first.
    let mut caught = 0;
    for victim in 0..2 {
        let node = &c.chunkservers[victim];
        let path = chunk_files(&node.data_dir).pop().unwrap();
        let mut damaged = good_copy.clone();
        damaged[500] ^= 0xff;
        std::fs::write(&path, damaged).unwrap();

        let (status, body) = c.download(&key, "precious").await;
        assert_eq!(status, 200);
        assert!(body == data, "served intact from the other replica");

        if chunk_files(&node.data_dir).is_empty() {
            caught += 1;
            assert_eq!(
                std::fs::read_dir(node.data_dir.join("corrupt"))
                    .unwrap()
                    .count(),
                1,
                "quarantined"
            );
            assert!(
                node.log()
                    .contains("chunk failed verification and was quarantined")
            );
        }
        std::fs::write(&path, &good_copy).unwrap();
    }
    assert_eq!(
        caught, 1,
        "exactly one round read the damaged replica first"
    );
    assert!(
        c.controller.log().contains("replica failed verification"),
        "the controller reports the bad replica"
    );
}
