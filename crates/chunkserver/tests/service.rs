//! The chunkserver through its real entry point: gRPC on a loopback port, heartbeats to a
//! stand-in controller.
#![allow(clippy::unwrap_used)]

use prost::bytes::Bytes;
use redcloud_chunkserver::{Config, Listeners, run};
use redcloud_proto::chunkserver::chunkserver_client::ChunkserverClient;
use redcloud_proto::chunkserver::{
    DeleteChunkRequest, ListChunksRequest, PingRequest, ReadChunkRequest, ReplicateChunkRequest,
    WriteChunkRequest,
};
use redcloud_types::{ChunkId, Heartbeat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

struct Server {
    address: String,
    client: ChunkserverClient<Channel>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(controllers: Vec<String>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let config = Config::for_test(dir.path().to_owned(), controllers);
    let listeners = Listeners::bind(&config).await.unwrap();
    let address = listeners.cluster.local_addr().unwrap().to_string();
    tokio::spawn(run(config, listeners, shutdown.clone()));
    let client = ChunkserverClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    Server {
        address,
        client,
        shutdown,
        _dir: dir,
    }
}

fn write_request(data: &[u8], pieces: usize) -> Vec<WriteChunkRequest> {
    let id = ChunkId::of(data);
    let step = data.len().div_ceil(pieces.max(1)).max(1);
    let mut messages: Vec<WriteChunkRequest> = data
        .chunks(step)
        .map(|piece| WriteChunkRequest {
            data: Bytes::copy_from_slice(piece),
            ..Default::default()
        })
        .collect();
    if messages.is_empty() {
        messages.push(WriteChunkRequest::default());
    }
    messages[0].chunk_id = Bytes::copy_from_slice(id.as_bytes());
    messages[0].size = data.len() as u64;
    messages
}

async fn read(
    client: &mut ChunkserverClient<Channel>,
    id: ChunkId,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .read_chunk(ReadChunkRequest {
            chunk_id: Bytes::copy_from_slice(id.as_bytes()),
        })
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(piece) = stream.next().await {
        data.extend_from_slice(&piece?.data);
    }
    Ok(data)
}

#[tokio::test]
async fn write_read_list_delete_and_ping() {
    let mut server = start(Vec::new()).await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = ChunkId::of(&data);
    let reply = server
        .client
        .write_chunk(tokio_stream::iter(write_request(&data, 5)))
        .await
        .unwrap();
    assert!(!reply.get_ref().already_present);
    let again = server
        .client
        .write_chunk(tokio_stream::iter(write_request(&data, 4)))
        .await
        .unwrap();
    assert!(again.get_ref().already_present);
    assert_eq!(read(&mut server.client, id).await.unwrap(), data);

    let empty = ChunkId::of(b"");
    server
        .client
        .write_chunk(tokio_stream::iter(write_request(b"", 1)))
        .await
        .unwrap();
    assert_eq!(read(&mut server.client, empty).await.unwrap(), b"");

    let ping = server
        .client
        .ping(PingRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ping.chunk_count, ping.used_bytes), (2, data.len() as u64));
    assert!(ping.capacity_bytes >= ping.used_bytes);
    assert_eq!(ping.node_id.len(), 16);

    let mut listed = Vec::new();
    let mut stream = server
        .client
        .list_chunks(ListChunksRequest {})
        .await
        .unwrap()
        .into_inner();
    while let Some(batch) = stream.next().await {
        listed.extend(
            batch
                .unwrap()
                .chunk_ids
                .into_iter()
                .map(|b| ChunkId::from_slice(&b).unwrap()),
        );
    }
    listed.sort();
    let mut expected = vec![id, empty];
    expected.sort();
    assert_eq!(listed, expected);

    let deleted = server
        .client
        .delete_chunk(DeleteChunkRequest {
            chunk_id: Bytes::copy_from_slice(id.as_bytes()),
            min_idle_ms: 600_000,
        })
        .await
        .unwrap();
    assert!(deleted.get_ref().existed);
    assert!(
        deleted.get_ref().kept_recently_written,
        "a chunk written just now is not idle"
    );
    let deleted = server
        .client
        .delete_chunk(DeleteChunkRequest {
            chunk_id: Bytes::copy_from_slice(id.as_bytes()),
            min_idle_ms: 0,
        })
        .await
        .unwrap();
    assert!(deleted.get_ref().existed);
    assert!(!deleted.get_ref().kept_recently_written);
    let missing = read(&mut server.client, id).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server.shutdown.cancel();
}

#[tokio::test]
async fn bad_writes_are_refused_and_leave_nothing() {
    let mut server = start(Vec::new()).await;
    let mut lying = write_request(b"honest data", 1);
    lying[0].data = Bytes::from_static(b"forged data");
    let err = server
        .client
        .write_chunk(tokio_stream::iter(lying))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut short = write_request(b"0123456789", 2);
    short.pop();
    let err = server
        .client
        .write_chunk(tokio_stream::iter(short))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    let mut long = write_request(b"0123456789", 1);
    long.push(WriteChunkRequest {
        data: Bytes::from_static(b"more"),
        ..Default::default()
    });
    let err = server
        .client
        .write_chunk(tokio_stream::iter(long))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut huge = write_request(b"x", 1);
    huge[0].size = 1 << 40;
    let err = server
        .client
        .write_chunk(tokio_stream::iter(huge))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut bad_id = write_request(b"x", 1);
    bad_id[0].chunk_id = Bytes::from_static(b"short");
    let err = server
        .client
        .write_chunk(tokio_stream::iter(bad_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let err = server
        .client
        .write_chunk(tokio_stream::iter(Vec::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let ping = server
        .client
        .ping(PingRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ping.chunk_count, 0);
    server.shutdown.cancel();
}

#[tokio::test]
async fn replicate_pulls_from_another_chunkserver() {
    let mut source = start(Vec::new()).await;
    let mut target = start(Vec::new()).await;
    let data = b"replicate me".to_vec();
    let id = ChunkId::of(&data);
    source
        .client
        .write_chunk(tokio_stream::iter(write_request(&data, 1)))
        .await
        .unwrap();
    let request = ReplicateChunkRequest {
        chunk_id: Bytes::copy_from_slice(id.as_bytes()),
        source_address: source.address.clone(),
    };
    let reply = target
        .client
        .replicate_chunk(request.clone())
        .await
        .unwrap();
    assert!(!reply.get_ref().already_present);
    assert_eq!(read(&mut target.client, id).await.unwrap(), data);
    assert!(
        target
            .client
            .replicate_chunk(request)
            .await
            .unwrap()
            .get_ref()
            .already_present
    );

    let absent = ReplicateChunkRequest {
        chunk_id: Bytes::copy_from_slice(ChunkId::of(b"nowhere").as_bytes()),
        source_address: source.address.clone(),
    };
    assert_eq!(
        target
            .client
            .replicate_chunk(absent)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    let unreachable = ReplicateChunkRequest {
        chunk_id: Bytes::copy_from_slice(ChunkId::of(b"x").as_bytes()),
        source_address: "127.0.0.1:1".to_owned(),
    };
    assert_eq!(
        target
            .client
            .replicate_chunk(unreachable)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unavailable
    );
    source.shutdown.cancel();
    target.shutdown.cancel();
}

/// Accepts one HTTP request and answers 200; returns the request's body.
async fn accept_one(listener: &TcpListener) -> (String, String) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return (head.to_owned(), body.to_owned());
            }
        }
        assert!(n > 0, "connection closed mid-request");
    }
}

#[tokio::test]
async fn heartbeats_reach_the_controllers() {
    let controller = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let controller_address = controller.local_addr().unwrap().to_string();
    let server = start(vec![controller_address]).await;
    let (head, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), accept_one(&controller))
            .await
            .unwrap();
    assert!(head.starts_with("POST /internal/heartbeat "), "{head}");
    let beat: Heartbeat = serde_json::from_str(&body).unwrap();
    assert_eq!(beat.address, server.address);
    assert_eq!(beat.chunk_count, 0);
    server.shutdown.cancel();
}
