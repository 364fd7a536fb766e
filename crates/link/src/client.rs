//! The HTTP client nodes use to call each other's cluster listeners: HTTP/1.1 over the
//! cluster link, with a connect deadline, a deadline on the whole call, and a bound on the
//! answer's size. Connections are pooled per address.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::error::ClusterHttpError;
use crate::identity::{CLUSTER_SERVER_NAME, ClusterLink};

/// Idle pooled connections are closed after this long, so one that died during a partition
/// is not waited on after it heals.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A call's answer.
#[derive(Debug)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its body, whole.
    pub body: Bytes,
}

/// Calls other nodes' cluster listeners.
#[derive(Clone, Debug)]
pub struct ClusterClient {
    http: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl ClusterClient {
    /// A client on `link` whose connections must open within `connect_timeout` and whose calls
    /// must finish within `timeout`.
    pub fn new(link: &ClusterLink, connect_timeout: Duration, timeout: Duration) -> Self {
        let connector = Connector {
            tls: match link {
                ClusterLink::Tls(tls) => Some(TlsConnector::from(tls.client_config())),
                ClusterLink::Plain => None,
            },
            connect_timeout,
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self { http, timeout }
    }

    /// `GET` of `path` on the node at `address` (`host:port`), answer at most `limit` bytes.
    pub async fn get(
        &self,
        address: &str,
        path: &str,
        limit: usize,
    ) -> Result<Reply, ClusterHttpError> {
        self.call(Method::GET, address, path, &[], Bytes::new(), limit)
            .await
    }

    /// `POST` of `body` with `headers` to `path` on the node at `address`.
    pub async fn post(
        &self,
        address: &str,
        path: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
        limit: usize,
    ) -> Result<Reply, ClusterHttpError> {
        self.call(Method::POST, address, path, headers, body, limit)
            .await
    }

    /// `GET` of `path` on the node at `address`, its body streamed into a new file at `dest`
    /// (synced before this returns `Ok`). Fails if the body exceeds `limit` bytes or no byte
    /// arrives for the client's timeout; then `dest` may hold a part, for the caller to
    /// remove. A status other than 200 leaves `dest` untouched and returns the body (at most
    /// 64 KiB) as the error's detail.
    pub async fn download(
        &self,
        address: &str,
        path: &str,
        dest: &std::path::Path,
        limit: u64,
    ) -> Result<hyper::http::HeaderMap, ClusterHttpError> {
        use tokio::io::AsyncWriteExt as _;
        let request = request(Method::GET, address, path, &[], Bytes::new())?;
        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| ClusterHttpError::Timeout)?
            .map_err(|e| ClusterHttpError::Transport(error_chain(&e)))?;
        let (parts, mut body) = response.into_parts();
        if parts.status != StatusCode::OK {
            let detail =
                tokio::time::timeout(self.timeout, Limited::new(body, 64 * 1024).collect())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned())
                    .unwrap_or_default();
            return Err(ClusterHttpError::Status {
                status: parts.status.as_u16(),
                detail,
            });
        }
        let io =
            |e: std::io::Error| ClusterHttpError::Transport(format!("{}: {e}", dest.display()));
        let mut file = tokio::fs::File::create_new(dest).await.map_err(io)?;
        let mut written = 0u64;
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| ClusterHttpError::Timeout)?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| ClusterHttpError::Transport(error_chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            written = written.saturating_add(data.len() as u64);
            if written > limit {
                return Err(ClusterHttpError::TooLarge {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                });
            }
            file.write_all(&data).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        Ok(parts.headers)
    }

    async fn call(
        &self,
        method: Method,
        address: &str,
        path: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
        limit: usize,
    ) -> Result<Reply, ClusterHttpError> {
        let request = request(method, address, path, headers, body)?;
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| ClusterHttpError::Transport(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        ClusterHttpError::TooLarge { limit }
                    } else {
                        ClusterHttpError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClusterHttpError::Timeout)?
    }
}

/// A request for `path` on the node at `address` (`host:port`).
fn request(
    method: Method,
    address: &str,
    path: &str,
    headers: &[(HeaderName, String)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, ClusterHttpError> {
    let uri: Uri = format!("http://{address}{path}")
        .parse()
        .map_err(|_| ClusterHttpError::BadAddress(address.to_owned()))?;
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| ClusterHttpError::Transport(format!("bad {name} header")))?;
        request = request.header(name, value);
    }
    request
        .body(Full::new(body))
        .map_err(|e| ClusterHttpError::Transport(e.to_string()))
}

/// An error followed by its causes, innermost last: HTTP clients' own messages rarely say
/// why a connection failed (a refused certificate, a reset).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Clone)]
struct Connector {
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<Conn>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("no host in the address"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| std::io::Error::other("no port in the address"))?;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let Some(tls) = &this.tls else {
                    return Ok(Conn(TokioIo::new(Either::Left(tcp))));
                };
                let name =
                    ServerName::try_from(CLUSTER_SERVER_NAME).map_err(std::io::Error::other)?;
                let stream = tls.connect(name, tcp).await?;
                Ok(Conn(TokioIo::new(Either::Right(stream))))
            };
            tokio::time::timeout(this.connect_timeout, connect)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })?
        })
    }
}

/// One connection to another node.
struct Conn(TokioIo<Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
