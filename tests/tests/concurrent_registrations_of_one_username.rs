//! Two people register the same username on the two sides of a partition and upload files:
//! after the heal both accounts keep their keys, files and passwords on every controller; login
//! by name enters whichever account the password matches, and the later registration is told
//! of the conflict; the history checker finds every answer kept.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redcloud_tests::history::{History, tags};
use redcloud_tests::{ClusterBuilder, Member, status_json};
use serde_json::json;

#[tokio::test]
async fn concurrent_registrations_of_one_username() {
    let mut c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .controller_args(&["--chunkserver-timeout-ms", "1500"])
        .start()
        .await;
    c.partition(
        &[Member::Controller(0), Member::Chunkserver(0)],
        &[Member::Controller(1), Member::Chunkserver(1)],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let history = History::default();
    let (mut first, mut second) = (history.client(&c, 0), history.client(&c, 1));
    assert!(first.register("sam", "first-password").await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(second.register("sam", "second-password").await);
    assert!(
        first
            .upload("one.txt", b"one".to_vec(), &tags(&["t"]))
            .await
            .is_some()
    );
    assert!(
        second
            .upload("two.txt", b"two".to_vec(), &tags(&["t"]))
            .await
            .is_some()
    );
    let second = second.api_key().to_owned();
    c.heal();
    c.converged(Duration::from_secs(20)).await;

    for controller in 0..2 {
        let files = c.list_at(controller, &second, "").await;
        assert_eq!(
            files.len(),
            1,
            "the later account keeps its key and its files"
        );
        assert_eq!(
            c.download_at(controller, &second, "two.txt").await,
            (200, b"two".to_vec())
        );
    }
    // Before the logins below, which replace the registrations' keys.
    history.check(&c).await;
    for controller in 0..2 {
        let mut accounts = Vec::new();
        for (password, conflict) in [("first-password", false), ("second-password", true)] {
            let login = c
                .http
                .post(format!("{}/auth/login", c.url_of(controller)))
                .json(&json!({"username": "sam", "password": password}))
                .send()
                .await
                .unwrap();
            let (status, body) = status_json(login).await;
            assert_eq!(status, 200, "nobody is locked out: {body}");
            assert_eq!(body["username_conflict"], conflict, "{body}");
            let me = c
                .http
                .get(format!("{}/auth/me", c.url_of(controller)))
                .bearer_auth(body["api_key"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            let (status, me) = status_json(me).await;
            assert_eq!(status, 200);
            assert_eq!(
                (&me["username"], &me["username_conflict"]),
                (&json!("sam"), &json!(conflict))
            );
            accounts.push(me["user_id"].clone());
        }
        assert_ne!(
            accounts[0], accounts[1],
            "each password enters its own account"
        );
    }
}
