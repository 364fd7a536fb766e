//! `redcloud log` on a data directory: a million-operation rebuild with its speed, and the
//! smaller commands checked against an in-process projection of the same log.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use redcloud_controller::{MetaOp, Projection};
use redcloud_eventlog::{Dot, FjallStore, Hlc, LogStore, NodeId, Op, Seq, VersionVector};
use serde_json::Value;
use uuid::Uuid;

/// The `redcloud` binary under test; `REDCLOUD_CLI_BIN` points at another build (say, a
/// release build, to measure the rebuild speed users get).
fn bin() -> String {
    std::env::var("REDCLOUD_CLI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_redcloud").to_owned())
}
const USERS: u64 = 1000;
const WALL_MS: u64 = 1_800_000_000_000;

/// The `i`-th operation of a synthetic workload: registrations, then uploads alternating with
/// tag changes.
fn payload(i: u64) -> MetaOp {
    let user = |n: u64| Uuid::from_u64_pair(1, n % USERS);
    let file = |n: u64| Uuid::from_u64_pair(2, n);
    if i < USERS {
        return MetaOp::UserRegistered {
            user_id: user(i),
            username: format!("user{i}"),
            password_hash: "$argon2id$unused".to_owned(),
            api_key_hash: [i as u8; 32],
        };
    }
    if i.is_multiple_of(2) {
        MetaOp::FileAdded {
            file_id: file(i),
            owner_id: user(i),
            name: format!("file{i}.bin"),
            size: 1000,
            chunk_size: 4 << 20,
            chunks: vec![redcloud_types::ChunkId::of(&i.to_be_bytes())],
            tags: vec![format!("t{}", i % 50)],
            created_at_ms: WALL_MS + i,
            replaces: Vec::new(),
            md5: Some(redcloud_controller::ContentMd5 {
                digest: (u128::from(i) * 0x9e37_79b9_7f4a_7c15).to_be_bytes(),
                parts: 0,
            }),
        }
    } else {
        MetaOp::TagsAdded {
            file_ids: vec![file(i - 1)],
            tags: vec![format!("x{}", i % 7)],
        }
    }
}

/// Writes `count` operations of one origin into `data_dir/log`; returns them when `keep`.
fn write_log(data_dir: &Path, count: u64, keep: bool) -> Vec<Op<MetaOp>> {
    let store = FjallStore::<MetaOp>::open(&data_dir.join("log")).unwrap();
    let origin = NodeId::new(0xabc);
    let mut kept = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for seq in 1..=count {
        let mut deps = VersionVector::new();
        deps.raise(origin, Seq::new(seq - 1));
        batch.push(Op {
            dot: Dot::new(origin, Seq::new(seq)),
            deps,
            hlc: Hlc::new(WALL_MS + seq, 0),
            payload: payload(seq - 1),
        });
        if batch.len() == 10_000 || seq == count {
            store.append(&batch).unwrap();
            if keep {
                kept.append(&mut batch);
            }
            batch.clear();
        }
    }
    kept
}

fn log_json(data_dir: &Path, args: &[&str]) -> Value {
    let output = Command::new(bin())
        .args(["--json", "log", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_million_operations_rebuild() {
    // REDCLOUD_REBUILD_OPS scales the run down for quick measurements.
    let ops: u64 = std::env::var("REDCLOUD_REBUILD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), ops, false);
    let rebuilt = log_json(dir.path(), &["rebuild"]);
    assert_eq!(rebuilt["operations_read"], ops);
    assert_eq!(rebuilt["operations_applied"], ops);
    assert_eq!(rebuilt["digest"].as_str().unwrap().len(), 64);
    eprintln!(
        "log rebuild: {ops} operations in {:.2} s, {:.0} operations/s",
        rebuilt["seconds"].as_f64().unwrap(),
        rebuilt["operations_per_second"].as_f64().unwrap()
    );
}

#[test]
fn the_log_commands_agree_with_the_projection() {
    let dir = tempfile::tempdir().unwrap();
    let ops = write_log(dir.path(), 5_000, true);
    let mut projection = Projection::open(&dir.path().join("readmodel.sqlite")).unwrap();
    projection.apply(&ops).unwrap();
    let expected = hex::encode(projection.digest().unwrap());
    drop(projection);

    assert_eq!(log_json(dir.path(), &["digest"])["digest"], expected);
    assert_eq!(log_json(dir.path(), &["rebuild"])["digest"], expected);
    let origin = ops[0].dot.origin.to_string();
    assert_eq!(log_json(dir.path(), &["frontier"])[&origin], 5_000);

    let last = ops.last().unwrap().dot.to_string();
    let without_last = log_json(dir.path(), &["rebuild", "--exclude", &last]);
    assert_eq!(without_last["operations_applied"], 4_999);
    assert_ne!(without_last["digest"], expected);
    let until = log_json(
        dir.path(),
        &["rebuild", "--until", &format!("{origin}:4999")],
    );
    assert_eq!(
        until["digest"], without_last["digest"],
        "the same 4,999 operations"
    );

    let shown = log_json(
        dir.path(),
        &["show", "--from-seq", "1001", "--to-seq", "1010"],
    );
    assert_eq!(shown.as_array().unwrap().len(), 10);
    assert_eq!(shown[0]["dot"], format!("{origin}:1001"));
    let file = Uuid::from_u64_pair(2, 1000);
    let touching = log_json(dir.path(), &["show", "--entity", &format!("file:{file}")]);
    assert_eq!(
        touching.as_array().unwrap().len(),
        2,
        "its upload and one tag change: {touching}"
    );
    let history = log_json(dir.path(), &["history", &format!("file:{file}")]);
    assert_eq!(history[0]["rule"], "new file");
    assert!(history[1]["rule"].as_str().unwrap().contains(": current"));

    let bad = Command::new(bin())
        .args(["log", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .arg("frontier")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("holds no event log"));
}
