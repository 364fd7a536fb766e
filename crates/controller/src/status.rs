//! The cluster as one controller sees it: controllers, chunkservers, replication and repair.
//! One data source feeds `GET /status` (HTML and JSON), `redcloud status` and the state gauges
//! of `/metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redcloud_eventlog::NodeId;
use serde::{Deserialize, Serialize};

use crate::cluster::Registry;
use crate::log_worker::{DiskFull, PeerView};
use crate::peers::Membership;
use crate::repair::gc::Blocked;
use crate::service::format_timestamp;

/// A peer silent for longer than this is shown as unreachable.
const REACHABLE_WITHIN: Duration = Duration::from_secs(10);

/// Everything `/status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The controller answering.
    pub node_id: String,
    /// Operations in its log.
    pub operations: u64,
    /// Every controller it knows, itself first.
    pub controllers: Vec<ControllerStatus>,
    /// Every chunkserver it knows, healthy ones first.
    pub chunkservers: Vec<ChunkserverStatus>,
    /// How far the data is from being on every live chunkserver.
    pub replication: ReplicationStatus,
    /// What the repair service and garbage collection have done.
    pub repair: RepairStatus,
    /// The answering controller runs `--insecure`: its cluster listener takes anyone.
    #[serde(default)]
    pub insecure: bool,
    /// Since when the answering controller's disk has been full (none while it has room).
    #[serde(default)]
    pub disk_full: Option<DiskFullStatus>,
    /// The answering controller's wall clock against its peers' (none before any peer sent
    /// its clock).
    #[serde(default)]
    pub clock: Option<ClockStatus>,
    /// How much of its history the answering controller's log holds, and its snapshot.
    #[serde(default)]
    pub log: LogStatus,
}

/// The answering controller's log against its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    /// Operations the log holds one by one.
    pub held_operations: u64,
    /// Operations older than the log's history, held only in the snapshot.
    pub truncated_operations: u64,
    /// The snapshot this controller serves: operations it covers (none before the first).
    pub snapshot_operations: Option<u64>,
    /// Its size on disk.
    pub snapshot_bytes: Option<u64>,
    /// How long ago it was published, in milliseconds.
    pub snapshot_age_ms: Option<u64>,
}

/// The answering controller's disk is full: it refuses writes until space is freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskFullStatus {
    /// When it was found full, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// How long it has been full, in milliseconds.
    pub for_ms: u64,
    /// What refused to write.
    pub reason: String,
}

/// The answering controller's wall clock against its peers'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    /// Its clock minus the median peer's, in milliseconds (positive: ahead).
    pub offset_ms: i64,
    /// How many peers' clocks the median is taken over.
    pub peers: u64,
    /// Whether the offset is beyond the warning threshold.
    pub skewed: bool,
    /// Controllers whose clocks are so far behind that they refuse its new operations.
    pub refused_by: Vec<String>,
}

/// One controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// Its node id.
    pub node_id: String,
    /// Where it serves.
    pub address: String,
    /// Whether it is the controller answering.
    pub is_self: bool,
    /// Whether it answered recently.
    pub reachable: bool,
    /// Milliseconds since it was last heard from (none for itself or if never).
    pub last_heard_ms_ago: Option<u64>,
    /// Operations the answering controller holds that this one lacked at its last report.
    pub operations_behind: Option<u64>,
    /// Operations this one held at its last report that the answering controller lacks.
    pub operations_ahead: Option<u64>,
    /// Its wall clock minus the answering controller's, in milliseconds, from its newest
    /// message that said (none for itself or if never).
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Whether that offset is beyond the warning threshold.
    #[serde(default)]
    pub clock_skewed: bool,
    /// While the answering controller refuses this one's operations for stamps too far ahead
    /// of its clock: how far ahead the last refused one was, in milliseconds.
    #[serde(default)]
    pub refused_ahead_ms: Option<u64>,
}

/// One chunkserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkserverStatus {
    /// Its node id.
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// Heard from within the failure timeout.
    pub healthy: bool,
    /// Milliseconds since its last heartbeat (directly or through a peer).
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Bytes it may use.
    pub capacity_bytes: u64,
    /// Bytes it uses.
    pub used_bytes: u64,
    /// Chunks it holds.
    pub chunks: u64,
    /// Referenced chunks it lacked at the last repair round (none if it was not listed).
    pub missing_chunks: Option<u64>,
}

/// Replication health, as of the last repair round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Chunks live files reference.
    pub referenced_chunks: u64,
    /// Of those, the ones on every live chunkserver.
    pub fully_replicated_chunks: u64,
    /// The ones some live chunkserver lacks.
    pub under_replicated_chunks: u64,
    /// The ones no live chunkserver holds.
    pub unavailable_chunks: u64,
    /// Milliseconds since the round these numbers come from (none before the first).
    pub as_of_ms_ago: Option<u64>,
}

/// Repair and garbage collection progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus {
    /// Rounds run since the controller started.
    pub rounds: u64,
    /// Copies the last round planned (the repair queue).
    pub queued_copies: u64,
    /// Copies made since start.
    pub copies_made: u64,
    /// Copies that failed since start.
    pub copies_failed: u64,
    /// Chunk copies no live file references, at the last round.
    pub gc_candidates: u64,
    /// Chunks waiting for every controller to learn of their deletion.
    pub gc_waiting: u64,
    /// Chunk copies deleted since start.
    pub gc_deleted: u64,
    /// Why collection waits, if it does.
    pub gc_blocked: Option<String>,
    /// The controller collection waits for.
    pub gc_blocked_by: Option<String>,
    /// How long collection has waited for it, in milliseconds.
    pub gc_blocked_for_ms: Option<u64>,
    /// What unblocks collection if that controller is gone for good.
    pub gc_unblock: Option<String>,
}

/// What the last repair round found, kept for `/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct RepairLedger {
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    replication: ReplicationStatus,
    repair: RepairStatus,
    missing: Vec<(String, u64)>,
    round_at: Option<Instant>,
    /// The controller collection waits for, and since when.
    blocked_since: Option<(NodeId, Instant)>,
}

/// One round's findings.
#[derive(Debug, Default)]
pub struct RoundFindings {
    /// Chunks live files reference.
    pub referenced: u64,
    /// Referenced chunks some listed chunkserver lacks.
    pub under_replicated: u64,
    /// Referenced chunks no listed chunkserver holds.
    pub unavailable: u64,
    /// Per listed chunkserver, the referenced chunks it lacks.
    pub missing: Vec<(String, u64)>,
}

impl RepairLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent in a harmful way.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the start of a round and what it found.
    pub fn round(&self, findings: RoundFindings) {
        let mut inner = self.lock();
        inner.round_at = Some(Instant::now());
        inner.repair.rounds += 1;
        inner.repair.queued_copies = 0;
        inner.replication = ReplicationStatus {
            referenced_chunks: findings.referenced,
            fully_replicated_chunks: findings.referenced - findings.under_replicated,
            under_replicated_chunks: findings.under_replicated,
            unavailable_chunks: findings.unavailable,
            as_of_ms_ago: None,
        };
        inner.missing = findings.missing;
    }

    /// Records how many copies the round planned.
    pub fn queued(&self, copies: u64) {
        self.lock().repair.queued_copies = copies;
    }

    /// Records the copies a round made.
    pub fn copies(&self, made: u64, failed: u64) {
        let mut inner = self.lock();
        inner.repair.copies_made += made;
        inner.repair.copies_failed += failed;
    }

    /// Records what collection found and did.
    pub fn collection(
        &self,
        candidates: u64,
        waiting: u64,
        deleted: u64,
        blocked: Option<Blocked>,
    ) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.repair.gc_candidates = candidates;
        inner.repair.gc_waiting = waiting;
        inner.repair.gc_deleted += deleted;
        inner.repair.gc_blocked = blocked.as_ref().map(ToString::to_string);
        let Some(blocked) = blocked else {
            inner.blocked_since = None;
            inner.repair.gc_blocked_by = None;
            inner.repair.gc_blocked_for_ms = None;
            inner.repair.gc_unblock = None;
            return;
        };
        let node = blocked.node();
        // A stale report says how long the controller has been silent; otherwise the wait
        // counts from the first round that found it.
        let since = match (inner.blocked_since, &blocked) {
            (_, Blocked::StaleReport(_, age)) => now.checked_sub(*age).unwrap_or(now),
            (Some((was, since)), _) if was == node => since,
            _ => now,
        };
        inner.blocked_since = Some((node, since));
        inner.repair.gc_blocked_by = Some(node.to_string());
        inner.repair.gc_blocked_for_ms = Some(millis(now.saturating_duration_since(since)));
        inner.repair.gc_unblock = Some(format!(
            "if controller {node} is gone for good: redcloud cluster forget {node} --server <any controller>:8001"
        ));
    }

    fn snapshot(&self, now: Instant) -> (ReplicationStatus, RepairStatus, Vec<(String, u64)>) {
        let inner = self.lock();
        let mut replication = inner.replication.clone();
        replication.as_of_ms_ago = inner
            .round_at
            .map(|at| millis(now.saturating_duration_since(at)));
        (replication, inner.repair.clone(), inner.missing.clone())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The parts of a controller that `/status` reports on.
pub struct Sources<'a> {
    /// The other controllers.
    pub membership: &'a Membership,
    /// The chunkservers.
    pub registry: &'a Registry,
    /// What repair and collection found.
    pub ledger: &'a RepairLedger,
    /// How the log worker sees itself and its peers.
    pub frontiers: &'a crate::log_worker::PeerFrontiers,
    /// Whether the controller runs `--insecure` with an exposed cluster listener.
    pub insecure: bool,
    /// Whether its disk is full.
    pub disk_full: Option<DiskFull>,
    /// The snapshot it serves.
    pub snapshot: Option<crate::snapshot::SnapshotInfo>,
    /// The wall clock now, milliseconds since the Unix epoch.
    pub now_unix_ms: u64,
}

/// Assembles the status from the live parts of a controller.
pub fn gather(sources: Sources<'_>) -> ClusterStatus {
    let Sources {
        membership,
        registry,
        ledger,
        frontiers,
        insecure,
        disk_full,
        snapshot,
        now_unix_ms,
    } = sources;
    let now = Instant::now();
    let me = membership.me();
    let warning_ms = millis(frontiers.clock_skew_warning);
    let skewed = |offset_ms: i64| offset_ms.unsigned_abs() > warning_ms;
    let mut controllers = vec![ControllerStatus {
        node_id: me.to_string(),
        address: membership.address().to_owned(),
        is_self: true,
        reachable: true,
        last_heard_ms_ago: None,
        operations_behind: Some(0),
        operations_ahead: Some(0),
        clock_offset_ms: None,
        clock_skewed: false,
        refused_ahead_ms: None,
    }];
    for peer in membership.peers() {
        let view: Option<&PeerView> = peer
            .node_id
            .parse()
            .ok()
            .and_then(|id| frontiers.peers.get(&id));
        let last_heard = view.and_then(|v| v.last_heard);
        let report = view.and_then(|v| v.report.as_ref());
        controllers.push(ControllerStatus {
            reachable: view.is_some_and(|v| !v.suspected)
                && last_heard.is_some_and(|d| d < REACHABLE_WITHIN),
            last_heard_ms_ago: last_heard.map(millis),
            operations_behind: report.map(|(_, theirs)| frontiers.local.count_missing_from(theirs)),
            operations_ahead: report.map(|(_, theirs)| theirs.count_missing_from(&frontiers.local)),
            clock_offset_ms: view.and_then(|v| v.clock_offset_ms),
            clock_skewed: view.and_then(|v| v.clock_offset_ms).is_some_and(skewed),
            refused_ahead_ms: view.and_then(|v| v.refused_ahead_ms),
            node_id: peer.node_id,
            address: peer.address,
            is_self: false,
        });
    }
    let (replication, repair, missing) = ledger.snapshot(now);
    let chunkservers = registry
        .snapshot(now)
        .into_iter()
        .map(|(info, _)| ChunkserverStatus {
            missing_chunks: missing
                .iter()
                .find(|(node, _)| *node == info.node_id)
                .map(|(_, n)| *n),
            last_heartbeat_ms_ago: info
                .last_heartbeat
                .map(|at| millis(now.saturating_duration_since(at))),
            node_id: info.node_id,
            address: info.address,
            healthy: info.healthy,
            capacity_bytes: info.capacity_bytes,
            used_bytes: info.used_bytes,
            chunks: info.chunk_count,
        })
        .collect();
    ClusterStatus {
        node_id: me.to_string(),
        operations: frontiers.local.op_count(),
        controllers,
        chunkservers,
        replication,
        repair,
        insecure,
        disk_full: disk_full.map(|full| DiskFullStatus {
            since_unix_ms: full.since_unix_ms,
            for_ms: millis(now.saturating_duration_since(full.since)),
            reason: full.reason,
        }),
        clock: frontiers.clock.as_ref().map(|clock| ClockStatus {
            offset_ms: clock.offset_ms,
            peers: clock.peers as u64,
            skewed: skewed(clock.offset_ms),
            refused_by: clock.refused_by.iter().map(ToString::to_string).collect(),
        }),
        log: LogStatus {
            held_operations: frontiers.local.count_missing_from(&frontiers.base),
            truncated_operations: frontiers.base.op_count(),
            snapshot_operations: snapshot.as_ref().map(|s| s.base.frontier.op_count()),
            snapshot_bytes: snapshot.as_ref().map(|s| s.bytes),
            snapshot_age_ms: snapshot
                .as_ref()
                .map(|s| now_unix_ms.saturating_sub(s.published_unix_ms)),
        },
    }
}

/// Where the log's history starts and what the snapshot holds, as a clause that follows the
/// operation count (on the status page and in `redcloud status`).
pub fn history_summary(log: &LogStatus) -> String {
    let snapshot = match (
        log.snapshot_operations,
        log.snapshot_bytes,
        log.snapshot_age_ms,
    ) {
        (Some(operations), Some(bytes), Some(age)) => format!(
            "; snapshot of {operations} operations ({} KiB) taken {} ago",
            bytes.div_ceil(1024),
            human_duration(age)
        ),
        _ => "; no snapshot yet".to_owned(),
    };
    if log.truncated_operations == 0 {
        format!(", all in its log{snapshot}")
    } else {
        format!(
            ", {} in its log and {} older ones only in its snapshot{snapshot}",
            log.held_operations, log.truncated_operations
        )
    }
}

/// A span of time as people say it: `850 ms`, `12.3 s`, `15 min 0 s`, `2 h 5 min`, `3 d 4 h`
/// (from a minute on, to the nearest second, then cut to two units).
pub fn human_duration(ms: u64) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    match ms / 1000 + u64::from(ms % 1000 >= 500) {
        secs if secs < HOUR => format!("{} min {} s", secs / MINUTE, secs % MINUTE),
        secs if secs < DAY => format!("{} h {} min", secs / HOUR, secs % HOUR / MINUTE),
        secs => format!("{} d {} h", secs / DAY, secs % DAY / HOUR),
    }
}

/// A signed clock offset: `+15 min 0 s`, `-850 ms`.
pub fn signed_duration(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    format!("{sign}{}", human_duration(offset_ms.unsigned_abs()))
}

/// What an operator must hear of, as sentences: the page and `redcloud status` show the same.
pub fn warnings(status: &ClusterStatus) -> Vec<String> {
    let mut warnings = Vec::new();
    if status.insecure {
        warnings.push("Insecure: this controller runs without a cluster secret (--insecure); anyone who can reach its cluster listener can read and change all metadata and data.".to_owned());
    }
    if let Some(full) = &status.disk_full {
        warnings.push(format!(
            "Disk full since {} UTC ({}): this controller refuses changes (507 INSUFFICIENT_STORAGE) and takes no operations from peers until space is freed in its data directory; reads still work, and it resumes by itself. ({})",
            format_timestamp(full.since_unix_ms),
            human_duration(full.for_ms),
            full.reason,
        ));
    }
    if let Some(clock) = status.clock.as_ref().filter(|clock| clock.skewed) {
        let direction = if clock.offset_ms > 0 {
            "ahead of"
        } else {
            "behind"
        };
        let mut sentence = format!(
            "Clock: this controller's clock is {} {direction} the median of its {} peer(s)",
            human_duration(clock.offset_ms.unsigned_abs()),
            clock.peers,
        );
        if !clock.refused_by.is_empty() {
            let _ = write!(
                sentence,
                "; {} refuse its new operations until their clocks catch up",
                clock.refused_by.join(", ")
            );
        }
        sentence.push_str(". Check its time source (NTP).");
        warnings.push(sentence);
    }
    for c in &status.controllers {
        if !c.clock_skewed && c.refused_ahead_ms.is_none() {
            continue;
        }
        let mut sentence = format!("Controller {}", c.node_id);
        if let Some(offset) = c.clock_offset_ms {
            let direction = if offset > 0 { "ahead of" } else { "behind" };
            let _ = write!(
                sentence,
                ": its clock is {} {direction} this one's",
                human_duration(offset.unsigned_abs())
            );
        }
        if let Some(ahead) = c.refused_ahead_ms {
            let _ = write!(
                sentence,
                "; its operations are refused (the last was stamped {} ahead of this clock) until this clock catches up",
                human_duration(ahead)
            );
        }
        sentence.push('.');
        warnings.push(sentence);
    }
    warnings
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes in a short human form (binary units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        None => "–".to_owned(),
        Some(ms) if ms < 1000 => format!("{ms} ms ago"),
        Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
    }
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "–".to_owned(), |n| n.to_string())
}

/// Seconds between refreshes of the page.
const REFRESH_SECONDS: u32 = 2;

/// The status page: self-contained HTML (no scripts or external assets) that reloads itself.
pub fn render_html(status: &ClusterStatus) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let r = &status.replication;
    let percent = if r.referenced_chunks == 0 {
        100.0
    } else {
        r.fully_replicated_chunks as f64 * 100.0 / r.referenced_chunks as f64
    };
    let healthy = status.chunkservers.iter().filter(|c| c.healthy).count();
    let reachable = status.controllers.iter().filter(|c| c.reachable).count();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RedCloud Files — cluster status</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fafafa; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; color: #b3261e; }}
h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
.sub {{ color: #666; margin-bottom: 1em; }}
.cards {{ display: flex; gap: 1em; flex-wrap: wrap; }}
.card {{ background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: .7em 1em; min-width: 12em; }}
.card b {{ display: block; font-size: 1.5em; }}
table {{ border-collapse: collapse; background: #fff; width: 100%; }}
th, td {{ border: 1px solid #ddd; padding: .35em .6em; text-align: left; }}
th {{ background: #f0f0f0; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.ok {{ color: #1b7f3b; font-weight: 600; }}
.bad {{ color: #b3261e; font-weight: 600; }}
.bar {{ background: #eee; border-radius: 4px; height: 10px; width: 100%; }}
.bar div {{ background: #1b7f3b; height: 10px; border-radius: 4px; }}
code {{ font-size: .95em; }}
</style></head><body>
<h1>RedCloud Files — cluster status</h1>
{alerts}<div class="sub">As seen by controller <code>{node}</code> · {ops} operations{history} · refreshes every {REFRESH_SECONDS} s</div>
<div class="cards">
<div class="card">Controllers reachable<b>{reachable} / {controllers}</b></div>
<div class="card">Chunkservers healthy<b>{healthy} / {chunkservers}</b></div>
<div class="card">Chunks on every live chunkserver<b>{full} / {referenced}</b><div class="bar"><div style="width:{percent:.1}%"></div></div></div>
<div class="card">Repair queue<b>{queued}</b>{made} copies made, {failed} failed</div>
</div>
<h2>Controllers</h2>
<table><tr><th>Node</th><th>Address</th><th>State</th><th>Last heard</th><th>Ops it lacks</th><th>Ops we lack</th><th>Clock</th></tr>
"#,
        node = escape(&status.node_id),
        alerts = warnings(status)
            .iter()
            .map(|warning| format!("<p class=\"bad\" role=\"alert\">{}</p>\n", escape(warning)))
            .collect::<String>(),
        ops = status.operations,
        history = escape(&history_summary(&status.log)),
        controllers = status.controllers.len(),
        chunkservers = status.chunkservers.len(),
        full = r.fully_replicated_chunks,
        referenced = r.referenced_chunks,
        queued = status.repair.queued_copies,
        made = status.repair.copies_made,
        failed = status.repair.copies_failed,
    );
    for c in &status.controllers {
        let state = match (c.is_self, c.reachable) {
            (true, _) => r#"<span class="ok">this node</span>"#,
            (false, true) => r#"<span class="ok">reachable</span>"#,
            (false, false) => r#"<span class="bad">unreachable</span>"#,
        };
        let clock = c
            .clock_offset_ms
            .map_or_else(|| "–".to_owned(), signed_duration);
        let clock = if c.clock_skewed || c.refused_ahead_ms.is_some() {
            format!(r#"<span class="bad">{clock}</span>"#)
        } else {
            clock
        };
        let _ = writeln!(
            html,
            r#"<tr><td><code>{}</code></td><td>{}</td><td>{state}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{clock}</td></tr>"#,
            escape(&c.node_id),
            escape(&c.address),
            ago(c.last_heard_ms_ago),
            count(c.operations_behind),
            count(c.operations_ahead),
        );
    }
    html.push_str("</table>\n<h2>Chunkservers</h2>\n<table><tr><th>Node</th><th>Address</th><th>State</th><th>Last heartbeat</th><th>Capacity</th><th>Used</th><th>Chunks</th><th>Missing chunks</th></tr>\n");
    for c in &status.chunkservers {
        let state = if c.healthy {
            r#"<span class="ok">healthy</span>"#
        } else {
            r#"<span class="bad">failed</span>"#
        };
        let _ = writeln!(
            html,
            r#"<tr><td><code>{}</code></td><td>{}</td><td>{state}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            escape(&c.node_id),
            escape(&c.address),
            ago(c.last_heartbeat_ms_ago),
            human_bytes(c.capacity_bytes),
            human_bytes(c.used_bytes),
            c.chunks,
            count(c.missing_chunks),
        );
    }
    let p = &status.repair;
    let _ = write!(
        html,
        r#"</table>
<h2>Replication and repair</h2>
<table>
<tr><th>Referenced chunks</th><td class="num">{referenced}</td></tr>
<tr><th>On every live chunkserver</th><td class="num">{full} ({percent:.1}%)</td></tr>
<tr><th>Under-replicated</th><td class="num">{under}</td></tr>
<tr><th>Held by no live chunkserver</th><td class="num">{unavailable}</td></tr>
<tr><th>Last repair round</th><td class="num">{as_of} (round {rounds})</td></tr>
<tr><th>Garbage-collection candidates</th><td class="num">{candidates} ({waiting} waiting for every controller)</td></tr>
<tr><th>Chunk copies collected</th><td class="num">{deleted}</td></tr>
<tr><th>Collection</th><td>{blocked}{unblock}</td></tr>
</table>
</body></html>
"#,
        referenced = r.referenced_chunks,
        full = r.fully_replicated_chunks,
        under = r.under_replicated_chunks,
        unavailable = r.unavailable_chunks,
        as_of = ago(r.as_of_ms_ago),
        rounds = p.rounds,
        candidates = p.gc_candidates,
        waiting = p.gc_waiting,
        deleted = p.gc_deleted,
        blocked = p.gc_blocked.as_deref().map_or_else(
            || "running".to_owned(),
            |why| format!(
                "waiting for {} s: {}",
                p.gc_blocked_for_ms.unwrap_or(0) / 1000,
                escape(why)
            )
        ),
        unblock = p
            .gc_unblock
            .as_deref()
            .map_or_else(String::new, |hint| format!(
                "<br><code>{}</code>",
                escape(hint)
            )),
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_nodes_report() {
        let status = status_with(vec![ControllerStatus {
            node_id: "00000000000000aa".to_owned(),
            address: "<script>alert(1)</script>".to_owned(),
            is_self: true,
            last_heard_ms_ago: None,
            ..peer("00000000000000aa", None, None)
        }]);
        let html = render_html(&status);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(!html.contains("Insecure"));
        let insecure = render_html(&ClusterStatus {
            insecure: true,
            ..status
        });
        assert!(insecure.contains("runs without a cluster secret (--insecure)"));
    }

    fn peer(
        node_id: &str,
        clock_offset_ms: Option<i64>,
        refused_ahead_ms: Option<u64>,
    ) -> ControllerStatus {
        ControllerStatus {
            node_id: node_id.to_owned(),
            address: "127.0.0.1:8001".to_owned(),
            is_self: false,
            reachable: true,
            last_heard_ms_ago: Some(10),
            operations_behind: Some(0),
            operations_ahead: Some(0),
            clock_offset_ms,
            clock_skewed: clock_offset_ms.is_some_and(|offset| offset.abs() > 5_000),
            refused_ahead_ms,
        }
    }

    fn status_with(controllers: Vec<ControllerStatus>) -> ClusterStatus {
        ClusterStatus {
            node_id: "00000000000000aa".to_owned(),
            operations: 3,
            controllers,
            chunkservers: Vec::new(),
            replication: ReplicationStatus::default(),
            repair: RepairStatus::default(),
            insecure: false,
            disk_full: None,
            clock: None,
            log: LogStatus::default(),
        }
    }

    #[test]
    fn a_full_disk_and_skewed_clocks_are_warned_of_in_sentences() {
        const FIFTEEN_MINUTES_MS: i64 = 15 * 60 * 1000;
        let mut receiver = status_with(vec![peer(
            "00000000000000bb",
            Some(FIFTEEN_MINUTES_MS),
            Some(900_250),
        )]);
        receiver.disk_full = Some(DiskFullStatus {
            since_unix_ms: 1_800_000_000_000,
            for_ms: 185_000,
            reason: "the disk holding the log is full: no space left on device (ENOSPC)".to_owned(),
        });
        receiver.clock = Some(ClockStatus {
            offset_ms: -FIFTEEN_MINUTES_MS,
            peers: 1,
            skewed: true,
            refused_by: Vec::new(),
        });
        let said = warnings(&receiver);
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[0].starts_with("Disk full since 2027-01-15T08:00:00.000000 UTC (3 min 5 s)"),
            "{said:?}"
        );
        assert_eq!(
            said[1],
            "Clock: this controller's clock is 15 min 0 s behind the median of its 1 peer(s). Check its time source (NTP)."
        );
        assert_eq!(
            said[2],
            "Controller 00000000000000bb: its clock is 15 min 0 s ahead of this one's; its operations are refused (the last was stamped 15 min 0 s ahead of this clock) until this clock catches up."
        );
        let html = render_html(&receiver);
        assert!(html.contains("Disk full since"), "{html}");
        assert!(html.contains(r#"<span class="bad">+15 min 0 s</span>"#));

        let mut sender = status_with(vec![peer(
            "00000000000000aa",
            Some(-FIFTEEN_MINUTES_MS),
            None,
        )]);
        sender.clock = Some(ClockStatus {
            offset_ms: FIFTEEN_MINUTES_MS,
            peers: 1,
            skewed: true,
            refused_by: vec!["00000000000000aa".to_owned()],
        });
        assert_eq!(
            warnings(&sender)[0],
            "Clock: this controller's clock is 15 min 0 s ahead of the median of its 1 peer(s); 00000000000000aa refuse its new operations until their clocks catch up. Check its time source (NTP)."
        );

        let calm = status_with(vec![peer("00000000000000bb", Some(-40), None)]);
        assert!(warnings(&calm).is_empty());
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_345), "12.3 s");
        assert_eq!(human_duration(900_000), "15 min 0 s");
        assert_eq!(
            human_duration(899_700),
            "15 min 0 s",
            "to the nearest second"
        );
        assert_eq!(human_duration(7_500_000), "2 h 5 min");
        assert_eq!(human_duration(273_600_000), "3 d 4 h");
        assert_eq!(signed_duration(-850), "-850 ms");
        assert_eq!(signed_duration(i64::MIN), "-106751991167 d 7 h");
    }

    #[test]
    fn bytes_read_as_people_say_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
