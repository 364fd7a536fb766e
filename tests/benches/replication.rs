//! The replication benchmark: real controller and chunkserver processes on loopback.
//!
//! `cargo bench -p redcloud-tests --bench replication [-- --ops N --gib N]`
//!
//! - propagation of a write to every controller, p50/p99, for 3, 5 and 9 controllers;
//! - time to converge after healing a partition with `--ops` (10,000) operations written on
//!   each side (needs root, for the partition);
//! - time for a new chunkserver to receive `--gib` (1) GiB of existing chunks, beside writing
//!   the same bytes to disk with one fsync per chunk.
//!
//! The bytes of one anti-entropy round between controllers in sync are the core's two frontier
//! messages; `cargo run --release -p redcloud-eventlog --example log_bench` measures them.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redcloud_tests::{Cluster, ClusterBuilder, Member, bench_arg, can_partition, test_data};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_redcloud-test-node");

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

/// Registers a user on controller 0 and times until its key works on every other controller.
async fn propagation(controllers: usize, rounds: usize) {
    let c = ClusterBuilder::new(BIN)
        .controllers(controllers)
        .start()
        .await;
    c.converged(Duration::from_secs(30)).await;
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let key = c.register_at(0, &format!("user{i}"), "pw").await;
        let started = Instant::now();
        let mut waiting: Vec<usize> = (1..controllers).collect();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for controller in waiting {
                if c.get_at(controller, &key, "/files?tags=").await.status() != 200 {
                    still.push(controller);
                }
            }
            waiting = still;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a write never reached every controller"
            );
        }
        samples.push(started.elapsed());
    }
    let (p50, p99) = (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    );
    println!(
        "  {controllers} controllers: p50 {:>8.2} ms   p99 {:>8.2} ms   ({rounds} writes)",
        ms(p50),
        ms(p99)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes `ops` tag changes through controller `i` (one operation each), 16 at a time.
async fn tag_ops(c: &Cluster, controller: usize, key: &str, query: &str, ops: usize) {
    futures_util::stream::iter(0..ops)
        .map(|n| async move {
            let response = c
                .http
                .post(format!("{}/files/tags", c.url_of(controller)))
                .bearer_auth(key)
                .json(&json!({"query_tags": [query], "new_tags": [format!("{query}-{n}")]}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

async fn convergence_after_heal(ops: usize) {
    let mut c = ClusterBuilder::new(BIN)
        .controllers(2)
        .chunkservers(2)
        .controller_args(&["--chunkserver-timeout-ms", "1500"])
        .start()
        .await;
    let key = c.register("writer", "pw").await;
    c.converged(Duration::from_secs(30)).await;
    c.partition(
        &[Member::Controller(0), Member::Chunkserver(0)],
        &[Member::Controller(1), Member::Chunkserver(1)],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        c.upload_at(0, &key, "left", b"l".to_vec(), "left")
            .await
            .status(),
        201
    );
    assert_eq!(
        c.upload_at(1, &key, "right", b"r".to_vec(), "right")
            .await
            .status(),
        201
    );
    let started = Instant::now();
    tokio::join!(
        tag_ops(&c, 0, &key, "left", ops),
        tag_ops(&c, 1, &key, "right", ops)
    );
    let wrote = started.elapsed();
    let behind = c.state_of(0).await["operations"].as_u64().unwrap();
    c.heal();
    let healed = Instant::now();
    let states = c.converged(Duration::from_secs(600)).await;
    println!(
        "  {ops} operations on each side (written in {:.1} s): converged {:.2} s after the heal; {} operations in each log, {behind} on one side before",
        wrote.as_secs_f64(),
        healed.elapsed().as_secs_f64(),
        states[0]["operations"]
    );
}

async fn new_chunkserver_fill(gib: usize) {
    const FILE_MIB: usize = 64;
    let files = gib * 1024 / FILE_MIB;
    let mut c = ClusterBuilder::new(BIN).start().await;
    let key = c.register("filler", "pw").await;
    for i in 0..files {
        let response = c
            .upload(
                &key,
                &format!("f{i}"),
                test_data(i as u64, FILE_MIB << 20),
                "fill",
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    let chunks = c.chunkservers[0].chunk_ids().len();
    let started = Instant::now();
    c.add_chunkserver();
    c.wait_ready(2).await;
    c.chunks_everywhere(Duration::from_secs(1800)).await;
    let elapsed = started.elapsed();
    let dir = tempfile::tempdir_in(".").unwrap();
    let chunk = test_data(99, 4 << 20);
    let disk = Instant::now();
    for i in 0..chunks {
        let mut file = std::fs::File::create(dir.path().join(format!("c{i}"))).unwrap();
        file.write_all(&chunk).unwrap();
        file.sync_all().unwrap();
    }
    let limit = disk.elapsed();
    let bytes = (files * FILE_MIB) as f64;
    println!(
        "  {gib} GiB ({chunks} chunks) reached a new chunkserver in {:.1} s ({:.0} MiB/s); the same bytes fsynced per chunk take {:.1} s ({:.0} MiB/s), ratio {:.2}",
        elapsed.as_secs_f64(),
        bytes / elapsed.as_secs_f64(),
        limit.as_secs_f64(),
        bytes / limit.as_secs_f64(),
        limit.as_secs_f64() / elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let ops = bench_arg("--ops", 10_000);
    let gib = bench_arg("--gib", 1);
    println!(
        "RedCloud replication benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("\npropagation of a write to every controller");
    for controllers in [3, 5, 9] {
        propagation(controllers, 100).await;
    }
    println!("\nconvergence after a partition");
    if can_partition() {
        convergence_after_heal(ops).await;
    } else {
        println!("  skipped: partitions need root");
    }
    println!("\na new chunkserver filling up");
    new_chunkserver_fill(gib).await;
}
