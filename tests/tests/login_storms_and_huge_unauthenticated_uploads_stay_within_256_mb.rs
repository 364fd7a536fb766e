//! The controller's memory stays bounded under what an unauthenticated client can send:
//! a thousand concurrent wrong-password logins (Argon2 takes about 19 MiB each), a 400 MB
//! upload without an Authorization header, one whose `tags` part is 400 MB, and one whose
//! part headers never end. Bodies are streamed from generators, so the test itself holds one
//! small buffer.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redcloud_tests::{Cluster, ClusterBuilder, status_json};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEAK_RSS_MAX_BYTES: u64 = 256 * 1024 * 1024;
const HUGE_BYTES: usize = 400 * 1024 * 1024;

fn peak_rss(c: &Cluster, after: &str) -> u64 {
    let peak = c.controller.peak_rss_bytes().unwrap();
    eprintln!("controller peak RSS after {after}: {} MiB", peak >> 20);
    assert!(
        peak < PEAK_RSS_MAX_BYTES,
        "after {after}: peak RSS {} MiB",
        peak >> 20
    );
    peak
}

/// `HUGE_BYTES` of `byte`, one shared MiB at a time.
fn huge_body(byte: u8) -> reqwest::Body {
    let piece = Bytes::from(vec![byte; 1024 * 1024]);
    let pieces = HUGE_BYTES / piece.len();
    reqwest::Body::wrap_stream(
        futures_util::stream::repeat(piece)
            .take(pieces)
            .map(Ok::<_, std::io::Error>),
    )
}

/// Sends, over a raw connection and without a key, an upload body that starts with
/// `part_head` and goes on for `HUGE_BYTES`, and returns the answer it reads meanwhile.
async fn answer_while_sending(address: &str, part_head: &'static str) -> (u16, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let tail = "\r\n--XyZ--\r\n";
    let length = part_head.len() + HUGE_BYTES + tail.len();
    let head = format!(
        "POST /files HTTP/1.1\r\nhost: {address}\r\ncontent-type: multipart/form-data; boundary=XyZ\r\ncontent-length: {length}\r\n\r\n{part_head}"
    );
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let piece = vec![b't'; 1024 * 1024];
        for _ in 0..HUGE_BYTES / piece.len() {
            writer.write_all(&piece).await?;
        }
        writer.write_all(tail.as_bytes()).await
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let (status, body) = loop {
        let n = reader.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed before an answer: {received:?}");
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .unwrap()
            .parse()
            .unwrap();
        if body.len() >= length {
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            break (status, serde_json::from_str(&body[..length]).unwrap());
        }
    };
    // Either still sending, or cut off by the server once it had answered (it discards at
    // most a few MiB of a refused body): never the whole body sent. (Whether the sender saw
    // the cut before this task read the answer depends on scheduling, not on the server.)
    sending.abort();
    if let Ok(Ok(())) = sending.await {
        panic!("the whole body was sent before the answer came");
    }
    (status, body)
}

#[tokio::test]
async fn login_storms_and_huge_unauthenticated_uploads_stay_within_256_mb() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    c.register("victim", "the-right-password").await;
    peak_rss(&c, "start-up");

    // (a) A thousand concurrent wrong-password logins, half for one real user and half for
    // names nobody holds (which cost the same Argon2 run).
    let logins = (0..1_000).map(|i| {
        let username = if i % 2 == 0 {
            "victim".to_owned()
        } else {
            format!("ghost-{i}")
        };
        let request = c
            .http
            .post(format!("{}/auth/login", c.url()))
            .json(&json!({"username": username, "password": format!("wrong-{i}")}));
        async move { status_json(request.send().await.unwrap()).await }
    });
    let storm = tokio::spawn(futures_util::future::join_all(logins));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = redcloud_tests::http_client();
    let started = Instant::now();
    let health = probe
        .get(format!("{}/health", c.url()))
        .send()
        .await
        .unwrap();
    let health_took = started.elapsed();
    assert_eq!(health.status(), 200);
    eprintln!("/health during the login storm answered in {health_took:?}");
    assert!(
        health_took < Duration::from_secs(2),
        "the server stayed responsive: {health_took:?}"
    );
    let answers = storm.await.unwrap();
    let unauthorized = answers.iter().filter(|(s, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, _)| *s == 429).count();
    eprintln!("login storm: {unauthorized} answered 401, {limited} answered 429");
    assert_eq!(
        unauthorized + limited,
        1_000,
        "only 401 or 429: {answers:?}"
    );
    assert!(unauthorized > 0 && limited > 0);
    peak_rss(&c, "1,000 concurrent wrong-password logins");

    // (b) A 400 MB upload with no Authorization header: the 422 still lists every missing
    // field, so the body is read, but its file bytes are skipped as they arrive.
    let form = reqwest::multipart::Form::new().text("tags", "t").part(
        "file",
        reqwest::multipart::Part::stream(huge_body(b'f')).file_name("huge.bin"),
    );
    let response = c
        .http
        .post(format!("{}/files", c.url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"],
        json!([{"type": "missing", "loc": ["header", "authorization"], "msg": "Field required", "input": null}])
    );
    peak_rss(&c, "a 400 MB upload without an Authorization header");

    // (c) A 400 MB tags part: refused once it passes its limit, never buffered. The answer
    // comes while the client is still sending, so this client reads as it writes (as curl
    // does; reqwest only reports the closed connection once the server stops reading).
    let tags_part = "--XyZ\r\ncontent-disposition: form-data; name=\"tags\"\r\n\r\n";
    let (status, body) = answer_while_sending(&c.controller.address(), tags_part).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );
    peak_rss(&c, "a 400 MB tags part");

    // (d) A part whose headers never end: the parser would buffer them whole.
    let endless_headers = "--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"";
    let (status, body) = answer_while_sending(&c.controller.address(), endless_headers).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );
    peak_rss(&c, "a 400 MB part header");

    let health = c
        .http
        .get(format!("{}/health", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "still serving");
}
