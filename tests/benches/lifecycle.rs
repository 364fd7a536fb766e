//! The node lifecycle benchmark: real controller processes on loopback, a history of `--ops`
//! (1,000,000) operations.
//!
//! `cargo bench -p redcloud-tests --bench lifecycle [-- --ops N --replay 0|1]`
//!
//! - log bytes per operation, and the log's disk use before and after truncation;
//! - a new controller joining: time from its start until it serves reads of the whole history
//!   (and until its digest is seen equal to its peer's), started from the peer's snapshot,
//!   against the same join by full replay from a peer that keeps its whole log, in the same
//!   run;
//! - `redcloud log rebuild` of the whole history (the same code, in process), operations/s.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use redcloud_cli::logtool::{self, Reader, Source};
use redcloud_controller::{ContentMd5, MetaOp};
use redcloud_eventlog::{Dot, FjallStore, Hlc, LogStore, NodeId, Op, Seq, VersionVector};
use redcloud_tests::{Cluster, ClusterBuilder, bench_arg};
use serde_json::Value;
use uuid::Uuid;

/// The allocator the `redcloud` binary runs `log rebuild` with, so that the rebuild measured
/// here, in process, is the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BIN: &str = env!("CARGO_BIN_EXE_redcloud-test-node");
const OWNERS: u64 = 500;

/// The `n`-th operation of the history: accounts first, then files, each followed by a tag
/// change on it, every tenth file deleted again.
fn history_payload(n: u64) -> MetaOp {
    let owner = Uuid::from_u64_pair(0xb0, n % OWNERS);
    let file = Uuid::from_u64_pair(0xf0, n / 2);
    match n {
        n if n < OWNERS => MetaOp::UserRegistered {
            user_id: owner,
            username: format!("owner-{n}"),
            password_hash: "$argon2id$benchmark".to_owned(),
            api_key_hash: [(n % 251) as u8; 32],
        },
        n if n % 2 == 0 => MetaOp::FileAdded {
            file_id: file,
            owner_id: owner,
            name: format!("doc-{n}.txt"),
            size: 10_000 + n,
            chunk_size: 4 << 20,
            chunks: vec![redcloud_types::ChunkId::of(&n.to_le_bytes())],
            tags: vec![format!("project-{}", n % 97), "all".to_owned()],
            created_at_ms: 1_790_000_000_000 + n,
            replaces: Vec::new(),
            md5: Some(ContentMd5 {
                digest: *redcloud_types::ChunkId::of(&n.to_be_bytes())
                    .as_bytes()
                    .first_chunk()
                    .expect("a chunk id is 32 bytes"),
                parts: 0,
            }),
        },
        n if n % 20 == 1 => MetaOp::FilesDeleted {
            file_ids: vec![file],
        },
        n => MetaOp::TagsAdded {
            file_ids: vec![file],
            tags: vec![format!("reviewed-{}", n % 13)],
        },
    }
}

/// Appends `count` operations of the controller `origin` (whose log ends at `after`) to the
/// log in `data_dir`, stamped in the past, one per millisecond.
fn write_history(data_dir: &Path, origin: NodeId, after: Seq, count: u64) {
    let store = FjallStore::<MetaOp>::open(&data_dir.join("log")).unwrap();
    assert_eq!(store.frontier().get(origin), after, "the log moved on");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let first_wall = now_ms - count - 60_000;
    let mut batch = Vec::with_capacity(10_000);
    for n in 0..count {
        let seq = after.get() + n + 1;
        let deps: VersionVector = [(origin, Seq::new(seq - 1))].into_iter().collect();
        batch.push(Op {
            dot: Dot::new(origin, Seq::new(seq)),
            deps,
            hlc: Hlc::new(first_wall + n, 0),
            payload: history_payload(n),
        });
        if batch.len() == 10_000 || n + 1 == count {
            store.append(&batch).unwrap();
            batch.clear();
        }
    }
}

/// Hands everything under `dir` to `uid` (nodes run under their own uids; this process wrote
/// the log as another).
fn give_to(dir: &Path, uid: u32) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
        if path.is_dir() {
            give_to(&path, uid);
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
                    _ => entry.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// `redcloud_log_truncated_operations_total` in a metrics text.
fn truncated(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("redcloud_log_truncated_operations_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Two controllers, the second stopped at once and forgotten; the first gets a history of
/// `ops` operations. Returns the cluster and the first controller's digest.
async fn cluster_with_history(ops: u64, snapshots: bool) -> (Cluster, Value) {
    let interval = if snapshots { "2s" } else { "1000h" };
    let mut c = ClusterBuilder::new(BIN)
        .controllers(2)
        .chunkservers(0)
        .controller_args(&["--snapshot-interval", interval, "--log-retention", "0s"])
        .start()
        .await;
    let second = c.state_of(1).await["node_id"].as_str().unwrap().to_owned();
    // Forget names a controller the first one knows: wait until it has heard of the second.
    c.state_until(0, Duration::from_secs(60), |state| {
        state["frontier"][second.as_str()].is_u64()
    })
    .await;
    c.more_controllers[0].wipe();
    assert_eq!(c.forget(&second, true).await.0, 200);
    let state = c.state_of(0).await;
    let me: NodeId = state["node_id"].as_str().unwrap().parse().unwrap();
    let after = Seq::new(state["frontier"][me.to_string()].as_u64().unwrap());
    c.controller.kill();
    write_history(c.controller.data_dir(), me, after, ops);
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(c.controller.data_dir()).unwrap());
    give_to(c.controller.data_dir(), owner);
    let log_bytes = dir_bytes(&c.controller.data_dir().join("log"));
    let started = Instant::now();
    c.controller.start();
    let state = c.state_until(0, Duration::from_secs(1800), |_| true).await;
    println!(
        "  {} operations: log {:.1} MiB, {:.0} bytes per operation; read model built from the log at start in {:.1} s",
        state["operations"],
        mib(log_bytes),
        log_bytes as f64 / ops as f64,
        started.elapsed().as_secs_f64()
    );
    (c, state)
}

/// Starts the wiped second controller. Returns how long until it serves the whole history
/// (its status page counts more than `operations`: the newcomer records itself in the log)
/// and how long until both controllers were seen with the same read-model digest. A digest
/// is a pass over the whole read model, so they are asked for only once it serves, and do
/// not compete for the CPU with the join itself.
async fn join(c: &mut Cluster, operations: u64) -> (Duration, Duration) {
    let started = Instant::now();
    c.more_controllers[0].start();
    let deadline = started + Duration::from_secs(1800);
    let status = format!("{}/status?format=json", c.url_of(1));
    let serving = loop {
        let counted = match c.http.get(&status).send().await {
            Ok(reply) => reply.json::<Value>().await.ok(),
            Err(_) => None,
        }
        .and_then(|page| page["operations"].as_u64());
        if counted.is_some_and(|counted| counted > operations) {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the new controller never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        if let (Some(first), Some(second)) = (c.try_state_of(0).await, c.try_state_of(1).await)
            && first["digest"] == second["digest"]
        {
            return (serving, started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "the new controller never reached its peer's digest"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let ops = bench_arg("--ops", 1_000_000) as u64;
    let replay = bench_arg("--replay", 1) != 0;
    println!(
        "RedCloud lifecycle benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    println!("\na controller that truncates its log below snapshots");
    let (mut truncating, state) = cluster_with_history(ops, true).await;
    let before = dir_bytes(&truncating.controller.data_dir().join("log"));
    let started = Instant::now();
    let total = state["operations"].as_u64().unwrap();
    // The round is over (the operations deleted and the space compacted) once it counts them.
    let deadline = Instant::now() + Duration::from_secs(1800);
    while truncated(&truncating.metrics_of(0).await) < total {
        assert!(Instant::now() < deadline, "the log was never truncated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = dir_bytes(&truncating.controller.data_dir().join("log"));
    let snapshot = dir_bytes(&truncating.controller.data_dir().join("snapshot"));
    println!(
        "  snapshot taken and log truncated in {:.1} s: log {:.1} MiB before, {:.1} MiB after; snapshot files {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(before),
        mib(after),
        mib(snapshot)
    );
    // The storage engine deletes the files a compaction replaced once nothing refers to
    // their version any more; a restart is the sure point.
    truncating.controller.kill();
    let restarted = Instant::now();
    truncating.controller.start();
    let total = truncating
        .state_until(0, Duration::from_secs(1800), |s| {
            // At least: the first snapshot round may have added a fold of the forgotten id.
            s["operations"].as_u64().is_some_and(|n| n >= total)
        })
        .await["operations"]
        .as_u64()
        .unwrap();
    println!(
        "  after a restart (serving again in {:.1} s): log {:.2} MiB",
        restarted.elapsed().as_secs_f64(),
        mib(dir_bytes(&truncating.controller.data_dir().join("log")))
    );

    println!("\na new controller joining");
    let (from_snapshot, same_digest) = join(&mut truncating, total).await;
    drop(truncating);
    println!(
        "  serves reads {:.1} s after its start, from a peer's snapshot (its digest seen equal to its peer's at {:.1} s)",
        from_snapshot.as_secs_f64(),
        same_digest.as_secs_f64()
    );
    let (mut keeping, state) = cluster_with_history(ops, false).await;
    if replay {
        let (by_replay, _) = join(&mut keeping, state["operations"].as_u64().unwrap()).await;
        println!(
            "  the same join by full replay from a peer that keeps its whole log: serves reads after {:.1} s, {:.1}x the time from a snapshot",
            by_replay.as_secs_f64(),
            by_replay.as_secs_f64() / from_snapshot.as_secs_f64()
        );
    } else {
        println!("  the join by full replay: skipped (--replay 0)");
    }

    println!("\nredcloud log rebuild of the whole history");
    // Measured alone, as an operator runs it on a node's data directory: the controllers
    // stop first (the one that just joined would still be compacting the log it took in).
    let digest = keeping.state_of(0).await["digest"].clone();
    keeping.more_controllers[0].kill();
    keeping.controller.kill();
    let reader = Reader::new(
        Source::Dir(keeping.controller.data_dir().to_owned()),
        &redcloud_tests::cluster_link(),
    )
    .unwrap();
    let rebuilt = logtool::rebuild(&reader, None, &[]).await.unwrap();
    assert_eq!(rebuilt.digest, digest.as_str().unwrap());
    println!(
        "  {} operations in {:.1} s: {:.0} operations/s",
        rebuilt.operations_read, rebuilt.seconds, rebuilt.operations_per_second
    );
}
