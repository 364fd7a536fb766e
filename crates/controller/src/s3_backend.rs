//! The S3 listener's access to the service: `redcloud_s3::Backend` over [`Service`]. Only
//! translation lives here; the mapping rules are the gateway's and the storage rules the
//! service's.

use std::sync::Arc;

use futures_util::StreamExt as _;
use redcloud_s3::{AccessKey, Backend, BackendError, ByteStream, ErrorKind, StoredObject};
use uuid::Uuid;

use crate::http::AppState;
use crate::readmodel::FileRecord;
use crate::service::{DownloadTarget, Service, check_upload};

/// The service as the S3 gateway uses it.
pub struct S3Backend {
    state: Arc<AppState>,
}

impl S3Backend {
    /// Serves the gateway from the service of `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    fn service(&self) -> &Service {
        &self.state.service
    }
}

fn stored_object(file: FileRecord) -> StoredObject {
    StoredObject {
        file_id: file.file_id,
        name: file.name,
        size: file.size,
        created_at_ms: file.created_at_ms,
        tags: file.tags,
        etag: file.md5.map(|md5| md5.etag()),
    }
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn access_key(&self, key_id: &str) -> Result<Option<AccessKey>, BackendError> {
        Ok(self
            .service()
            .s3_access_key(key_id.to_owned())
            .await?
            .map(|(owner, secret)| AccessKey { owner, secret }))
    }

    async fn tags(&self, owner: Uuid) -> Result<Vec<(String, u64, u64)>, BackendError> {
        Ok(self
            .service()
            .tag_counts(owner)
            .await?
            .into_iter()
            .map(|t| (t.tag, t.files, t.first_created_at_ms))
            .collect())
    }

    async fn objects(
        &self,
        owner: Uuid,
        tags: Vec<String>,
    ) -> Result<Vec<StoredObject>, BackendError> {
        Ok(self
            .service()
            .list(owner, tags)
            .await?
            .into_iter()
            .map(stored_object)
            .collect())
    }

    async fn object(
        &self,
        owner: Uuid,
        name: String,
    ) -> Result<Option<StoredObject>, BackendError> {
        match self
            .service()
            .find_download(owner, DownloadTarget::Name(name))
            .await
        {
            Ok(download) => Ok(Some(stored_object(download.file))),
            Err(crate::ApiError::FileNotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn put(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
        expected_md5: Option<[u8; 16]>,
        body: ByteStream,
    ) -> Result<StoredObject, BackendError> {
        check_upload(&name, Some(&tags))?;
        let stored = self.service().store_data(body).await?;
        if let Some(expected) = expected_md5
            && expected != stored.md5.digest
        {
            // The chunks just stored are referenced by nothing and collected later.
            return Err(BackendError::new(
                ErrorKind::BadDigest,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
        let uploaded = self
            .service()
            .record_file(owner, name, tags, stored)
            .await?;
        Ok(StoredObject {
            file_id: uploaded.file_id,
            name: uploaded.name,
            size: uploaded.size,
            created_at_ms: uploaded.created_at_ms,
            tags: uploaded.tags,
            etag: Some(uploaded.md5.etag()),
        })
    }

    async fn read(
        &self,
        owner: Uuid,
        object: &StoredObject,
        first: u64,
        last: u64,
    ) -> Result<ByteStream, BackendError> {
        let download = self
            .service()
            .find_download(owner, DownloadTarget::Id(object.file_id))
            .await?;
        let stream = self.service().read_range(download, first, last).await?;
        Ok(stream.boxed())
    }

    async fn delete(&self, owner: Uuid, file_id: Uuid) -> Result<(), BackendError> {
        Ok(self.service().delete_file(owner, file_id).await?)
    }

    async fn retag(
        &self,
        owner: Uuid,
        file_id: Uuid,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), BackendError> {
        if !add.is_empty() {
            self.service().add_file_tags(owner, file_id, add).await?;
        }
        if !remove.is_empty() {
            self.service()
                .remove_file_tags(owner, file_id, remove)
                .await?;
        }
        Ok(())
    }
}
