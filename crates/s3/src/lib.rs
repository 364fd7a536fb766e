//! RedCloud's S3 gateway. The S3 protocol (signatures, XML, routing) is `s3s`'s; what this
//! crate adds is the mapping of S3 onto RedCloud's model, written once for any [`Backend`]:
//! buckets are the caller's tags, object keys are file names, object tagging is RedCloud
//! tagging. The controller implements [`Backend`] over its service and serves [`router`] on
//! its S3 listener. `docs/s3.md` is the user's account of the mapping.

mod backend;
mod gateway;
mod listing;
mod names;

pub use backend::{
    AccessKey, Backend, BackendError, ByteStream, Completing, Content, ErrorKind, PendingUpload,
    StoredObject, UploadedPart,
};
pub use gateway::{GatewayConfig, router};
