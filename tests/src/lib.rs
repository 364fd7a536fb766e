//! A harness for scenario tests: controllers and chunkservers as real processes, each on a
//! loopback address of its own (and, as root, under a uid of its own, so links between nodes
//! can be cut with the firewall), each with its own data directory and log file. A test can
//! kill (SIGKILL), restart, partition and heal nodes, and talk to them over HTTP.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod history;

/// The cluster secret every node of a harness cluster gets, so that every scenario runs over
/// mutual TLS exactly as a deployment does.
pub const CLUSTER_SECRET: &str = "redcloud test cluster secret 0123456789";

/// One node process.
pub struct Node {
    binary: PathBuf,
    role: &'static str,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its own loopback address.
    pub ip: Ipv4Addr,
    /// The uid it runs as (when the harness runs as root).
    pub uid: u32,
    /// Its first listener: a controller's client listener, a chunkserver's cluster listener.
    pub port: u16,
    /// Its second listener: a controller's cluster listener, a chunkserver's metrics listener.
    pub second_port: u16,
    /// A controller's S3 listener (unused by a chunkserver).
    pub s3_port: u16,
    /// The cluster secret it is given (`None`: it runs without one).
    pub secret: Option<String>,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// Whether its data directory is a tmpfs the harness mounted (unmounted on drop).
    tmpfs: bool,
}

/// A free port on `ip` (bound and released; good enough on a test machine).
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    free_port_on(Ipv4Addr::LOCALHOST)
}

/// Whether the harness runs as root, so that nodes get their own uids and links can be cut.
pub fn can_partition() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A loopback subnet and uid range for one cluster, distinct across the clusters and test
/// processes of a run, so that clusters never share addresses or firewall rules.
fn allocate_cluster_slot() -> (u8, u8, u32) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let a = 20 + (pid % 200) as u8;
    let b = (n % 250) as u8 + 1;
    let uid_base = 200_000 + (pid % 10_000) * 1000 + (n % 40) * 25;
    (a, b, uid_base)
}

impl Node {
    fn new(
        binary: &Path,
        role: &'static str,
        dir: &Path,
        args: Vec<String>,
        ip: Ipv4Addr,
        uid: u32,
    ) -> Self {
        let port = free_port_on(ip);
        let second_port = free_port_on(ip);
        let s3_port = free_port_on(ip);
        let data_dir = dir.join(format!("{role}-{}-{port}", ip.octets()[3]));
        std::fs::create_dir_all(&data_dir).unwrap();
        if can_partition() {
            std::os::unix::fs::chown(&data_dir, Some(uid), Some(uid)).unwrap();
        }
        let log = data_dir.with_extension("log");
        Self {
            binary: binary.to_owned(),
            role,
            data_dir,
            ip,
            uid,
            port,
            second_port,
            s3_port,
            secret: Some(CLUSTER_SECRET.to_owned()),
            args,
            child: None,
            log,
            tmpfs: false,
        }
    }

    /// Mounts a tmpfs of `bytes` on its data directory, owned by its uid. Needs root.
    fn mount_tmpfs(&mut self, bytes: u64) {
        assert!(can_partition(), "a tmpfs data directory needs root");
        let options = format!("size={bytes},uid={uid},gid={uid},mode=0755", uid = self.uid);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&self.data_dir)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "mounting a tmpfs on {:?} failed",
            self.data_dir
        );
        self.tmpfs = true;
    }

    /// Fills its data directory's filesystem with a file written until the filesystem
    /// refuses more; returns the file, whose removal frees the space again.
    pub fn fill_data_dir(&self) -> PathBuf {
        redcloud_types::testing::fill(&self.data_dir)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (again, after a kill), on the same address and data directory.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "{} on {} is already running",
            self.role,
            self.address()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(&self.binary);
        if can_partition() {
            use std::os::unix::process::CommandExt;
            command.uid(self.uid).gid(self.uid);
        }
        let second = match self.role {
            "controller" => "--cluster-listen",
            _ => "--metrics-listen",
        };
        let s3: Vec<String> = if self.role == "controller" {
            vec!["--s3-listen".to_owned(), self.s3_address()]
        } else {
            Vec::new()
        };
        command.env_remove("REDCLOUD_CLUSTER_TOKEN");
        if let Some(secret) = &self.secret {
            command.env("REDCLOUD_CLUSTER_TOKEN", secret);
        }
        let child = command
            .arg(self.role)
            .arg("--listen")
            .arg(self.address())
            .arg(second)
            .arg(format!("{}:{}", self.ip, self.second_port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&s3)
            .args(&self.args)
            .env("RUST_LOG", "info,lsm_tree=warn,fjall=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Kills the node and empties its data directory, as a container without a volume loses
    /// it: started again, the node comes back under a new id.
    pub fn wipe(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(&self.data_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, and it answers nothing.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Node::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("the node is running")
            .id()
            .to_string();
        assert!(
            Command::new("kill")
                .args([which, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The chunk ids (hex) a chunkserver holds on disk.
    pub fn chunk_ids(&self) -> std::collections::BTreeSet<String> {
        let mut ids = std::collections::BTreeSet::new();
        let Ok(shards) = std::fs::read_dir(self.data_dir.join("chunks")) else {
            return ids;
        };
        for shard in shards.flatten() {
            for chunk in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                ids.insert(chunk.file_name().to_string_lossy().into_owned());
            }
        }
        ids
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

    /// The node id it keeps in its data directory (16 hex digits), once it has started.
    pub fn node_id(&self) -> Option<String> {
        let text =
            std::fs::read_to_string(self.data_dir.join(redcloud_types::node_id::FILE_NAME)).ok()?;
        Some(text.trim().to_owned())
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `host:port` of its first listener: a controller's client listener, a chunkserver's
    /// cluster listener.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `host:port` where other nodes reach it.
    pub fn cluster_address(&self) -> String {
        match self.role {
            "controller" => format!("{}:{}", self.ip, self.second_port),
            _ => self.address(),
        }
    }

    /// `host:port` of a controller's S3 listener.
    pub fn s3_address(&self) -> String {
        format!("{}:{}", self.ip, self.s3_port)
    }

    /// `host:port` serving its `/metrics`.
    pub fn metrics_address(&self) -> String {
        match self.role {
            "controller" => self.address(),
            _ => format!("{}:{}", self.ip, self.second_port),
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if self.tmpfs {
            let _ = Command::new("umount").arg(&self.data_dir).status();
        }
    }
}

/// Starts clusters.
pub struct ClusterBuilder {
    binary: PathBuf,
    controllers: usize,
    chunkservers: usize,
    controller_args: Vec<String>,
    /// Flags for one controller only, by index.
    controller_args_at: Vec<(usize, Vec<String>)>,
    /// Controllers whose data directory is a tmpfs, by index, with its size in bytes.
    controller_tmpfs: Vec<(usize, u64)>,
    chunkserver_args: Vec<String>,
    secret: Option<String>,
}

impl ClusterBuilder {
    /// Nodes run `binary` (pass `env!("CARGO_BIN_EXE_redcloud-test-node")`).
    pub fn new(binary: &str) -> Self {
        Self {
            binary: binary.into(),
            controllers: 1,
            chunkservers: 1,
            controller_args: Vec::new(),
            controller_args_at: Vec::new(),
            controller_tmpfs: Vec::new(),
            chunkserver_args: Vec::new(),
            secret: Some(CLUSTER_SECRET.to_owned()),
        }
    }

    /// Nodes without a cluster secret: plain TCP between them (allowed because every listener
    /// is on loopback). For measuring what the cluster link's TLS costs.
    pub fn plain_links(mut self) -> Self {
        self.secret = None;
        self
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

    /// Extra flags for controller `i` only (0 is `Cluster::controller`).
    pub fn controller_args_at(mut self, i: usize, args: &[&str]) -> Self {
        self.controller_args_at
            .push((i, args.iter().map(|a| (*a).to_owned()).collect()));
        self
    }

    /// Controller `i` keeps its data directory on a tmpfs of `bytes`, so that a test can fill
    /// its disk ([`Node::fill_data_dir`]); unmounted when the cluster is dropped. Needs root.
    pub fn controller_data_dir_on_tmpfs(mut self, i: usize, bytes: u64) -> Self {
        self.controller_tmpfs.push((i, bytes));
        self
    }

    /// Controllers that collect garbage quickly: 64 KiB chunks, repair rounds every 300 ms, a
    /// grace period of `grace_ms` and frontier reports at most a little under half as old.
    pub fn quick_gc(self, grace_ms: u64) -> Self {
        let grace = grace_ms.to_string();
        let max_age = (grace_ms * 9 / 20).to_string();
        self.controller_args(&[
            "--chunk-size-bytes",
            "65536",
            "--repair-interval-ms",
            "300",
            "--gc-grace-ms",
            &grace,
            "--gc-report-max-age-ms",
            &max_age,
        ])
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
        // Nodes run under their own uids and must reach their data directories.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (a, b, uid_base) = allocate_cluster_slot();
        let mut slots =
            (1u8..).map(move |n| (Ipv4Addr::new(127, a, b, n), uid_base + u32::from(n)));
        let controller_slots: Vec<(Ipv4Addr, u32)> = (0..self.controllers)
            .map(|_| slots.next().unwrap())
            .collect();
        let ports: Vec<u16> = controller_slots
            .iter()
            .map(|(ip, _)| free_port_on(*ip))
            .collect();
        let addresses: Vec<String> = controller_slots
            .iter()
            .zip(&ports)
            .map(|((ip, _), port)| format!("{ip}:{port}"))
            .collect();
        let mut controllers = Vec::new();
        for (i, &(ip, uid)) in controller_slots.iter().enumerate() {
            let mut args = vec![
                "--discovery-dns".to_owned(),
                String::new(),
                "--gossip-interval-ms".to_owned(),
                "300".to_owned(),
            ];
            let peers: Vec<&str> = addresses
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.as_str())
                .collect();
            if !peers.is_empty() {
                args.extend(["--peers".to_owned(), peers.join(",")]);
            }
            args.extend(self.controller_args.iter().cloned());
            for (_, extra) in self.controller_args_at.iter().filter(|(at, _)| *at == i) {
                args.extend(extra.iter().cloned());
            }
            let mut node = Node::new(&self.binary, "controller", dir.path(), args, ip, uid);
            node.second_port = ports[i];
            node.secret.clone_from(&self.secret);
            for (_, bytes) in self.controller_tmpfs.iter().filter(|(at, _)| *at == i) {
                node.mount_tmpfs(*bytes);
            }
            node.start();
            controllers.push(node);
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
            let (ip, uid) = slots.next().unwrap();
            let mut node = Node::new(&self.binary, "chunkserver", dir.path(), args, ip, uid);
            node.secret.clone_from(&self.secret);
            node.start();
            chunkservers.push(node);
        }
        let controller = controllers.remove(0);
        let next_slot = u8::try_from(self.controllers + self.chunkservers + 1).unwrap();
        let mut cluster = Cluster {
            controller,
            more_controllers: controllers,
            chunkservers,
            binary: self.binary.clone(),
            chunkserver_template: vec![
                "--controllers".to_owned(),
                addresses.join(","),
                "--heartbeat-interval-ms".to_owned(),
                "200".to_owned(),
            ]
            .into_iter()
            .chain(self.chunkserver_args.iter().cloned())
            .collect(),
            slot: (a, b, uid_base, next_slot),
            cluster_http: cluster_client(),
            http: http_client(),
            firewall_chain: format!("RC{a}X{b}P{}", std::process::id()),
            firewall_installed: false,
            _dir: dir,
        };
        cluster.wait_ready(self.chunkservers).await;
        cluster
    }
}

/// The link of a node holding [`CLUSTER_SECRET`].
pub fn cluster_link() -> redcloud_link::ClusterLink {
    let secret = redcloud_link::ClusterSecret::new(CLUSTER_SECRET).unwrap();
    redcloud_link::ClusterLink::new(Some(&secret)).unwrap()
}

/// A client for the cluster listeners of harness nodes: mutual TLS with [`CLUSTER_SECRET`].
pub fn cluster_client() -> redcloud_link::ClusterClient {
    redcloud_link::ClusterClient::new(
        &cluster_link(),
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
}

/// A client builder for loopback: no proxy, and a TLS configuration of our own. Every reqwest
/// client must start from one: the workspace builds reqwest's rustls support without a
/// built-in crypto provider (for the CLI's `--ca-cert`), so a client left to build its own TLS
/// configuration panics.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_preconfigured_tls(redcloud_link::https_client_config(None).unwrap())
        .no_proxy()
}

/// An HTTP client for loopback: no proxy, a generous timeout, TCP_NODELAY.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

/// A node of a cluster, by role and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// Controller `i` (0 is `Cluster::controller`).
    Controller(usize),
    /// Chunkserver `i`.
    Chunkserver(usize),
}

/// A running cluster; every process is killed, and every firewall rule removed, when it is
/// dropped.
pub struct Cluster {
    /// The first controller, the one the helpers talk to.
    pub controller: Node,
    /// The other controllers, if any.
    pub more_controllers: Vec<Node>,
    /// The chunkservers.
    pub chunkservers: Vec<Node>,
    /// An HTTP client.
    pub http: reqwest::Client,
    binary: PathBuf,
    chunkserver_template: Vec<String>,
    /// The cluster's address block, uid base, and the next free host number.
    slot: (u8, u8, u32, u8),
    /// A client for the nodes' cluster listeners, holding the cluster secret.
    pub cluster_http: redcloud_link::ClusterClient,
    firewall_chain: String,
    firewall_installed: bool,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `http://<address>` of the first controller.
    pub fn url(&self) -> String {
        self.url_of(0)
    }

    /// Starts one more chunkserver, heartbeating to every controller; returns its index.
    pub fn add_chunkserver(&mut self) -> usize {
        let (a, b, uid_base, n) = self.slot;
        self.slot.3 = n + 1;
        let dir = self._dir.path().to_owned();
        let mut node = Node::new(
            &self.binary,
            "chunkserver",
            &dir,
            self.chunkserver_template.clone(),
            Ipv4Addr::new(127, a, b, n),
            uid_base + u32::from(n),
        );
        node.start();
        self.chunkservers.push(node);
        self.chunkservers.len() - 1
    }

    /// Waits until every chunkserver holds every chunk that any of them holds.
    pub async fn chunks_everywhere(&self, within: Duration) -> std::collections::BTreeSet<String> {
        let deadline = Instant::now() + within;
        loop {
            let held: Vec<_> = self.chunkservers.iter().map(Node::chunk_ids).collect();
            let all: std::collections::BTreeSet<String> = held.iter().flatten().cloned().collect();
            if held.iter().all(|h| *h == all) {
                return all;
            }
            let counts: Vec<usize> = held.iter().map(std::collections::BTreeSet::len).collect();
            assert!(
                Instant::now() < deadline,
                "chunks not everywhere: {} in all, held {counts:?}",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Controller `i` (0 is `controller`).
    pub fn controller_at(&self, i: usize) -> &Node {
        if i == 0 {
            &self.controller
        } else {
            &self.more_controllers[i - 1]
        }
    }

    /// `http://<address>` of controller `i`.
    pub fn url_of(&self, i: usize) -> String {
        format!("http://{}", self.controller_at(i).address())
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
            let node = if i == 0 {
                &mut self.controller
            } else {
                &mut self.more_controllers[i - 1]
            };
            assert!(node.is_running(), "controller {i} exited:\n{}", node.log());
            if Instant::now() > deadline {
                self.dump_logs();
                panic!(
                    "controller {i} not ready with {healthy} chunkservers within 30 s (saw {seen:?})"
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
            eprintln!(
                "===== {} {} =====\n{}",
                node.role,
                node.address(),
                node.log()
            );
        }
    }

    fn member(&self, member: Member) -> &Node {
        match member {
            Member::Controller(i) => self.controller_at(i),
            Member::Chunkserver(i) => &self.chunkservers[i],
        }
    }

    /// Cuts every link between a node of `one` and a node of `other`, both ways: packets from
    /// a node's uid to the other side's addresses are dropped. Needs root.
    pub fn partition(&mut self, one: &[Member], other: &[Member]) {
        assert!(
            can_partition(),
            "partitions need root (iptables and per-node uids)"
        );
        let mut rules = Vec::new();
        for a in one.iter().map(|m| self.member(*m)) {
            for b in other.iter().map(|m| self.member(*m)) {
                rules.push((a.uid.to_string(), b.ip.to_string()));
                rules.push((b.uid.to_string(), a.ip.to_string()));
            }
        }
        let chain = self.firewall_chain.clone();
        if !self.firewall_installed {
            let _ = iptables(&["-N", &chain]);
            iptables(&["-I", "OUTPUT", "-j", &chain]).unwrap();
            self.firewall_installed = true;
        }
        for (uid, ip) in rules {
            iptables(&[
                "-A",
                &chain,
                "-m",
                "owner",
                "--uid-owner",
                &uid,
                "-d",
                &ip,
                "-j",
                "DROP",
            ])
            .unwrap();
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        if self.firewall_installed {
            iptables(&["-F", &self.firewall_chain]).unwrap();
        }
    }
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let output = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if self.firewall_installed {
            let chain = self.firewall_chain.clone();
            let _ = iptables(&["-D", "OUTPUT", "-j", &chain]);
            let _ = iptables(&["-F", &chain]);
            let _ = iptables(&["-X", &chain]);
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
    /// Registers `username` on the first controller and returns the API key.
    pub async fn register(&self, username: &str, password: &str) -> String {
        self.register_at(0, username, password).await
    }

    /// Registers `username` on controller `i` and returns the API key.
    pub async fn register_at(&self, i: usize, username: &str, password: &str) -> String {
        let response = self
            .http
            .post(format!("{}/auth/register", self.url_of(i)))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(status, 201, "register {username}: {body}");
        body["api_key"].as_str().unwrap().to_owned()
    }

    /// Uploads `data` as `name` with the comma-separated `tags` through the first controller.
    pub async fn upload(
        &self,
        key: &str,
        name: &str,
        data: Vec<u8>,
        tags: &str,
    ) -> reqwest::Response {
        self.upload_at(0, key, name, data, tags).await
    }

    /// Uploads through controller `i`.
    pub async fn upload_at(
        &self,
        i: usize,
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
            .post(format!("{}/files", self.url_of(i)))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with the key, on the first controller.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.get_at(0, key, path).await
    }

    /// `GET path` with the key, on controller `i`.
    pub async fn get_at(&self, i: usize, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url_of(i)))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// Deletes the caller's files carrying every tag of `tags` through controller `i`.
    pub async fn delete_at(&self, i: usize, key: &str, tags: &str) -> (u16, Value) {
        let response = self
            .http
            .delete(format!("{}/files?tags={tags}", self.url_of(i)))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    /// `POST path` with a JSON body and the key, on controller `i`.
    pub async fn http_post_json(
        &self,
        i: usize,
        key: &str,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url_of(i)))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    /// Uploads through controller `i`, expects 201, and returns the new file's id.
    pub async fn upload_id_at(
        &self,
        i: usize,
        key: &str,
        name: &str,
        data: Vec<u8>,
        tags: &str,
    ) -> String {
        let (status, body) = status_json(self.upload_at(i, key, name, data, tags).await).await;
        assert_eq!(status, 201, "upload {name}: {body}");
        body["file_id"].as_str().unwrap().to_owned()
    }

    /// Waits until no chunkserver holds any of `chunks`.
    pub async fn wait_collected(
        &self,
        chunks: &std::collections::BTreeSet<String>,
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let left = self.chunks_anywhere().intersection(chunks).count();
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left} of {} chunks were not collected within {within:?}",
                chunks.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every chunk some chunkserver holds.
    pub fn chunks_anywhere(&self) -> std::collections::BTreeSet<String> {
        self.chunkservers
            .iter()
            .flat_map(|cs| cs.chunk_ids())
            .collect()
    }

    /// Lists the caller's files matching `tags`.
    pub async fn list(&self, key: &str, tags: &str) -> Vec<Value> {
        self.list_at(0, key, tags).await
    }

    /// Lists on controller `i`.
    pub async fn list_at(&self, i: usize, key: &str, tags: &str) -> Vec<Value> {
        let (status, body) =
            status_json(self.get_at(i, key, &format!("/files?tags={tags}")).await).await;
        assert_eq!(status, 200, "{body}");
        body["files"].as_array().unwrap().clone()
    }

    /// Downloads by name; returns status and body bytes.
    pub async fn download(&self, key: &str, name: &str) -> (u16, Vec<u8>) {
        self.download_at(0, key, name).await
    }

    /// Downloads by name from controller `i`.
    pub async fn download_at(&self, i: usize, key: &str, name: &str) -> (u16, Vec<u8>) {
        let response = self
            .get_at(i, key, &format!("/files/by-name/{name}/download"))
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

    /// The first controller's `/internal/state`: node id, frontier, operation count, digest.
    pub async fn state(&self) -> Value {
        self.state_of(0).await
    }

    /// Controller `i`'s `/internal/state`.
    pub async fn state_of(&self, i: usize) -> Value {
        self.try_state_of(i)
            .await
            .unwrap_or_else(|| panic!("controller {i} does not answer /internal/state"))
    }

    /// Controller `i`'s `/internal/state`, or `None` while it does not answer.
    pub async fn try_state_of(&self, i: usize) -> Option<Value> {
        let reply = self
            .cluster_http
            .get(
                &self.controller_at(i).cluster_address(),
                "/internal/state",
                1 << 20,
            )
            .await
            .ok()?;
        (reply.status == 200).then(|| serde_json::from_slice(&reply.body).ok())?
    }

    /// Waits up to `within` until controller `i`'s `/internal/state` satisfies `done`.
    pub async fn state_until(
        &self,
        i: usize,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.try_state_of(i).await;
            if let Some(state) = &state
                && done(state)
            {
                return state.clone();
            }
            assert!(
                Instant::now() < deadline,
                "controller {i} never got there: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `redcloud cluster forget NODE` through controller 0's cluster listener: the status and
    /// the JSON answer.
    pub async fn forget(&self, node: &str, force: bool) -> (u16, Value) {
        let reply = self
            .cluster_http
            .post(
                &self.controller.cluster_address(),
                "/internal/forget",
                &[],
                serde_json::json!({"node_id": node, "force": force})
                    .to_string()
                    .into(),
                1 << 16,
            )
            .await
            .unwrap();
        let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status.as_u16(), body)
    }

    /// Controller `i`'s status page as JSON (`/status?format=json`).
    pub async fn status_page_of(&self, i: usize) -> Value {
        let (status, body) = status_json(self.get_at(i, "", "/status?format=json").await).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Controller `i`'s `/metrics` text.
    pub async fn metrics_of(&self, i: usize) -> String {
        self.get_at(i, "", "/metrics").await.text().await.unwrap()
    }

    /// Waits until every controller has the same read-model digest and operation count.
    pub async fn converged(&self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let mut states = Vec::new();
            for i in 0..=self.more_controllers.len() {
                states.push(self.state_of(i).await);
            }
            if states.iter().all(|s| {
                s["digest"] == states[0]["digest"] && s["operations"] == states[0]["operations"]
            }) {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "controllers did not converge: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the first controller with SIGKILL and starts it again on the same data directory.
    pub async fn restart_controller(&mut self) {
        self.controller.kill();
        self.controller.start();
        let healthy = self.chunkservers.len();
        self.wait_ready(healthy).await;
    }
}

/// A benchmark's numeric option: the value after `name` on its command line
/// (`cargo bench ... -- --ops 20000`), or `default`.
pub fn bench_arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
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
