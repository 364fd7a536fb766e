//! Benchmark of the event log, each number beside a baseline measured in the same run:
//! durable appends (one writer, and 16 sharing fsyncs) against raw write+fdatasync on a
//! plain file, causal replay against decoding alone, and the bytes one anti-entropy round
//! costs between replicas already in sync, against the size of the log.
//!
//! `cargo run --release -p redcloud-eventlog --example log_bench [-- --big-ops 1000000]`
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use redcloud_eventlog::{
    Dot, FjallStore, Gossip, GossipConfig, Hlc, LogStore, NodeId, Op, Seq, VersionVector, replay,
};

/// About the size of a real metadata operation (a file added with a few tags).
const PAYLOAD_BYTES: usize = 160;
const APPENDS: u64 = 2_000;
const WRITERS: u64 = 16;
const ORIGINS: u64 = 5;

type Payload = Vec<u8>;

fn op(origin: u64, seq: u64, deps: &VersionVector) -> Op<Payload> {
    let mut deps = deps.clone();
    deps.raise(NodeId::new(origin), Seq::new(seq - 1));
    Op {
        dot: Dot::new(NodeId::new(origin), Seq::new(seq)),
        deps,
        hlc: Hlc::new(1_800_000_000_000 + seq, 0),
        payload: vec![(seq % 251) as u8; PAYLOAD_BYTES],
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn row(what: &str, value: f64, unit: &str, baseline: f64, baseline_what: &str) {
    println!(
        "{what:<44} {value:>12.0} {unit:<8} baseline {baseline:>12.0} ({baseline_what}) ratio {:.2}",
        value / baseline
    );
}

/// The physical limit for durable appends: the same bytes written to a file, fdatasync each.
fn raw_fsync_rate(dir: &std::path::Path, writes: u64, bytes: usize) -> f64 {
    let file = std::fs::File::create(dir.join("raw")).unwrap();
    let block = vec![7u8; bytes];
    let started = Instant::now();
    for i in 0..writes {
        file.write_all_at(&block, i * bytes as u64).unwrap();
        file.sync_data().unwrap();
    }
    rate(writes, started.elapsed())
}

fn single_writer(dir: &std::path::Path) -> (f64, u64) {
    let store = FjallStore::<Payload>::open(dir).unwrap();
    let mut frontier = VersionVector::new();
    let started = Instant::now();
    for seq in 1..=APPENDS {
        store.append(&[op(1, seq, &frontier)]).unwrap();
        frontier.raise(NodeId::new(1), Seq::new(seq));
    }
    (rate(APPENDS, started.elapsed()), store.sync_count())
}

fn concurrent_writers(dir: &std::path::Path) -> (f64, u64) {
    let store = Arc::new(FjallStore::<Payload>::open(dir).unwrap());
    let per_writer = APPENDS;
    let started = Instant::now();
    let threads: Vec<_> = (1..=WRITERS)
        .map(|origin| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut own = VersionVector::new();
                for seq in 1..=per_writer {
                    store.append(&[op(origin, seq, &own)]).unwrap();
                    own.raise(NodeId::new(origin), Seq::new(seq));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    (
        rate(WRITERS * per_writer, started.elapsed()),
        store.sync_count(),
    )
}

/// Fills a log with `count` ops from several origins that depend on each other.
fn fill(store: &FjallStore<Payload>, count: u64) {
    let mut frontier = VersionVector::new();
    let mut batch = Vec::new();
    for i in 0..count {
        let origin = i % ORIGINS + 1;
        let seq = frontier.get(NodeId::new(origin)).get() + 1;
        let next = op(origin, seq, &frontier);
        frontier.raise(NodeId::new(origin), Seq::new(seq));
        batch.push(next);
        if batch.len() == 10_000 {
            store.append(&batch).unwrap();
            batch.clear();
        }
    }
    store.append(&batch).unwrap();
}

/// Bytes on the wire for one anti-entropy round between two replicas holding the same log.
fn in_sync_round_bytes(a: &FjallStore<Payload>, b: &FjallStore<Payload>) -> (usize, usize) {
    let now = Instant::now();
    let config = GossipConfig::default();
    let (ida, idb) = (NodeId::new(100), NodeId::new(200));
    let mut core_a = Gossip::new(ida, config.clone(), StdRng::seed_from_u64(1), now, a).unwrap();
    let mut core_b = Gossip::new(idb, config.clone(), StdRng::seed_from_u64(2), now, b).unwrap();
    core_a.add_peer(idb);
    core_b.add_peer(ida);
    core_a.handle_tick(now + config.anti_entropy_interval * 2, a);
    let (mut bytes, mut messages) = (0, 0);
    let mut in_flight: Vec<(NodeId, _)> = Vec::new();
    while let Some(t) = core_a.poll_transmit() {
        in_flight.push((ida, t));
    }
    while let Some((from, transmit)) = in_flight.pop() {
        let encoded = transmit.message.encode();
        bytes += encoded.len();
        messages += 1;
        let (core, store) = if transmit.to == ida {
            (&mut core_a, a)
        } else {
            (&mut core_b, b)
        };
        let message = redcloud_eventlog::GossipMessage::decode(&encoded).unwrap();
        core.handle_message(now, 1_800_000_000_000, from, message, store)
            .unwrap();
        let sender = core.id();
        while let Some(t) = core.poll_transmit() {
            in_flight.push((sender, t));
        }
    }
    (bytes, messages)
}

fn replay_and_round(root: &std::path::Path, count: u64) {
    let (dir_a, dir_b) = (
        root.join(format!("a{count}")),
        root.join(format!("b{count}")),
    );
    let a = FjallStore::<Payload>::open(&dir_a).unwrap();
    let b = FjallStore::<Payload>::open(&dir_b).unwrap();
    let started = Instant::now();
    fill(&a, count);
    fill(&b, count);
    let fill_rate = rate(2 * count, started.elapsed());
    println!("  (filled two logs of {count} ops at {fill_rate:.0} ops/s in batches of 10,000)");

    let mut encoded = Vec::with_capacity(count.min(1_000_000) as usize);
    let started = Instant::now();
    let replayed = replay(&a, 4096, |ops| encoded.extend(ops.iter().map(Op::encode))).unwrap();
    let replay_rate = rate(replayed, started.elapsed());
    assert_eq!(replayed, count);
    let started = Instant::now();
    for bytes in &encoded {
        std::hint::black_box(Op::<Payload>::decode(bytes).unwrap());
    }
    let decode_rate = rate(count, started.elapsed());
    row(
        &format!("replay of {count} ops in causal order"),
        replay_rate,
        "ops/s",
        decode_rate,
        "decoding alone",
    );
    let started = Instant::now();
    let mut read = 0u64;
    for (origin, head) in a.frontier().iter() {
        let mut next = Seq::new(1);
        while next <= head {
            let ops = a.read(origin, next..=head, 4096).unwrap();
            read += ops.len() as u64;
            next = Seq::new(next.get() + ops.len() as u64);
        }
    }
    assert_eq!(read, count);
    let sequential_rate = rate(count, started.elapsed());
    row(
        &format!("replay of {count} ops in causal order"),
        replay_rate,
        "ops/s",
        sequential_rate,
        "reading origin by origin",
    );

    let (bytes, messages) = in_sync_round_bytes(&a, &b);
    let log_bytes: usize = encoded.iter().map(Vec::len).sum();
    println!(
        "{:<44} {bytes:>12} bytes    in {messages} messages; the log holds {log_bytes} bytes ({:.6}% of it)",
        format!("anti-entropy round in sync, {count} ops"),
        bytes as f64 * 100.0 / log_bytes as f64
    );
    drop((a, b));
    std::fs::remove_dir_all(dir_a).unwrap();
    std::fs::remove_dir_all(dir_b).unwrap();
}

fn main() {
    let big_ops = std::env::args()
        .skip_while(|a| a != "--big-ops")
        .nth(1)
        .map_or(1_000_000, |v| v.parse().expect("--big-ops takes a number"));
    let root = tempfile::tempdir_in(std::env::current_dir().unwrap()).unwrap();
    println!(
        "event log benchmark in {} ({} byte payloads)",
        root.path().display(),
        PAYLOAD_BYTES
    );
    std::io::stdout().flush().unwrap();

    let raw = raw_fsync_rate(root.path(), APPENDS, PAYLOAD_BYTES + 64);
    let (single, single_syncs) = single_writer(&root.path().join("single"));
    row(
        "durable appends, 1 writer",
        single,
        "ops/s",
        raw,
        "raw write+fdatasync",
    );
    println!("  {single_syncs} fsyncs for {APPENDS} appends");
    let (many, many_syncs) = concurrent_writers(&root.path().join("many"));
    row(
        &format!("durable appends, {WRITERS} writers (group commit)"),
        many,
        "ops/s",
        raw,
        "raw write+fdatasync",
    );
    println!("  {many_syncs} fsyncs for {} appends", WRITERS * APPENDS);

    replay_and_round(root.path(), 1_000);
    replay_and_round(root.path(), big_ops);
}
