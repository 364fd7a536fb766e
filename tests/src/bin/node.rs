//! `redcloud-test-node controller|chunkserver [flags]`: one controller or chunkserver process,
//! exactly as the real binaries run it, for the scenario tests to start and kill.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    redcloud_types::process::init_logging();
    let shutdown = redcloud_types::process::shutdown_on_signal();
    match role.as_str() {
        "controller" => {
            let config = redcloud_controller::Config::parse_from(
                std::iter::once("redcloud-controller".to_owned()).chain(args),
            );
            let listeners = redcloud_controller::Listeners::bind(&config).await?;
            redcloud_controller::run(config, listeners, shutdown).await?;
        }
        "chunkserver" => {
            let config = redcloud_chunkserver::Config::parse_from(
                std::iter::once("redcloud-chunkserver".to_owned()).chain(args),
            );
            let listeners = redcloud_chunkserver::Listeners::bind(&config).await?;
            redcloud_chunkserver::run(config, listeners, shutdown).await?;
        }
        other => anyhow::bail!("unknown role {other:?}: expected controller or chunkserver"),
    }
    Ok(())
}
