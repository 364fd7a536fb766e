//! RedCloud's controller: keeps metadata as a replicated event log projected into SQLite,
//! serves the HTTP and gRPC client APIs on its client listener and other nodes on its cluster
//! listener (mutual TLS), and places chunks on chunkservers.

mod chunks;
mod clock;
mod cluster;
mod config;
mod download;
mod error;
mod grpc;
mod http;
pub mod inspect;
mod internal;
mod limits;
mod log_worker;
mod meta;
mod metrics;
mod multipart;
mod peers;
mod readmodel;
mod repair;
mod retired;
mod s3_backend;
mod service;
mod snapshot;
pub mod status;
mod throttle;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use redcloud_eventlog::{GossipConfig, NodeId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_CLUSTER_PORT};
pub use error::{ApiError, ErrorCode};
pub use meta::{ContentMd5, MetaOp};
pub use readmodel::{
    MemoryProjection, Projection, ReadModelError, conflict_names, digest as read_model_digest,
    digest_at as read_model_digest_at,
};

/// Why a controller could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The event log or read model could not be opened.
    #[error("{0}")]
    Log(#[from] log_worker::LogOpenError),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The cluster link cannot be set up (no secret on an exposed listener, a weak secret,
    /// unreadable TLS files).
    #[error("{0}")]
    Link(#[from] redcloud_link::LinkError),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(#[from] std::io::Error),
}

/// The sockets a controller serves: clients on two (its API, S3), other nodes on the third.
pub struct Listeners {
    /// The client listener (`--listen`).
    pub client: TcpListener,
    /// The cluster listener (`--cluster-listen`).
    pub cluster: TcpListener,
    /// The S3 listener (`--s3-listen`).
    pub s3: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`; an address in use is named with its flag.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let bind = |address, flag| async move {
            TcpListener::bind(address)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{flag} {address}: {e}")))
        };
        Ok(Self {
            client: bind(config.listen, "--listen").await?,
            cluster: bind(config.cluster_listen, "--cluster-listen").await?,
            s3: bind(config.s3_listen, "--s3-listen").await?,
        })
    }
}

fn node_id(config: &Config) -> Result<NodeId, RunError> {
    match &config.node_id {
        Some(text) => text
            .parse()
            .map_err(|e| RunError::Config(format!("--node-id: {e}"))),
        None => redcloud_types::node_id::load_or_create(
            &config.data_dir,
            &redcloud_types::advertise::hostname(),
            rand::random(),
        )
        .map(NodeId::new)
        .map_err(|e| RunError::Config(format!("node id in {}: {e}", config.data_dir.display()))),
    }
}

/// Serves on `listeners` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        RunError::Config(format!("data directory {}: {e}", config.data_dir.display()))
    })?;
    config.validate().map_err(RunError::Config)?;
    let node_id = node_id(&config)?;
    let cluster_token = config
        .cluster_token()
        .map_err(|e| RunError::Config(format!("cluster secret file: {e}")))?;
    let cluster_local = listeners.cluster.local_addr()?;
    let redcloud_link::NodeLink { link, exposed } = redcloud_link::choose_link(
        cluster_token.as_deref(),
        config.cluster_token.insecure,
        cluster_local,
    )?;
    let client_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(redcloud_link::client_listener_config(cert, key)?),
        _ => None,
    };
    let gossip = GossipConfig {
        anti_entropy_interval: Duration::from_millis(config.gossip_interval_ms.max(1)),
        ..GossipConfig::default()
    };
    let registry = Arc::new(cluster::Registry::new(
        Duration::from_millis(config.chunkserver_timeout_ms),
        link.clone(),
    ));
    // Messages for peers wait here; when the sender falls behind they are dropped, and
    // anti-entropy repeats whatever mattered.
    let (outbound, outbound_rx) = tokio::sync::mpsc::channel(4096);
    let data_dir = config.data_dir.clone();
    let worker_registry = Arc::clone(&registry);
    let runtime = tokio::runtime::Handle::current();
    let metrics = Arc::new(metrics::Metrics::new());
    let worker_metrics = Arc::clone(&metrics);
    let clock = clock::WallClock::shifted_by(config.clock_offset_ms);
    if config.clock_offset_ms != 0 {
        tracing::warn!(
            clock_offset_ms = config.clock_offset_ms,
            "wall clock shifted by --clock-offset-ms, a test aid"
        );
    }
    let retired = Arc::new(retired::Retired::new(node_id));
    let worker_retired = Arc::clone(&retired);
    let snapshots = Arc::new(
        snapshot::Snapshots::open(&config.data_dir, clock)
            .map_err(|e| RunError::Config(e.to_string()))?,
    );
    let worker_snapshots = Arc::clone(&snapshots);
    // One request at a time: the core asks again at every round while it needs a snapshot.
    let (snapshot_needed, snapshot_needed_rx) = tokio::sync::mpsc::channel(1);
    let (log, store) = tokio::task::spawn_blocking(move || {
        log_worker::start(
            &data_dir,
            node_id,
            gossip,
            log_worker::Shared {
                registry: worker_registry,
                metrics: worker_metrics,
                clock,
                retired: worker_retired,
                snapshots: worker_snapshots,
                snapshot_needed,
            },
            outbound,
            runtime,
        )
    })
    .await
    .map_err(|e| RunError::Config(format!("log start task failed: {e}")))??;
    let snapshotter = snapshot::Snapshotter::open(
        &config.data_dir,
        store,
        Arc::clone(&snapshots),
        config.snapshots().retention,
        clock,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    let reads = Arc::new(readmodel::ReadPool::new(
        &config.data_dir.join("readmodel.sqlite"),
    ));
    let (known, retired_nodes) = {
        let reads = Arc::clone(&reads);
        tokio::task::spawn_blocking(move || reads.read(|r| Ok((r.chunkservers()?, r.retired()?))))
            .await
            .map_err(|e| RunError::Config(format!("read model task failed: {e}")))?
            .map_err(|e| RunError::Config(format!("read model: {e}")))?
    };
    for (id, address) in &known {
        registry.learn(id, address);
    }
    retired.learn(&retired_nodes);
    let chunk_io = chunks::ChunkIo::new(
        Arc::clone(&registry),
        chunks::ChunkTimeouts {
            call: Duration::from_millis(config.chunk_io_timeout_ms),
            straggler: Duration::from_millis(config.chunk_write_timeout_ms),
        },
        config.min_replicas,
    );
    let limits = upload::UploadLimits {
        chunk_size: usize::try_from(
            config
                .chunk_size_bytes
                .clamp(1, redcloud_types::MAX_CHUNK_BYTES),
        )
        .map_err(|e| RunError::Config(format!("--chunk-size-bytes: {e}")))?,
        pipeline_chunks: config.upload_pipeline_chunks.max(1),
        max_bytes: config.upload_max_bytes,
        deadline: config.upload_deadline(),
    };
    let service = service::Service {
        log,
        reads,
        chunks: chunk_io,
        limits,
        registering: tokio::sync::Mutex::new(()),
        counted_creations: tokio::sync::Mutex::new(()),
        auth: throttle::AuthGate::new(config.auth_gate()),
        clock,
        sealer: link.sealer(),
    };
    let local = listeners.client.local_addr()?;
    let mut seeds = config.peer_addresses();
    if !config.discovery_dns.is_empty() {
        seeds.push(format!("{}:{}", config.discovery_dns, cluster_local.port()));
    }
    let advertise = redcloud_types::advertise::Advertise::new(
        config.advertise.clone(),
        cluster_local,
        &redcloud_types::resolve_all(&seeds).await,
    );
    let membership = Arc::new(peers::Membership::new(
        node_id,
        advertise.clone(),
        Arc::clone(&retired),
    ));
    tokio::spawn(peers::run_sender(
        Arc::clone(&membership),
        Arc::clone(&metrics),
        outbound_rx,
        link.clone(),
        clock,
        shutdown.clone(),
    ));
    let (joined, mut joined_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(peers::run_discovery(
        Arc::clone(&membership),
        Arc::clone(&registry),
        seeds.clone(),
        link.clone(),
        Duration::from_millis(config.discovery_interval_ms.max(10)),
        joined,
        shutdown.clone(),
    ));
    let joined_log = service.log.clone();
    tokio::spawn(async move {
        while let Some(peer) = joined_rx.recv().await {
            joined_log.peer_joined(peer).await;
        }
    });
    if service.log.frontier().borrow().get(node_id) == redcloud_eventlog::Seq::ZERO {
        // Recorded before anything else, so that no controller collects data while this one
        // may still need it.
        service
            .log
            .append(vec![meta::MetaOp::ControllerSeen {
                node_id: node_id.to_string(),
                address: membership.address(),
            }])
            .await
            .map_err(|e| {
                RunError::Config(format!("cannot record this controller in the log: {e}"))
            })?;
    }
    let ledger = Arc::new(status::RepairLedger::default());
    let repair = repair::Repair::new(
        Arc::clone(&registry),
        Arc::clone(&service.reads),
        service.log.clone(),
        Arc::clone(&membership),
        repair::RepairConfig {
            interval: Duration::from_millis(config.repair_interval_ms.max(10)),
            copies_per_round: config.repair_copies_per_round,
            concurrency: config.repair_concurrency_max,
            call_timeout: Duration::from_millis(config.chunk_io_timeout_ms),
            gc_grace: Duration::from_millis(config.gc_grace_ms),
            gc_report_max_age: Duration::from_millis(config.gc_report_max_age_ms),
            gc_deletions_per_round: config.gc_deletions_per_round,
            retire_after: config.retire_after(),
        },
        Arc::clone(&ledger),
        Arc::clone(&retired),
    );
    tokio::spawn(repair::run(repair, shutdown.clone()));
    tokio::spawn(snapshot::run_rounds(
        service.log.clone(),
        snapshotter,
        config.snapshots(),
        Arc::clone(&metrics),
        shutdown.clone(),
    ));
    tokio::spawn(snapshot::run_bootstrap(
        service.log.clone(),
        Arc::clone(&membership),
        Arc::clone(&snapshots),
        snapshot::snapshot_client(&link),
        snapshot_needed_rx,
        shutdown.clone(),
    ));
    let state = Arc::new(http::AppState {
        service,
        registry,
        insecure: exposed,
        node_id,
        membership,
        catch_up_timeout: Duration::from_millis(config.catch_up_timeout_ms),
        catch_up_waiters: tokio::sync::Semaphore::new(http::CATCH_UP_WAITERS),
        metrics,
        ledger,
        retired,
        snapshots,
        alive_within: Duration::from_millis(config.gc_report_max_age_ms),
    });

    tracing::info!(
        node_id = %node_id,
        listen = %local,
        cluster_listen = %cluster_local,
        client_tls = client_tls.is_some(),
        advertise = %advertise.address(),
        seeds = ?seeds,
        data_dir = %config.data_dir.display(),
        chunk_size_bytes = limits.chunk_size,
        min_replicas = config.min_replicas,
        known_chunkservers = known.len(),
        cluster_link = if link.is_secure() { "mutual TLS" } else { "plain TCP" },
        "controller starting"
    );
    if exposed {
        tokio::spawn(redcloud_link::remind_insecure(
            cluster_local,
            shutdown.clone(),
        ));
    }

    let grpc = redcloud_proto::files::files_server::FilesServer::new(grpc::FilesApi::new(
        Arc::clone(&state),
    ))
    .max_decoding_message_size(cluster::MAX_MESSAGE_BYTES);
    // gRPC and HTTP share the client port: gRPC calls live under the service's own path prefix.
    let clients =
        http::router(Arc::clone(&state)).route_service("/redcloud.files.v1.Files/{*method}", grpc);
    let s3_local = listeners.s3.local_addr()?;
    let s3 = redcloud_s3::router(
        Arc::new(s3_backend::S3Backend::new(Arc::clone(&state))),
        redcloud_s3::GatewayConfig {
            region: config.s3_region.clone(),
            root_domain: config.s3_root_domain.clone(),
        },
    );
    tokio::spawn(multipart::run_sweeps(
        Arc::clone(&state),
        *config.s3_multipart_expiry,
        shutdown.clone(),
    ));
    let nodes = internal::router(state);
    let s3_server = axum::serve(
        redcloud_link::ServeListener::new(listeners.s3, client_tls.clone()),
        s3,
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let client_server = axum::serve(
        redcloud_link::ServeListener::new(listeners.client, client_tls),
        clients.into_make_service_with_connect_info::<redcloud_link::RemoteAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let cluster_server = axum::serve(
        redcloud_link::ServeListener::new(listeners.cluster, link.server_config()),
        nodes,
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tracing::info!(s3_listen = %s3_local, s3_region = %config.s3_region, "S3 listener ready");
    let served = tokio::try_join!(
        client_server.into_future(),
        cluster_server.into_future(),
        s3_server.into_future()
    );
    shutdown.cancel();
    served?;
    tracing::info!("controller stopped");
    Ok(())
}
