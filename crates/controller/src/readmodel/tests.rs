use std::path::Path;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use redcloud_eventlog::{Dot, HlcClock, NodeId, Op, VersionVector};
use redcloud_types::ChunkId;
use redcloud_types::testing::Tmpfs;
use uuid::Uuid;

use super::*;
use crate::meta::ContentMd5;

fn memory() -> Projection {
    Projection::open(Path::new(":memory:")).unwrap()
}

/// Builds ops by hand: each origin keeps its frontier and clock; `merge` makes one origin
/// learn everything another has.
struct History {
    frontiers: Vec<VersionVector>,
    clocks: Vec<HlcClock>,
    logs: Vec<Vec<Op<MetaOp>>>,
    all: Vec<Op<MetaOp>>,
}

impl History {
    fn new(origins: usize) -> Self {
        Self {
            frontiers: vec![VersionVector::new(); origins],
            clocks: vec![HlcClock::new(); origins],
            logs: vec![Vec::new(); origins],
            all: Vec::new(),
        }
    }

    fn op(&mut self, origin: usize, wall_ms: u64, payload: MetaOp) -> Op<MetaOp> {
        let id = NodeId::new(origin as u64 + 1);
        let dot = Dot::new(id, self.frontiers[origin].get(id).next());
        let op = Op {
            dot,
            deps: self.frontiers[origin].clone(),
            hlc: self.clocks[origin].tick(wall_ms),
            payload,
        };
        self.frontiers[origin].raise(id, dot.seq);
        self.logs[origin].push(op.clone());
        self.all.push(op.clone());
        op
    }

    fn merge(&mut self, into: usize, from: usize) {
        for op in self.logs[from].clone() {
            if !self.frontiers[into].contains(op.dot) {
                self.frontiers[into].raise(op.dot.origin, op.dot.seq);
                self.clocks[into].observe(op.hlc);
                self.logs[into].push(op);
            }
        }
    }
}

fn register(user: Uuid, name: &str) -> MetaOp {
    MetaOp::UserRegistered {
        user_id: user,
        username: name.to_owned(),
        password_hash: "h".to_owned(),
        api_key_hash: [user.as_bytes()[0]; 32],
    }
}

fn add_file(file: Uuid, owner: Uuid, name: &str, tags: &[&str], replaces: Vec<Uuid>) -> MetaOp {
    MetaOp::FileAdded {
        file_id: file,
        owner_id: owner,
        name: name.to_owned(),
        size: 3,
        chunk_size: 4,
        chunks: vec![ChunkId::of(name.as_bytes())],
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        created_at_ms: 1,
        replaces,
        md5: None,
    }
}

fn reader_of(projection: &Projection) -> Reader<'_> {
    Reader {
        conn: &projection.conn,
    }
}

/// The username rule changed (issue 11): the earliest registration no longer owns the name;
/// every account of it stays reachable by name and the later ones are told of the conflict.
#[test]
fn every_registration_of_a_name_keeps_its_account_earliest_first() {
    let mut h = History::new(2);
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    h.op(1, 100, register(second, "sam"));
    h.op(0, 50, register(first, "sam"));
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let reader = reader_of(&p);
    let accounts: Vec<Uuid> = reader
        .users_by_name("sam", 10)
        .unwrap()
        .iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(
        accounts,
        [first, second],
        "login by name tries them in this order"
    );
    assert_eq!(reader.users_by_name("sam", 1).unwrap().len(), 1, "bounded");
    assert!(!reader.account(&first).unwrap().unwrap().username_conflict);
    assert!(reader.account(&second).unwrap().unwrap().username_conflict);
    assert_eq!(
        reader.user_by_key(&[second.as_bytes()[0]; 32]).unwrap(),
        Some(second),
        "the later account can still use its key"
    );
}

#[test]
fn concurrent_uploads_of_one_name_both_survive() {
    let mut h = History::new(2);
    let owner = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.merge(1, 0);
    let (older, newer) = (Uuid::from_u128(0x3f2a << 112), Uuid::new_v4());
    h.op(0, 10, add_file(older, owner, "report.pdf", &["a"], vec![]));
    h.op(1, 20, add_file(newer, owner, "report.pdf", &["b"], vec![]));
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let files = reader_of(&p).files_matching(&owner, &[]).unwrap();
    let names: Vec<_> = files.iter().map(|f| (f.name.as_str(), f.file_id)).collect();
    assert_eq!(
        names,
        [
            ("report (conflict 3f2a0000).pdf", older),
            ("report.pdf", newer)
        ]
    );
}

/// Issue 11: conflict names took 16 bits of the file id, so two copies could share one, or
/// take the name of a real file. Here two copies share their first 32 bits and a real file is
/// uploaded under the name the first copy would get.
#[test]
fn conflict_names_are_unique_among_the_owners_live_files() {
    let mut h = History::new(3);
    let owner = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.merge(1, 0);
    h.merge(2, 0);
    let (a, b) = (
        Uuid::from_u128(0x3_f2a9_1c41 << 92),
        Uuid::from_u128(0x3_f2a9_1c42 << 92),
    );
    let real = Uuid::new_v4();
    h.op(0, 10, add_file(a, owner, "r.pdf", &["t"], vec![]));
    h.op(1, 11, add_file(b, owner, "r.pdf", &["t"], vec![]));
    h.op(
        2,
        12,
        add_file(Uuid::new_v4(), owner, "r.pdf", &["t"], vec![]),
    );
    h.op(
        0,
        13,
        add_file(real, owner, "r (conflict 3f2a91c4).pdf", &["t"], vec![]),
    );
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let names: Vec<String> = reader_of(&p)
        .files_matching(&owner, &[])
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "r (conflict 3f2a91c4).pdf",
            "r (conflict 3f2a91c41).pdf",
            "r (conflict 3f2a91c42).pdf",
            "r.pdf"
        ]
    );
    assert_eq!(
        reader_of(&p)
            .file_by_name(&owner, "r (conflict 3f2a91c4).pdf")
            .unwrap()
            .unwrap()
            .file_id,
        real
    );
}

#[test]
fn an_upload_that_follows_its_predecessor_replaces_it() {
    let mut h = History::new(1);
    let owner = Uuid::new_v4();
    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    h.op(0, 1, register(owner, "o"));
    h.op(0, 2, add_file(old, owner, "a.txt", &["t"], vec![]));
    h.op(0, 3, add_file(new, owner, "a.txt", &["t"], vec![old]));
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let reader = reader_of(&p);
    assert!(reader.file_by_id(&old).unwrap().is_none());
    assert_eq!(
        reader
            .file_by_name(&owner, "a.txt")
            .unwrap()
            .unwrap()
            .file_id,
        new
    );
}

#[test]
fn concurrent_removals_never_leave_a_file_tagless() {
    let mut h = History::new(2);
    let owner = Uuid::new_v4();
    let file = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.op(0, 2, add_file(file, owner, "f", &["x", "y"], vec![]));
    h.merge(1, 0);
    h.op(
        0,
        10,
        MetaOp::TagsRemoved {
            file_ids: vec![file],
            tags: vec!["x".into()],
        },
    );
    h.op(
        1,
        20,
        MetaOp::TagsRemoved {
            file_ids: vec![file],
            tags: vec!["y".into()],
        },
    );
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let tags = reader_of(&p).file_by_id(&file).unwrap().unwrap().tags;
    assert_eq!(tags, ["y"], "the tag removed last stays");
}

/// Issue 11: with {a, b} and concurrent `remove [b]` and (later) `remove [a, x]`, the fallback
/// showed {a, x}: it took every row of the newest stamp, even the one recording only that x,
/// a tag the file never had, was removed.
#[test]
fn concurrent_removals_keep_only_tags_the_file_had() {
    let mut h = History::new(2);
    let owner = Uuid::new_v4();
    let file = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.op(0, 2, add_file(file, owner, "f", &["a", "b"], vec![]));
    h.merge(1, 0);
    let remove = |tags: &[&str]| MetaOp::TagsRemoved {
        file_ids: vec![file],
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    };
    h.op(1, 10, remove(&["b"]));
    h.op(0, 20, remove(&["a", "x"]));
    for order in [h.all.clone(), {
        let mut r = h.all.clone();
        r.swap(2, 3);
        r
    }] {
        let mut p = memory();
        p.apply(&order).unwrap();
        let reader = reader_of(&p);
        assert_eq!(reader.file_by_id(&file).unwrap().unwrap().tags, ["a"]);
        assert!(
            reader
                .files_matching(&owner, &["x".to_owned()])
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn a_delete_wins_over_a_concurrent_tag_change() {
    let mut h = History::new(2);
    let owner = Uuid::new_v4();
    let file = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.op(0, 2, add_file(file, owner, "f", &["x"], vec![]));
    h.merge(1, 0);
    h.op(
        0,
        5,
        MetaOp::FilesDeleted {
            file_ids: vec![file],
        },
    );
    h.op(
        1,
        9,
        MetaOp::TagsAdded {
            file_ids: vec![file],
            tags: vec!["later".into()],
        },
    );
    for order in [h.all.clone(), {
        let mut r = h.all.clone();
        r.swap(2, 3);
        r
    }] {
        let mut p = memory();
        p.apply(&order).unwrap();
        assert!(reader_of(&p).file_by_id(&file).unwrap().is_none());
        assert!(
            reader_of(&p)
                .files_matching(&owner, &["later".to_owned()])
                .unwrap()
                .is_empty()
        );
    }
}

/// A retired controller is gone for good; a retired chunkserver is back once seen again after
/// its retirement; every arrival order ends in the same read model.
#[test]
fn retirements_take_controllers_out_for_good_and_chunkservers_until_seen_again() {
    let mut h = History::new(2);
    let seen = |node: &str| MetaOp::ControllerSeen {
        node_id: node.into(),
        address: "a:8001".into(),
    };
    let chunkserver_seen = |address: &str| MetaOp::ChunkserverSeen {
        node_id: "cs".into(),
        address: address.into(),
    };
    h.op(0, 1, seen("00000000000000aa"));
    h.op(0, 2, seen("00000000000000bb"));
    h.op(0, 3, chunkserver_seen("cs:50051"));
    h.merge(1, 0);
    h.op(
        1,
        5,
        MetaOp::ControllerRetired {
            node_id: "00000000000000bb".into(),
            reason: "gone".into(),
        },
    );
    h.op(
        1,
        6,
        MetaOp::ChunkserverRetired {
            node_id: "cs".into(),
            reason: "gone".into(),
        },
    );
    // Concurrently, the other side sees the controller again: it stays retired.
    h.op(0, 7, seen("00000000000000bb"));
    let mut digests = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let order = random_causal_order(&h.all, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut p = memory();
        p.apply(&order).unwrap();
        let r = reader_of(&p);
        assert_eq!(r.controllers().unwrap(), vec![NodeId::new(0xaa)]);
        assert!(r.chunkservers().unwrap().is_empty());
        let retired: Vec<(bool, String)> = r
            .retired()
            .unwrap()
            .into_iter()
            .map(|n| (n.controller, n.node_id))
            .collect();
        assert_eq!(
            retired,
            vec![(true, "00000000000000bb".into()), (false, "cs".into())]
        );
        digests.insert(p.digest().unwrap());
    }
    assert_eq!(digests.len(), 1);

    h.merge(0, 1);
    h.op(0, 9, chunkserver_seen("cs:50052"));
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let r = reader_of(&p);
    assert_eq!(
        r.chunkservers().unwrap(),
        vec![("cs".to_owned(), "cs:50052".to_owned())],
        "a heartbeat after the retirement brings the chunkserver back"
    );
    assert_eq!(r.retired().unwrap().len(), 1);
}

/// A user with one file, projected into a read model at `path`: the history and its digest.
fn one_user_one_file_at(path: &Path) -> (History, [u8; 32]) {
    let mut h = History::new(1);
    let owner = Uuid::new_v4();
    h.op(0, 1, register(owner, "o"));
    h.op(0, 2, add_file(Uuid::new_v4(), owner, "f", &["x"], vec![]));
    let mut p = Projection::open(path).unwrap();
    p.apply(&h.all).unwrap();
    let digest = p.digest().unwrap();
    (h, digest)
}

#[test]
fn the_applied_frontier_survives_a_reopen_and_replays_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rm.sqlite");
    let (h, digest) = one_user_one_file_at(&path);
    let mut p = Projection::open(&path).unwrap();
    assert_eq!(p.applied().op_count(), 2);
    p.apply(&h.all).unwrap();
    assert_eq!(
        p.digest().unwrap(),
        digest,
        "applying known ops again changes nothing"
    );
}

#[test]
fn a_full_disk_rolls_a_projection_back_and_it_applies_once_there_is_room() {
    let Some(tmpfs) = Tmpfs::mount(16 << 20) else {
        return;
    };
    let mut h = History::new(1);
    let owner = Uuid::new_v4();
    let registered = h.op(0, 1, register(owner, "o"));
    let mut p = Projection::open(&tmpfs.path().join("rm.sqlite")).unwrap();
    p.apply(std::slice::from_ref(&registered)).unwrap();

    let filler = tmpfs.fill();
    // More rows than the write-ahead log has room for.
    let uploads: Vec<Op<MetaOp>> = (0..500)
        .map(|i| {
            let name = format!("file {i} {}", "n".repeat(200));
            h.op(
                0,
                2 + i,
                add_file(Uuid::new_v4(), owner, &name, &["t"], vec![]),
            )
        })
        .collect();
    let err = p.apply(&uploads).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(p.applied().op_count(), 1, "the transaction left no trace");
    assert_eq!(
        reader_of(&p).files_matching(&owner, &[]).unwrap().len(),
        0,
        "reads go on"
    );

    std::fs::remove_file(filler).unwrap();
    p.apply(&uploads).unwrap();
    let mut reference = memory();
    reference.apply(&h.all).unwrap();
    assert_eq!(p.digest().unwrap(), reference.digest().unwrap());
    drop(p);
    drop(tmpfs);
}

#[test]
fn a_repeated_id_is_settled_by_stamp_not_by_arrival() {
    let mut h = History::new(2);
    let (user, file) = (Uuid::new_v4(), Uuid::new_v4());
    h.op(0, 10, register(user, "early"));
    h.op(1, 20, register(user, "late"));
    h.op(0, 30, add_file(file, user, "first", &["t"], vec![]));
    h.op(1, 40, add_file(file, user, "second", &["t"], vec![]));
    let digests: Vec<_> = [vec![0, 1, 2, 3], vec![1, 0, 3, 2]]
        .into_iter()
        .map(|order| {
            let mut p = memory();
            for i in order {
                p.apply(std::slice::from_ref(&h.all[i])).unwrap();
            }
            assert_eq!(
                reader_of(&p).users_by_name("early", 10).unwrap()[0].user_id,
                user
            );
            assert_eq!(
                reader_of(&p).file_by_id(&file).unwrap().unwrap().name,
                "first"
            );
            p.digest().unwrap()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}

/// The rules only a damaged or hostile node exercises (one id added twice, a delete of a file
/// before a concurrent, earlier add of it arrives, retirements) give the in-memory projection
/// the SQLite projection's digest in every arrival order.
#[test]
fn the_in_memory_projection_settles_what_healthy_nodes_never_make_as_sqlite_does() {
    let mut h = History::new(2);
    let (user, file) = (Uuid::new_v4(), Uuid::new_v4());
    h.op(0, 10, register(user, "early"));
    h.op(1, 20, register(user, "late"));
    h.op(
        0,
        25,
        MetaOp::ApiKeyIssued {
            user_id: user,
            api_key_hash: [7; 32],
        },
    );
    h.op(0, 30, add_file(file, user, "first", &["t"], vec![]));
    h.op(1, 40, add_file(file, user, "second", &["u"], vec![]));
    h.op(
        1,
        45,
        MetaOp::FilesDeleted {
            file_ids: vec![file],
        },
    );
    h.op(
        1,
        46,
        MetaOp::TagsRemoved {
            file_ids: vec![file, Uuid::new_v4()],
            tags: vec!["u".into(), "never".into()],
        },
    );
    h.op(
        1,
        47,
        MetaOp::ChunkserverSeen {
            node_id: "cs".into(),
            address: "a".into(),
        },
    );
    h.op(
        0,
        48,
        MetaOp::ChunkserverRetired {
            node_id: "cs".into(),
            reason: "r".into(),
        },
    );
    h.op(
        0,
        49,
        MetaOp::ChunkserverRetired {
            node_id: "cs".into(),
            reason: "again".into(),
        },
    );
    // One S3 key id made twice (the earliest describes it), and a key deleted by an origin
    // that never saw it made (the deletion holds whichever arrives first).
    let (other, sealed) = (Uuid::new_v4(), |byte: u8| vec![byte; 40]);
    let created = |key_id: &str, user_id: Uuid, byte: u8| MetaOp::S3KeyCreated {
        key_id: key_id.into(),
        user_id,
        sealed_secret: sealed(byte),
        created_at_ms: u64::from(byte),
    };
    h.op(0, 50, created("RCTWICE", user, 1));
    h.op(1, 21, created("RCTWICE", other, 2));
    h.op(0, 51, created("RCDELETED", user, 3));
    h.op(
        1,
        52,
        MetaOp::S3KeyDeleted {
            key_id: "RCDELETED".into(),
        },
    );
    for seed in 0..16 {
        let order = random_causal_order(&h.all, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut p = memory();
        let mut in_memory = MemoryProjection::new();
        for op in &order {
            p.apply(std::slice::from_ref(op)).unwrap();
            in_memory.apply([op.clone()]);
            assert_eq!(
                in_memory.digest(),
                p.digest().unwrap(),
                "after {} in order {seed}",
                op.dot
            );
        }
        let reader = reader_of(&p);
        assert_eq!(
            reader.s3_key("RCTWICE").unwrap(),
            Some(super::queries::S3KeySecret {
                user_id: other,
                sealed_secret: sealed(2),
            })
        );
        assert_eq!(reader.s3_key("RCDELETED").unwrap(), None);
        assert_eq!(reader.s3_keys_of(&user).unwrap(), vec![]);
    }
}

/// A snapshot the in-memory projection cannot use is refused with the reason, never loaded in
/// part: a wrong digest, a file of another format, a value of the wrong size.
#[test]
fn the_in_memory_projection_refuses_a_damaged_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (_, digest) = one_user_one_file_at(&dir.path().join("source.sqlite"));
    let source = Projection::open(&dir.path().join("source.sqlite")).unwrap();
    let snapshot = dir.path().join("snapshot.sqlite");
    source.export(&snapshot).unwrap();
    let loaded = MemoryProjection::install(&snapshot, &digest).unwrap();
    assert_eq!(loaded.digest(), digest);
    assert_eq!(loaded.position(), source.position());

    let wrong = MemoryProjection::install(&snapshot, &[0; 32])
        .err()
        .unwrap();
    assert!(wrong.to_string().contains("promised"), "{wrong}");
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, b"not a database at all, just bytes").unwrap();
    assert!(MemoryProjection::install(&garbage, &digest).is_err());

    // Damaged under a digest that matches it (a bug, or a hand-edited file): an error naming
    // the value, not a panic.
    {
        let conn = rusqlite::Connection::open(&snapshot).unwrap();
        conn.execute("UPDATE files SET stamp = x'00'", []).unwrap();
    }
    let damaged = digest_at(&snapshot).unwrap();
    let error = MemoryProjection::install(&snapshot, &damaged)
        .err()
        .unwrap();
    assert!(error.to_string().contains("files.stamp"), "{error}");
}

#[test]
fn a_read_model_of_another_format_is_dropped_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rm.sqlite");
    let (h, digest) = one_user_one_file_at(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", FORMAT - 1)
        .unwrap();
    drop(conn);
    // Read as it is (`redcloud log digest` of a stopped node), it is refused with its format,
    // not with whichever of this version's tables it lacks.
    let refused = digest_at(&path).unwrap_err().to_string();
    assert!(
        refused.contains(&format!(
            "the read model is in format {}; this version reads format {FORMAT}",
            FORMAT - 1
        )),
        "{refused}"
    );
    let mut p = Projection::open(&path).unwrap();
    assert!(p.applied().is_empty(), "the whole log is replayed");
    p.apply(&h.all).unwrap();
    assert_eq!(p.digest().unwrap(), digest);
}

#[test]
fn a_damaged_applied_frontier_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rm.sqlite");
    drop(Projection::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('applied_frontier', x'c1c1c1')",
        [],
    )
    .unwrap();
    drop(conn);
    assert!(matches!(
        Projection::open(&path),
        Err(ReadModelError::Corrupt { .. })
    ));
}

/// What one origin has seen: registered users and added files.
fn view(h: &History, origin: usize) -> (Vec<Uuid>, Vec<Uuid>) {
    users_and_files(&h.logs[origin])
}

/// The users registered and the files added in `log`, in its order.
pub(super) fn users_and_files(log: &[Op<MetaOp>]) -> (Vec<Uuid>, Vec<Uuid>) {
    let (mut users, mut files) = (Vec::new(), Vec::new());
    for op in log {
        match &op.payload {
            MetaOp::UserRegistered { user_id, .. } => users.push(*user_id),
            MetaOp::FileAdded { file_id, .. } => files.push(*file_id),
            _ => {}
        }
    }
    (users, files)
}

/// One random step of a history over a small universe, so that ops collide often. Like a
/// real controller, an origin refers only to users and files it has seen (causal delivery
/// then guarantees every node has seen them too); names, tags and usernames collide freely.
fn random_step(h: &mut History, rng: &mut rand::rngs::StdRng, step: u64) {
    let origin = rng.random_range(0..h.frontiers.len());
    let (users, files) = view(h, origin);
    let tags = ["a", "b", "c"];
    let some_tags = |rng: &mut rand::rngs::StdRng| -> Vec<String> {
        let n = rng.random_range(1..=2);
        (0..n)
            .map(|_| tags[rng.random_range(0..tags.len())].to_owned())
            .collect()
    };
    // Clocks disagree by up to a second.
    let wall = step * 10 + rng.random_range(0..1000);
    let pick = |rng: &mut rand::rngs::StdRng, from: &[Uuid]| from[rng.random_range(0..from.len())];
    let payload = match rng.random_range(0..8) {
        1 if !users.is_empty() => MetaOp::ApiKeyIssued {
            user_id: pick(rng, &users),
            api_key_hash: [rng.random(); 32],
        },
        2 | 3 if !users.is_empty() => {
            let replaces = if !files.is_empty() && rng.random_bool(0.5) {
                vec![pick(rng, &files)]
            } else {
                vec![]
            };
            MetaOp::FileAdded {
                file_id: Uuid::from_u128(rng.random()),
                owner_id: pick(rng, &users),
                name: ["x.txt", "y"][rng.random_range(0..2)].to_owned(),
                size: 1,
                chunk_size: 1,
                chunks: vec![ChunkId::of(&[rng.random()])],
                tags: some_tags(rng),
                created_at_ms: wall,
                replaces,
                md5: rng.random_bool(0.5).then(|| ContentMd5 {
                    digest: rng.random(),
                    parts: rng.random_range(0..3),
                }),
            }
        }
        4 if !files.is_empty() => MetaOp::FilesDeleted {
            file_ids: vec![pick(rng, &files)],
        },
        5 if !files.is_empty() => MetaOp::TagsAdded {
            file_ids: vec![pick(rng, &files)],
            tags: some_tags(rng),
        },
        6 if !files.is_empty() => MetaOp::TagsRemoved {
            file_ids: vec![pick(rng, &files)],
            tags: some_tags(rng),
        },
        7 => {
            let from = rng.random_range(0..h.frontiers.len());
            h.merge(origin, from);
            return;
        }
        _ => register(
            Uuid::from_u128(rng.random()),
            ["ann", "ben"][rng.random_range(0..2)],
        ),
    };
    h.op(origin, wall, payload);
}

/// `ops` in a random order in which each comes after its causal past.
pub(super) fn random_causal_order(
    ops: &[Op<MetaOp>],
    rng: &mut rand::rngs::StdRng,
) -> Vec<Op<MetaOp>> {
    let mut pending = ops.to_vec();
    let mut known = VersionVector::new();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].is_ready_for(&known))
            .collect();
        let op = pending.swap_remove(ready[rng.random_range(0..ready.len())]);
        known.raise(op.dot.origin, op.dot.seq);
        out.push(op);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The projection's whole contract in one property: the same set of operations gives the
    /// same read model, in any causal order and any batching.
    #[test]
    fn any_causal_order_gives_the_same_read_model(seed: u64, steps in 5u64..80) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = History::new(3);
        for step in 0..steps {
            random_step(&mut h, &mut rng, step);
        }
        let mut reference = memory();
        reference.apply(&h.all).unwrap();
        let expected = reference.digest().unwrap();
        for _ in 0..3 {
            let order = random_causal_order(&h.all, &mut rng);
            let mut one_by_one = memory();
            for op in &order {
                one_by_one.apply(std::slice::from_ref(op)).unwrap();
            }
            prop_assert_eq!(one_by_one.digest().unwrap(), expected);
            prop_assert_eq!(one_by_one.applied(), reference.applied());
            let mut in_memory = MemoryProjection::new();
            in_memory.apply(order.clone());
            prop_assert_eq!(in_memory.digest(), expected);
            prop_assert_eq!(in_memory.applied(), reference.applied());
        }
    }
}

#[test]
fn a_snapshot_installs_only_with_its_digest_and_replaces_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::new(2);
    let alice = Uuid::from_u128(1);
    let ops = vec![
        history.op(0, 1_000, register(alice, "alice")),
        history.op(
            0,
            1_001,
            add_file(Uuid::from_u128(2), alice, "a.txt", &["t"], vec![]),
        ),
    ];
    let mut source = Projection::open(&dir.path().join("source.sqlite")).unwrap();
    source.apply(&ops).unwrap();
    let snapshot = dir.path().join("snapshot.sqlite");
    source.export(&snapshot).unwrap();
    let digest = source.digest().unwrap();
    assert_eq!(snapshot_position(&snapshot).unwrap(), source.position());

    let mut target = Projection::open(&dir.path().join("target.sqlite")).unwrap();
    let other = history.op(1, 5_000, register(Uuid::from_u128(9), "bob"));
    target.apply(&[other]).unwrap();
    let before = target.digest().unwrap();

    // A wrong digest, garbage, or a file of another format change nothing.
    let wrong = target.install(&snapshot, &[0; 32]).unwrap_err();
    assert!(wrong.to_string().contains("promised"), "{wrong}");
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, b"not a database at all, just bytes").unwrap();
    assert!(target.install(&garbage, &digest).is_err());
    let old = dir.path().join("old.sqlite");
    {
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.pragma_update(None, "user_version", FORMAT - 1)
            .unwrap();
    }
    let format = target.install(&old, &digest).unwrap_err();
    assert!(format.to_string().contains("format"), "{format}");
    assert_eq!(target.digest().unwrap(), before);

    // The right one replaces the whole read model, position included.
    let position = target.install(&snapshot, &digest).unwrap();
    assert_eq!(position, source.position());
    assert_eq!(target.applied(), source.applied());
    assert_eq!(target.digest().unwrap(), digest);
    let reopened = Projection::open(&dir.path().join("target.sqlite")).unwrap();
    assert_eq!(reopened.digest().unwrap(), digest, "installed durably");
}

#[test]
fn folds_take_the_highest_seq_within_each_folds_causal_past_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readmodel.sqlite");
    let mut h = History::new(3);
    let gone = NodeId::new(3);
    let seen = |node: &str| MetaOp::ControllerSeen {
        node_id: node.into(),
        address: "a:8001".into(),
    };
    for wall_ms in 1..=3 {
        h.op(2, wall_ms, seen("0000000000000003"));
    }
    h.merge(0, 2);
    h.merge(1, 2);
    let folded = |seq: u64| MetaOp::OriginsFolded {
        folded: [(gone, redcloud_eventlog::Seq::new(seq))]
            .into_iter()
            .collect(),
    };
    // Origin 1 folds what it holds; origin 2 (concurrently) claims more than it held, which
    // counts only as far as its causal past reaches.
    h.op(0, 10, folded(2));
    h.op(1, 11, folded(99));
    let mut p = Projection::open(&path).unwrap();
    p.apply(&h.all).unwrap();
    assert_eq!(p.folds().get(gone), redcloud_eventlog::Seq::new(3));
    drop(p);
    let p = Projection::open(&path).unwrap();
    assert_eq!(
        p.folds().get(gone),
        redcloud_eventlog::Seq::new(3),
        "the folds are durable"
    );
    let snapshot = dir.path().join("snapshot.sqlite");
    p.export(&snapshot).unwrap();
    let mut installed = memory();
    installed.install(&snapshot, &p.digest().unwrap()).unwrap();
    assert_eq!(installed.folds(), p.folds(), "a snapshot carries them");
}

#[test]
fn a_snapshot_whose_folds_exceed_its_frontier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::new(1);
    h.op(
        0,
        1,
        MetaOp::ControllerSeen {
            node_id: "0000000000000001".into(),
            address: "a:8001".into(),
        },
    );
    let mut p = memory();
    p.apply(&h.all).unwrap();
    let snapshot = dir.path().join("snapshot.sqlite");
    p.export(&snapshot).unwrap();
    // The folds are outside the digest: a damaged row passes that check, not this one.
    let beyond: VersionVector = [(NodeId::new(9), redcloud_eventlog::Seq::new(4))]
        .into_iter()
        .collect();
    Connection::open(&snapshot)
        .unwrap()
        .execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![FOLDED_ORIGINS_KEY, rmp_serde::to_vec(&beyond).unwrap()],
        )
        .unwrap();
    let mut installer = memory();
    let refused = installer.install(&snapshot, &p.digest().unwrap());
    assert!(
        matches!(&refused, Err(ReadModelError::Corrupt { reason, .. }) if reason.contains("beyond")),
        "{refused:?}"
    );
    assert!(installer.applied().is_empty(), "nothing changed");
}

/// The digest hashes its rows a block at a time on another thread: the result must be the
/// SHA-256 of the whole encoding, across block boundaries and values larger than a block,
/// and the same when the hashing runs on the encoding thread.
#[test]
fn rows_hash_to_the_sha256_of_their_whole_encoding() {
    let large = vec![7u8; DIGEST_BLOCK_BYTES * 3 + 5];
    let encode = |out: &mut Rows, expected: &mut Vec<u8>| {
        out.table("t");
        expected.extend_from_slice(b"t");
        for i in 0..40_000i64 {
            out.int(i);
            expected.push(1);
            expected.extend_from_slice(&8u64.to_be_bytes());
            expected.extend_from_slice(&i.to_be_bytes());
            out.null();
            expected.push(0);
            expected.extend_from_slice(&0u64.to_be_bytes());
            if i % 10_000 == 0 {
                out.bytes(&large);
                expected.push(3);
                expected.extend_from_slice(&(large.len() as u64).to_be_bytes());
                expected.extend_from_slice(&large);
            }
        }
    };
    let mut expected = Vec::new();
    let mut threaded = Rows::default();
    encode(&mut threaded, &mut expected);
    assert!(matches!(threaded.hashing, BlockHasher::Thread { .. }));
    assert!(expected.len() > 8 * DIGEST_BLOCK_BYTES);
    let whole: [u8; 32] = Sha256::digest(&expected).into();
    assert_eq!(threaded.finish(), whole);

    let mut here = Rows {
        block: Vec::new(),
        hashing: BlockHasher::Here(Sha256::new()),
    };
    encode(&mut here, &mut Vec::new());
    assert_eq!(here.finish(), whole);
}
