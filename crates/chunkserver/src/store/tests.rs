use super::*;

fn open(dir: &Path) -> ChunkStore {
    ChunkStore::open(dir, None).unwrap()
}

#[test]
fn put_get_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = ChunkId::of(b"hello");
    assert!(matches!(store.get(&id), Err(StoreError::NotFound { .. })));
    assert_eq!(store.put(&id, b"hello").unwrap(), Written::Stored);
    assert_eq!(store.put(&id, b"hello").unwrap(), Written::AlreadyPresent);
    assert_eq!(store.get(&id).unwrap(), b"hello");
    let stats = store.stats().unwrap();
    assert_eq!((stats.used_bytes, stats.chunk_count), (5, 1));
    assert_eq!(store.delete(&id, Duration::ZERO).unwrap(), Deleted::Removed);
    assert_eq!(store.delete(&id, Duration::ZERO).unwrap(), Deleted::Absent);
    assert_eq!(store.stats().unwrap().chunk_count, 0);
}

/// Ages chunk `id`'s write time by `by`.
fn age(store: &ChunkStore, id: &ChunkId, by: Duration) {
    let file = OpenOptions::new()
        .write(true)
        .open(store.path_of(id))
        .unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn a_recently_written_chunk_survives_a_delete_that_asks_for_idle_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = ChunkId::of(b"in use");
    let grace = Duration::from_secs(600);
    store.put(&id, b"in use").unwrap();
    assert_eq!(
        store.delete(&id, grace).unwrap(),
        Deleted::KeptRecentlyWritten
    );

    age(&store, &id, grace * 2);
    assert_eq!(store.put(&id, b"in use").unwrap(), Written::AlreadyPresent);
    assert_eq!(
        store.delete(&id, grace).unwrap(),
        Deleted::KeptRecentlyWritten,
        "writing a held chunk again makes it fresh again"
    );

    age(&store, &id, grace * 2);
    assert_eq!(store.delete(&id, grace).unwrap(), Deleted::Removed);
    assert!(matches!(store.get(&id), Err(StoreError::NotFound { .. })));
    assert_eq!(store.stats().unwrap().chunk_count, 0);
}

#[test]
fn refuses_data_that_does_not_match_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = ChunkId::of(b"hello");
    assert!(matches!(
        store.put(&id, b"HELLO"),
        Err(StoreError::ChecksumMismatch { .. })
    ));
    assert!(matches!(store.get(&id), Err(StoreError::NotFound { .. })));
}

#[test]
fn a_corrupt_copy_is_quarantined_and_replaced_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = ChunkId::of(b"precious");
    store.put(&id, b"precious").unwrap();
    fs::write(store.path_of(&id), b"prec1ous").unwrap();
    assert!(matches!(store.get(&id), Err(StoreError::Corrupt { .. })));
    assert!(matches!(store.get(&id), Err(StoreError::NotFound { .. })));
    assert_eq!(
        fs::read_dir(dir.path().join(CORRUPT_DIR)).unwrap().count(),
        1
    );
    let mut listed = Vec::new();
    store.for_each_chunk(|id, _| listed.push(id)).unwrap();
    assert!(
        listed.is_empty(),
        "a quarantined chunk is not reported as held"
    );
    assert_eq!(store.put(&id, b"precious").unwrap(), Written::Stored);
    assert_eq!(store.get(&id).unwrap(), b"precious");
}

#[test]
fn an_existing_corrupt_copy_does_not_count_as_present() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = ChunkId::of(b"data");
    store.put(&id, b"data").unwrap();
    fs::write(store.path_of(&id), b"dat").unwrap();
    assert_eq!(store.put(&id, b"data").unwrap(), Written::Stored);
    assert_eq!(store.get(&id).unwrap(), b"data");
}

#[test]
fn reopening_counts_chunks_and_sweeps_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for i in 0..20u8 {
            let data = vec![i; 100];
            store.put(&ChunkId::of(&data), &data).unwrap();
        }
    }
    fs::write(dir.path().join(TMP_DIR).join("torn.tmp"), b"half a chunk").unwrap();
    fs::create_dir_all(dir.path().join(CHUNKS_DIR).join("ab")).unwrap();
    fs::write(
        dir.path().join(CHUNKS_DIR).join("ab").join("not-a-chunk"),
        b"x",
    )
    .unwrap();
    let store = open(dir.path());
    let stats = store.stats().unwrap();
    assert_eq!((stats.chunk_count, stats.used_bytes), (20, 2000));
    assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
}

#[test]
fn a_capacity_limit_refuses_chunks_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let store = ChunkStore::open(dir.path(), Some(150)).unwrap();
    store.put(&ChunkId::of(&[1; 100]), &[1; 100]).unwrap();
    let err = store.put(&ChunkId::of(&[2; 100]), &[2; 100]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Full {
                needed: 100,
                available: 50
            }
        ),
        "{err}"
    );
    assert_eq!(store.stats().unwrap().chunk_count, 1);
}

/// A real full filesystem (a tiny tmpfs) gives `Full`, leaves no torn chunk and no temp file.
#[test]
fn a_full_disk_is_a_clean_error() {
    let Some(dir) = redcloud_types::testing::Tmpfs::mount(256 << 10) else {
        return;
    };
    {
        // With a large configured limit, only the filesystem can say no.
        let store = ChunkStore::open(dir.path(), Some(1 << 40)).unwrap();
        let small = vec![7u8; 1000];
        store.put(&ChunkId::of(&small), &small).unwrap();
        let big = vec![9u8; 1024 * 1024];
        let err = store.put(&ChunkId::of(&big), &big).unwrap_err();
        assert!(matches!(err, StoreError::Full { .. }), "{err}");
        assert!(matches!(
            store.get(&ChunkId::of(&big)),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(store.get(&ChunkId::of(&small)).unwrap(), small);
    }
}
