//! `redcloud log …`: prints what [`redcloud_cli::logtool`] finds, as lines or `--json`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use redcloud_cli::logtool::{self, Filter, Reader, Source};
use redcloud_controller::inspect::{self, Entity};
use serde::Serialize;

/// `redcloud log`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Read this controller data directory (a private copy: safe while the node runs) instead
    /// of asking the controller at --server; before or after the verb.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    token: redcloud_types::ClusterTokenArgs,
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Subcommand, Debug)]
enum LogCommand {
    /// Operations, one line each, optionally filtered.
    Show {
        /// Only operations of this origin (16 hex digits).
        #[arg(long)]
        origin: Option<String>,
        /// Only seqs at or above this.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Only seqs at or below this.
        #[arg(long)]
        to_seq: Option<u64>,
        /// Only operations touching user:NAME, file:UUID, name:FILENAME or tag:TAG.
        #[arg(long)]
        entity: Option<String>,
        /// Only operations stamped at or after this time (ms since the Unix epoch).
        #[arg(long)]
        since_ms: Option<u64>,
        /// Only operations stamped at or before this time (ms since the Unix epoch).
        #[arg(long)]
        until_ms: Option<u64>,
    },
    /// The node's frontier: the highest seq it holds of every origin.
    Frontier,
    /// The node's read-model digest.
    Digest,
    /// Replays the log into a fresh read model and prints its digest and the replay speed.
    Rebuild {
        /// Only operations within this frontier (origin:seq,origin:seq).
        #[arg(long)]
        until: Option<String>,
        /// Leave out these operations (origin:seq,origin:seq).
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
    },
    /// What two nodes (data directories or http:// URLs) hold differently.
    Diff {
        /// The first node.
        a: String,
        /// The second node.
        b: String,
    },
    /// Every operation that touched an entity, and the rule that decided each step.
    History {
        /// user:NAME, file:UUID, name:FILENAME or tag:TAG.
        entity: String,
    },
}

fn entity(text: &str) -> anyhow::Result<Entity> {
    text.parse::<Entity>().map_err(|e| anyhow!(e))
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs `redcloud log`; `server` is the global `--server`.
pub async fn run(args: LogArgs, server: &str, json: bool) -> anyhow::Result<()> {
    let link = super::cluster_link(&args.token)?;
    let source = match &args.data_dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::parse(server),
    };
    let reader = Reader::new(source, &link)?;
    match args.command {
        LogCommand::Show {
            origin,
            from_seq,
            to_seq,
            entity: wanted,
            since_ms,
            until_ms,
        } => {
            let filter = Filter {
                origin: origin
                    .map(|o| o.parse().map_err(|e| anyhow!("--origin {o}: {e}")))
                    .transpose()?,
                from_seq,
                to_seq,
                entity: wanted.as_deref().map(entity).transpose()?,
                since_ms,
                until_ms,
            };
            let shown = logtool::show(&reader.ops().await?, &filter);
            if json {
                return print_json(&shown);
            }
            let starts = reader.state().await?.history_starts_after;
            if !starts.is_empty() {
                let after: Vec<String> = starts.iter().map(|(o, s)| format!("{o}:{s}")).collect();
                println!(
                    "history starts after {{{}}}: older operations are held only in the snapshot",
                    after.join(", ")
                );
            }
            for op in shown {
                println!("{} hlc={} deps={} {}", op.dot, op.hlc, op.deps, op.change);
            }
        }
        LogCommand::Frontier => {
            let state = reader.state().await?;
            if json {
                return print_json(&state.frontier);
            }
            for (origin, seq) in &state.frontier {
                println!("{origin}:{seq}");
            }
        }
        LogCommand::Digest => {
            let state = reader.state().await?;
            if json {
                return print_json(&state);
            }
            println!("{} ({} operations)", state.digest, state.operations);
        }
        LogCommand::Rebuild { until, exclude } => {
            let until = until
                .as_deref()
                .map(|u| inspect::parse_frontier(u).map_err(|e| anyhow!("--until: {e}")))
                .transpose()?;
            let exclude = exclude
                .iter()
                .map(|d| inspect::parse_dot(d).map_err(|e| anyhow!("--exclude: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rebuilt = logtool::rebuild(&reader, until.as_ref(), &exclude).await?;
            if json {
                return print_json(&rebuilt);
            }
            println!(
                "digest {}\n{} operations read, {} applied, in {:.2} s: {:.0} operations/s",
                rebuilt.digest,
                rebuilt.operations_read,
                rebuilt.operations_applied,
                rebuilt.seconds,
                rebuilt.operations_per_second
            );
            if rebuilt.from_snapshot > 0 {
                println!(
                    "started from the snapshot the log starts after ({} operations)",
                    rebuilt.from_snapshot
                );
            }
        }
        LogCommand::Diff { a, b } => {
            let (a, b) = (Source::parse(&a), Source::parse(&b));
            let diff = logtool::diff(
                &Reader::new(a.clone(), &link)?,
                &Reader::new(b.clone(), &link)?,
            )
            .await?;
            if json {
                return print_json(&diff);
            }
            if diff.is_empty() {
                println!("{a} and {b} hold the same operations and the same read model");
                return Ok(());
            }
            for (side, other, missing) in [(&a, &b, &diff.only_in_a), (&b, &a, &diff.only_in_b)] {
                for m in missing {
                    println!(
                        "only in {side} (lacking in {other}): {}:{}..={}",
                        m.origin, m.from, m.to
                    );
                }
            }
            for e in &diff.entities {
                println!("{} differs", e.entity);
                println!("  {a}: {}", e.a.as_deref().unwrap_or("(absent)"));
                println!("      decided by {}", e.ops_a.join(" "));
                println!("  {b}: {}", e.b.as_deref().unwrap_or("(absent)"));
                println!("      decided by {}", e.ops_b.join(" "));
            }
            println!("(* marks an operation the other node lacks)");
        }
        LogCommand::History { entity: wanted } => {
            let steps = logtool::history(&reader, &entity(&wanted)?).await?;
            if json {
                return print_json(&steps);
            }
            if steps.is_empty() {
                println!("no operation touched {wanted}");
            }
            for step in steps {
                println!(
                    "{} hlc={} deps={}\n    {}\n    rule: {}",
                    step.dot, step.hlc, step.deps, step.change, step.rule
                );
            }
        }
    }
    Ok(())
}
