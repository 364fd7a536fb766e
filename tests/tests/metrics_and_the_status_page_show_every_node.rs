//! `/metrics` on controllers and chunkservers parses as Prometheus text and counts what
//! happened; `/status` names every node of the cluster and its JSON form agrees.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redcloud_tests::{Cluster, ClusterBuilder, test_data};
use serde_json::Value;

/// Samples of a Prometheus text exposition: `name{labels}` → value. Panics on a malformed line.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        if let Some(open) = series.find('{') {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
            for label in series[open + 1..series.len() - 1].split("\",") {
                let (name, quoted) = label
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(
                    !name.is_empty() && quoted.starts_with('"'),
                    "bad label in {line:?}"
                );
            }
        }
        samples.insert(series.to_owned(), value);
    }
    assert!(
        text.trim_end().ends_with("# EOF"),
        "an OpenMetrics exposition ends with # EOF"
    );
    samples
}

async fn scrape(c: &Cluster, address: &str) -> BTreeMap<String, f64> {
    let response = redcloud_tests::http_client()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = c;
    parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_and_the_status_page_show_every_node() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(2)
        .controller_args(&["--chunk-size-bytes", "65536", "--repair-interval-ms", "200"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    assert_eq!(
        c.upload_at(0, &key, "a.bin", test_data(1, 200_000), "t")
            .await
            .status(),
        201
    );
    c.chunks_everywhere(Duration::from_secs(20)).await;
    c.converged(Duration::from_secs(10)).await;

    let controllers: Vec<String> = (0..2)
        .map(|i| c.controller_at(i).node_id().unwrap())
        .collect();
    let chunkservers: Vec<String> = c
        .chunkservers
        .iter()
        .map(|cs| cs.node_id().unwrap())
        .collect();

    // Repair rounds fill in the replication numbers, gossip the peer numbers and heartbeats the
    // chunkservers' use; wait for all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&c, &c.controller_at(0).metrics_address()).await;
        let behind = format!(
            r#"redcloud_peer_operations_behind{{node="{}"}}"#,
            controllers[1]
        );
        let used_reported = chunkservers.iter().all(|cs| {
            m.get(&format!(
                r#"redcloud_chunkserver_used_bytes{{node="{cs}"}}"#
            ))
            .is_some_and(|used| *used >= 200_000.0)
        });
        if m.get("redcloud_chunks_referenced") == Some(&4.0)
            && m.get("redcloud_chunks_under_replicated") == Some(&0.0)
            && m.get(&behind) == Some(&0.0)
            && used_reported
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "replication and peer numbers never settled: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        m[r#"redcloud_http_responses_total{route="/files",method="POST",status="201"}"#],
        1.0
    );
    assert!(
        m[r#"redcloud_http_request_duration_seconds_count{route="/files",method="POST"}"#] >= 1.0
    );
    assert!(m[r#"redcloud_log_appended_operations_total{source="local"}"#] >= 2.0);
    assert!(m["redcloud_log_operations"] >= 5.0);
    assert!(m[r#"redcloud_gossip_sent_messages_total{kind="frontier_request"}"#] >= 1.0);
    assert!(m["redcloud_gossip_sent_bytes_total"] > 0.0);
    assert_eq!(
        m[&format!(
            r#"redcloud_peer_operations_behind{{node="{}"}}"#,
            controllers[1]
        )],
        0.0
    );
    for cs in &chunkservers {
        assert_eq!(
            m[&format!(r#"redcloud_chunkserver_healthy{{node="{cs}"}}"#)],
            1.0
        );
        assert!(m[&format!(r#"redcloud_chunkserver_used_bytes{{node="{cs}"}}"#)] >= 200_000.0);
        assert!(m[&format!(r#"redcloud_chunkserver_capacity_bytes{{node="{cs}"}}"#)] > 0.0);
        assert_eq!(
            m[&format!(r#"redcloud_chunkserver_missing_chunks{{node="{cs}"}}"#)],
            0.0
        );
    }
    for key in [
        "redcloud_repair_queued_copies",
        "redcloud_gc_candidates",
        "redcloud_gc_deleted",
    ] {
        assert!(m.contains_key(key), "{key} missing");
    }

    let cs = scrape(&c, &c.chunkservers[0].metrics_address()).await;
    assert_eq!(cs["redcloud_chunkserver_chunks"], 4.0);
    assert!(cs["redcloud_chunkserver_used_bytes"] >= 200_000.0);
    assert!(cs[r#"redcloud_chunkserver_calls_total{method="ListChunks"}"#] >= 1.0);
    assert!(
        cs.get(r#"redcloud_chunkserver_calls_total{method="WriteChunk"}"#)
            .copied()
            .unwrap_or(0.0)
            + cs.get(r#"redcloud_chunkserver_calls_total{method="ReplicateChunk"}"#)
                .copied()
                .unwrap_or(0.0)
            >= 1.0
    );

    for i in 0..2 {
        let page = c.get_at(i, "", "/status").await;
        assert_eq!(page.status(), 200);
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = page.text().await.unwrap();
        for node in controllers.iter().chain(&chunkservers) {
            assert!(
                html.contains(node.as_str()),
                "controller {i}'s status page does not name {node}"
            );
        }
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "no external assets"
        );

        let json: Value = c
            .get_at(i, "", "/status?format=json")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(json["node_id"], controllers[i]);
        assert_eq!(json["controllers"].as_array().unwrap().len(), 2);
        assert!(
            json["controllers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["reachable"] == true)
        );
        assert_eq!(json["chunkservers"].as_array().unwrap().len(), 2);
    }
    let bad = c.get_at(0, "", "/status?format=xml").await;
    assert_eq!(bad.status(), 400);
}
