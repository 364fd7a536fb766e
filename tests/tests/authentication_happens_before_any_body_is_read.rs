//! A request with a bad key is refused before its body is read: bodies that would never end
//! still get their 401 at once, on the upload and on the JSON routes (the per-file ones too).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use redcloud_tests::{ClusterBuilder, status_json};
use serde_json::json;

/// A body that sends `head` and then never ends.
fn endless(head: &'static str) -> reqwest::Body {
    let head =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) });
    reqwest::Body::wrap_stream(futures_util::StreamExt::chain(
        head,
        futures_util::stream::pending(),
    ))
}

#[tokio::test]
async fn a_bad_key_is_refused_without_waiting_for_the_body() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let bad_key = format!("dfs_{}", uuid::Uuid::new_v4());
    let multipart_head =
        "--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nsome bytes";
    let requests = [
        (
            "upload with a wrong key",
            c.http
                .post(format!("{}/files", c.url()))
                .bearer_auth(&bad_key)
                .header("content-type", "multipart/form-data; boundary=XyZ")
                .body(endless(multipart_head)),
        ),
        (
            "upload with a malformed header",
            c.http
                .post(format!("{}/files", c.url()))
                .header("authorization", "Basic abc")
                .header("content-type", "multipart/form-data; boundary=XyZ")
                .body(endless(multipart_head)),
        ),
        (
            "tag change with a wrong key",
            c.http
                .post(format!("{}/files/tags", c.url()))
                .bearer_auth(&bad_key)
                .header("content-type", "application/json")
                .body(endless("{\"query_tags\": [")),
        ),
        (
            "tag removal with a wrong key",
            c.http
                .delete(format!("{}/files/tags", c.url()))
                .bearer_auth(&bad_key)
                .header("content-type", "application/json")
                .body(endless("{\"query_tags\": [")),
        ),
        (
            "tag change of one file with a wrong key",
            c.http
                .post(format!("{}/files/{}/tags", c.url(), uuid::Uuid::new_v4()))
                .bearer_auth(&bad_key)
                .header("content-type", "application/json")
                .body(endless("{\"tags\": [")),
        ),
        (
            "tag removal from one file with a wrong key",
            c.http
                .delete(format!("{}/files/{}/tags", c.url(), uuid::Uuid::new_v4()))
                .bearer_auth(&bad_key)
                .header("content-type", "application/json")
                .body(endless("{\"tags\": [")),
        ),
        (
            "one file with a wrong key",
            c.http
                .get(format!("{}/files/{}", c.url(), uuid::Uuid::new_v4()))
                .bearer_auth(&bad_key),
        ),
        (
            "delete of one file with a wrong key",
            c.http
                .delete(format!("{}/files/{}", c.url(), uuid::Uuid::new_v4()))
                .bearer_auth(&bad_key),
        ),
        (
            "the tag list with a wrong key",
            c.http
                .get(format!("{}/tags", c.url()))
                .bearer_auth(&bad_key),
        ),
        (
            "a new S3 key with a wrong key, and an endless body it never needs",
            c.http
                .post(format!("{}/s3-keys", c.url()))
                .bearer_auth(&bad_key)
                .header("content-type", "application/json")
                .body(endless("{\"x\": [")),
        ),
        (
            "the S3 key list with a wrong key",
            c.http
                .get(format!("{}/s3-keys", c.url()))
                .bearer_auth(&bad_key),
        ),
        (
            "an S3 key deletion with a wrong key",
            c.http
                .delete(format!("{}/s3-keys/RCAAAAAAAAAAAAAAAAAA", c.url()))
                .bearer_auth(&bad_key),
        ),
    ];
    for (what, request) in requests {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer while the body was still coming"))
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.get("code").is_none(), "{what}: 401s carry no code");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: took {:?}",
            started.elapsed()
        );
        if what.contains("wrong key") {
            assert_eq!(body, json!({"detail": "Invalid or expired API Key"}));
        }
    }
}
