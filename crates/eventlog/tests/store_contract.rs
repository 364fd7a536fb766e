//! One contract suite for every `LogStore` adapter, plus what only the fjall store can show:
//! reopening, corruption on disk, and a kill -9 in the middle of appends.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use redcloud_types::testing::Tmpfs;

use redcloud_eventlog::{
    Dot, FjallStore, Hlc, LogBase, LogStore, MemStore, NodeId, NotReadyReason, Op, Seq, StoreError,
    VersionVector, read_causal, read_causal_until, replay,
};

type Payload = String;

fn node(raw: u64) -> NodeId {
    NodeId::new(raw)
}

/// The next op of `origin` on top of `deps` (which must end at its predecessor).
fn op(origin: u64, seq: u64, deps: &[(u64, u64)], hlc_ms: u64) -> Op<Payload> {
    let mut vv: VersionVector = deps.iter().map(|&(o, s)| (node(o), Seq::new(s))).collect();
    vv.raise(node(origin), Seq::new(seq - 1));
    Op {
        dot: Dot::new(node(origin), Seq::new(seq)),
        deps: vv,
        hlc: Hlc::new(hlc_ms, 0),
        payload: format!("{origin}:{seq}"),
    }
}

fn not_ready(result: Result<(), StoreError>) -> NotReadyReason {
    match result {
        Err(StoreError::NotReady { reason, .. }) => reason,
        other => panic!("expected NotReady, got {other:?}"),
    }
}

/// The contract. `reopen` gives a store over the same log, as after a restart.
fn log_store_suite<S: LogStore<Payload>>(store: S, reopen: impl FnOnce(S) -> S) {
    assert_eq!(store.frontier(), VersionVector::new());
    assert!(
        store
            .read(node(1), Seq::new(1)..=Seq::new(9), 10)
            .unwrap()
            .is_empty()
    );

    // Appends in causal order, across origins, in one batch and in several.
    store
        .append(&[op(1, 1, &[], 10), op(1, 2, &[], 11)])
        .unwrap();
    store.append(&[op(2, 1, &[(1, 2)], 12)]).unwrap();
    store.append(&[op(1, 3, &[(2, 1)], 13)]).unwrap();
    store.append(&[]).unwrap();

    // Everything that breaks causal closure is refused, and refuses the whole batch.
    assert_eq!(
        not_ready(store.append(&[op(1, 3, &[(2, 1)], 13)])),
        NotReadyReason::AlreadyPresent
    );
    assert_eq!(
        not_ready(store.append(&[op(1, 5, &[(2, 1)], 15)])),
        NotReadyReason::SeqGap
    );
    assert_eq!(
        not_ready(store.append(&[op(3, 1, &[(2, 4)], 15)])),
        NotReadyReason::MissingDeps
    );
    assert_eq!(
        not_ready(store.append(&[op(3, 1, &[], 15), op(3, 3, &[], 16)])),
        NotReadyReason::SeqGap
    );
    assert_eq!(
        store.frontier().get(node(3)),
        Seq::ZERO,
        "a refused batch leaves no trace"
    );

    let expected: VersionVector = [(node(1), Seq::new(3)), (node(2), Seq::new(1))]
        .into_iter()
        .collect();
    assert_eq!(store.frontier(), expected);

    // Reads: ranges, limits, clipping at the frontier.
    let ones = store
        .read(node(1), Seq::new(2)..=Seq::new(100), 10)
        .unwrap();
    assert_eq!(
        ones.iter().map(|o| o.dot.seq.get()).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(ones[1], op(1, 3, &[(2, 1)], 13));
    assert_eq!(
        store
            .read(node(1), Seq::new(1)..=Seq::new(3), 1)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .read(node(9), Seq::new(1)..=Seq::new(3), 5)
            .unwrap()
            .is_empty()
    );

    // Causal reading: every op after its causal past, exactly the missing ones.
    let since: VersionVector = [(node(1), Seq::new(1))].into_iter().collect();
    let page = read_causal(&store, &since, 10).unwrap();
    let dots: Vec<_> = page.ops.iter().map(|o| o.dot).collect();
    assert_eq!(
        dots,
        [
            Dot::new(node(1), Seq::new(2)),
            Dot::new(node(2), Seq::new(1)),
            Dot::new(node(1), Seq::new(3))
        ]
    );
    assert!(!page.more);
    let first = read_causal(&store, &since, 2).unwrap();
    assert_eq!(first.ops.len(), 2);
    assert!(first.more);

    let store = reopen(store);
    assert_eq!(store.frontier(), expected);
    let mut replayed = Vec::new();
    let count = replay(&store, 1, |ops| {
        replayed.extend(ops.into_iter().map(|o| o.dot))
    })
    .unwrap();
    assert_eq!(count, 4);
    assert_eq!(replayed[0], Dot::new(node(1), Seq::new(1)));
    store.append(&[op(2, 2, &[(1, 3)], 20)]).unwrap();
    assert_eq!(store.frontier().get(node(2)), Seq::new(2));
}

fn vv(entries: &[(u64, u64)]) -> VersionVector {
    entries
        .iter()
        .map(|&(o, s)| (node(o), Seq::new(s)))
        .collect()
}

fn seqs(ops: &[Op<Payload>]) -> Vec<(u64, u64)> {
    ops.iter()
        .map(|o| (o.dot.origin.get(), o.dot.seq.get()))
        .collect()
}

/// The contract of bases: truncation below the frontier, a start from a snapshot beyond it,
/// both surviving a restart.
fn rebase_suite<S: LogStore<Payload>>(store: S, reopen: impl Fn(S) -> S) {
    assert_eq!(store.base(), LogBase::default());
    for seq in 1..=5 {
        store.append(&[op(1, seq, &[], 100 + seq)]).unwrap();
    }
    store.append(&[op(2, 1, &[(1, 5)], 200)]).unwrap();
    store.append(&[op(2, 2, &[], 201)]).unwrap();

    // Truncation: the covered operations are gone, the frontier stays.
    let base = LogBase {
        frontier: vv(&[(1, 3)]),
        hlc: Hlc::new(103, 0),
    };
    assert_eq!(store.rebase(&base).unwrap(), 3);
    assert_eq!(store.base(), base);
    assert_eq!(store.frontier(), vv(&[(1, 5), (2, 2)]));
    let held = store.read(node(1), Seq::new(1)..=Seq::new(9), 10).unwrap();
    assert_eq!(
        seqs(&held),
        [(1, 4), (1, 5)],
        "reads skip what the base covers"
    );
    let mut replayed = Vec::new();
    replay(&store, 2, |ops| replayed.extend(seqs(&ops))).unwrap();
    assert_eq!(
        replayed,
        [(1, 4), (1, 5), (2, 1), (2, 2)],
        "replay starts at the base"
    );
    let page = read_causal(&store, &VersionVector::new(), 10).unwrap();
    assert_eq!(
        page.ops.len(),
        4,
        "a reader behind the base gets what is held"
    );
    let until = read_causal_until(&store, &vv(&[(1, 3)]), &vv(&[(1, 5), (2, 1)]), 10).unwrap();
    assert_eq!(seqs(&until.ops), [(1, 4), (1, 5), (2, 1)]);
    assert!(!until.more);

    // A lower base changes nothing; a base is never lowered.
    assert_eq!(store.rebase(&LogBase::default()).unwrap(), 0);
    assert_eq!(store.base(), base);

    let store = reopen(store);
    assert_eq!(store.base(), base, "the base is durable");
    assert_eq!(store.frontier(), vv(&[(1, 5), (2, 2)]));

    // A start from a snapshot beyond the log: the frontier jumps, appends follow the base.
    let snapshot = LogBase {
        frontier: vv(&[(1, 9), (2, 1), (3, 4)]),
        hlc: Hlc::new(900, 0),
    };
    assert_eq!(
        store.rebase(&snapshot).unwrap(),
        3,
        "1:4, 1:5 and 2:1 were held"
    );
    let merged = LogBase {
        frontier: vv(&[(1, 9), (2, 1), (3, 4)]),
        hlc: Hlc::new(900, 0),
    };
    assert_eq!(store.base(), merged);
    assert_eq!(store.frontier(), vv(&[(1, 9), (2, 2), (3, 4)]));
    assert_eq!(
        not_ready(store.append(&[op(3, 4, &[], 901)])),
        NotReadyReason::AlreadyPresent
    );
    store.append(&[op(3, 5, &[(1, 9), (2, 2)], 902)]).unwrap();
    let store = reopen(store);
    assert_eq!(store.frontier(), vv(&[(1, 9), (2, 2), (3, 5)]));
    assert_eq!(
        seqs(&read_causal(&store, &VersionVector::new(), 10).unwrap().ops),
        [(2, 2), (3, 5)]
    );
}

#[test]
fn mem_store_meets_the_contract() {
    log_store_suite(MemStore::new(), |store| store.clone());
    rebase_suite(MemStore::new(), |store| store.clone());
}

#[test]
fn fjall_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    log_store_suite(FjallStore::open(&path).unwrap(), move |store| {
        drop(store);
        FjallStore::open(&path).unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    rebase_suite(FjallStore::open(&path).unwrap(), move |store| {
        drop(store);
        FjallStore::open(&path).unwrap()
    });
}

#[test]
fn a_directory_opens_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FjallStore::<Payload>::open(dir.path()).unwrap();
    assert!(FjallStore::<Payload>::open(dir.path()).is_err());
}

#[test]
fn concurrent_appends_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FjallStore::<Payload>::open(dir.path()).unwrap());
    let writers: Vec<_> = (1..=8u64)
        .map(|origin| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for seq in 1..=50 {
                    store.append(&[op(origin, seq, &[], seq)]).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let frontier = store.frontier();
    assert_eq!(frontier.op_count(), 400);
    assert!(store.sync_count() <= 400, "at most one fsync per append");
    for origin in 1..=8 {
        assert_eq!(frontier.get(node(origin)), Seq::new(50));
    }
}

/// Opens the raw database under a closed store to damage it.
fn damage(dir: &std::path::Path, keyspace: &str, key: &[u8], value: &[u8]) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let ks = db
        .keyspace(keyspace, fjall::KeyspaceCreateOptions::default)
        .unwrap();
    ks.insert(key, value).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

fn op_key(origin: u64, seq: u64) -> Vec<u8> {
    [origin.to_be_bytes(), seq.to_be_bytes()].concat()
}

#[test]
fn a_corrupt_base_refuses_to_open_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.append(&[op(1, 1, &[], 1), op(1, 2, &[], 2)]).unwrap();
        let base = LogBase {
            frontier: vv(&[(1, 1)]),
            hlc: Hlc::new(1, 0),
        };
        store.rebase(&base).unwrap();
    }
    damage(dir.path(), "base", b"base", b"\x01\xc1 not a base");
    let err = FjallStore::<Payload>::open(dir.path()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("base"),
        "names the location: {err}"
    );
}

#[test]
fn corrupt_operation_bytes_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.append(&[op(1, 1, &[], 1), op(1, 2, &[], 2)]).unwrap();
    }
    damage(dir.path(), "ops", &op_key(1, 2), b"\x01\xff\xfe garbage");
    let store = FjallStore::<Payload>::open(dir.path()).unwrap();
    let err = store
        .read(node(1), Seq::new(1)..=Seq::new(2), 10)
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ops/"),
        "names the location: {err}"
    );
    assert_eq!(
        store
            .read(node(1), Seq::new(1)..=Seq::new(1), 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn an_operation_under_the_wrong_key_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.append(&[op(1, 1, &[], 1), op(1, 2, &[], 2)]).unwrap();
    }
    damage(dir.path(), "ops", &op_key(1, 2), &op(1, 1, &[], 1).encode());
    let store = FjallStore::<Payload>::open(dir.path()).unwrap();
    assert!(matches!(
        store.read(node(1), Seq::new(1)..=Seq::new(2), 10),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_missing_operation_below_the_head_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store
            .append(&[op(1, 1, &[], 1), op(1, 2, &[], 2), op(1, 3, &[], 3)])
            .unwrap();
    }
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = db
            .keyspace("ops", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        ks.remove(op_key(1, 2)).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = FjallStore::<Payload>::open(dir.path()).unwrap();
    assert!(matches!(
        store.read(node(1), Seq::new(1)..=Seq::new(3), 10),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn corrupt_heads_refuse_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FjallStore::open(dir.path()).unwrap();
        store.append(&[op(1, 1, &[], 1)]).unwrap();
    }
    damage(dir.path(), "heads", &1u64.to_be_bytes(), b"short");
    assert!(matches!(
        FjallStore::<Payload>::open(dir.path()),
        Err(StoreError::Corrupt { .. })
    ));

    damage(
        dir.path(),
        "heads",
        &1u64.to_be_bytes(),
        &7u64.to_be_bytes(),
    );
    let err = FjallStore::<Payload>::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("not stored"), "{err}");
}

const CRASH_CHILD_ENV: &str = "REDCLOUD_EVENTLOG_CRASH_CHILD_DIR";

/// The child half of `kill_9_loses_nothing_acknowledged`: appends until killed, printing each
/// acknowledged dot. Does nothing in a normal test run.
#[test]
fn crash_child_appends_until_killed() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let store = Arc::new(FjallStore::<Payload>::open(std::path::Path::new(&dir)).unwrap());
    for origin in 1..=4u64 {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let mut seq = store.frontier().get(node(origin)).get();
            loop {
                let batch: Vec<_> = (1..=3).map(|i| op(origin, seq + i, &[], seq + i)).collect();
                store.append(&batch).unwrap();
                seq += 3;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {origin} {seq}").unwrap();
                out.flush().unwrap();
            }
        });
    }
    // The parent kills this process; until then the writers run.
    loop {
        std::thread::park();
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let mut acked = std::collections::BTreeMap::new();
        for line in reader.lines() {
            let line = line.unwrap();
            // libtest may print its "test ... " prefix on the same line as the first ack.
            let Some(rest) = line.split_once("ACK ").map(|(_, rest)| rest) else {
                continue;
            };
            let (origin, seq) = rest.split_once(' ').unwrap();
            acked.insert(origin.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap());
            if acked.values().sum::<u64>() >= 300 * (round + 1) {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let acknowledged: u64 = acked.values().sum();
        assert!(
            acknowledged >= 300 * (round + 1),
            "round {round}: the writer acknowledged only {acknowledged} ops before it died"
        );

        let store = FjallStore::<Payload>::open(dir.path()).unwrap();
        let frontier = store.frontier();
        for (&origin, &seq) in &acked {
            assert!(
                frontier.get(node(origin)) >= Seq::new(seq),
                "round {round}: origin {origin} acknowledged {seq} but recovered {frontier}"
            );
        }
        // Whatever survived is whole: every op decodes, seqs are contiguous, batches atomic.
        for (origin, head) in frontier.iter() {
            assert_eq!(
                head.get() % 3,
                0,
                "a batch of three was torn: {origin} at {head}"
            );
            let ops = store.read(origin, Seq::new(1)..=head, usize::MAX).unwrap();
            assert_eq!(ops.len() as u64, head.get());
        }
    }
}

/// An op of origin 1 whose payload is `bytes` of printable noise, which the journal cannot
/// compress away.
fn big_op(seq: u64, bytes: usize) -> Op<Payload> {
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let payload = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + (state % 94) as u8)
        })
        .collect();
    Op {
        payload,
        ..op(1, seq, &[], seq)
    }
}

#[test]
fn a_full_disk_halts_appends_until_resume_finds_room_and_loses_nothing() {
    let Some(tmpfs) = Tmpfs::mount(16 << 20) else {
        return;
    };
    let dir = tmpfs.path().join("log");
    let store = FjallStore::<Payload>::open(&dir).unwrap();
    store
        .append(&[op(1, 1, &[], 1), op(1, 2, &[], 2), op(1, 3, &[], 3)])
        .unwrap();

    let filler = tmpfs.fill();
    let err = store.append(&[big_op(4, 256 * 1024)]).unwrap_err();
    assert!(err.is_disk_full() && !err.is_fatal(), "{err:?}");
    assert!(
        matches!(
            store.append(&[op(1, 4, &[], 4)]),
            Err(StoreError::DiskFull { .. })
        ),
        "a halted store refuses appends at once"
    );
    let resumed = store.resume().unwrap_err();
    assert!(resumed.is_disk_full(), "still no room: {resumed:?}");
    // What was durable stays readable throughout.
    assert_eq!(store.frontier().get(node(1)), Seq::new(3));
    assert_eq!(
        store
            .read(node(1), Seq::new(1)..=Seq::new(3), 10)
            .unwrap()
            .len(),
        3
    );

    std::fs::remove_file(filler).unwrap();
    store.resume().unwrap();
    assert_eq!(
        store.frontier().get(node(1)),
        Seq::new(3),
        "the refused batch did not reach the disk"
    );
    store
        .append(&[big_op(4, 256 * 1024), op(1, 5, &[], 5)])
        .unwrap();
    drop(store);
    let store = FjallStore::<Payload>::open(&dir).unwrap();
    let ops = store.read(node(1), Seq::new(1)..=Seq::new(5), 10).unwrap();
    assert_eq!(ops.len(), 5);
    assert_eq!(ops[3].payload.len(), 256 * 1024);
    drop(store);
    drop(tmpfs);
}

fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "jnl"))
        .map(|entry| entry.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Every open replays the journal into memory (a restart, and each `redcloud log` command),
/// so the journal must stay bounded however much the log grows: with the engine's defaults,
/// the small `heads` keyspace kept every journal alive up to 512 MiB.
#[test]
fn the_journal_an_open_replays_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::<Payload>::open(dir.path()).unwrap();
    // Incompressible payloads: the engine compresses what it writes.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut filler = || -> String {
        (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect()
    };
    let mut seq = 0;
    for _ in 0..40 {
        let batch: Vec<Op<Payload>> = (0..1000)
            .map(|_| {
                seq += 1;
                let mut next = op(1, seq, &[], seq);
                next.payload = filler();
                next
            })
            .collect();
        store.append(&batch).unwrap();
    }
    // 160 MiB went in. Flushes run in the background: give them time to retire journals.
    let bound = 80 << 20;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while journal_bytes(dir.path()) > bound && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        journal_bytes(dir.path()) <= bound,
        "journals hold {} bytes",
        journal_bytes(dir.path())
    );
    drop(store);
    let reopened = FjallStore::<Payload>::open(dir.path()).unwrap();
    assert_eq!(reopened.frontier().get(node(1)), Seq::new(seq));
}
