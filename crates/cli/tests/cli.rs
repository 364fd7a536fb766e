//! The `redcloud` binary end to end: `redcloud up` runs a local cluster, and every command
//! (one-shot and in the shell) talks to it.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_redcloud");

struct Local {
    up: Child,
    server: String,
    /// Every controller's URL (the first is `server`).
    servers: Vec<String>,
    /// The CA the CLI trusts, when controllers serve clients over TLS.
    ca_cert: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

impl Local {
    fn start() -> Self {
        Self::start_with(1)
    }

    /// `redcloud up` with `controllers` controllers on consecutive free ports.
    fn start_with(controllers: u16) -> Self {
        Self::start_serving(controllers, None)
    }

    /// `redcloud up` whose controller serves clients over TLS with `tls` (certificate chain,
    /// key, and the CA the CLI is told to trust).
    fn start_tls(tls: (PathBuf, PathBuf, PathBuf)) -> Self {
        Self::start_serving(1, Some(tls))
    }

    fn start_serving(controllers: u16, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = (0..100)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .find(|p| (1..controllers).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
            .unwrap();
        let listen = format!("127.0.0.1:{port}");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let servers: Vec<String> = (0..controllers)
            .map(|i| format!("{scheme}://127.0.0.1:{}", port + i))
            .collect();
        let mut up = Command::new(BIN);
        if let Some((cert, key, _)) = &tls {
            up.arg("up")
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        } else {
            up.arg("up");
        }
        let up = up
            .args([
                "--controllers",
                &controllers.to_string(),
                "--chunkservers",
                "2",
                "--listen",
                &listen,
                "--s3-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(dir.path().join("up.out")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
            .spawn()
            .unwrap();
        let local = Self {
            up,
            server: servers[0].clone(),
            servers,
            ca_cert: tls.map(|(_, _, ca)| ca),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in 0..local.servers.len() {
            while !local
                .command()
                .env("REDCLOUD_SERVER", &local.servers[server])
                .arg("status")
                .output()
                .unwrap()
                .status
                .success()
            {
                assert!(Instant::now() < deadline, "redcloud up never became ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        local
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("REDCLOUD_SERVER", &self.server)
            .env("REDCLOUD_CONFIG", self.dir.path().join("config.json"))
            .env_remove("REDCLOUD_CA_CERT")
            .current_dir(self.dir.path());
        if let Some(ca) = &self.ca_cert {
            command.env("REDCLOUD_CA_CERT", ca);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn ok_on(&self, server: usize, args: &[&str]) -> String {
        let output = self
            .command()
            .env("REDCLOUD_SERVER", &self.servers[server])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redcloud {args:?} on {server} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "redcloud {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "redcloud {args:?} should have failed"
        );
        String::from_utf8(output.stderr).unwrap()
    }

    fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn one_shot_commands() {
    let local = Local::start();
    assert!(local.fails(&["list"]).contains("not logged in"));
    assert!(
        local
            .ok(&["register", "alice", "pw"])
            .contains("Registered alice")
    );
    assert!(
        local
            .fails(&["register", "alice", "pw"])
            .contains("that username is taken [400]")
    );
    assert!(
        local
            .fails(&["login", "alice", "wrong"])
            .contains("wrong username or password [401]")
    );
    assert!(
        local
            .ok(&["login", "alice", "pw"])
            .contains("Logged in as alice")
    );
    let config: serde_json::Value =
        json(&std::fs::read_to_string(local.dir.path().join("config.json")).unwrap());
    assert_eq!(config["username"], "alice");

    let a = local.write("a.txt", b"alpha");
    let b = local.write("b b.txt", &vec![7u8; 3_000_000]);
    let out = local.ok(&[
        "add",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--tags",
        "work, urgent",
    ]);
    assert!(
        out.contains("Uploaded a.txt (5 bytes) tagged work, urgent"),
        "{out}"
    );
    let added = json(&local.ok(&["--json", "add", a.to_str().unwrap(), "--tags", "work"]));
    assert!(
        added["replaced_file_id"].is_string(),
        "a second upload of a.txt replaces the first"
    );

    let listed = json(&local.ok(&["--json", "list", "work"]));
    let names: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt", "b b.txt"]);
    assert!(local.ok(&["list", "urgent"]).contains("b b.txt"));
    assert!(
        local
            .ok(&["list", "nothing-has-this"])
            .contains("No files match.")
    );

    let target = local.dir.path().join("out").join("copy.bin");
    local.ok(&["download", "b b.txt", "-o", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(&target).unwrap(), vec![7u8; 3_000_000]);
    assert!(
        local
            .fails(&["download", "missing.txt"])
            .contains("not found [404]")
    );
    assert!(
        !local.dir.path().join("missing.txt").exists(),
        "a failed download leaves no file"
    );

    assert!(
        local
            .ok(&["add-tags", "work", "--tags", "q1,q2"])
            .contains("Tagged 2 file(s)")
    );
    let out = local.ok(&["delete-tags", "q1", "--tags", "q1,q2,work,urgent"]);
    assert!(out.contains("Skipped"), "{out}");
    assert!(
        local
            .fails(&["add-tags", "work", "--tags", " , "])
            .contains("New tags cannot be empty")
    );
    assert!(
        local
            .ok(&["delete", "urgent"])
            .contains("Deleted 1 file(s)")
    );
    assert_eq!(
        json(&local.ok(&["--json", "list"]))["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let status = json(&local.ok(&["--json", "status"]));
    assert_eq!(status["ready"]["healthy_chunkservers"], 2);
    let cluster = &status["cluster"];
    assert_eq!(
        cluster["controllers"].as_array().unwrap().len(),
        local.servers.len()
    );
    let chunkservers = cluster["chunkservers"].as_array().unwrap();
    assert_eq!(chunkservers.len(), 2);
    assert!(
        chunkservers
            .iter()
            .all(|c| c["healthy"] == true && c["capacity_bytes"].as_u64().unwrap() > 0)
    );
    for key in [
        "referenced_chunks",
        "fully_replicated_chunks",
        "under_replicated_chunks",
    ] {
        assert!(cluster["replication"][key].is_u64(), "{key}: {cluster}");
    }
    assert!(cluster["repair"]["rounds"].is_u64());
    let screen = local.ok(&["status"]);
    for heading in [
        "Controllers (",
        "Chunkservers (2/2 healthy)",
        "Replication: ",
        "Repair: ",
    ] {
        assert!(
            screen.contains(heading),
            "{heading} missing from:\n{screen}"
        );
    }
}

#[test]
fn the_shell_speaks_the_earlier_syntax() {
    let local = Local::start();
    std::fs::create_dir_all(local.dir.path().join("uploads")).unwrap();
    std::fs::write(
        local.dir.path().join("uploads").join("a.txt"),
        b"from the shell",
    )
    .unwrap();
    let script = "\
register sam pw
add uploads/a.txt work urgent
add-tags work -- later
list later
download a.txt downloads/b.txt
delete-tags work -- work urgent later
bogus command
delete later
list
exit
list
";
    let mut shell = local
        .command()
        .arg("shell")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = shell.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stdout.contains("Uploaded a.txt (14 bytes) tagged work, urgent"),
        "{stdout}"
    );
    assert!(stdout.contains("Tagged 1 file(s)"));
    assert!(stdout.contains("Skipped a.txt"), "{stdout}");
    assert!(stdout.contains("Deleted 1 file(s)"));
    assert_eq!(
        stdout.matches("No files match.").count(),
        1,
        "nothing runs after exit: {stdout}"
    );
    assert!(stderr.contains("cannot parse `bogus`"), "{stderr}");
    assert_eq!(
        std::fs::read(local.dir.path().join("downloads").join("b.txt")).unwrap(),
        b"from the shell"
    );
}

#[test]
fn an_unreachable_server_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(BIN)
        .args(["status"])
        .env("REDCLOUD_SERVER", format!("http://127.0.0.1:{port}"))
        .env("REDCLOUD_CONFIG", dir.path().join("config.json"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cannot reach the RedCloud server"),
        "{stderr}"
    );
    assert!(stderr.contains("redcloud up"));
}

#[test]
fn a_user_sees_their_own_writes_through_every_controller() {
    let local = Local::start_with(3);
    local.ok_on(0, &["register", "ada", "pw"]);
    let file = local.write("notes.txt", b"written through one, read through another");
    local.ok_on(1, &["add", file.to_str().unwrap(), "--tags", "mine"]);
    let listed = json(&local.ok_on(2, &["--json", "list", "mine"]));
    assert_eq!(listed["files"].as_array().unwrap().len(), 1, "{listed}");
    let target = local.dir.path().join("back.txt");
    local.ok_on(
        2,
        &["download", "notes.txt", "-o", target.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(target).unwrap(),
        b"written through one, read through another"
    );
    let config: serde_json::Value =
        json(&std::fs::read_to_string(local.dir.path().join("config.json")).unwrap());
    assert!(
        config["frontier"].is_string(),
        "the token is kept: {config}"
    );
}

/// A CA, and a certificate it issued for 127.0.0.1 and localhost: (chain, key, CA) as PEM files.
fn tls_files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&paths.0, cert.pem() + &ca.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    std::fs::write(&paths.2, ca.pem()).unwrap();
    paths
}

#[test]
fn the_cli_speaks_https_to_a_controller_whose_ca_it_is_given() {
    let certs = tempfile::tempdir().unwrap();
    let local = Local::start_tls(tls_files(certs.path()));
    assert!(local.server.starts_with("https://"), "{}", local.server);
    local.ok(&["register", "tess", "pw of tess"]);
    local.write("over-tls.txt", b"sent over TLS");
    local.ok(&["add", "over-tls.txt", "--tags", "secure"]);
    assert!(local.ok(&["list", "secure"]).contains("over-tls.txt"));

    // Without the CA the CLI refuses the server's certificate, and says why.
    let refused = local
        .command()
        .env_remove("REDCLOUD_CA_CERT")
        .args(["list", "secure"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // Plain HTTP to the TLS listener gets nothing.
    let plain = local
        .command()
        .env(
            "REDCLOUD_SERVER",
            local.server.replace("https://", "http://"),
        )
        .args(["list", "secure"])
        .output()
        .unwrap();
    assert!(!plain.status.success());
}

#[test]
fn cluster_forget_retires_a_node_and_names_what_it_refuses() {
    let local = Local::start();
    let status = json(&local.ok(&["--json", "status"]));
    let cluster = format!(
        "http://{}",
        status["cluster"]["controllers"][0]["address"]
            .as_str()
            .unwrap()
    );
    let chunkserver = status["cluster"]["chunkservers"][0]["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forget = |server: &str, args: &[&str]| {
        local
            .command()
            .args(["--server", server, "cluster", "forget"])
            .args(args)
            .output()
            .unwrap()
    };
    let stderr = |output: Output| {
        assert!(!output.status.success());
        String::from_utf8(output.stderr).unwrap()
    };
    assert!(
        stderr(forget(&cluster, &["00000000000000ff"]))
            .contains("No controller or chunkserver 00000000000000ff is known"),
    );
    let alive = stderr(forget(&cluster, &[&chunkserver]));
    assert!(
        alive.contains(&format!("chunkserver {chunkserver} was heard from"))
            && alive.contains("force"),
        "{alive}"
    );
    assert!(
        stderr(forget(&local.server, &[&chunkserver]))
            .contains("name a controller's cluster listener"),
    );
    let retired = forget(&cluster, &[&chunkserver, "--force"]);
    assert!(retired.status.success(), "{retired:?}");
    assert!(
        String::from_utf8(retired.stdout)
            .unwrap()
            .contains(&format!("Retired chunkserver {chunkserver}")),
    );
}

#[test]
fn a_normal_start_of_up_warns_about_nothing() {
    let local = Local::start();
    // Several heartbeat rounds (one a second) after every node is up.
    std::thread::sleep(Duration::from_millis(2500));
    let log = std::fs::read_to_string(local.dir.path().join("up.log")).unwrap();
    assert!(log.trim().is_empty(), "redcloud up warned: {log}");
    // What it does say: where to go next, the web app first.
    let out = std::fs::read_to_string(local.dir.path().join("up.out")).unwrap();
    assert!(
        out.contains(&format!("Open {}/app/ in a browser", local.server)),
        "{out}"
    );
}

#[test]
fn list_prints_a_table_whose_columns_line_up() {
    use unicode_width::UnicodeWidthStr;
    let local = Local::start();
    local.ok(&["register", "alice", "pw"]);
    let names = [
        "日本語のファイル.pdf",
        "e\u{301}-accent.txt",
        "a-rather-long-file-name-that-sets-the-name-column-width.tar.gz",
        "🦀.rs",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = local.write(name, &vec![b'x'; 1536 * (i + 1)]);
        local.ok(&["add", path.to_str().unwrap(), "--tags", "work,ünïcode"]);
    }
    let column = |line: &str, needle: &str| {
        let at = line
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"));
        line[..at].width()
    };
    let out = local.ok(&["list", "--utc", "work"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), names.len() + 2, "{out}");
    let header = lines[0];
    for line in &lines[1..=names.len()] {
        assert_eq!(column(line, "KiB") + 3, column(header, "SIZE") + 4, "{out}");
        assert_eq!(column(line, " UTC") + 6, column(header, "TAGS"), "{out}");
        assert_eq!(column(line, "work"), column(header, "TAGS"), "{out}");
    }
    assert!(out.contains("1.5 KiB") && out.contains("6.0 KiB"), "{out}");
    let exact = local.ok(&["list", "--bytes", "work"]);
    assert!(
        exact.contains(" 1536 ") && exact.contains(" 6144 "),
        "{exact}"
    );
    // Local time names its zone too (UTC here unless TZ says otherwise).
    let zoned = local
        .command()
        .env("TZ", "JST-9")
        .args(["list", "work"])
        .output()
        .unwrap();
    let zoned = String::from_utf8(zoned.stdout).unwrap();
    assert!(zoned.contains(" JST "), "{zoned}");

    // The tag list is a table too, counts right-aligned under their header.
    let tags = local.ok(&["tags"]);
    let lines: Vec<&str> = tags.lines().collect();
    assert_eq!(lines.len(), 3, "{tags}");
    assert!(
        lines[0].starts_with("TAG") && lines[0].ends_with("FILES"),
        "{tags}"
    );
    assert!(
        lines[1].starts_with("work ") && lines[1].ends_with(" 4"),
        "{tags}"
    );
    assert!(
        lines[2].starts_with("ünïcode") && lines[2].ends_with(" 4"),
        "{tags}"
    );
    assert_eq!(lines[1].width(), lines[0].width(), "{tags}");
    assert_eq!(lines[2].width(), lines[0].width(), "{tags}");
}

#[test]
fn log_takes_its_data_dir_before_or_after_the_verb() {
    let local = Local::start();
    local.ok(&["register", "alice", "pw"]);
    let data_dir = local.dir.path().join("data").join("controller-0");
    let data_dir = data_dir.to_str().unwrap();
    for args in [
        ["log", "--data-dir", data_dir, "show"],
        ["log", "show", "--data-dir", data_dir],
    ] {
        let out = local.ok(&args);
        assert!(out.contains("user \"alice\" registered"), "{args:?}: {out}");
    }
}

#[test]
fn s3_keys_are_made_listed_and_deleted() {
    let local = Local::start();
    local.ok(&["register", "alice", "pw"]);
    assert!(local.ok(&["s3-key", "list"]).contains("No S3 access keys"));

    let made = local.ok(&["s3-key", "create"]);
    let field = |label: &str| {
        made.lines()
            .find_map(|line| line.strip_prefix(label))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("no {label} in {made}"))
    };
    let (key_id, secret) = (field("Access key id:"), field("Secret access key:"));
    assert_eq!((key_id.len(), secret.len()), (20, 40), "{made}");
    assert!(made.contains("never shown again"), "{made}");

    let listed = local.ok(&["s3-key", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("ACCESS KEY ID"), "{listed}");
    assert!(lines[1].starts_with(&key_id), "{listed}");
    assert!(!listed.contains(&secret), "a list never shows a secret");

    assert!(local.ok(&["s3-key", "delete", &key_id]).contains(&key_id));
    assert!(local.ok(&["s3-key", "list"]).contains("No S3 access keys"));
    let refused = local.fails(&["s3-key", "delete", &key_id]);
    assert!(
        refused.contains(&format!("You have no S3 access key {key_id}")),
        "{refused}"
    );
}
