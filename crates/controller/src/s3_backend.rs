//! The S3 listener's access to the service: `redcloud_s3::Backend` over [`Service`]. Only
//! translation lives here; the mapping rules are the gateway's and the storage rules the
//! service's.

use std::sync::Arc;

use futures_util::StreamExt as _;
use redcloud_s3::{
    AccessKey, Backend, BackendError, ByteStream, Completing, Content, PendingUpload, StoredObject,
    UploadedPart,
};
use uuid::Uuid;

use crate::http::AppState;
use crate::readmodel::{FileRecord, MultipartUpload};
use crate::service::{Download, DownloadTarget, Service, Uploaded, check_upload};

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

    /// The owner's live file shown under `name`, with its chunks; `None` when there is none.
    async fn download_by_name(
        &self,
        owner: Uuid,
        name: String,
    ) -> Result<Option<Download>, BackendError> {
        match self
            .service()
            .find_download(owner, DownloadTarget::Name(name))
            .await
        {
            Ok(download) => Ok(Some(download)),
            Err(crate::ApiError::FileNotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn pending(upload: MultipartUpload) -> PendingUpload {
    PendingUpload {
        upload_id: upload.upload_id,
        name: upload.name,
        tags: upload.tags,
        started_at_ms: upload.started_at_ms,
    }
}

fn uploaded_object(uploaded: Uploaded) -> StoredObject {
    StoredObject {
        file_id: uploaded.file_id,
        name: uploaded.name,
        size: uploaded.size,
        created_at_ms: uploaded.created_at_ms,
        tags: uploaded.tags,
        etag: Some(uploaded.md5.etag()),
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

    async fn buckets(&self, owner: Uuid) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(self.service().buckets(owner).await?)
    }

    async fn create_bucket(&self, owner: Uuid, name: String) -> Result<(), BackendError> {
        Ok(self.service().create_bucket(owner, name).await?)
    }

    async fn delete_bucket(&self, owner: Uuid, name: String) -> Result<(), BackendError> {
        Ok(self.service().delete_bucket(owner, name).await?)
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
        Ok(self
            .download_by_name(owner, name)
            .await?
            .map(|download| stored_object(download.file)))
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
        let stored = self.service().store_checked(body, expected_md5).await?;
        let uploaded = self
            .service()
            .record_file(owner, name, tags, stored)
            .await?;
        Ok(uploaded_object(uploaded))
    }

    async fn open(
        &self,
        owner: Uuid,
        name: String,
    ) -> Result<Option<(StoredObject, Content)>, BackendError> {
        let Some(download) = self.download_by_name(owner, name).await? else {
            return Ok(None);
        };
        let object = stored_object(download.file.clone());
        let state = Arc::clone(&self.state);
        let content: Content = Box::new(move |first, last| {
            Box::pin(async move {
                let stream = state.service.read_range(download, first, last).await?;
                Ok(stream.boxed())
            })
        });
        Ok(Some((object, content)))
    }

    async fn start_upload(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
    ) -> Result<Uuid, BackendError> {
        Ok(self.service().start_multipart(owner, name, tags).await?)
    }

    async fn upload(&self, owner: Uuid, upload_id: Uuid) -> Result<PendingUpload, BackendError> {
        Ok(pending(
            self.service().multipart_upload(owner, upload_id).await?,
        ))
    }

    async fn uploads(&self, owner: Uuid) -> Result<Vec<PendingUpload>, BackendError> {
        Ok(self
            .service()
            .multipart_uploads(owner)
            .await?
            .into_iter()
            .map(pending)
            .collect())
    }

    async fn upload_part(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        number: u32,
        expected_md5: Option<[u8; 16]>,
        body: ByteStream,
    ) -> Result<String, BackendError> {
        Ok(self
            .service()
            .store_part(owner, upload_id, number, expected_md5, body)
            .await?
            .etag())
    }

    async fn parts(&self, owner: Uuid, upload_id: Uuid) -> Result<Vec<UploadedPart>, BackendError> {
        let (_, parts) = self.service().parts(owner, upload_id).await?;
        Ok(parts
            .into_iter()
            .map(|part| UploadedPart {
                number: part.number,
                size: part.size,
                etag: part.md5.etag(),
                created_at_ms: part.created_at_ms,
            })
            .collect())
    }

    async fn complete_upload(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        parts: Vec<(u32, String)>,
    ) -> Result<Completing, BackendError> {
        let completion = self
            .service()
            .plan_completion(owner, upload_id, parts)
            .await?;
        let state = Arc::clone(&self.state);
        Ok(Box::pin(async move {
            let uploaded = state.service.complete_multipart(completion).await?;
            Ok(uploaded_object(uploaded))
        }))
    }

    async fn abort_upload(&self, owner: Uuid, upload_id: Uuid) -> Result<(), BackendError> {
        Ok(self.service().abort_multipart(owner, upload_id).await?)
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
