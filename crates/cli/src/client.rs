//! Talking to a controller over HTTP, and turning its answers into clear messages.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::progress::Transfer;

/// A controller at `server`, with the caller's key when logged in.
pub struct Client {
    http: reqwest::Client,
    server: String,
    /// Replaced by `register` and `login`, so a shell session uses its newest key.
    api_key: std::sync::Mutex<Option<String>>,
    /// The newest frontier token seen, sent back on every request.
    frontier: std::sync::Mutex<Option<String>>,
}

/// The header carrying a controller's frontier.
const FRONTIER_HEADER: &str = "x-redcloud-frontier";

impl Client {
    /// A client for `server` (e.g. `http://127.0.0.1:8000`); an `https://` server must present
    /// a certificate issued by one in the PEM file `ca_cert`.
    pub fn new(
        server: &str,
        ca_cert: Option<&Path>,
        api_key: Option<String>,
        frontier: Option<String>,
    ) -> anyhow::Result<Self> {
        let tls = redcloud_link::https_client_config(ca_cert)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            server: server.trim_end_matches('/').to_owned(),
            api_key: std::sync::Mutex::new(api_key),
            frontier: std::sync::Mutex::new(frontier),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// The newest frontier token seen.
    pub fn frontier(&self) -> Option<String> {
        self.frontier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Uses `key` for every later request.
    pub fn set_api_key(&self, key: &str) {
        *self
            .api_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key.to_owned());
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        let key = self
            .api_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| anyhow!("not logged in: run `redcloud login USER PASSWORD` (or `redcloud register ...`) first"))?;
        Ok(request.bearer_auth(key))
    }

    /// Sends `request` with the frontier token, and keeps the token of the answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match self.frontier() {
            Some(token) => request.header(FRONTIER_HEADER, token),
            None => request,
        };
        self.send_untracked(request).await
    }

    /// Sends `request` without the frontier token (an account change starts a new session,
    /// and a token from a cluster since wiped could never be honoured), keeping the answer's.
    async fn send_untracked(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() && self.server.starts_with("https://") {
                anyhow!(
                    "cannot connect to {} over TLS: {} (an untrusted certificate needs its CA: --ca-cert FILE)",
                    self.server,
                    redcloud_link::error_chain(&e)
                )
            } else if e.is_connect() {
                anyhow!("cannot reach the RedCloud server at {}: is it running? (`redcloud up` starts a local one)", self.server)
            } else {
                anyhow!("request to {} failed: {e}", self.server)
            }
        })?;
        if let Some(token) = response
            .headers()
            .get(FRONTIER_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            *self
                .frontier
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.to_owned());
        }
        Ok(response)
    }

    /// Sends and returns the JSON answer, or the server's error as a clear message.
    async fn json(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(request).await?;
        Self::answer(response).await
    }

    async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(anyhow!(explain(status, &body)))
        }
    }

    /// `POST /auth/register`.
    pub async fn register(&self, username: &str, password: &str) -> anyhow::Result<Value> {
        let body = serde_json::json!({"username": username, "password": password});
        self.json(self.http.post(self.url("/auth/register")).json(&body))
            .await
    }

    /// `POST /auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<Value> {
        let body = serde_json::json!({"username": username, "password": password});
        self.json(self.http.post(self.url("/auth/login")).json(&body))
            .await
    }

    /// `GET /auth/me`.
    pub async fn me(&self) -> anyhow::Result<Value> {
        let request = self.http.get(self.url("/auth/me"));
        self.json(self.authed(request)?).await
    }

    /// Uploads one file, streaming it from disk.
    pub async fn upload(&self, path: &Path, tags: &str) -> anyhow::Result<Value> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{} has no usable file name", path.display()))?
            .to_owned();
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let size = file.metadata().await?.len();
        let progress = std::sync::Arc::new(Transfer::start(&name, Some(size)));
        let counted = std::sync::Arc::clone(&progress);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |piece| {
                if let Ok(bytes) = piece {
                    counted.advance(bytes.len() as u64);
                }
            });
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name(name);
        let form = reqwest::multipart::Form::new()
            .text("tags", tags.to_owned())
            .part("file", part);
        let answer = self
            .json(self.authed(self.http.post(self.url("/files")).multipart(form))?)
            .await;
        progress.finish();
        answer
    }

    /// `GET /files?tags=...`.
    pub async fn list(&self, tags: &[String]) -> anyhow::Result<Value> {
        let request = self.http.get(self.url(&tags_query(tags)));
        self.json(self.authed(request)?).await
    }

    /// `GET /tags`.
    pub async fn tags(&self) -> anyhow::Result<Value> {
        self.json(self.authed(self.http.get(self.url("/tags")))?)
            .await
    }

    /// `POST /s3-keys`.
    pub async fn create_s3_key(&self) -> anyhow::Result<Value> {
        self.json(self.authed(self.http.post(self.url("/s3-keys")))?)
            .await
    }

    /// `GET /s3-keys`.
    pub async fn s3_keys(&self) -> anyhow::Result<Value> {
        self.json(self.authed(self.http.get(self.url("/s3-keys")))?)
            .await
    }

    /// `DELETE /s3-keys/{key_id}`.
    pub async fn delete_s3_key(&self, key_id: &str) -> anyhow::Result<Value> {
        let id = percent_encoding::utf8_percent_encode(key_id, percent_encoding::NON_ALPHANUMERIC);
        let request = self.http.delete(self.url(&format!("/s3-keys/{id}")));
        self.json(self.authed(request)?).await
    }

    /// `DELETE /files?tags=...`.
    pub async fn delete(&self, tags: &[String]) -> anyhow::Result<Value> {
        let request = self.http.delete(self.url(&tags_query(tags)));
        self.json(self.authed(request)?).await
    }

    /// `POST /files/tags`.
    pub async fn add_tags(&self, query: &[String], tags: &[String]) -> anyhow::Result<Value> {
        let body = serde_json::json!({"query_tags": query, "new_tags": tags});
        self.json(self.authed(self.http.post(self.url("/files/tags")).json(&body))?)
            .await
    }

    /// `DELETE /files/tags`.
    pub async fn delete_tags(&self, query: &[String], tags: &[String]) -> anyhow::Result<Value> {
        let body = serde_json::json!({"query_tags": query, "tags_to_remove": tags});
        self.json(self.authed(self.http.delete(self.url("/files/tags")).json(&body))?)
            .await
    }

    /// Downloads `name` to `target`, through a temp file renamed into place only when every
    /// byte arrived: an interrupted download never leaves a partial file under the name.
    pub async fn download(&self, name: &str, target: &Path) -> anyhow::Result<u64> {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let request = self
            .http
            .get(self.url(&format!("/files/by-name/{encoded}/download")));
        let response = self.send(self.authed(request)?).await?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            bail!(explain(status, &body));
        }
        let expected = response.content_length();
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        let mut file = tokio::fs::File::from_std(tmp.reopen()?);
        let progress = Transfer::start(name, expected);
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| anyhow!("download of {name} interrupted: {e}"))?;
            file.write_all(&piece).await?;
            received += piece.len() as u64;
            progress.advance(piece.len() as u64);
        }
        progress.finish();
        if expected.is_some_and(|n| n != received) {
            bail!("download of {name} ended early ({received} bytes received)");
        }
        file.sync_all().await?;
        tmp.persist(target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        Ok(received)
    }

    /// `GET /health` and `GET /ready`.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let health = self.json(self.http.get(self.url("/health"))).await?;
        let response = self.send(self.http.get(self.url("/ready"))).await?;
        let ready: Value = response.json().await.unwrap_or(Value::Null);
        let cluster = self
            .json(self.http.get(self.url("/status?format=json")))
            .await?;
        Ok(
            serde_json::json!({"server": self.server, "health": health, "ready": ready, "cluster": cluster}),
        )
    }
}

/// `/files?tags=a,b`, percent-encoded.
fn tags_query(tags: &[String]) -> String {
    let joined = tags.join(",");
    format!(
        "/files?tags={}",
        percent_encoding::utf8_percent_encode(&joined, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// A sentence for every error the API can answer with.
pub fn explain(status: StatusCode, body: &Value) -> String {
    let detail = body["detail"].as_str().unwrap_or("");
    let message = match (status.as_u16(), body["code"].as_str()) {
        (_, Some("USER_ALREADY_EXISTS")) => "that username is taken".to_owned(),
        (_, Some("INVALID_CREDENTIALS")) => "wrong username or password".to_owned(),
        (_, Some("INVALID_TAG_QUERY" | "INVALID_REQUEST")) => detail.to_owned(),
        (_, Some("CHUNKSERVER_UNAVAILABLE")) => "no storage server can take or serve the data right now; try again shortly".to_owned(),
        (_, Some("STORAGE_FULL")) => "the storage servers are full".to_owned(),
        (_, Some("INSUFFICIENT_STORAGE")) => format!("{detail} (another controller of the cluster can take the change)"),
        (_, Some("PAYLOAD_TOO_LARGE")) => format!("the file is larger than the server accepts ({detail})"),
        (_, Some("NOT_CAUGHT_UP")) => "the server has not caught up with your latest changes yet (it may be cut off from the controller you last used); try again shortly, or `redcloud login` again if that cluster was reset".to_owned(),
        (_, Some("CHECKSUM_MISMATCH")) => "the data failed its integrity check on the server".to_owned(),
        (_, Some("INTERNAL_ERROR")) => "the server failed; see its logs".to_owned(),
        (401, None) => "not logged in, or your key was replaced by a newer login: run `redcloud login USER PASSWORD`".to_owned(),
        (403, _) => "that file belongs to someone else".to_owned(),
        (404, _) => detail.to_owned(),
        (422, _) => {
            let fields: Vec<String> = body["detail"]
                .as_array()
                .map(|issues| {
                    issues
                        .iter()
                        .map(|i| format!("{} ({})", i["loc"].as_array().map(|l| l.iter().map(|p| p.to_string().trim_matches('"').to_owned()).collect::<Vec<_>>().join(".")).unwrap_or_default(), i["msg"].as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            format!("the request was incomplete: {}", fields.join(", "))
        }
        _ if !detail.is_empty() => detail.to_owned(),
        _ => format!("the server answered {status}"),
    };
    format!("{message} [{}]", status.as_u16())
}
