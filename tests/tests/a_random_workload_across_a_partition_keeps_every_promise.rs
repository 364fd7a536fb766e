//! A seeded random workload on both sides of a partition, every request and answer recorded:
//! two people register one username on the two sides, clients upload and replace a few names,
//! add tags, remove tags (also ones no file ever had, and all of a file's tags), delete while
//! the other side retags, and read. After the heal the history checker holds every controller
//! to what the clients were told: every acknowledged upload is listed and downloads with its
//! bytes unless an answer removed it, no read showed a tag a file never had, and every
//! password a registration was told works enters its account.
//!
//! The seed is printed; `REDCLOUD_HISTORY_SEED=<seed>` draws the same requests again (their
//! interleaving across clients is up to the scheduler).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use redcloud_tests::history::{Client, History, Reply, Tags, tags};
use redcloud_tests::{ClusterBuilder, Member, test_data};

const NAMES: [&str; 6] = [
    "notes.txt",
    "photo.jpg",
    "docs/plan.md",
    "archive",
    "Ünïcode name.txt",
    "report.pdf",
];
const TAGS: [&str; 3] = ["red", "green", "blue"];
/// Named only in removals: it must never show up on a file.
const NEVER_GIVEN: &str = "never-given";
const STEPS_PER_CLIENT: usize = 25;
const ROUNDS: usize = 3;

fn some_tags(rng: &mut StdRng, at_most: usize) -> Tags {
    let count = rng.random_range(1..=at_most);
    tags(
        &TAGS
            .choose_multiple(rng, count)
            .copied()
            .collect::<Vec<_>>(),
    )
}

/// `steps` random requests from `client`, drawn from `seed`.
async fn workload(mut client: Client, seed: u64, steps: usize) -> Client {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..steps {
        match rng.random_range(0..100) {
            0..30 => {
                let name = *NAMES.choose(&mut rng).unwrap();
                let data = test_data(rng.random(), rng.random_range(0..20_000));
                let file_tags = some_tags(&mut rng, 2);
                client.upload(name, data, &file_tags).await;
            }
            30..45 => {
                let (query, new) = (some_tags(&mut rng, 1), some_tags(&mut rng, 2));
                client.add_tags(&query, &new).await;
            }
            45..65 => {
                let query = some_tags(&mut rng, 1);
                let mut removed = some_tags(&mut rng, 2);
                if rng.random_bool(0.4) {
                    removed.insert(NEVER_GIVEN.to_owned());
                }
                client.remove_tags(&query, &removed).await;
            }
            65..72 => {
                let query = some_tags(&mut rng, 2);
                client.delete(&query).await;
            }
            _ => {
                let query = if rng.random_bool(0.3) {
                    Tags::new()
                } else {
                    some_tags(&mut rng, 2)
                };
                client.list(&query).await;
            }
        }
    }
    client
}

#[tokio::test]
async fn a_random_workload_across_a_partition_keeps_every_promise() {
    let seed: u64 = std::env::var("REDCLOUD_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("history workload seed {seed} (replay: REDCLOUD_HISTORY_SEED={seed})");

    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .chunkservers(2)
        .controller_args(&["--chunkserver-timeout-ms", "1500"])
        .start()
        .await;
    let history = History::default();
    let mut bo = history.client(&c, 0);
    assert!(bo.register("bo", "bo-password").await);
    // Files both sides know, so that their removals and deletes race.
    for (n, name) in NAMES.iter().enumerate() {
        let file_tags = tags(&[TAGS[n % TAGS.len()], TAGS[(n + 1) % TAGS.len()]]);
        let stored = bo
            .upload(name, test_data(n as u64, 1_000), &file_tags)
            .await;
        assert!(stored.is_some(), "{:?}", history.entries().last());
    }
    c.converged(Duration::from_secs(10)).await;

    // Three rounds of partition, work on both sides, heal; each round cuts the cluster
    // differently and moves every session to another controller, carrying its token.
    use Member::{Chunkserver as Cs, Controller as Ct};
    let splits: [(&[Member], &[Member]); ROUNDS] = [
        (&[Ct(0), Ct(1), Cs(0)], &[Ct(2), Cs(1)]),
        (&[Ct(0), Cs(0)], &[Ct(1), Ct(2), Cs(1)]),
        (&[Ct(1), Cs(0)], &[Ct(0), Ct(2), Cs(1)]),
    ];
    let mut sessions = Vec::new();
    for (round, (one, other)) in splits.into_iter().enumerate() {
        c.partition(one, other);
        // Let each side notice the other side's chunkserver is gone, so writes stop trying it.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        if round == 0 {
            // Two people take one username on the two sides.
            let mut ana_left = history.client(&c, 0);
            let mut ana_right = history.client(&c, 2);
            assert!(ana_left.register("ana", "left-password").await);
            assert!(ana_right.register("ana", "right-password").await);
            sessions = vec![bo.same_session_at(&c, 0), ana_left, ana_right];
            let twins: Vec<Client> = sessions.iter().map(|s| s.same_session_at(&c, 0)).collect();
            sessions.extend(twins);
        }
        sessions =
            futures_util::future::join_all(sessions.iter().enumerate().map(|(n, session)| {
                let client = session.same_session_at(&c, (n + round) % 3);
                let seed = seed.wrapping_add((round * 100 + n) as u64);
                workload(client, seed, STEPS_PER_CLIENT)
            }))
            .await;
        c.heal();
        c.converged(Duration::from_secs(30)).await;
    }

    let entries = history.entries();
    let acknowledged = |kind: fn(&Reply) -> bool| entries.iter().filter(|e| kind(&e.reply)).count();
    let uploads = acknowledged(|r| matches!(r, Reply::Uploaded { .. }));
    let changes =
        acknowledged(|r| matches!(r, Reply::Changed { file_ids } if !file_ids.is_empty()));
    let reads = acknowledged(|r| matches!(r, Reply::Listed { .. }));
    eprintln!(
        "{} requests: {uploads} uploads, {changes} deletes and tag changes that changed a file, {reads} reads acknowledged",
        entries.len()
    );
    assert!(
        uploads >= 20 && changes >= 10 && reads >= 20,
        "the workload exercised too little to check"
    );
    history.check(&c).await;
}
