//! `redcloud up`: a whole local cluster in this one process: controllers on port 8000 and the
//! ports after it, chunkservers on free ports, data under one directory, until Ctrl-C. Every
//! listener is on loopback, so the nodes need no cluster secret between them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What to start.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Controllers to start, on the listen port and the ports after it; they replicate to
    /// each other.
    #[arg(long, default_value_t = 1)]
    pub controllers: usize,
    /// Chunkservers to start.
    #[arg(long, default_value_t = 3)]
    pub chunkservers: usize,
    /// Address the first controller serves on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Address the first controller serves S3 on; the others use the ports after it.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub s3_listen: SocketAddr,
    /// Domain for virtual-host-style S3 requests (`BUCKET.DOMAIN`); path style always works.
    #[arg(long)]
    pub s3_root_domain: Option<String>,
    /// How long an S3 multipart upload may stay unfinished before it is aborted.
    #[arg(long, default_value = "7d")]
    pub s3_multipart_expiry: humantime::Duration,
    /// The largest file an upload may store, in bytes, whether in one request or as S3
    /// multipart parts (no limit but the file format's by default).
    #[arg(long)]
    pub upload_max_bytes: Option<u64>,
    /// Directory for all data (kept between runs).
    #[arg(long, default_value = "redcloud-data")]
    pub data_dir: PathBuf,
    /// PEM certificate chain: controllers serve clients over https:// (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Runs the cluster until Ctrl-C (or SIGTERM).
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    redcloud_types::process::init_logging();
    let shutdown = redcloud_types::process::shutdown_on_signal();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let mut listeners = Vec::new();
    for i in 0..args.controllers.max(1) {
        let client = bind_nth(args.listen, i).await?;
        let s3 = bind_nth(args.s3_listen, i).await?;
        // Cluster listeners always stay on loopback: `up` runs no secret.
        let cluster = TcpListener::bind("127.0.0.1:0").await?;
        listeners.push(redcloud_controller::Listeners {
            client,
            cluster,
            s3,
        });
    }
    let s3_addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.s3.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.client.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let cluster_addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.cluster.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, listeners) in listeners.into_iter().enumerate() {
        let mut controller =
            redcloud_controller::Config::for_test(data_dir.join(format!("controller-{i}")));
        controller.listen = listeners.client.local_addr()?;
        controller.cluster_listen = listeners.cluster.local_addr()?;
        controller.s3_listen = listeners.s3.local_addr()?;
        controller.s3_multipart_expiry = args.s3_multipart_expiry;
        controller.upload_max_bytes = args.upload_max_bytes;
        controller.s3_root_domain.clone_from(&args.s3_root_domain);
        controller.tls_cert.clone_from(&args.tls_cert);
        controller.tls_key.clone_from(&args.tls_key);
        controller.peers = cluster_addresses
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        tasks.spawn(run_controller(controller, listeners, shutdown.clone()));
    }
    for i in 0..args.chunkservers {
        let mut config = redcloud_chunkserver::Config::for_test(
            data_dir.join(format!("chunkserver-{i}")),
            cluster_addresses.clone(),
        );
        config.heartbeat_interval_ms = 1000;
        let listeners = redcloud_chunkserver::Listeners::bind(&config).await?;
        tasks.spawn(run_chunkserver(config, listeners, shutdown.clone()));
    }
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "RedCloud Files is running at {} ({} controller(s), {} chunkservers); data in {}. Press Ctrl-C to stop.",
        addresses
            .iter()
            .map(|a| format!("{scheme}://{a}"))
            .collect::<Vec<_>>()
            .join(", "),
        addresses.len(),
        args.chunkservers,
        data_dir.display()
    );
    if let Some(first) = addresses.first() {
        println!(
            "Open {scheme}://{first}/app/ in a browser, or start with `redcloud register NAME PASSWORD`."
        );
    }
    println!(
        "S3 (region redcloud, keys from `redcloud s3-key create`): {}",
        s3_addresses
            .iter()
            .map(|a| format!("{scheme}://{a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut failure = None;
    while let Some(finished) = tasks.join_next().await {
        if let Ok(Err(error)) | Err(error) = finished.map_err(anyhow::Error::from) {
            failure.get_or_insert(error);
            shutdown.cancel();
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    failure.map_or(Ok(()), Err)
}

/// Binds the `i`th port from `first` (any free port when `first`'s is 0).
async fn bind_nth(first: SocketAddr, i: usize) -> anyhow::Result<TcpListener> {
    let port = if first.port() == 0 {
        0
    } else {
        first.port() + i as u16
    };
    let address = SocketAddr::new(first.ip(), port);
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}: is another RedCloud running?"))
}

async fn run_controller(
    config: redcloud_controller::Config,
    listeners: redcloud_controller::Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    redcloud_controller::run(config, listeners, shutdown)
        .await
        .context("controller")
}

async fn run_chunkserver(
    config: redcloud_chunkserver::Config,
    listeners: redcloud_chunkserver::Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    redcloud_chunkserver::run(config, listeners, shutdown)
        .await
        .context("chunkserver")
}
