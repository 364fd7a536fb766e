//! Cluster links accept exactly the nodes that hold the cluster secret.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use redcloud_link::{ClusterClient, ClusterLink, ClusterSecret, ServeListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn link(secret: &str) -> ClusterLink {
    ClusterLink::new(Some(&ClusterSecret::new(secret).unwrap())).unwrap()
}

async fn serve(link: &ClusterLink) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new()
        .route(
            "/internal/secret",
            axum::routing::post(|body: Bytes| async move { format!("seen {} bytes", body.len()) }),
        )
        .route(
            "/internal/file",
            axum::routing::get(|| async { vec![7u8; 100_000] }),
        )
        .route(
            "/internal/missing",
            axum::routing::get(|| async { (axum::http::StatusCode::NOT_FOUND, "no such thing") }),
        );
    tokio::spawn(
        axum::serve(ServeListener::new(listener, link.server_config()), app).into_future(),
    );
    address
}

fn client(link: &ClusterLink) -> ClusterClient {
    ClusterClient::new(link, Duration::from_secs(2), Duration::from_secs(5))
}

/// Posts three bytes to the test route as `link`, reading at most `limit` bytes of answer.
async fn post_abc(
    link: &ClusterLink,
    address: &str,
    limit: usize,
) -> Result<redcloud_link::Reply, redcloud_link::ClusterHttpError> {
    client(link)
        .post(
            address,
            "/internal/secret",
            &[],
            Bytes::from_static(b"abc"),
            limit,
        )
        .await
}

#[tokio::test]
async fn a_node_with_the_secret_is_served() {
    let server = link("the cluster secret, sixteen+ bytes");
    let address = serve(&server).await;
    let peer = link("the cluster secret, sixteen+ bytes");
    let reply = post_abc(&peer, &address, 1024).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "seen 3 bytes");
}

#[tokio::test]
async fn a_node_of_another_cluster_gets_nothing() {
    let address = serve(&link("the cluster secret, sixteen+ bytes")).await;
    let error = post_abc(&link("another cluster's secret, also long"), &address, 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(error, redcloud_link::ClusterHttpError::Transport(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn plain_http_and_tls_without_a_certificate_get_nothing() {
    let address = serve(&link("the cluster secret, sixteen+ bytes")).await;
    // Plain HTTP, as curl would send it: the server reads no request and answers none.
    let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    tcp.write_all(b"POST /internal/secret HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("seen"),
        "plain HTTP was served: {answer:?}"
    );
    // A plain-link client (no certificate at all) is refused too.
    let error = client(&ClusterLink::Plain)
        .post(&address, "/internal/secret", &[], Bytes::new(), 1024)
        .await;
    assert!(error.is_err(), "{error:?}");
}

#[tokio::test]
async fn answers_beyond_the_limit_are_refused() {
    let server = link("the cluster secret, sixteen+ bytes");
    let address = serve(&server).await;
    let error = post_abc(&server, &address, 4).await.unwrap_err();
    assert!(
        matches!(
            error,
            redcloud_link::ClusterHttpError::TooLarge { limit: 4 }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn downloads_land_whole_in_a_file_and_stop_at_their_limit() {
    let server = link("the cluster secret, sixteen+ bytes");
    let address = serve(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    client(&server)
        .download(&address, "/internal/file", &whole, 100_000)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&whole).unwrap(), vec![7u8; 100_000]);

    let cut = dir.path().join("cut");
    let error = client(&server)
        .download(&address, "/internal/file", &cut, 99_999)
        .await
        .unwrap_err();
    assert!(
        matches!(error, redcloud_link::ClusterHttpError::TooLarge { .. }),
        "{error:?}"
    );

    let error = client(&server)
        .download(&address, "/internal/missing", &dir.path().join("none"), 10)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, redcloud_link::ClusterHttpError::Status { status: 404, detail } if detail == "no such thing"),
        "{error:?}"
    );
    assert!(
        !dir.path().join("none").exists(),
        "an error status writes no file"
    );

    let outsider = link("another cluster's secret, 16+ bytes");
    let refused = client(&outsider)
        .download(
            &address,
            "/internal/file",
            &dir.path().join("stolen"),
            1 << 20,
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
}
