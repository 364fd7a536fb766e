//! Guards the sans-IO rule at the dependency level: the event log links no async runtime or
//! network stack, so its core cannot do I/O behind the caller's back.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const FORBIDDEN: &[&str] = &["tokio", "mio", "hyper", "async-std", "smol"];

#[test]
fn eventlog_depends_on_no_async_runtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "redcloud-eventlog",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"fjall"),
        "cargo tree printed something unexpected:\n{tree}"
    );
    for forbidden in FORBIDDEN {
        assert!(
            !crates.contains(forbidden),
            "redcloud-eventlog depends on {forbidden}:\n{tree}"
        );
    }
}
