//! `redcloud log`: reading a controller's event log to explain divergence, from a data
//! directory (a snapshot copy, so it is safe while the node runs) or from a live controller
//! (`POST /internal/log` on its cluster listener, over the cluster link: mutual TLS with the
//! cluster secret).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use redcloud_controller::inspect::{self, Entity, EntityDiff, Missing, Step};
use redcloud_controller::{MemoryProjection, MetaOp};
use redcloud_eventlog::{Dot, FjallStore, GossipMessage, LogStore, NodeId, Op, VersionVector};
use redcloud_link::{ClusterClient, ClusterLink, Reply};
use serde::Serialize;

/// Operations per page when reading a log.
const PAGE_OPS: usize = 4096;
/// Pages read ahead of the visits when replaying a data directory's log (a bound on memory).
const READ_AHEAD_PAGES: usize = 4;
/// Longest one request to a controller may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest connecting to a controller may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: a page of operations.
const REPLY_LIMIT_BYTES: usize = 256 * 1024 * 1024;
/// The directories of the storage engine's table files, which are never changed once written.
const TABLES_DIR: &str = "tables";
/// Attempts at copying a running node's log before giving up.
const SNAPSHOT_ATTEMPTS: usize = 3;

/// Where a log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A controller's data directory (holding `log/` and `readmodel.sqlite`).
    Dir(PathBuf),
    /// A live controller's cluster listener (`http://host:port`).
    Server(String),
}

impl Source {
    /// `http://…` or `https://…` is a server; anything else a data directory.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("http://") || text.starts_with("https://") {
            Self::Server(text.trim_end_matches('/').to_owned())
        } else {
            Self::Dir(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Server(url) => f.write_str(url),
        }
    }
}

/// A log source with what is needed to read it.
pub struct Reader {
    source: Source,
    http: ClusterClient,
}

impl Reader {
    /// Reads `source`, reaching servers over `link`.
    pub fn new(source: Source, link: &ClusterLink) -> anyhow::Result<Self> {
        Ok(Self {
            source,
            http: ClusterClient::new(link, CONNECT_TIMEOUT, REQUEST_TIMEOUT),
        })
    }

    /// Calls `visit` with every operation, page by page, in causal order; returns the count.
    pub async fn for_each_page(
        &self,
        visit: impl FnMut(Vec<Op<MetaOp>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        self.for_each_page_of(self.copy_log()?.as_ref(), visit)
            .await
    }

    /// A private copy of a data directory's log (`None` for a server), for a caller that
    /// reads it more than once.
    fn copy_log(&self) -> anyhow::Result<Option<Snapshot>> {
        match &self.source {
            Source::Dir(dir) => Snapshot::take(dir).map(Some),
            Source::Server(_) => Ok(None),
        }
    }

    /// [`Reader::for_each_page`] over `copy`, the copy of the log a data directory source
    /// took.
    async fn for_each_page_of(
        &self,
        copy: Option<&Snapshot>,
        mut visit: impl FnMut(Vec<Op<MetaOp>>) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        match (&self.source, copy) {
            (Source::Dir(dir), Some(snapshot)) => {
                // Reading and decoding the log costs about as much as a fast `visit`: one
                // thread reads while this one visits, a few pages apart.
                let (pages, received) = std::sync::mpsc::sync_channel(READ_AHEAD_PAGES);
                let store = &snapshot.store;
                let (read, failure) = std::thread::scope(|scope| {
                    let reader = scope.spawn(move || {
                        redcloud_eventlog::replay(store, PAGE_OPS, |ops| {
                            // Only fails once the visits stopped, and then nobody waits.
                            let _ = pages.send(ops);
                        })
                    });
                    let failure = received.into_iter().find_map(|ops| visit(ops).err());
                    (reader.join(), failure)
                });
                let count = read
                    .map_err(|_| anyhow!("the thread reading the log panicked"))?
                    .with_context(|| format!("cannot read the log in {}", dir.display()))?;
                failure.map_or(Ok(count), Err)
            }
            (Source::Dir(dir), None) => bail!("no copy was taken of the log in {}", dir.display()),
            (Source::Server(url), _) => {
                let mut known = VersionVector::new();
                let mut count = 0u64;
                loop {
                    let (ops, more) = self.page(url, &known).await?;
                    if ops.is_empty() {
                        return Ok(count);
                    }
                    for op in &ops {
                        known.raise(op.dot.origin, op.dot.seq);
                    }
                    count += ops.len() as u64;
                    visit(ops)?;
                    if !more {
                        return Ok(count);
                    }
                }
            }
        }
    }

    /// When the log (`copy`, for a data directory) starts at a snapshot: a copy of that
    /// snapshot in `dir`, with its digest (checked by whoever installs it). `None` when the
    /// log holds its whole history.
    async fn snapshot_into(
        &self,
        copy: Option<&Snapshot>,
        dir: &Path,
    ) -> anyhow::Result<Option<(PathBuf, [u8; 32])>> {
        let truncated = match copy {
            Some(log) => !LogStore::<MetaOp>::base(&log.store).frontier.is_empty(),
            None => !self.state().await?.history_starts_after.is_empty(),
        };
        if !truncated {
            return Ok(None);
        }
        let copy = dir.join("snapshot.sqlite");
        match &self.source {
            Source::Dir(data_dir) => {
                let snapshots = data_dir.join("snapshot");
                let found = std::fs::read_dir(&snapshots)
                    .with_context(|| format!("cannot read {}", snapshots.display()))?
                    .filter_map(Result::ok)
                    .find_map(|entry| {
                        let name = entry.file_name().into_string().ok()?;
                        let digest = name.strip_prefix("snapshot-")?.strip_suffix(".sqlite")?;
                        let digest: [u8; 32] = hex::decode(digest).ok()?.try_into().ok()?;
                        Some((entry.path(), digest))
                    });
                let Some((path, digest)) = found else {
                    bail!(
                        "the log in {} starts after a snapshot, and {} holds none",
                        data_dir.display(),
                        snapshots.display()
                    );
                };
                std::fs::copy(&path, &copy)
                    .with_context(|| format!("cannot copy {}", path.display()))?;
                Ok(Some((copy, digest)))
            }
            Source::Server(url) => {
                let headers = self
                    .http
                    .download(host_port(url), "/internal/snapshot", &copy, u64::MAX)
                    .await
                    .with_context(|| format!("cannot fetch the snapshot of {url}"))?;
                let digest = headers
                    .get("x-redcloud-snapshot-digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| hex::decode(v).ok())
                    .and_then(|v| <[u8; 32]>::try_from(v).ok())
                    .ok_or_else(|| anyhow!("{url} sent a snapshot without a readable digest"))?;
                Ok(Some((copy, digest)))
            }
        }
    }

    /// Every operation, in causal order.
    pub async fn ops(&self) -> anyhow::Result<Vec<Op<MetaOp>>> {
        let mut all = Vec::new();
        self.for_each_page(|ops| {
            all.extend(ops);
            Ok(())
        })
        .await?;
        Ok(all)
    }

    async fn page(
        &self,
        url: &str,
        known: &VersionVector,
    ) -> anyhow::Result<(Vec<Op<MetaOp>>, bool)> {
        let body = GossipMessage::<MetaOp>::Frontier {
            frontier: known.clone(),
            reply: false,
            folds: None,
            folded: false,
        }
        .encode();
        let reply = self
            .http
            .post(
                host_port(url),
                "/internal/log",
                &[],
                body.into(),
                REPLY_LIMIT_BYTES,
            )
            .await
            .with_context(|| format!("cannot read the log of {url}"))?;
        let bytes = checked(reply, url)?;
        match GossipMessage::<MetaOp>::decode(&bytes)
            .with_context(|| format!("{url} answered with an undecodable page"))?
        {
            GossipMessage::Page { ops, more } => Ok((ops, more)),
            _ => bail!("{url} answered with something other than a page of operations"),
        }
    }

    /// The node's frontier and read-model digest.
    pub async fn state(&self) -> anyhow::Result<NodeState> {
        match &self.source {
            Source::Dir(dir) => {
                let snapshot = Snapshot::take(dir)?;
                let frontier = LogStore::<MetaOp>::frontier(&snapshot.store);
                let base = LogStore::<MetaOp>::base(&snapshot.store).frontier;
                let digest =
                    redcloud_controller::read_model_digest_at(&dir.join("readmodel.sqlite"))
                        .with_context(|| {
                            format!("cannot read the read model in {}", dir.display())
                        })?;
                Ok(NodeState {
                    frontier: frontier_map(&frontier),
                    history_starts_after: frontier_map(&base),
                    operations: frontier.op_count(),
                    digest: hex::encode(digest),
                })
            }
            Source::Server(url) => {
                let reply = self
                    .http
                    .get(host_port(url), "/internal/state", REPLY_LIMIT_BYTES)
                    .await
                    .with_context(|| format!("cannot read the state of {url}"))?;
                let state: serde_json::Value = serde_json::from_slice(&checked(reply, url)?)
                    .with_context(|| format!("{url} answered with something that is not JSON"))?;
                let map = |value: &serde_json::Value| {
                    value
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                Ok(NodeState {
                    frontier: map(&state["frontier"]),
                    history_starts_after: map(&state["log_base"]),
                    operations: state["operations"].as_u64().unwrap_or(0),
                    digest: state["digest"].as_str().unwrap_or_default().to_owned(),
                })
            }
        }
    }
}

/// `host:port` of a server URL.
fn host_port(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

/// The body of a successful answer, or why it failed in a sentence.
fn checked(reply: Reply, url: &str) -> anyhow::Result<bytes::Bytes> {
    if reply.status.is_success() {
        return Ok(reply.body);
    }
    if reply.status == 404 {
        bail!(
            "{url} has no log to read: name a controller's cluster listener (port 8001 by default), not its client port"
        );
    }
    bail!(
        "{url} answered {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
            .chars()
            .take(300)
            .collect::<String>()
    )
}

fn frontier_map(frontier: &VersionVector) -> BTreeMap<String, u64> {
    frontier
        .iter()
        .map(|(origin, seq)| (origin.to_string(), seq.get()))
        .collect()
}

/// A copy of a data directory's log, opened privately: the node may keep running (fjall
/// allows one opener per directory, and the copy is recovered like a crash image). Copying a
/// lock file copies no lock: the lock is held on the node's open file, not in its bytes.
struct Snapshot {
    store: FjallStore<MetaOp>,
    _dir: tempfile::TempDir,
}

impl Snapshot {
    fn take(data_dir: &Path) -> anyhow::Result<Self> {
        let log = data_dir.join("log");
        if !log.is_dir() {
            bail!(
                "{} holds no event log (expected {}): is it a controller's data directory?",
                data_dir.display(),
                log.display()
            );
        }
        let mut last_error = None;
        for _ in 0..SNAPSHOT_ATTEMPTS {
            let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
            let copy = dir.path().join("log");
            // Files can vanish under a running node (compaction); copy again when they do.
            if let Err(error) = copy_dir(&log, &copy) {
                last_error = Some(anyhow!(error));
                continue;
            }
            match FjallStore::<MetaOp>::open(&copy) {
                Ok(store) => return Ok(Self { store, _dir: dir }),
                Err(error) => last_error = Some(anyhow!(error)),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "cannot take a consistent copy of {}",
                log.display()
            )))
    }
}

/// Copies the log directory `from` into `to`. The storage engine writes each table file once
/// and never changes it (it writes new tables and deletes old ones), so table files are
/// hard-linked where both directories share a filesystem: the bulk of a large log then costs
/// neither the time nor the space of a copy, and a node that deletes a table after a
/// compaction leaves the link's data in place. Everything else (journals, version pointers)
/// is copied.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    copy_dir_linking(from, to, false)
}

fn copy_dir_linking(from: &Path, to: &Path, tables: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir_linking(&entry.path(), &target, entry.file_name() == TABLES_DIR)?;
        } else if kind.is_file() && !(tables && std::fs::hard_link(entry.path(), &target).is_ok()) {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A node's frontier and read-model digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeState {
    /// Highest seq held per origin.
    pub frontier: BTreeMap<String, u64>,
    /// Where the log's history starts: the operations at or below this are held only in the
    /// node's snapshot (empty when the log holds everything).
    pub history_starts_after: BTreeMap<String, u64>,
    /// Operations held.
    pub operations: u64,
    /// Hex SHA-256 of the read model.
    pub digest: String,
}

/// Which operations `log show` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this origin.
    pub origin: Option<NodeId>,
    /// Only seqs at or above.
    pub from_seq: Option<u64>,
    /// Only seqs at or below.
    pub to_seq: Option<u64>,
    /// Only operations touching this entity.
    pub entity: Option<Entity>,
    /// Only operations stamped at or after (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only operations stamped at or before.
    pub until_ms: Option<u64>,
}

/// One operation as `log show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownOp {
    /// `origin:seq`.
    pub dot: String,
    /// Hybrid logical clock stamp.
    pub hlc: String,
    /// Causal context.
    pub deps: String,
    /// What it did.
    pub change: String,
}

/// The operations of `ops` that pass `filter`.
pub fn show(ops: &[Op<MetaOp>], filter: &Filter) -> Vec<ShownOp> {
    let matcher = filter
        .entity
        .as_ref()
        .map(|entity| inspect::Matcher::new(entity, ops));
    ops.iter()
        .filter(|op| filter.origin.is_none_or(|o| op.dot.origin == o))
        .filter(|op| filter.from_seq.is_none_or(|s| op.dot.seq.get() >= s))
        .filter(|op| filter.to_seq.is_none_or(|s| op.dot.seq.get() <= s))
        .filter(|op| filter.since_ms.is_none_or(|t| op.hlc.wall_ms >= t))
        .filter(|op| filter.until_ms.is_none_or(|t| op.hlc.wall_ms <= t))
        .filter(|op| matcher.as_ref().is_none_or(|m| m.touches(&op.payload)))
        .map(|op| ShownOp {
            dot: op.dot.to_string(),
            hlc: op.hlc.to_string(),
            deps: op.deps.to_string(),
            change: inspect::describe(&op.payload),
        })
        .collect()
}

/// What `log rebuild` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebuilt {
    /// Operations read.
    pub operations_read: u64,
    /// Operations folded into the read model (after `--until` and `--exclude`).
    pub operations_applied: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Operations read per second.
    pub operations_per_second: f64,
    /// Hex SHA-256 of the rebuilt read model.
    pub digest: String,
    /// Operations the snapshot the log starts from stood for (0 when the log holds its whole
    /// history).
    pub from_snapshot: u64,
}

/// Replays the log into a fresh read model, keeping only operations within `until` (when
/// given) and not in `exclude`. The read model is built in memory ([`MemoryProjection`]),
/// whose digest is the one a controller's SQLite read model of the same operations has. A log
/// truncated below a snapshot is replayed on top of that snapshot (its digest checked); what
/// the snapshot covers can be neither cut nor excluded.
pub async fn rebuild(
    reader: &Reader,
    until: Option<&VersionVector>,
    exclude: &[Dot],
) -> anyhow::Result<Rebuilt> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let started = Instant::now();
    let mut projection = MemoryProjection::new();
    let mut from_snapshot = 0;
    // One copy of a data directory's log serves both the base and the replay.
    let copy = reader.copy_log()?;
    if let Some((path, digest)) = reader.snapshot_into(copy.as_ref(), dir.path()).await? {
        projection = MemoryProjection::install(&path, &digest)
            .context("the snapshot the log starts from is unusable")?;
        let base = projection.position();
        from_snapshot = base.frontier.op_count();
        if let Some(until) = until
            && !until.dominates(&base.frontier)
        {
            bail!(
                "the log starts after {}: operations below it are held only in the snapshot, so --until must cover it",
                base.frontier
            );
        }
        if let Some(dot) = exclude.iter().find(|dot| base.frontier.contains(**dot)) {
            bail!(
                "{dot} is held only in the snapshot the log starts from ({}): it cannot be excluded",
                base.frontier
            );
        }
    }
    let mut applied = 0u64;
    let read = reader
        .for_each_page_of(copy.as_ref(), |mut ops| {
            ops.retain(|op| until.is_none_or(|u| u.contains(op.dot)) && !exclude.contains(&op.dot));
            applied += ops.len() as u64;
            projection.apply(ops);
            Ok(())
        })
        .await?;
    let digest = projection.digest();
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rebuilt {
        operations_read: read,
        operations_applied: applied,
        seconds,
        operations_per_second: if seconds > 0.0 {
            read as f64 / seconds
        } else {
            0.0
        },
        digest: hex::encode(digest),
        from_snapshot,
    })
}

/// What `log diff` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Operations the first node holds and the second lacks.
    pub only_in_a: Vec<Missing>,
    /// Operations the second node holds and the first lacks.
    pub only_in_b: Vec<Missing>,
    /// Entities whose state differs, with the operations behind each side.
    pub entities: Vec<EntityDiff>,
}

impl Diff {
    /// Whether the two nodes agree.
    pub fn is_empty(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.entities.is_empty()
    }
}

/// Compares two nodes: operations each lacks and entities whose state differs.
pub async fn diff(a: &Reader, b: &Reader) -> anyhow::Result<Diff> {
    let (ops_a, ops_b) = (a.ops().await?, b.ops().await?);
    let entities_a = entities(&ops_a)?;
    let entities_b = entities(&ops_b)?;
    let (front_a, front_b) = (inspect::frontier_of(&ops_a), inspect::frontier_of(&ops_b));
    Ok(Diff {
        only_in_a: inspect::missing(&front_a, &front_b),
        only_in_b: inspect::missing(&front_b, &front_a),
        entities: inspect::diff_entities(&entities_a, &entities_b, &ops_a, &ops_b),
    })
}

/// A fresh read model in a temporary directory, removed when the directory is dropped.
fn scratch_projection() -> anyhow::Result<(tempfile::TempDir, redcloud_controller::Projection)> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let projection = redcloud_controller::Projection::open(&dir.path().join("readmodel.sqlite"))
        .context("cannot create a read model")?;
    Ok((dir, projection))
}

fn entities(ops: &[Op<MetaOp>]) -> anyhow::Result<BTreeMap<String, String>> {
    let (_dir, mut projection) = scratch_projection()?;
    for page in ops.chunks(PAGE_OPS) {
        projection
            .apply(page)
            .context("the read model refused an operation")?;
    }
    projection
        .entities()
        .context("cannot read the rebuilt read model")
}

/// Every step of `entity`'s history.
pub async fn history(reader: &Reader, entity: &Entity) -> anyhow::Result<Vec<Step>> {
    Ok(inspect::history(entity, &reader.ops().await?))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_log_copy_links_table_files_and_copies_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (log, copy) = (dir.path().join("log"), dir.path().join("copy"));
        let tables = log.join("keyspaces/0/tables");
        std::fs::create_dir_all(&tables).unwrap();
        std::fs::write(tables.join("7"), b"table").unwrap();
        std::fs::write(log.join("keyspaces/0/current"), b"v1").unwrap();
        std::fs::write(log.join("0.jnl"), b"journal").unwrap();

        copy_dir(&log, &copy).unwrap();

        let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
        assert_eq!(
            inode(&tables.join("7")),
            inode(&copy.join("keyspaces/0/tables/7")),
            "a table file is linked, not copied"
        );
        for written in ["0.jnl", "keyspaces/0/current"] {
            assert_ne!(inode(&log.join(written)), inode(&copy.join(written)));
        }
        // What the node does next (append to its journal, delete a compacted table) leaves
        // the copy as it was.
        std::fs::write(log.join("0.jnl"), b"journal and more").unwrap();
        std::fs::remove_file(tables.join("7")).unwrap();
        assert_eq!(std::fs::read(copy.join("0.jnl")).unwrap(), b"journal");
        assert_eq!(
            std::fs::read(copy.join("keyspaces/0/tables/7")).unwrap(),
            b"table"
        );
    }
}
