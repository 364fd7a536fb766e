//! A harness for scenario tests: controllers and chunkservers as real processes on loopback
//! ports, each with its own data directory and log file, that a test can kill (SIGKILL),
//! restart and talk to over HTTP.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One node process.
pub struct Node {
    binary: PathBuf,
    role: &'static str,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where it listens.
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    fn new(binary: &Path, role: &'static str, dir: &Path, args: Vec<String>) -> Self {
        let port = free_port();
        let data_dir = dir.join(format!("{role}-{port}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = data_dir.with_extension("log");
        Self {
            binary: binary.to_owned(),
            role,
            data_dir,
            port,
            args,
            child: None,
            log,
        }
    }

    /// Starts the process (again, after a kill), on the same port and data directory.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{} on {} is already running",
            self.role,
            self.port
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg(self.role)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUST_LOG", "info,lsm_tree=warn,fjall=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running (a process that exited by itself is reaped).
    pub fn is_running(&mut self) -> bool {
        if let Some(child) = &mut self.child
            && child.try_wait().ok().flatten().is_some()
        {
            self.child = None;
        }
        self.child.is_some()
    }

    /// Peak resident memory of the running process in bytes (`VmHWM`), if it runs.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts clusters.
pub struct ClusterBuilder {
    binary: PathBuf,
    controllers: usize,
    chunkservers: usize,
    controller_args: Vec<String>,
    chunkserver_args: Vec<String>,
}

impl ClusterBuilder {
    /// Nodes run `binary` (pass `env!("CARGO_BIN_EXE_redcloud-test-node")`).
    pub fn new(binary: &str) -> Self {
        Self {
            binary: binary.into(),
            controllers: 1,
            chunkservers: 1,
            controller_args: Vec::new(),
            chunkserver_args: Vec::new(),
        }
    }

    /// How many controllers (each seeded with the others' addresses).
    pub fn controllers(mut self, count: usize) -> Self {
        self.controllers = count.max(1);
        self
    }

    /// How many chunkservers.
    pub fn chunkservers(mut self, count: usize) -> Self {
        self.chunkservers = count;
        self
    }

    /// Extra controller flags.
    pub fn controller_args(mut self, args: &[&str]) -> Self {
        self.controller_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Extra chunkserver flags.
    pub fn chunkserver_args(mut self, args: &[&str]) -> Self {
        self.chunkserver_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Starts the controllers and the chunkservers (which send heartbeats to every
    /// controller), and waits until every controller sees every chunkserver.
    pub async fn start(self) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..self.controllers).map(|_| free_port()).collect();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut controllers: Vec<Node> = ports
            .iter()
            .map(|&port| {
                let peers: Vec<&str> = addresses
                    .iter()
                    .filter(|a| !a.ends_with(&format!(":{port}")))
                    .map(String::as_str)
                    .collect();
                let mut args = vec![
                    "--discovery-dns".to_owned(),
                    String::new(),
                    "--gossip-interval-ms".to_owned(),
                    "300".to_owned(),
                ];
                if !peers.is_empty() {
                    args.extend(["--peers".to_owned(), peers.join(",")]);
                }
                args.extend(self.controller_args.iter().cloned());
                let mut node = Node::new(&self.binary, "controller", dir.path(), args);
                node.port = port;
                node
            })
            .collect();
        for controller in &mut controllers {
            controller.start();
        }
        let mut chunkservers = Vec::new();
        for _ in 0..self.chunkservers {
            let mut args = vec![
                "--controllers".to_owned(),
                addresses.join(","),
                "--heartbeat-interval-ms".to_owned(),
                "200".to_owned(),
            ];
            args.extend(self.chunkserver_args.iter().cloned());
            let mut node = Node::new(&self.binary, "chunkserver", dir.path(), args);
            node.start();
            chunkservers.push(node);
        }
        let controller = controllers.remove(0);
        let mut cluster = Cluster {
            controller,
            more_controllers: controllers,
            chunkservers,
            http: http_client(),
            _dir: dir,
        };
        cluster.wait_ready(self.chunkservers).await;
        cluster
    }
}

/// An HTTP client for loopback: no proxy, a generous timeout, TCP_NODELAY.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

/// A running cluster; every process is killed when it is dropped.
pub struct Cluster {
    /// The first controller, the one the helpers talk to.
    pub controller: Node,
    /// The other controllers, if any.
    pub more_controllers: Vec<Node>,
    /// The chunkservers.
    pub chunkservers: Vec<Node>,
    /// An HTTP client.
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.controller.address())
    }

    /// `http://127.0.0.1:<port>` of controller `i` (0 is `controller`).
    pub fn url_of(&self, i: usize) -> String {
        let node = if i == 0 {
            &self.controller
        } else {
            &self.more_controllers[i - 1]
        };
        format!("http://{}", node.address())
    }

    /// Waits (up to 30 s) until every controller answers `/ready` with `healthy` chunkservers.
    pub async fn wait_ready(&mut self, healthy: usize) {
        for i in 0..=self.more_controllers.len() {
            self.wait_ready_at(i, healthy).await;
        }
    }

    async fn wait_ready_at(&mut self, i: usize, healthy: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/ready", self.url_of(i));
        loop {
            let seen = async {
                let response = self.http.get(&url).send().await.ok()?;
                let body: Value = response.json().await.ok()?;
                body["healthy_chunkservers"].as_u64()
            }
            .await;
            if seen.is_some_and(|n| n as usize >= healthy) {
                return;
            }
            assert!(
                self.controller.is_running(),
                "the controller exited:\n{}",
                self.controller.log()
            );
            if Instant::now() > deadline {
                self.dump_logs();
                panic!(
                    "controller not ready with {healthy} chunkservers within 30 s (saw {seen:?})"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Prints every node's log (for failing tests).
    pub fn dump_logs(&self) {
        for node in std::iter::once(&self.controller)
            .chain(&self.more_controllers)
            .chain(&self.chunkservers)
        {
            eprintln!("===== {} {} =====\n{}", node.role, node.port, node.log());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
    }
}

/// A response's status and JSON body (`Null` when the body is not JSON).
pub async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

impl Cluster {
    /// Registers `username` and returns the API key.
    pub async fn register(&self, username: &str, password: &str) -> String {
        let response = self
            .http
            .post(format!("{}/auth/register", self.url()))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 201, "register {username}: {body}");
        body["api_key"].as_str().unwrap().to_owned()
    }

    /// Uploads `data` as `name` with the comma-separated `tags`.
    pub async fn upload(
        &self,
        key: &str,
        name: &str,
        data: Vec<u8>,
        tags: &str,
    ) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("tags", tags.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(data).file_name(name.to_owned()),
            );
        self.http
            .post(format!("{}/files", self.url()))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with the key.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Lists the caller's files matching `tags`.
    pub async fn list(&self, key: &str, tags: &str) -> Vec<Value> {
        let (status, body) = status_json(self.get(key, &format!("/files?tags={tags}")).await).await;
        assert_eq!(status, 200, "{body}");
        body["files"].as_array().unwrap().clone()
    }

    /// Downloads by name; returns status and body bytes.
    pub async fn download(&self, key: &str, name: &str) -> (u16, Vec<u8>) {
        let response = self
            .get(key, &format!("/files/by-name/{name}/download"))
            .await;
        let status = response.status().as_u16();
        (
            status,
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        )
    }
}

impl Cluster {
    /// The controller's `/internal/state`: node id, frontier, operation count, digest.
    pub async fn state(&self) -> Value {
        self.state_of(0).await
    }

    /// Controller `i`'s `/internal/state`.
    pub async fn state_of(&self, i: usize) -> Value {
        let response = self
            .http
            .get(format!("{}/internal/state", self.url_of(i)))
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Kills the controller with SIGKILL and starts it again on the same data directory.
    pub async fn restart_controller(&mut self) {
        self.controller.kill();
        self.controller.start();
        let healthy = self.chunkservers.len();
        self.wait_ready(healthy).await;
    }
}

/// Deterministic pseudo-random bytes, different for every `seed`.
pub fn test_data(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
