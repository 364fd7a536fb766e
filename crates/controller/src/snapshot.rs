//! Snapshots of the read model at a causally stable frontier, the truncation of the log below
//! them, and the start of a controller from a peer's snapshot.
//!
//! - A second projection, `snapshot/stable.sqlite`, follows the log only up to the frontier
//!   every live controller has reached (the replication core's `stable_frontier`). Each round
//!   ([`Snapshotter::round`], every `--snapshot-interval`) brings it there, exports it as
//!   `snapshot/snapshot-<digest>.sqlite` (the one snapshot this controller serves, on
//!   `GET /internal/snapshot`), and truncates the log below it, keeping `--log-retention` of
//!   operations for `redcloud log`.
//! - A controller that lacks operations a peer has truncated hears so from the replication
//!   core (`SnapshotNeeded`); [`run_bootstrap`] downloads the peer's snapshot, and the log
//!   worker checks its digest, installs it as the read model and starts the log from it.
//!
//! Everything a snapshot stands for was held by every live controller when it was taken, so a
//! truncation never takes an operation from anyone who still needs it: only controllers that
//! are new (or retired) can lack it, and they start from a snapshot.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redcloud_eventlog::{
    FjallStore, LogBase, LogStore, NodeId, Seq, StoreError, VersionVector, read_causal_until,
};
use redcloud_link::ClusterClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::WallClock;
use crate::log_worker::LogHandle;
use crate::meta::MetaOp;
use crate::peers::Membership;
use crate::readmodel::{Projection, ReadModelError, snapshot_position};

/// Operations per transaction while the stable projection catches up.
const CATCH_UP_PAGE_OPS: usize = 4096;
/// The largest snapshot this controller downloads: far beyond any read model it could serve,
/// and short of filling a disk by mistake.
pub const SNAPSHOT_MAX_BYTES: u64 = 64 << 30;
/// A download that receives nothing for this long is abandoned (and tried again later).
const DOWNLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between attempts to fetch a snapshot after one failed.
const BOOTSTRAP_RETRY: Duration = Duration::from_secs(2);
/// Headers of `GET /internal/snapshot`.
pub const FRONTIER_HEADER: &str = "x-redcloud-snapshot-frontier";
/// The snapshot's newest stamp, `wall_ms.logical`.
pub const STAMP_HEADER: &str = "x-redcloud-snapshot-stamp";
/// The snapshot's digest, hex.
pub const DIGEST_HEADER: &str = "x-redcloud-snapshot-digest";

/// Why a snapshot round or install failed. Nothing is lost: the log keeps everything the last
/// published snapshot does not stand for.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The log could not be read or rebased.
    #[error("event log: {0}")]
    Log(#[from] StoreError),
    /// The stable projection or a snapshot file failed.
    #[error("snapshot read model: {0}")]
    ReadModel(#[from] ReadModelError),
    /// Moving snapshot files failed.
    #[error("snapshot files in {dir}: {source}")]
    Files {
        /// The snapshot directory.
        dir: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The log below its base has no snapshot standing for it.
    #[error("{0}")]
    Inconsistent(String),
}

/// A snapshot this controller serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its file.
    pub path: PathBuf,
    /// Its frontier and newest stamp.
    pub base: LogBase,
    /// The canonical digest of the read model it holds.
    pub digest: [u8; 32],
    /// Its size on disk.
    pub bytes: u64,
    /// When it was published here, milliseconds since the Unix epoch.
    pub published_unix_ms: u64,
}

/// The snapshot directory and the snapshot this controller serves.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    current: RwLock<Option<SnapshotInfo>>,
}

fn snapshot_file_name(digest: &[u8; 32]) -> String {
    format!("snapshot-{}.sqlite", hex::encode(digest))
}

fn digest_of_file_name(name: &str) -> Option<[u8; 32]> {
    let hex_digest = name.strip_prefix("snapshot-")?.strip_suffix(".sqlite")?;
    hex::decode(hex_digest).ok()?.try_into().ok()
}

impl Snapshots {
    /// Opens `data_dir/snapshot`, removing what an interrupted round or download left, and
    /// finds the snapshot to serve (the one covering most, should a crash have left two).
    pub fn open(data_dir: &Path, clock: WallClock) -> Result<Self, SnapshotError> {
        let dir = data_dir.join("snapshot");
        let files = |source| SnapshotError::Files {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(files)?;
        let mut found: Vec<(PathBuf, [u8; 32])> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(files)? {
            let path = entry.map_err(files)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(files)?;
            } else if let Some(digest) = digest_of_file_name(name) {
                found.push((path, digest));
            }
        }
        let mut best: Option<SnapshotInfo> = None;
        for (path, digest) in found {
            let base = snapshot_position(&path)?;
            let bytes = std::fs::metadata(&path).map_err(files)?.len();
            let info = SnapshotInfo {
                path,
                base,
                digest,
                bytes,
                published_unix_ms: clock.now_ms(),
            };
            match &best {
                Some(kept) if kept.base.frontier.op_count() >= info.base.frontier.op_count() => {
                    std::fs::remove_file(&info.path).map_err(files)?;
                }
                _ => {
                    if let Some(previous) = best.replace(info) {
                        std::fs::remove_file(&previous.path).map_err(files)?;
                    }
                }
            }
        }
        Ok(Self {
            dir,
            current: RwLock::new(best),
        })
    }

    /// The snapshot served, if any.
    pub fn current(&self) -> Option<SnapshotInfo> {
        self.current
            .read()
            .expect("snapshot lock poisoned by a panic in another thread")
            .clone()
    }

    /// Where a download goes before it is checked.
    pub fn incoming_path(&self) -> PathBuf {
        self.dir.join("incoming.tmp")
    }

    /// Where an export goes before it is published.
    fn export_path(&self) -> PathBuf {
        self.dir.join("export.tmp")
    }

    /// Makes the checked snapshot in `file` (at `base`, with `digest`) the one served, and
    /// removes the one served before.
    pub fn publish(
        &self,
        file: &Path,
        base: LogBase,
        digest: [u8; 32],
        now_unix_ms: u64,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let files = |source| SnapshotError::Files {
            dir: self.dir.display().to_string(),
            source,
        };
        let path = self.dir.join(snapshot_file_name(&digest));
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(files)?;
        std::fs::rename(file, &path).map_err(files)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(files)?;
        let info = SnapshotInfo {
            bytes: std::fs::metadata(&path).map_err(files)?.len(),
            path,
            base,
            digest,
            published_unix_ms: now_unix_ms,
        };
        let previous = self
            .current
            .write()
            .expect("snapshot lock poisoned by a panic in another thread")
            .replace(info.clone());
        if let Some(previous) = previous
            && previous.path != info.path
        {
            std::fs::remove_file(&previous.path).map_err(files)?;
        }
        Ok(info)
    }
}

/// How snapshots are taken and the log truncated.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Operations newer than this stay in the log even when a snapshot stands for them.
    pub retention: Duration,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Operations the stable projection took in.
    pub projected: u64,
    /// Whether a new snapshot was published.
    pub published: bool,
    /// Operations dropped from the log.
    pub truncated: u64,
}

/// Takes snapshots and truncates the log; runs on blocking threads.
pub struct Snapshotter {
    store: Arc<FjallStore<MetaOp>>,
    stable: Projection,
    snapshots: Arc<Snapshots>,
    retention: Duration,
    clock: WallClock,
}

impl Snapshotter {
    /// The snapshotter of the controller whose data directory is `data_dir`.
    pub fn open(
        data_dir: &Path,
        store: Arc<FjallStore<MetaOp>>,
        snapshots: Arc<Snapshots>,
        retention: Duration,
        clock: WallClock,
    ) -> Result<Self, SnapshotError> {
        let stable = Projection::open(&data_dir.join("snapshot").join("stable.sqlite"))?;
        Ok(Self {
            store,
            stable,
            snapshots,
            retention,
            clock,
        })
    }

    /// One round: brings the stable projection up to `stable` (joined with where it is),
    /// publishes it if it moved, and truncates the log below the published snapshot, keeping
    /// the retention window.
    pub fn round(&mut self, stable: &VersionVector) -> Result<RoundReport, SnapshotError> {
        self.restore_if_behind_base()?;
        let mut report = RoundReport::default();
        let mut target = stable.clone();
        target.merge(self.stable.applied());
        while *self.stable.applied() != target {
            let page = read_causal_until(
                self.store.as_ref(),
                self.stable.applied(),
                &target,
                CATCH_UP_PAGE_OPS,
            )?;
            if page.ops.is_empty() {
                return Err(SnapshotError::Inconsistent(format!(
                    "the log does not hold what the stable frontier {target} covers beyond {}",
                    self.stable.applied()
                )));
            }
            // A start from a peer's snapshot may rebase the log under this round: then the
            // page skips what the stable projection lacks, and it starts again from the
            // snapshot published with that rebase.
            let mut known = self.stable.applied().clone();
            let follows = page.ops.iter().all(|op| {
                let ready = op.is_ready_for(&known);
                known.raise(op.dot.origin, op.dot.seq);
                ready
            });
            if !follows {
                let base = LogStore::<MetaOp>::base(self.store.as_ref());
                if self.stable.applied().dominates(&base.frontier) {
                    return Err(SnapshotError::Inconsistent(format!(
                        "the log's operations beyond {} do not follow one another",
                        self.stable.applied()
                    )));
                }
                self.restore_if_behind_base()?;
                target.merge(self.stable.applied());
                continue;
            }
            report.projected += page.ops.len() as u64;
            self.stable.apply(&page.ops)?;
        }
        let published = self.snapshots.current();
        if published.as_ref().map(|s| &s.base.frontier) != Some(self.stable.applied()) {
            let export = self.snapshots.export_path();
            if export.exists() {
                std::fs::remove_file(&export).map_err(|source| SnapshotError::Files {
                    dir: export.display().to_string(),
                    source,
                })?;
            }
            self.stable.export(&export)?;
            let digest = self.stable.digest()?;
            self.snapshots
                .publish(&export, self.stable.position(), digest, self.clock.now_ms())?;
            report.published = true;
        }
        report.truncated = self.truncate()?;
        Ok(report)
    }

    /// After a start from a peer's snapshot the log's base may lie beyond the stable
    /// projection: it starts again from the snapshot published then.
    fn restore_if_behind_base(&mut self) -> Result<(), SnapshotError> {
        let base = LogStore::<MetaOp>::base(self.store.as_ref());
        if self.stable.applied().dominates(&base.frontier) {
            return Ok(());
        }
        let Some(current) = self
            .snapshots
            .current()
            .filter(|s| s.base.frontier.dominates(&base.frontier))
        else {
            return Err(SnapshotError::Inconsistent(format!(
                "the log starts at {} but no snapshot here covers it; start this controller on an empty data directory",
                base.frontier
            )));
        };
        self.stable.install(&current.path, &current.digest)?;
        Ok(())
    }

    /// Drops from the log what the published snapshot covers and is older than the
    /// retention window. Returns how many operations were dropped.
    fn truncate(&self) -> Result<u64, SnapshotError> {
        let Some(snapshot) = self.snapshots.current() else {
            return Ok(0);
        };
        let base = LogStore::<MetaOp>::base(self.store.as_ref());
        let keep_after_ms = self
            .clock
            .now_ms()
            .saturating_sub(self.retention.as_millis() as u64);
        let mut cut = base.clone();
        for (origin, top) in snapshot.base.frontier.iter() {
            let (seq, hlc) =
                self.last_before(origin, base.frontier.get(origin), top, keep_after_ms)?;
            cut.frontier.raise(origin, seq);
            if let Some(hlc) = hlc {
                cut.hlc = cut.hlc.max(hlc);
            }
        }
        if cut.frontier == base.frontier {
            return Ok(0);
        }
        Ok(LogStore::<MetaOp>::rebase(self.store.as_ref(), &cut)?)
    }

    /// The last seq of `origin` in `(from, to]` stamped at or before `keep_after_ms`, with
    /// its stamp (`from` and `None` if there is none). An origin's stamps grow with its seqs,
    /// so a binary search finds it.
    fn last_before(
        &self,
        origin: NodeId,
        from: Seq,
        to: Seq,
        keep_after_ms: u64,
    ) -> Result<(Seq, Option<redcloud_eventlog::Hlc>), SnapshotError> {
        let (mut low, mut high) = (from.get(), to.get());
        let mut stamp = None;
        while low < high {
            let mid = low + (high - low).div_ceil(2);
            let op = LogStore::<MetaOp>::read(
                self.store.as_ref(),
                origin,
                Seq::new(mid)..=Seq::new(mid),
                1,
            )?;
            let Some(op) = op.first() else {
                return Err(SnapshotError::Inconsistent(format!(
                    "the log lacks {origin}:{mid} below its frontier"
                )));
            };
            if op.hlc.wall_ms <= keep_after_ms {
                low = mid;
                stamp = Some(op.hlc);
            } else {
                high = mid - 1;
            }
        }
        Ok((Seq::new(low), stamp))
    }
}

/// Takes a snapshot round every `config.interval` until `shutdown`.
pub async fn run_rounds(
    log: LogHandle,
    snapshotter: Snapshotter,
    config: SnapshotConfig,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let snapshotter = Arc::new(Mutex::new(snapshotter));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
        match log.fold_retired().await {
            Ok(folded) if !folded.is_empty() => {
                tracing::info!(%folded, "retired controllers folded out of the frontiers that travel");
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "could not fold retired controllers"),
        }
        let Ok(Some(stable)) = log.stable_frontier().await else {
            continue;
        };
        let snapshotter = Arc::clone(&snapshotter);
        let started = Instant::now();
        let round = tokio::task::spawn_blocking(move || {
            snapshotter
                .lock()
                .expect("snapshotter lock poisoned by a panic in another thread")
                .round(&stable)
        })
        .await;
        match round {
            Ok(Ok(report)) => {
                metrics.log_truncated.inc_by(report.truncated);
                if report.published || report.truncated > 0 {
                    tracing::info!(
                        projected = report.projected,
                        published = report.published,
                        truncated = report.truncated,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot round"
                    );
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "snapshot round failed; the log keeps everything")
            }
            Err(error) => tracing::error!(%error, "snapshot round panicked"),
        }
    }
}

/// A peer holds a snapshot this controller needs: the peer, and the base it reported.
pub type SnapshotNeeded = (NodeId, VersionVector);

/// Fetches and installs the snapshots the replication core asks for, one at a time, until
/// `shutdown`. Requests that arrive while one is handled are dropped: the core asks again at
/// the next anti-entropy round if it still needs one.
pub async fn run_bootstrap(
    log: LogHandle,
    membership: Arc<Membership>,
    snapshots: Arc<Snapshots>,
    client: ClusterClient,
    mut needed: mpsc::Receiver<SnapshotNeeded>,
    shutdown: CancellationToken,
) {
    loop {
        let (peer, base) = tokio::select! {
            () = shutdown.cancelled() => return,
            next = needed.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let started = Instant::now();
        match bootstrap_from(&log, &membership, &snapshots, &client, peer, &base).await {
            Ok(Some(installed)) => tracing::info!(
                %peer,
                operations = installed.frontier.op_count(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "started from a peer's snapshot"
            ),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%peer, %error, "could not start from a peer's snapshot; trying again later");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(BOOTSTRAP_RETRY) => {}
                }
            }
        }
        // What queued up meanwhile is stale: the core asks again if it still needs one.
        while needed.try_recv().is_ok() {}
    }
}

/// The snapshot client: the cluster link, with a deadline on silence rather than on the
/// whole transfer.
pub fn snapshot_client(link: &redcloud_link::ClusterLink) -> ClusterClient {
    ClusterClient::new(link, Duration::from_secs(5), DOWNLOAD_STALL_TIMEOUT)
}

async fn bootstrap_from(
    log: &LogHandle,
    membership: &Membership,
    snapshots: &Snapshots,
    client: &ClusterClient,
    peer: NodeId,
    base: &VersionVector,
) -> Result<Option<LogBase>, String> {
    let Some(address) = membership.address_of(peer) else {
        return Err("its address is not known yet".to_owned());
    };
    let incoming = snapshots.incoming_path();
    let _ = tokio::fs::remove_file(&incoming).await;
    let downloaded = client
        .download(
            &address,
            "/internal/snapshot",
            &incoming,
            SNAPSHOT_MAX_BYTES,
        )
        .await;
    let outcome = match downloaded {
        Ok(headers) => match parse_headers(&headers) {
            Ok((snapshot_base, digest)) if snapshot_base.frontier.dominates(base) => log
                .install_snapshot(incoming.clone(), snapshot_base, digest)
                .await
                .map_err(|e| e.to_string()),
            Ok((snapshot_base, _)) => Err(format!(
                "its snapshot at {} does not cover its base {base}",
                snapshot_base.frontier
            )),
            Err(error) => Err(error),
        },
        Err(error) => Err(error.to_string()),
    };
    let _ = tokio::fs::remove_file(&incoming).await;
    outcome
}

/// The headers that describe a snapshot.
pub fn snapshot_headers(info: &SnapshotInfo) -> [(&'static str, String); 3] {
    [
        (
            FRONTIER_HEADER,
            hex::encode(rmp_serde::to_vec(&info.base.frontier).unwrap_or_default()),
        ),
        (
            STAMP_HEADER,
            format!("{}.{}", info.base.hlc.wall_ms, info.base.hlc.logical),
        ),
        (DIGEST_HEADER, hex::encode(info.digest)),
    ]
}

fn parse_headers(headers: &axum::http::HeaderMap) -> Result<(LogBase, [u8; 32]), String> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("the answer lacks {name}"))
    };
    let frontier: VersionVector = hex::decode(text(FRONTIER_HEADER)?)
        .ok()
        .and_then(|bytes| rmp_serde::from_slice(&bytes).ok())
        .ok_or_else(|| format!("unreadable {FRONTIER_HEADER}"))?;
    let hlc = text(STAMP_HEADER)?
        .split_once('.')
        .and_then(|(wall, logical)| {
            Some(redcloud_eventlog::Hlc::new(
                wall.parse().ok()?,
                logical.parse().ok()?,
            ))
        })
        .ok_or_else(|| format!("unreadable {STAMP_HEADER}"))?;
    let digest: [u8; 32] = hex::decode(text(DIGEST_HEADER)?)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("unreadable {DIGEST_HEADER}"))?;
    Ok((LogBase { frontier, hlc }, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_headers_round_trip_and_garbage_is_refused() {
        let info = SnapshotInfo {
            path: PathBuf::from("x"),
            base: LogBase {
                frontier: [(NodeId::new(7), Seq::new(9))].into_iter().collect(),
                hlc: redcloud_eventlog::Hlc::new(1_800_000_000_000, 3),
            },
            digest: [5; 32],
            bytes: 1,
            published_unix_ms: 0,
        };
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in snapshot_headers(&info) {
            headers.insert(name, value.parse().unwrap());
        }
        assert_eq!(
            parse_headers(&headers).unwrap(),
            (info.base.clone(), info.digest)
        );
        for (name, bad) in [
            (FRONTIER_HEADER, "zz"),
            (STAMP_HEADER, "12"),
            (DIGEST_HEADER, "abcd"),
        ] {
            let mut broken = headers.clone();
            broken.insert(name, bad.parse().unwrap());
            let error = parse_headers(&broken).unwrap_err();
            assert!(error.contains(name), "{error}");
        }
        headers.remove(DIGEST_HEADER);
        assert!(parse_headers(&headers).unwrap_err().contains("lacks"));
    }

    #[test]
    fn only_snapshot_files_named_by_a_digest_count() {
        let digest = [0xab; 32];
        assert_eq!(
            digest_of_file_name(&snapshot_file_name(&digest)),
            Some(digest)
        );
        assert_eq!(digest_of_file_name("snapshot-abcd.sqlite"), None);
        assert_eq!(digest_of_file_name("stable.sqlite"), None);
    }
}
