//! Data that cannot be served never comes back as a short or corrupt 200: a chunk lost after
//! the headers went out aborts the connection, and a chunk whose every copy is corrupt is a
//! CHECKSUM_MISMATCH.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use redcloud_tests::{ClusterBuilder, status_json, test_data};
use sha2::{Digest, Sha256};

fn chunk_path(node_dir: &Path, content: &[u8]) -> PathBuf {
    let hex = hex::encode(Sha256::digest(content));
    node_dir.join("chunks").join(&hex[..2]).join(hex)
}

#[tokio::test]
async fn a_lost_later_chunk_aborts_the_download() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controller_args(&["--chunk-size-bytes", "65536"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let data = test_data(3, 65536 * 8);
    assert_eq!(c.upload(&key, "f", data.clone(), "t").await.status(), 201);
    std::fs::remove_file(chunk_path(
        &c.chunkservers[0].data_dir,
        &data[65536 * 6..65536 * 7],
    ))
    .unwrap();

    let response = c.get(&key, "/files/by-name/f/download").await;
    assert_eq!(
        response.status(),
        200,
        "the first chunk is there, so the headers go out"
    );
    assert_eq!(response.content_length(), Some(data.len() as u64));
    let body = response.bytes().await;
    assert!(
        body.is_err(),
        "the body must fail, not end short: got {} bytes",
        body.map(|b| b.len()).unwrap_or(0)
    );
}

#[tokio::test]
async fn every_copy_corrupt_is_a_checksum_mismatch() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let data = test_data(4, 5000);
    assert_eq!(c.upload(&key, "f", data.clone(), "t").await.status(), 201);
    let path = chunk_path(&c.chunkservers[0].data_dir, &data);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (status, body) = status_json(c.get(&key, "/files/by-name/f/download").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("CHECKSUM_MISMATCH")),
        "{body}"
    );
}
