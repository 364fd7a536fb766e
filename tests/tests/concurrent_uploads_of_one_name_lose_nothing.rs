//! Many uploads of one name at once: every upload is acknowledged, and each acknowledged file is
//! either still there (under the name or a conflict name) or was replaced by a later upload
//! that said so. Nothing disappears silently.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use redcloud_tests::{ClusterBuilder, status_json};

#[tokio::test]
async fn concurrent_uploads_of_one_name_lose_nothing() {
    let c = std::sync::Arc::new(
        ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
            .start()
            .await,
    );
    let key = c.register("alice", "pw").await;
    let uploads: Vec<_> = (0..16)
        .map(|i| {
            let c = std::sync::Arc::clone(&c);
            let key = key.clone();
            tokio::spawn(async move {
                status_json(
                    c.upload(&key, "same.txt", format!("v{i}").into_bytes(), "t")
                        .await,
                )
                .await
            })
        })
        .collect();
    let mut created = BTreeSet::new();
    let mut replaced = BTreeSet::new();
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        assert_eq!(status, 201, "{body}");
        created.insert(body["file_id"].as_str().unwrap().to_owned());
        if let Some(old) = body["replaced_file_id"].as_str() {
            replaced.insert(old.to_owned());
        }
    }
    let listed: BTreeSet<String> = c
        .list(&key, "")
        .await
        .iter()
        .map(|f| f["file_id"].as_str().unwrap().to_owned())
        .collect();
    let accounted: BTreeSet<String> = listed.union(&replaced).cloned().collect();
    assert_eq!(
        accounted, created,
        "every upload is listed or was reported replaced"
    );
    let names: Vec<String> = c
        .list(&key, "")
        .await
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "same.txt").count(),
        1,
        "exactly one file holds the name: {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n == "same.txt" || n.starts_with("same (conflict ")),
        "{names:?}"
    );
    for name in &names {
        assert_eq!(
            c.download(&key, &name.replace(' ', "%20")).await.0,
            200,
            "{name}"
        );
    }
}
