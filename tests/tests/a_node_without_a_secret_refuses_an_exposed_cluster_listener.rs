//! Secure by default: a node with no cluster secret whose cluster listener other machines can
//! reach refuses to start and says how to make a secret; `--insecure` starts it anyway, and
//! it says so in its log and on its status page.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redcloud_tests::{free_port, http_client, status_json};

const NODE: &str = env!("CARGO_BIN_EXE_redcloud-test-node");

fn node(role: &str, dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::new(NODE);
    command
        .arg(role)
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove("REDCLOUD_CLUSTER_TOKEN")
        .env_remove("REDCLOUD_CLUSTER_TOKEN_FILE")
        .env_remove("REDCLOUD_INSECURE")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

#[test]
fn controllers_and_chunkservers_refuse_to_start_open_to_the_network() {
    let dir = tempfile::tempdir().unwrap();
    for (role, args) in [
        (
            "controller",
            vec![
                "--listen",
                "127.0.0.1:0",
                "--cluster-listen",
                "0.0.0.0:0",
                "--s3-listen",
                "127.0.0.1:0",
                "--discovery-dns",
                "",
            ],
        ),
        (
            "chunkserver",
            vec![
                "--listen",
                "0.0.0.0:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--controllers",
                "127.0.0.1:1",
            ],
        ),
    ] {
        let output = node(role, &dir.path().join(role), &args).output().unwrap();
        assert!(!output.status.success(), "{role} started without a secret");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no cluster secret") && stderr.contains("--cluster-token-file"),
            "{role} did not say how to make a secret: {stderr}"
        );
    }
}

#[tokio::test]
async fn an_insecure_controller_warns_in_its_log_and_on_its_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("controller.log");
    let mut child = node(
        "controller",
        &dir.path().join("data"),
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cluster-listen",
            "0.0.0.0:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--discovery-dns",
            "",
            "--insecure",
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/status?format=json"))
            .send()
            .await
        {
            break status_json(response).await;
        }
        assert!(
            Instant::now() < deadline,
            "the insecure controller never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page = http
        .get(format!("http://127.0.0.1:{port}/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status.0, 200);
    assert_eq!(status.1["insecure"], true, "{}", status.1);
    assert!(page.contains("--insecure"), "the status page does not warn");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("running --insecure"), "{logged}");
}
