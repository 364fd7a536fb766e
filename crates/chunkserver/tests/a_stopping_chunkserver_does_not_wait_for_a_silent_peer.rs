//! A chunkserver told to stop finishes within its drain period even when a peer's connection
//! stays open and silent, as the connection of a controller cut off by a network partition
//! does: nothing ever closes it, so waiting for it would hold the process until SIGKILL.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use redcloud_chunkserver::{Config, Listeners, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The HTTP/2 connection preface followed by an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test]
async fn a_stopping_chunkserver_does_not_wait_for_a_silent_peer() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let config = Config::for_test(dir.path().to_owned(), Vec::new());
    let listeners = Listeners::bind(&config).await.unwrap();
    let address = listeners.cluster.local_addr().unwrap();
    let server = tokio::spawn(run(config, listeners, shutdown.clone()));

    // A peer that opens an HTTP/2 connection, reads the server's first frame header, and then
    // never reads or writes again.
    let mut silent = TcpStream::connect(address).await.unwrap();
    silent.write_all(PREFACE).await.unwrap();
    let mut frame_header = [0u8; 9];
    silent.read_exact(&mut frame_header).await.unwrap();

    let asked = Instant::now();
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(20), server).await;
    assert!(
        stopped.is_ok(),
        "still serving 20 s after being told to stop"
    );
    stopped.unwrap().unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
    drop(silent);
}
