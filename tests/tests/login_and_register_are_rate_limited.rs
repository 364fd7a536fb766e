//! Login and registration are rate-limited per username (failed attempts only) and per
//! client address: 429 RATE_LIMITED with a `Retry-After` in whole seconds, over HTTP and gRPC.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use redcloud_proto::files::Credentials;
use redcloud_proto::files::files_client::FilesClient;
use redcloud_tests::{Cluster, ClusterBuilder, status_json};
use serde_json::{Value, json};

fn cluster() -> ClusterBuilder {
    ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
}

async fn call(
    c: &Cluster,
    client: &reqwest::Client,
    path: &str,
    username: &str,
    password: &str,
) -> (u16, Value, Option<u64>) {
    let response = client
        .post(format!("{}{path}", c.url()))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let (status, body) = status_json(response).await;
    (status, body, retry_after)
}

fn assert_rate_limited((status, body, retry_after): (u16, Value, Option<u64>), what: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{what}: {body}"
    );
    assert!(body["detail"].is_string(), "{what}: {body}");
    let seconds = retry_after.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!((1..=60).contains(&seconds), "{what}: Retry-After {seconds}");
}

#[tokio::test]
async fn failed_logins_are_limited_per_username() {
    let c = cluster()
        .controller_args(&[
            "--auth-rate-username-burst",
            "3",
            "--auth-rate-username-per-minute",
            "1",
        ])
        .start()
        .await;
    c.register("alice", "right").await;
    c.register("bob", "right").await;
    for _ in 0..5 {
        let (status, _, _) = call(&c, &c.http, "/auth/login", "bob", "right").await;
        assert_eq!(status, 200, "successful logins do not count");
    }
    for _ in 0..3 {
        let (status, body, _) = call(&c, &c.http, "/auth/login", "alice", "wrong").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("INVALID_CREDENTIALS"))
        );
    }
    assert_rate_limited(
        call(&c, &c.http, "/auth/login", "alice", "wrong").await,
        "a fourth wrong password",
    );
    assert_rate_limited(
        call(&c, &c.http, "/auth/login", "alice", "right").await,
        "even the right password while the name is limited",
    );
    let (status, _, _) = call(&c, &c.http, "/auth/login", "bob", "right").await;
    assert_eq!(status, 200, "other usernames are not affected");

    // gRPC goes through the same limits.
    let mut grpc = FilesClient::connect(c.url()).await.unwrap();
    let refused = grpc
        .login(Credentials {
            username: "alice".into(),
            password: "right".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let seconds: u64 = refused
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1);
}

fn client_from(last_octet: u8) -> reqwest::Client {
    redcloud_tests::http_client_builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn attempts_are_limited_per_client_address() {
    let c = cluster()
        .controller_args(&[
            "--auth-rate-address-burst",
            "5",
            "--auth-rate-address-per-minute",
            "1",
        ])
        .start()
        .await;
    let busy = client_from(2);
    for i in 0..3 {
        let (status, _, _) = call(&c, &busy, "/auth/register", &format!("user{i}"), "pw").await;
        assert_eq!(status, 201);
    }
    for i in 0..2 {
        let (status, _, _) = call(&c, &busy, "/auth/login", &format!("user{i}"), "pw").await;
        assert_eq!(status, 200);
    }
    assert_rate_limited(
        call(&c, &busy, "/auth/register", "user9", "pw").await,
        "a sixth attempt from one address",
    );
    assert_rate_limited(
        call(&c, &busy, "/auth/login", "user0", "pw").await,
        "logins share the address budget",
    );
    let (status, _, _) = call(&c, &client_from(3), "/auth/login", "user0", "pw").await;
    assert_eq!(status, 200, "another address has its own budget");
}
