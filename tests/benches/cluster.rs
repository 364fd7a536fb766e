//! The file service benchmark: one controller with 1 and with 3 chunkservers, all real
//! processes on loopback, each number beside its physical limit measured in the same run.
//!
//! `cargo bench -p redcloud-tests --bench cluster [-- --file-mib N --files N --small-files N]`
//! (`-- --links-only` runs just the last comparison; `--link-rounds N`, default 3).
//!
//! - upload and download of one random file (256 MiB by default), against writing the same
//!   bytes to disk with one fsync per replica;
//! - peak RSS of the controller and the chunkservers, and the controller's peak after a 64 MiB
//!   upload and download against after the big one (flat: memory does not grow with size);
//! - latency of `list` with 10,000 files: a tag matching 10 of them, and all of them;
//! - what the cluster link's mutual TLS costs: upload and download of the big file and 4 KiB
//!   uploads per second, over plain TCP and over TLS, in the same run.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redcloud_tests::{Cluster, ClusterBuilder, bench_arg, test_data};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// The physical limit: the same bytes written to `replicas` files, each fsynced once.
fn disk_limit(dir: &std::path::Path, data: &[u8], replicas: usize) -> Duration {
    let started = Instant::now();
    for i in 0..replicas {
        let mut file = std::fs::File::create(dir.join(format!("baseline-{i}"))).unwrap();
        file.write_all(data).unwrap();
        file.sync_all().unwrap();
    }
    let elapsed = started.elapsed();
    for i in 0..replicas {
        std::fs::remove_file(dir.join(format!("baseline-{i}"))).unwrap();
    }
    elapsed
}

async fn upload(c: &Cluster, key: &str, name: &str, data: &[u8]) -> Duration {
    let started = Instant::now();
    let response = c.upload(key, name, data.to_vec(), "bench").await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    started.elapsed()
}

async fn download(c: &Cluster, key: &str, name: &str, expected: &[u8; 32]) -> Duration {
    let started = Instant::now();
    let response = c.get(key, &format!("/files/by-name/{name}/download")).await;
    assert_eq!(response.status(), 200);
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    while let Some(piece) = body.next().await {
        hasher.update(piece.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(
        <[u8; 32]>::from(hasher.finalize()),
        *expected,
        "downloaded bytes differ"
    );
    elapsed
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("?".to_owned(), |b| {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    })
}

async fn transfers(chunkservers: usize, data: &[u8], small: &[u8]) {
    let dir = tempfile::tempdir_in(".").unwrap();
    let limit = disk_limit(dir.path(), data, chunkservers);
    let limit_rate = mib_per_s(data.len(), limit);
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .chunkservers(chunkservers)
        .start()
        .await;
    let key = c.register("bench", "pw").await;
    upload(&c, &key, "small", small).await;
    download(&c, &key, "small", &Sha256::digest(small).into()).await;
    let controller_after_small = c.controller.peak_rss_bytes();
    let up = mib_per_s(data.len(), upload(&c, &key, "big", data).await);
    let expected: [u8; 32] = Sha256::digest(data).into();
    let down = mib_per_s(data.len(), download(&c, &key, "big", &expected).await);
    let controller_peak = c.controller.peak_rss_bytes();
    let chunkserver_peak = c
        .chunkservers
        .iter()
        .filter_map(|n| n.peak_rss_bytes())
        .max();
    let file_mib = data.len() / MIB;
    println!(
        "\n{chunkservers} chunkserver(s), {file_mib} MiB file; disk limit {limit_rate:.0} MiB/s ({chunkservers} fsynced cop{})",
        if chunkservers == 1 { "y" } else { "ies" }
    );
    println!(
        "  {:<34} {:>10.0} MiB/s   ratio to disk limit {:.2}  (target >= 0.6)",
        "upload",
        up,
        up / limit_rate
    );
    println!(
        "  {:<34} {:>10.0} MiB/s   ratio to disk limit {:.2}  (target >= 0.8)",
        "download",
        down,
        down / limit_rate
    );
    println!(
        "  {:<34} {:>10}   after a {} MiB upload and download: {}",
        "controller peak RSS",
        mib(controller_peak),
        small.len() / MIB,
        mib(controller_after_small)
    );
    println!(
        "  {:<34} {:>10}",
        "chunkserver peak RSS (largest)",
        mib(chunkserver_peak)
    );
}

async fn list_latency(files: usize) {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let key = c.register("lister", "pw").await;
    let started = Instant::now();
    futures_util::stream::iter(0..files)
        .map(|i| {
            let (c, key) = (&c, &key);
            async move {
                let tags = if i % (files / 10).max(1) == 0 {
                    "all,rare"
                } else {
                    "all"
                };
                let response = c
                    .upload(
                        key,
                        &format!("file-{i:05}"),
                        format!("{i}").into_bytes(),
                        tags,
                    )
                    .await;
                assert_eq!(response.status(), 201);
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    println!(
        "\nlist with {files} files (uploaded in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    for (label, query, rounds) in [
        ("list, tag matching 10 files", "rare", 500),
        ("list, all files", "", 20),
    ] {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let response = c.get(&key, &format!("/files?tags={query}")).await;
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
            samples.push(started.elapsed());
        }
        samples.sort();
        let p = |q: f64| {
            samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64()
                * 1000.0
        };
        println!(
            "  {label:<34} p50 {:>7.2} ms   p99 {:>7.2} ms   ({rounds} requests, one keep-alive connection)",
            p(0.5),
            p(0.99)
        );
    }
}

/// Upload and download of `data`, and uploads of 4 KiB files per second, on a cluster with 3
/// chunkservers whose links are plain TCP or TLS.
async fn link_run(tls: bool, data: &[u8], small_files: usize) -> (f64, f64, f64) {
    let builder = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node")).chunkservers(3);
    let c = if tls { builder } else { builder.plain_links() }
        .start()
        .await;
    let key = c.register("bench", "pw").await;
    let up = mib_per_s(data.len(), upload(&c, &key, "big", data).await);
    let expected: [u8; 32] = Sha256::digest(data).into();
    let down = mib_per_s(data.len(), download(&c, &key, "big", &expected).await);
    let started = Instant::now();
    futures_util::stream::iter(0..small_files)
        .map(|i| {
            let (c, key) = (&c, &key);
            async move {
                let response = c
                    .upload(
                        key,
                        &format!("small-{i}"),
                        test_data(i as u64, 4096),
                        "small",
                    )
                    .await;
                assert_eq!(response.status(), 201);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let per_s = small_files as f64 / started.elapsed().as_secs_f64();
    (up, down, per_s)
}

/// Runs plain and TLS clusters alternately, `rounds` times each, and keeps each one's best
/// numbers, so that a passing disturbance on this shared machine weighs on neither side.
async fn link_cost(data: &[u8], small_files: usize, rounds: usize) {
    let best = |a: (f64, f64, f64), b: (f64, f64, f64)| (a.0.max(b.0), a.1.max(b.1), a.2.max(b.2));
    let (mut plain, mut tls) = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
    for _ in 0..rounds.max(1) {
        plain = best(plain, link_run(false, data, small_files).await);
        tls = best(tls, link_run(true, data, small_files).await);
    }
    println!(
        "\ncluster links: plain TCP against mutual TLS, 3 chunkservers, {} MiB file, {small_files} uploads of 4 KiB (16 at once), best of {} alternating runs each",
        data.len() / MIB,
        rounds.max(1)
    );
    for (label, plain, tls, unit) in [
        ("upload", plain.0, tls.0, "MiB/s"),
        ("download", plain.1, tls.1, "MiB/s"),
        ("4 KiB uploads", plain.2, tls.2, "files/s"),
    ] {
        println!(
            "  {label:<34} plain {plain:>8.0} {unit:<7}  TLS {tls:>8.0} {unit:<7}  cost {:>5.1} %",
            (1.0 - tls / plain) * 100.0
        );
    }
}

#[tokio::main]
async fn main() {
    let file_mib = bench_arg("--file-mib", 256);
    let files = bench_arg("--files", 10_000);
    let small_files = bench_arg("--small-files", 1_000);
    let link_rounds = bench_arg("--link-rounds", 3);
    let data = test_data(42, file_mib * MIB);
    // Large enough to fill the upload pipeline and the download read-ahead, so that any
    // further growth with the big file would be growth with file size.
    let small = test_data(7, 64 * MIB);
    println!(
        "RedCloud file service benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if !std::env::args().any(|a| a == "--links-only") {
        for chunkservers in [1, 3] {
            transfers(chunkservers, &data, &small).await;
        }
        list_latency(files).await;
    }
    link_cost(&data, small_files, link_rounds).await;
}
