//! A controller whose wall clock runs 15 minutes ahead (`--clock-offset-ms`, the hidden test
//! aid) is named on both sides: the controller that refuses its operations shows which peer
//! and by how much, and the fast controller shows that its own clock is ahead and who refuses
//! its operations, on `/status` (JSON and page) and in `/metrics`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_tests::ClusterBuilder;
use serde_json::Value;

const AHEAD_MS: i64 = 15 * 60 * 1000;

/// Whether `value` is `expected` give or take the time a message spends in flight.
fn about(value: &Value, expected: i64) -> bool {
    value.as_i64().is_some_and(|v| (v - expected).abs() < 2_000)
}

fn controller<'a>(status: &'a Value, node_id: &str) -> &'a Value {
    status["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node_id"] == node_id)
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_controller_whose_clock_runs_ahead_is_named_on_both_sides() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controllers(2)
        .chunkservers(1)
        .controller_args_at(1, &["--clock-offset-ms", &AHEAD_MS.to_string()])
        .start()
        .await;
    let (slow, fast) = (
        c.controller_at(0).node_id().unwrap(),
        c.controller_at(1).node_id().unwrap(),
    );

    // The fast controller's first operation (it records itself in the log) is stamped 15
    // minutes ahead of the other's clock; anti-entropy rounds carry both clocks.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (on_slow, on_fast) = loop {
        let (on_slow, on_fast) = (c.status_page_of(0).await, c.status_page_of(1).await);
        let fast_seen_from_slow = controller(&on_slow, &fast);
        let slow_seen_from_fast = controller(&on_fast, &slow);
        if about(&fast_seen_from_slow["clock_offset_ms"], AHEAD_MS)
            && fast_seen_from_slow["refused_ahead_ms"].as_i64().is_some()
            && about(&on_slow["clock"]["offset_ms"], -AHEAD_MS)
            && about(&slow_seen_from_fast["clock_offset_ms"], -AHEAD_MS)
            && about(&on_fast["clock"]["offset_ms"], AHEAD_MS)
        {
            break (on_slow, on_fast);
        }
        assert!(
            Instant::now() < deadline,
            "the skew is not shown on both sides:\n{on_slow:#}\n{on_fast:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(about(
        &controller(&on_slow, &fast)["refused_ahead_ms"],
        AHEAD_MS
    ));
    assert_eq!(controller(&on_slow, &fast)["clock_skewed"], true);
    assert_eq!(on_fast["clock"]["skewed"], true);
    assert_eq!(
        on_fast["clock"]["refused_by"],
        serde_json::json!([slow]),
        "the fast controller knows who refuses its operations"
    );

    // The pages say it in sentences (the JSON above has the numbers).
    let slow_page = c.get_at(0, "", "/status").await.text().await.unwrap();
    assert!(
        slow_page.contains(&format!("Controller {fast}: its clock is "))
            && slow_page.contains("ahead of this one&#39;s; its operations are refused"),
        "{slow_page}"
    );
    let fast_page = c.get_at(1, "", "/status").await.text().await.unwrap();
    assert!(
        fast_page.contains("ahead of the median of its 1 peer(s)")
            && fast_page.contains(&format!("{slow} refuse its new operations")),
        "{fast_page}"
    );

    let slow_metrics = c.metrics_of(0).await;
    let refused = format!(r#"redcloud_peer_clock_refused{{node="{fast}"}} 1"#);
    assert!(slow_metrics.lines().any(|l| l == refused), "{slow_metrics}");
    let offset_prefix = format!(r#"redcloud_peer_clock_offset_seconds{{node="{fast}"}} "#);
    let offset: f64 = slow_metrics
        .lines()
        .find_map(|l| l.strip_prefix(offset_prefix.as_str()))
        .unwrap()
        .parse()
        .unwrap();
    assert!((offset - 900.0).abs() < 2.0, "{offset}");
    let fast_metrics = c.metrics_of(1).await;
    let own: f64 = fast_metrics
        .lines()
        .find_map(|l| l.strip_prefix("redcloud_clock_offset_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((own - 900.0).abs() < 2.0, "{own}");
}
