//! `redcloud cluster …`: operator commands, sent to a controller's cluster listener (port 8001
//! by default) with the cluster secret.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use redcloud_link::ClusterClient;
use serde_json::{Value, json};

use super::cluster_link;

/// Longest a cluster command waits to connect, and for its answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest answer read.
const ANSWER_MAX_BYTES: usize = 64 * 1024;

/// `redcloud cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    token: redcloud_types::ClusterTokenArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Retire a controller or chunkserver that is gone for good, so that garbage collection
    /// stops waiting for it (`redcloud status` names the controller it waits for). The
    /// operations a retired controller made stay valid; it takes no more writes and rejoins
    /// only on an empty data directory, under a new id.
    Forget {
        /// The node id, as `redcloud status` shows it.
        node_id: String,
        /// Retire it even though it was heard from recently (within the controllers'
        /// `--gc-report-max-age-ms`, a minute by default).
        #[arg(long)]
        force: bool,
    },
}

/// Runs `redcloud cluster`; `server` is the global `--server`, a cluster listener.
pub async fn run(args: ClusterArgs, server: &str, json: bool) -> anyhow::Result<()> {
    let link = cluster_link(&args.token)?;
    let client = ClusterClient::new(&link, CONNECT_TIMEOUT, CALL_TIMEOUT);
    let address = server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    match args.command {
        ClusterCommand::Forget { node_id, force } => {
            let body = json!({"node_id": node_id, "force": force}).to_string();
            let reply = client
                .post(
                    address,
                    "/internal/forget",
                    &[],
                    body.into(),
                    ANSWER_MAX_BYTES,
                )
                .await
                .with_context(|| format!("cannot reach the cluster listener at {address}"))?;
            let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            if reply.status == 404 && answer["code"].is_null() {
                bail!(
                    "{address} has no cluster commands: name a controller's cluster listener (port 8001 by default), not its client port"
                );
            }
            if !reply.status.is_success() {
                let detail = answer["detail"].as_str().map_or_else(
                    || String::from_utf8_lossy(&reply.body).into_owned(),
                    str::to_owned,
                );
                bail!("{detail}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else if answer["already_retired"] == true {
                println!(
                    "{} {node_id} was already retired.",
                    answer["kind"].as_str().unwrap_or("node")
                );
            } else {
                println!(
                    "Retired {} {node_id}: collection no longer waits for it. Every controller learns of it through the log.",
                    answer["kind"].as_str().unwrap_or("node")
                );
            }
            Ok(())
        }
    }
}
