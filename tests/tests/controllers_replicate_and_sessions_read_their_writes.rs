//! Three controllers: a write on one reaches the others by gossip, a client that carries its
//! frontier token reads its own writes on any controller at once, a token nobody can satisfy is
//! a 503 NOT_CAUGHT_UP, and every controller ends with the same read model.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_tests::{Cluster, ClusterBuilder, status_json, test_data};
use serde_json::{Value, json};

const TOKEN: &str = "x-redcloud-frontier";

async fn register_at(c: &Cluster, i: usize, user: &str) -> (String, String) {
    let response = c
        .http
        .post(format!("{}/auth/register", c.url_of(i)))
        .json(&json!({"username": user, "password": "pw"}))
        .send()
        .await
        .unwrap();
    let token = response.headers()[TOKEN].to_str().unwrap().to_owned();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 201);
    (body["api_key"].as_str().unwrap().to_owned(), token)
}

/// `GET path` on controller `i` with the key and a frontier token.
async fn get_with_token(
    c: &Cluster,
    i: usize,
    key: &str,
    token: &str,
    path: &str,
) -> reqwest::Response {
    c.http
        .get(format!("{}{path}", c.url_of(i)))
        .bearer_auth(key)
        .header(TOKEN, token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn controllers_replicate_and_sessions_read_their_writes() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(3)
        .controller_args(&["--catch-up-timeout-ms", "700"])
        .start()
        .await;

    // Registered on controller 0, used at once on controller 1 thanks to the token.
    let (key, token) = register_at(&c, 0, "alice").await;
    let listed = get_with_token(&c, 1, &key, &token, "/files?tags=").await;
    assert_eq!(
        listed.status(),
        200,
        "controller 1 caught up with the client's token"
    );

    // Uploaded through controller 1, listed and downloaded through controller 2.
    let data = test_data(5, 300_000);
    let form = reqwest::multipart::Form::new().text("tags", "shared").part(
        "file",
        reqwest::multipart::Part::bytes(data.clone()).file_name("doc.bin"),
    );
    let uploaded = c
        .http
        .post(format!("{}/files", c.url_of(1)))
        .bearer_auth(&key)
        .header(TOKEN, &token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let token = uploaded.headers()[TOKEN].to_str().unwrap().to_owned();
    let listed = get_with_token(&c, 2, &key, &token, "/files?tags=shared").await;
    let (status, body) = status_json(listed).await;
    assert_eq!((status, body["files"].as_array().unwrap().len()), (200, 1));
    let download = c
        .http
        .get(format!("{}/files/by-name/doc.bin/download", c.url_of(2)))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(download.bytes().await.unwrap().to_vec() == data);

    // Without a token, a write still shows up everywhere by gossip alone, and quickly.
    let started = Instant::now();
    let (other_key, _) = register_at(&c, 2, "bob").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = c
            .http
            .get(format!("{}/files?tags=", c.url_of(0)))
            .bearer_auth(&other_key)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "bob never reached controller 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "a registration on controller 2 was usable on controller 0 after {:?}",
        started.elapsed()
    );

    // A token naming an origin this cluster never had is refused at once: nothing to wait for.
    // MessagePack for {0x00000000deadbeef: 1_000_000_000}.
    let foreign = "81cf00000000deadbeefce3b9aca00";
    let (status, body) =
        status_json(get_with_token(&c, 1, &key, foreign, "/files?tags=").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_FRONTIER")),
        "{body}"
    );
    // A history of a real controller that nobody has cannot be honoured: 503, not a stale
    // answer.
    let origin: redcloud_eventlog::NodeId = c.controller.node_id().unwrap().parse().unwrap();
    let ahead: redcloud_eventlog::VersionVector =
        [(origin, redcloud_eventlog::Seq::new(1_000_000_000))]
            .into_iter()
            .collect();
    let impossible = hex::encode(rmp_serde::to_vec(&ahead).unwrap());
    let (status, body) =
        status_json(get_with_token(&c, 1, &key, &impossible, "/files?tags=").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("NOT_CAUGHT_UP")),
        "{body}"
    );
    let (status, body) =
        status_json(get_with_token(&c, 1, &key, "not-hex", "/files?tags=").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST"))
    );

    let states = c.converged(Duration::from_secs(10)).await;
    assert_eq!(states[0]["operations"], states[2]["operations"]);
    let reply = c
        .cluster_http
        .get(&c.controller.cluster_address(), "/internal/peers", 1 << 20)
        .await
        .unwrap();
    let peers: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2, "{peers}");
}
