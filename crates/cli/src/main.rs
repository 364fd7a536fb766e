//! `redcloud`: the RedCloud Files command line.

mod client;
mod commands;
mod config;
mod progress;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::Context;

/// mimalloc rather than the system allocator: `log rebuild` decodes operations on one thread
/// and folds them into the read model on another, and with the system allocator every
/// operation freed on the second thread contends for the first thread's arena lock. Built
/// without transparent huge pages (the `no_thp` feature, set in the workspace): each first
/// touch of a huge page zeroes 2 MiB at once, and where the memory comes cold from a VM's
/// host, as on the first run of a command, a million-operation rebuild took 2.1 s with them
/// against 1.6 s without (1.4 s against 1.6 s when run again at once).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Files by tag, on a RedCloud cluster.
#[derive(Parser, Debug)]
#[command(name = "redcloud", version)]
struct Cli {
    /// The controller to talk to.
    #[arg(
        long,
        global = true,
        env = "REDCLOUD_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    server: String,
    /// PEM file of the certificates to trust for an `https://` server: its CA, or a whole
    /// system bundle such as /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, global = true, env = "REDCLOUD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print the server's answers as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Show sizes as exact byte counts.
    #[arg(long, global = true)]
    bytes: bool,
    /// Show times in UTC rather than the local time zone.
    #[arg(long, global = true)]
    utc: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create an account; its key is kept in the config file.
    Register { username: String, password: String },
    /// Log in; the new key replaces the previous one.
    Login { username: String, password: String },
    /// Upload files with tags (replacing your files of the same name).
    Add {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Comma-separated tags.
        #[arg(long, short)]
        tags: String,
    },
    /// List your files carrying every TAG (all of them without tags).
    List { tags: Vec<String> },
    /// List the tags on your files, with how many files carry each.
    Tags,
    /// Download a file by name.
    Download {
        name: String,
        /// Where to write it (a file, or a directory to put it in).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Delete your files carrying every TAG.
    Delete {
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Add tags to your files carrying every QUERY_TAG.
    AddTags {
        #[arg(required = true)]
        query_tags: Vec<String>,
        /// Comma-separated tags to add.
        #[arg(long, short)]
        tags: String,
    },
    /// Remove tags from your files carrying every QUERY_TAG.
    DeleteTags {
        #[arg(required = true)]
        query_tags: Vec<String>,
        /// Comma-separated tags to remove.
        #[arg(long, short)]
        tags: String,
    },
    /// Make, list or delete your S3 access keys.
    #[command(name = "s3-key", subcommand)]
    S3Key(S3KeyCommand),
    /// Show whether the server is up and ready.
    Status,
    /// Show the account behind the saved key, and whether another account registered its
    /// name first.
    Whoami,
    /// An interactive prompt (the earlier CLI's syntax).
    Shell,
    /// Run a whole local cluster until Ctrl-C.
    Up(commands::up::UpArgs),
    /// Read a controller's event log: operations, frontier, digest, rebuilds, diffs between
    /// nodes and the history of an entity.
    Log(commands::log::LogArgs),
    /// Operator commands on the cluster (through a controller's cluster listener, with the
    /// cluster secret).
    Cluster(commands::cluster::ClusterArgs),
}

/// What `redcloud s3-key` does.
#[derive(Subcommand, Debug)]
enum S3KeyCommand {
    /// Make a new access key; its secret is shown this once.
    Create,
    /// List your access keys (ids and dates; secrets are never shown again).
    List,
    /// Delete an access key: it stops working on every controller, for good.
    Delete { key_id: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let saved = config::load()?;
    let ctx = Context {
        client: client::Client::new(
            &cli.server,
            cli.ca_cert.as_deref(),
            saved.api_key,
            saved.frontier.clone(),
        )?,
        json: cli.json,
        units: table::Units {
            bytes: cli.bytes,
            utc: cli.utc,
        },
    };
    let tags = |raw: &str| commands::split_tags(&[raw.to_owned()]);
    let outcome = match cli.command {
        Command::Register { username, password } => {
            commands::register(&ctx, &username, &password).await
        }
        Command::Login { username, password } => commands::login(&ctx, &username, &password).await,
        Command::Add { files, tags: raw } => {
            commands::add(&ctx, &files, &tags(&raw).join(",")).await
        }
        Command::List { tags: query } => commands::list(&ctx, &commands::split_tags(&query)).await,
        Command::Tags => commands::tags(&ctx).await,
        Command::Download { name, output } => {
            commands::download(&ctx, &name, output.as_deref()).await
        }
        Command::Delete { tags: query } => {
            commands::delete(&ctx, &commands::split_tags(&query)).await
        }
        Command::AddTags {
            query_tags,
            tags: raw,
        } => commands::add_tags(&ctx, &commands::split_tags(&query_tags), &tags(&raw)).await,
        Command::DeleteTags {
            query_tags,
            tags: raw,
        } => commands::delete_tags(&ctx, &commands::split_tags(&query_tags), &tags(&raw)).await,
        Command::Status => commands::status(&ctx).await,
        Command::Whoami => commands::whoami(&ctx).await,
        Command::S3Key(S3KeyCommand::Create) => commands::create_s3_key(&ctx).await,
        Command::S3Key(S3KeyCommand::List) => commands::s3_keys(&ctx).await,
        Command::S3Key(S3KeyCommand::Delete { key_id }) => {
            commands::delete_s3_key(&ctx, &key_id).await
        }
        Command::Shell => commands::shell::run(&ctx).await,
        Command::Up(args) => commands::up::run(args).await,
        Command::Log(args) => commands::log::run(args, &cli.server, cli.json).await,
        Command::Cluster(args) => commands::cluster::run(args, &cli.server, cli.json).await,
    };
    commands::remember_frontier(&ctx)?;
    outcome
}
