//! The one-shot commands: each calls the controller and prints a human answer, or the server's
//! JSON with `--json`.

pub mod cluster;
pub mod log;
pub mod shell;
pub mod up;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use redcloud_controller::status::{ClusterStatus, signed_duration, warnings};
use serde_json::Value;

use crate::client::Client;
use crate::config;
use crate::table::{Align, Table, Units};

/// Output mode and connection, shared by every command.
pub struct Context {
    /// The controller.
    pub client: Client,
    /// Print the server's JSON instead of sentences.
    pub json: bool,
    /// How sizes and times are shown.
    pub units: Units,
}

/// The link to the cluster listeners, keyed by the secret the flags or environment name.
fn cluster_link(
    token: &redcloud_types::ClusterTokenArgs,
) -> anyhow::Result<redcloud_link::ClusterLink> {
    let token = token
        .resolve()
        .context("cannot read the cluster secret file")?;
    let secret = token
        .as_deref()
        .map(redcloud_link::ClusterSecret::new)
        .transpose()?;
    Ok(redcloud_link::ClusterLink::new(secret.as_ref())?)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints the server's answer as JSON with `--json`, otherwise the sentence `human` makes.
fn report(ctx: &Context, body: &Value, human: impl FnOnce(&Value)) {
    if ctx.json {
        print_json(body);
    } else {
        human(body);
    }
}

/// A JSON array of tags as `a, b, c`.
fn tag_list(tags: &Value) -> String {
    tags.as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn remember(ctx: &Context, username: &str, body: &Value) -> anyhow::Result<()> {
    let api_key = body["api_key"]
        .as_str()
        .ok_or_else(|| anyhow!("the server sent no API key"))?;
    ctx.client.set_api_key(api_key);
    let mut saved = config::load()?;
    saved.api_key = Some(api_key.to_owned());
    saved.username = Some(username.to_owned());
    config::save(&saved)
}

/// Keeps the newest frontier token in the config, so the next command (through any
/// controller) sees everything this one did.
pub fn remember_frontier(ctx: &Context) -> anyhow::Result<()> {
    let frontier = ctx.client.frontier();
    let mut saved = config::load()?;
    if frontier.is_some() && saved.frontier != frontier {
        saved.frontier = frontier;
        config::save(&saved)?;
    }
    Ok(())
}

/// Tells the owner of an account whose name another account registered first (concurrently,
/// during a partition): both keep working, but the name alone may not say which is meant.
fn warn_username_conflict(username: &str, body: &Value) {
    if body["username_conflict"].as_bool() == Some(true) {
        println!(
            "Note: another account registered the name {username} first, on another controller \
             during a partition. Both accounts keep their files and passwords; login by name \
             tries the earlier one first, so keep your password different from its owner's."
        );
    }
}

/// `register USER PASSWORD`: creates the account and keeps its key.
pub async fn register(ctx: &Context, username: &str, password: &str) -> anyhow::Result<()> {
    let body = ctx.client.register(username, password).await?;
    remember(ctx, username, &body)?;
    report(ctx, &body, |body| {
        println!(
            "Registered {username}; key saved to {}",
            config::path().display()
        );
        warn_username_conflict(username, body);
    });
    Ok(())
}

/// `login USER PASSWORD`: gets a new key (the previous one stops working) and keeps it.
pub async fn login(ctx: &Context, username: &str, password: &str) -> anyhow::Result<()> {
    let body = ctx.client.login(username, password).await?;
    remember(ctx, username, &body)?;
    report(ctx, &body, |body| {
        println!("Logged in as {username}");
        warn_username_conflict(username, body);
    });
    Ok(())
}

/// `whoami`: the account behind the saved key.
pub async fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let body = ctx.client.me().await?;
    report(ctx, &body, |body| {
        let username = body["username"].as_str().unwrap_or("?");
        println!(
            "{username} (user {})",
            body["user_id"].as_str().unwrap_or("?")
        );
        warn_username_conflict(username, body);
    });
    Ok(())
}

/// `add FILE... --tags a,b`: uploads each file; stops at the first failure.
pub async fn add(ctx: &Context, files: &[PathBuf], tags: &str) -> anyhow::Result<()> {
    for path in files {
        let body = ctx
            .client
            .upload(path, tags)
            .await
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        report(ctx, &body, |body| {
            let replacing = body["replaced_file_id"]
                .as_str()
                .map(|old| format!(", replacing {old}"))
                .unwrap_or_default();
            println!(
                "Uploaded {} ({} bytes) tagged {}{replacing}",
                body["name"].as_str().unwrap_or("?"),
                body["size"],
                tag_list(&body["tags"])
            );
        });
    }
    Ok(())
}

/// `list [TAG...]`: the caller's files carrying every tag (all files without tags).
pub async fn list(ctx: &Context, tags: &[String]) -> anyhow::Result<()> {
    let body = ctx.client.list(tags).await?;
    report(ctx, &body, |body| {
        let files = body["files"].as_array().cloned().unwrap_or_default();
        if files.is_empty() {
            println!("No files match.");
            return;
        }
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("SIZE", Align::Right),
            ("CREATED", Align::Left),
            ("TAGS", Align::Left),
        ]);
        for file in &files {
            table.row(vec![
                file["name"].as_str().unwrap_or("?").to_owned(),
                file["size"]
                    .as_u64()
                    .map_or_else(|| file["size"].to_string(), |size| ctx.units.size(size)),
                ctx.units.time(file["created_at"].as_str().unwrap_or("")),
                tag_list(&file["tags"]),
            ]);
        }
        print!("{}", table.render());
        println!(
            "{} file{}",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    });
    Ok(())
}

/// `tags`: the tags on the caller's files, each with how many files carry it.
pub async fn tags(ctx: &Context) -> anyhow::Result<()> {
    let body = ctx.client.tags().await?;
    report(ctx, &body, |body| {
        let tags = body["tags"].as_array().cloned().unwrap_or_default();
        if tags.is_empty() {
            println!("No tags yet: `redcloud add FILE --tags TAG` uploads a file with its tags.");
            return;
        }
        let mut table = Table::new(&[("TAG", Align::Left), ("FILES", Align::Right)]);
        for tag in &tags {
            table.row(vec![
                tag["tag"].as_str().unwrap_or("?").to_owned(),
                tag["count"].to_string(),
            ]);
        }
        print!("{}", table.render());
    });
    Ok(())
}

/// `redcloud s3-key create`.
pub async fn create_s3_key(ctx: &Context) -> anyhow::Result<()> {
    let body = ctx.client.create_s3_key().await?;
    report(ctx, &body, |body| {
        let field = |name: &str| body[name].as_str().unwrap_or("?").to_owned();
        println!("Access key id:     {}", field("access_key_id"));
        println!("Secret access key: {}", field("secret_access_key"));
        println!("Keep the secret now: it is never shown again.");
    });
    Ok(())
}

/// `redcloud s3-key list`.
pub async fn s3_keys(ctx: &Context) -> anyhow::Result<()> {
    let body = ctx.client.s3_keys().await?;
    report(ctx, &body, |body| {
        let keys = body["keys"].as_array().cloned().unwrap_or_default();
        if keys.is_empty() {
            println!("No S3 access keys: `redcloud s3-key create` makes one.");
            return;
        }
        let mut table = Table::new(&[("ACCESS KEY ID", Align::Left), ("CREATED", Align::Left)]);
        for key in &keys {
            table.row(vec![
                key["access_key_id"].as_str().unwrap_or("?").to_owned(),
                ctx.units.time(key["created_at"].as_str().unwrap_or("")),
            ]);
        }
        print!("{}", table.render());
    });
    Ok(())
}

/// `redcloud s3-key delete KEY_ID`.
pub async fn delete_s3_key(ctx: &Context, key_id: &str) -> anyhow::Result<()> {
    let body = ctx.client.delete_s3_key(key_id).await?;
    report(ctx, &body, |_| println!("Deleted S3 access key {key_id}."));
    Ok(())
}

/// Where a download goes: `output` if given (into it, when it is a directory), else the
/// download directory (`REDCLOUD_DOWNLOAD_DIR`, default the current directory).
pub fn download_target(name: &str, output: Option<&Path>) -> PathBuf {
    match output {
        Some(path) if path.is_dir() => path.join(name),
        Some(path) => path.to_owned(),
        None => std::env::var_os("REDCLOUD_DOWNLOAD_DIR")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join(name),
    }
}

/// `download NAME [-o PATH]`.
pub async fn download(ctx: &Context, name: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let target = download_target(name, output);
    let bytes = ctx.client.download(name, &target).await?;
    let body = serde_json::json!({"name": name, "path": target, "size": bytes});
    report(ctx, &body, |_| {
        println!("Downloaded {name} to {} ({bytes} bytes)", target.display())
    });
    Ok(())
}

/// `delete TAG...`: deletes every file carrying all the tags.
pub async fn delete(ctx: &Context, tags: &[String]) -> anyhow::Result<()> {
    if tags.is_empty() {
        return Err(anyhow!(
            "name at least one tag: deleting everything takes an explicit query"
        ));
    }
    let body = ctx.client.delete(tags).await?;
    report(ctx, &body, |body| {
        println!("Deleted {} file(s)", body["deleted_count"])
    });
    Ok(())
}

/// `add-tags QUERY_TAG... --tags x,y`.
pub async fn add_tags(ctx: &Context, query: &[String], tags: &[String]) -> anyhow::Result<()> {
    let body = ctx.client.add_tags(query, tags).await?;
    report(ctx, &body, |body| {
        println!("Tagged {} file(s)", body["updated_count"])
    });
    Ok(())
}

/// `delete-tags QUERY_TAG... --tags x,y`.
pub async fn delete_tags(ctx: &Context, query: &[String], tags: &[String]) -> anyhow::Result<()> {
    let body = ctx.client.delete_tags(query, tags).await?;
    report(ctx, &body, |body| {
        println!("Updated {} file(s)", body["updated_count"]);
        for skipped in body["skipped_files"].as_array().into_iter().flatten() {
            println!(
                "Skipped {}: it would have no tags left (tags: {})",
                skipped["name"].as_str().unwrap_or("?"),
                tag_list(&skipped["current_tags"])
            );
        }
    });
    Ok(())
}

/// `status`: whether the controller is up and ready, and the cluster as it sees it.
pub async fn status(ctx: &Context) -> anyhow::Result<()> {
    let body = ctx.client.status().await?;
    let ready = body["ready"]["ready"].as_bool().unwrap_or(false);
    let cluster: ClusterStatus = serde_json::from_value(body["cluster"].clone())
        .context("the server's /status answer is not a cluster status")?;
    report(ctx, &body, |body| {
        println!(
            "{}: {} ({} healthy chunkserver(s)), controller {}",
            body["server"].as_str().unwrap_or("?"),
            if ready { "ready" } else { "NOT ready" },
            body["ready"]["healthy_chunkservers"],
            body["ready"]["node_id"].as_str().unwrap_or("?"),
        );
        print!("{}", cluster_screen(&cluster, ctx.units));
    });
    if !ready {
        return Err(anyhow!("the controller is not ready to store data"));
    }
    Ok(())
}

/// Splits comma-separated tag arguments and drops empty pieces.
pub fn split_tags(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn ago(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| format!("{:.1} s ago", ms as f64 / 1000.0),
    )
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The cluster on one screen, warnings first.
fn cluster_screen(cluster: &ClusterStatus, units: Units) -> String {
    let mut out = String::new();
    for warning in warnings(cluster) {
        let _ = writeln!(out, "\nWARNING: {warning}");
    }
    let _ = writeln!(
        out,
        "\nLog: {} operations{}",
        cluster.operations,
        redcloud_controller::status::history_summary(&cluster.log)
    );
    let reachable = cluster.controllers.iter().filter(|c| c.reachable).count();
    let _ = writeln!(
        out,
        "\nControllers ({reachable}/{} reachable)",
        cluster.controllers.len()
    );
    let mut controllers = Table::new(&[
        ("NODE", Align::Left),
        ("ADDRESS", Align::Left),
        ("STATE", Align::Left),
        ("LAST HEARD", Align::Right),
        ("OPS IT LACKS", Align::Right),
        ("OPS WE LACK", Align::Right),
        ("CLOCK", Align::Right),
    ])
    .indented(2);
    for c in &cluster.controllers {
        let state = match (c.is_self, c.reachable) {
            (true, _) => "this node",
            (false, true) => "reachable",
            (false, false) => "UNREACHABLE",
        };
        let clock = c
            .clock_offset_ms
            .map_or_else(|| "-".to_owned(), signed_duration);
        let clock = if c.clock_skewed || c.refused_ahead_ms.is_some() {
            format!("{clock} !")
        } else {
            clock
        };
        controllers.row(vec![
            c.node_id.to_string(),
            c.address.clone(),
            state.to_owned(),
            ago(c.last_heard_ms_ago),
            count(c.operations_behind),
            count(c.operations_ahead),
            clock,
        ]);
    }
    out.push_str(&controllers.render());
    let healthy = cluster.chunkservers.iter().filter(|c| c.healthy).count();
    let _ = writeln!(
        out,
        "\nChunkservers ({healthy}/{} healthy)",
        cluster.chunkservers.len()
    );
    let mut chunkservers = Table::new(&[
        ("NODE", Align::Left),
        ("ADDRESS", Align::Left),
        ("STATE", Align::Left),
        ("LAST HEARTBEAT", Align::Right),
        ("CAPACITY", Align::Right),
        ("USED", Align::Right),
        ("CHUNKS", Align::Right),
        ("MISSING", Align::Right),
    ])
    .indented(2);
    for c in &cluster.chunkservers {
        chunkservers.row(vec![
            c.node_id.clone(),
            c.address.clone(),
            if c.healthy { "healthy" } else { "FAILED" }.to_owned(),
            ago(c.last_heartbeat_ms_ago),
            units.size(c.capacity_bytes),
            units.size(c.used_bytes),
            c.chunks.to_string(),
            count(c.missing_chunks),
        ]);
    }
    out.push_str(&chunkservers.render());
    let r = &cluster.replication;
    let percent = if r.referenced_chunks == 0 {
        100.0
    } else {
        r.fully_replicated_chunks as f64 * 100.0 / r.referenced_chunks as f64
    };
    let _ = writeln!(
        out,
        "\nReplication: {}/{} chunks on every live chunkserver ({percent:.1}%), {} under-replicated, {} on no live chunkserver (as of {})",
        r.fully_replicated_chunks,
        r.referenced_chunks,
        r.under_replicated_chunks,
        r.unavailable_chunks,
        ago(r.as_of_ms_ago),
    );
    let p = &cluster.repair;
    let _ = writeln!(
        out,
        "Repair: {} copies queued, {} made, {} failed in {} rounds; collection: {} candidates, {} waiting for every controller, {} collected{}",
        p.queued_copies,
        p.copies_made,
        p.copies_failed,
        p.rounds,
        p.gc_candidates,
        p.gc_waiting,
        p.gc_deleted,
        p.gc_blocked
            .as_deref()
            .map(|why| format!(
                " (waiting {} s: {why})",
                p.gc_blocked_for_ms.unwrap_or(0) / 1000
            ))
            .unwrap_or_default(),
    );
    if let Some(unblock) = &p.gc_unblock {
        let _ = writeln!(out, "  To unblock collection, {unblock}");
    }
    out
}

#[cfg(test)]
mod tests {
    use redcloud_controller::status::{
        ClockStatus, ControllerStatus, DiskFullStatus, RepairStatus, ReplicationStatus,
    };

    use super::*;

    fn controller(node_id: &str, is_self: bool, clock_offset_ms: Option<i64>) -> ControllerStatus {
        ControllerStatus {
            node_id: node_id.to_owned(),
            address: "127.0.0.1:8001".to_owned(),
            is_self,
            reachable: true,
            last_heard_ms_ago: None,
            operations_behind: Some(0),
            operations_ahead: Some(0),
            clock_offset_ms,
            clock_skewed: clock_offset_ms.is_some(),
            refused_ahead_ms: clock_offset_ms.map(|_| 900_000),
        }
    }

    #[test]
    fn the_screen_opens_with_a_full_disk_and_a_clock_far_off() {
        let cluster = ClusterStatus {
            node_id: "00000000000000aa".to_owned(),
            operations: 7,
            controllers: vec![
                controller("00000000000000aa", true, None),
                controller("00000000000000bb", false, Some(900_000)),
            ],
            chunkservers: Vec::new(),
            replication: ReplicationStatus::default(),
            repair: RepairStatus::default(),
            insecure: false,
            disk_full: Some(DiskFullStatus {
                since_unix_ms: 1_800_000_000_000,
                for_ms: 65_000,
                reason: "the disk holding the log is full: no space left on device (ENOSPC)"
                    .to_owned(),
            }),
            log: redcloud_controller::status::LogStatus {
                held_operations: 2,
                truncated_operations: 5,
                snapshot_operations: Some(6),
                snapshot_bytes: Some(40_960),
                snapshot_age_ms: Some(90_000),
            },
            clock: Some(ClockStatus {
                offset_ms: -900_000,
                peers: 1,
                skewed: true,
                refused_by: Vec::new(),
            }),
        };
        let screen = cluster_screen(&cluster, Units::default());
        assert!(
            screen.starts_with(
                "\nWARNING: Disk full since 2027-01-15T08:00:00.000000 UTC (1 min 5 s)"
            ),
            "{screen}"
        );
        assert!(
            screen.contains("\nWARNING: Controller 00000000000000bb: its clock is 15 min 0 s ahead of this one's; its operations are refused"),
            "{screen}"
        );
        let peer_row = screen
            .lines()
            .find(|line| line.trim_start().starts_with("00000000000000bb"))
            .unwrap();
        assert!(peer_row.ends_with("+15 min 0 s !"), "{peer_row}");
        assert!(
            screen.contains("\nLog: 7 operations, 2 in its log and 5 older ones only in its snapshot; snapshot of 6 operations (40 KiB) taken 1 min 30 s ago\n"),
            "{screen}"
        );
    }
}
