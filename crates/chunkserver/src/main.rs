//! `redcloud-chunkserver`: parses the configuration, installs logging and a panic hook, and
//! serves until SIGINT or SIGTERM.

use clap::Parser;
use redcloud_chunkserver::{Config, Listeners, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    redcloud_types::process::init_logging();
    let listeners = Listeners::bind(&config).await?;
    let shutdown = redcloud_types::process::shutdown_on_signal();
    run(config, listeners, shutdown).await?;
    Ok(())
}
