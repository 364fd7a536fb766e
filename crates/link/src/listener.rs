//! Accepting connections for axum, in plain TCP or TLS.
//!
//! TLS handshakes run on their own tasks, bounded in number and time, so a client that opens a
//! connection and never speaks holds one handshake slot for at most [`HANDSHAKE_TIMEOUT`] and
//! never stalls `accept`. Only finished handshakes reach the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const HANDSHAKES_IN_FLIGHT: usize = 256;
/// Connections handed over but not yet taken by the server.
const ACCEPTED_QUEUE: usize = 64;

/// A connection as the server sees it.
pub type ServedStream = Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;

/// A listener that hands axum only connections that are ready to serve.
pub struct ServeListener {
    incoming: mpsc::Receiver<(ServedStream, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for ServeListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// The address a connection came from, for handlers (`ConnectInfo<RemoteAddr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, ServeListener>> for RemoteAddr {
    fn connect_info(stream: IncomingStream<'_, ServeListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl ServeListener {
    /// Serves `listener` with TLS when `tls` is given, plain TCP otherwise.
    pub fn new(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (sender, incoming) = mpsc::channel(ACCEPTED_QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), sender));
        Self {
            incoming,
            local,
            acceptor,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sender: mpsc::Sender<(ServedStream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    loop {
        let (tcp, remote) = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Some(tls) = &tls else {
            if sender.send((Either::Left(tcp), remote)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(slot) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        let tls = tls.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = sender.send((Either::Right(stream), remote)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake refused");
                }
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for ServeListener {
    type Io = ServedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends once this listener is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
