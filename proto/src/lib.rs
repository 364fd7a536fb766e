//! Generated protobuf and tonic code for RedCloud's gRPC services; nothing else lives here.
#![allow(missing_docs, clippy::all, clippy::unwrap_used)]

/// The chunkserver service.
pub mod chunkserver {
    tonic::include_proto!("redcloud.chunkserver.v1");
}

/// The controller's client API.
pub mod files {
    tonic::include_proto!("redcloud.files.v1");
}
