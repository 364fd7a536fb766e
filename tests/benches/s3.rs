//! The S3 gateway against the HTTP API, in one run, on one cluster (one controller, three
//! chunkservers, real processes on loopback): the same bytes stored and read back through each
//! front end, alternating which goes first, best of the rounds.
//!
//! `cargo bench -p redcloud-tests --bench s3 [-- --file-mib N --small-files N --rounds N]`
//!
//! - PUT and GET of one random file (256 MiB by default): S3 `PutObject` / `GetObject` against
//!   `POST /files` / `GET /files/by-name/.../download`;
//! - 4 KiB files stored and read one after another (1,000 by default), per second.
//!
//! S3 requests are signed here with SigV4 over `UNSIGNED-PAYLOAD`, as `aws` and boto3 sign
//! over plain HTTP by default. The target: S3 within 10 % of HTTP.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redcloud_tests::{Cluster, ClusterBuilder, bench_arg, test_data};
use ring::hmac;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;
const REGION: &str = "redcloud";

/// An S3 access key and where to use it.
struct S3 {
    endpoint: String,
    host: String,
    key_id: String,
    secret: String,
}

impl S3 {
    /// A request to `/{bucket}/{key}` signed with SigV4 (`key` needs no escaping here).
    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let day = &stamp[..8];
        let canonical = format!(
            "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{stamp}\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
            host = self.host
        );
        let scope = format!("{day}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mac = |key: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
                .as_ref()
                .to_vec()
        };
        let mut signing = format!("AWS4{}", self.secret).into_bytes();
        for part in [day, REGION, "s3", "aws4_request"] {
            signing = mac(&signing, part);
        }
        let signature = hex::encode(mac(&signing, &to_sign));
        http.request(method, format!("{}{path}", self.endpoint))
            .header("x-amz-date", stamp)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
                    self.key_id
                ),
            )
    }
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// Reads a response body to its end; its SHA-256.
async fn drain(response: reqwest::Response) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        hasher.update(piece.unwrap());
    }
    hasher.finalize().into()
}

/// The two front ends, each storing and reading `name`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FrontEnd {
    Http,
    S3,
}

async fn put(c: &Cluster, api_key: &str, s3: &S3, front: FrontEnd, name: &str, data: &[u8]) {
    let response = match front {
        FrontEnd::Http => c.upload(api_key, name, data.to_vec(), "bench").await,
        FrontEnd::S3 => s3
            .request(&c.http, reqwest::Method::PUT, &format!("/bench/{name}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap(),
    };
    let status = response.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn get(c: &Cluster, api_key: &str, s3: &S3, front: FrontEnd, name: &str) -> [u8; 32] {
    let response = match front {
        FrontEnd::Http => {
            c.get(api_key, &format!("/files/by-name/{name}/download"))
                .await
        }
        FrontEnd::S3 => s3
            .request(&c.http, reqwest::Method::GET, &format!("/bench/{name}"))
            .send()
            .await
            .unwrap(),
    };
    assert_eq!(response.status(), 200);
    drain(response).await
}

/// (upload MiB/s, download MiB/s, small puts/s, small gets/s) through `front`.
async fn run(
    c: &Cluster,
    api_key: &str,
    s3: &S3,
    front: FrontEnd,
    data: &[u8],
    small: &[Vec<u8>],
) -> [f64; 4] {
    let tag = if front == FrontEnd::Http {
        "http"
    } else {
        "s3"
    };
    let expected: [u8; 32] = Sha256::digest(data).into();
    let started = Instant::now();
    put(c, api_key, s3, front, &format!("{tag}-big"), data).await;
    let up = mib_per_s(data.len(), started.elapsed());
    let started = Instant::now();
    assert_eq!(
        get(c, api_key, s3, front, &format!("{tag}-big")).await,
        expected
    );
    let down = mib_per_s(data.len(), started.elapsed());
    let started = Instant::now();
    for (i, bytes) in small.iter().enumerate() {
        put(c, api_key, s3, front, &format!("{tag}-small-{i}"), bytes).await;
    }
    let puts = small.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..small.len() {
        get(c, api_key, s3, front, &format!("{tag}-small-{i}")).await;
    }
    let gets = small.len() as f64 / started.elapsed().as_secs_f64();
    [up, down, puts, gets]
}

#[tokio::main]
async fn main() {
    let file_mib = bench_arg("--file-mib", 256);
    let small_files = bench_arg("--small-files", 1_000);
    let rounds = bench_arg("--rounds", 3);
    let data = test_data(42, file_mib * MIB);
    let small: Vec<Vec<u8>> = (0..small_files)
        .map(|i| test_data(1000 + i as u64, 4096))
        .collect();
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .chunkservers(3)
        .start()
        .await;
    let api_key = c.register("bench", "correct horse battery staple").await;
    let (status, made) = c
        .http_post_json(0, &api_key, "/s3-keys", serde_json::json!({}))
        .await;
    assert_eq!(status, 201, "{made}");
    let s3 = S3 {
        endpoint: format!("http://{}", c.controller.s3_address()),
        host: c.controller.s3_address(),
        key_id: made["access_key_id"].as_str().unwrap().to_owned(),
        secret: made["secret_access_key"].as_str().unwrap().to_owned(),
    };
    println!(
        "RedCloud S3 gateway against the HTTP API ({} cores): 1 controller, 3 chunkservers, {file_mib} MiB file, {small_files} files of 4 KiB one at a time, best of {rounds} alternating rounds",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut best = [[0f64; 4]; 2];
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [FrontEnd::Http, FrontEnd::S3]
        } else {
            [FrontEnd::S3, FrontEnd::Http]
        };
        for front in order {
            let measured = run(&c, &api_key, &s3, front, &data, &small).await;
            let slot = &mut best[usize::from(front == FrontEnd::S3)];
            for (b, m) in slot.iter_mut().zip(measured) {
                *b = b.max(m);
            }
        }
    }
    println!("  {:<22} {:>12} {:>12} {:>10}", "", "HTTP", "S3", "S3/HTTP");
    for (i, (what, unit)) in [
        ("upload", "MiB/s"),
        ("download", "MiB/s"),
        ("4 KiB stores", "files/s"),
        ("4 KiB reads", "files/s"),
    ]
    .into_iter()
    .enumerate()
    {
        println!(
            "  {:<22} {:>6.0} {unit:<5} {:>6.0} {unit:<5} {:>10.2}",
            what,
            best[0][i],
            best[1][i],
            best[1][i] / best[0][i]
        );
    }
}
