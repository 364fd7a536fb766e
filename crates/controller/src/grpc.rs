//! The gRPC client API: the same operations as HTTP, with streaming upload and download.
//! The only file that knows both protobuf and domain types.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use redcloud_proto::files::files_server::Files;
use redcloud_proto::files::{
    Account, CreateS3KeyRequest, Credentials, DeleteResponse, DeleteS3KeyResponse, DownloadRequest,
    DownloadResponse, FileInfo, FileRef, FileTags, ListResponse, ListS3KeysRequest,
    ListS3KeysResponse, ListTagsRequest, ListTagsResponse, LoginResponse, MeRequest,
    RegisterResponse, S3Key, S3KeyRef, SkippedFile, TagChange, TagChangeResponse, TagCount,
    TagQuery, UploadRequest, download_request,
};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::AppState;
use crate::readmodel::FileRecord;
use crate::service::{DownloadTarget, dedup_tags, format_timestamp};

/// The `Files` service over the shared application state.
pub struct FilesApi {
    state: Arc<AppState>,
}

impl FilesApi {
    /// The service.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        let value = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("authorization metadata required"))?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::BadAuthHeader)?;
        Ok(self.state.service.authenticate(key).await?)
    }
}

/// The caller's address, for rate limiting: gRPC shares the HTTP listener, which records it.
fn client_ip<T>(request: &Request<T>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<redcloud_link::RemoteAddr>>()
        .map(|axum::extract::ConnectInfo(redcloud_link::RemoteAddr(address))| address.ip())
}

fn file_info(file: &FileRecord) -> FileInfo {
    FileInfo {
        file_id: file.file_id.to_string(),
        name: file.name.clone(),
        size: file.size,
        tags: file.tags.clone(),
        owner_id: file.owner_id.to_string(),
        created_at: format_timestamp(file.created_at_ms),
        replaced_file_id: None,
    }
}

/// A file id from a request; one that is not a UUID names no file.
fn file_id(raw: String) -> Result<Uuid, ApiError> {
    Uuid::parse_str(&raw).map_err(|_| ApiError::FileNotFound(raw))
}

fn ids(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Files for FilesApi {
    async fn register(
        &self,
        request: Request<Credentials>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let client = client_ip(&request);
        let Credentials { username, password } = request.into_inner();
        let session = self
            .state
            .service
            .register(client, username, password)
            .await?;
        Ok(Response::new(RegisterResponse {
            api_key: session.api_key,
            user_id: session.user_id.to_string(),
            username_conflict: session.username_conflict,
        }))
    }

    async fn login(
        &self,
        request: Request<Credentials>,
    ) -> Result<Response<LoginResponse>, Status> {
        let client = client_ip(&request);
        let Credentials { username, password } = request.into_inner();
        let session = self.state.service.login(client, username, password).await?;
        Ok(Response::new(LoginResponse {
            api_key: session.api_key,
            username_conflict: session.username_conflict,
        }))
    }

    async fn me(&self, request: Request<MeRequest>) -> Result<Response<Account>, Status> {
        let user = self.caller(&request).await?;
        let account = self.state.service.account(user).await?;
        Ok(Response::new(Account {
            user_id: account.user_id.to_string(),
            username: account.username,
            username_conflict: account.username_conflict,
        }))
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadRequest>>,
    ) -> Result<Response<FileInfo>, Status> {
        let owner = self.caller(&request).await?;
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty upload stream"))??;
        let tags = dedup_tags(
            first
                .tags
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        );
        let head = futures_util::stream::once(async move { Ok::<Bytes, Status>(first.data) });
        let body = head.chain(stream.map(|piece| piece.map(|p| p.data)));
        let uploaded = self
            .state
            .service
            .upload(owner, first.name, tags, Box::pin(body))
            .await?;
        let file = FileRecord {
            file_id: uploaded.file_id,
            owner_id: owner,
            name: uploaded.name.clone(),
            original_name: uploaded.name,
            size: uploaded.size,
            created_at_ms: uploaded.created_at_ms,
            tags: uploaded.tags,
            md5: Some(uploaded.md5),
        };
        let mut info = file_info(&file);
        info.replaced_file_id = uploaded.replaced_file_id.map(|id| id.to_string());
        Ok(Response::new(info))
    }

    async fn list(&self, request: Request<TagQuery>) -> Result<Response<ListResponse>, Status> {
        let owner = self.caller(&request).await?;
        let files = self
            .state
            .service
            .list(owner, dedup_tags(request.into_inner().tags))
            .await?;
        Ok(Response::new(ListResponse {
            files: files.iter().map(file_info).collect(),
        }))
    }

    async fn delete(&self, request: Request<TagQuery>) -> Result<Response<DeleteResponse>, Status> {
        let owner = self.caller(&request).await?;
        let deleted = self
            .state
            .service
            .delete(owner, dedup_tags(request.into_inner().tags))
            .await?;
        Ok(Response::new(DeleteResponse {
            deleted_count: deleted.len() as u64,
            file_ids: ids(&deleted),
        }))
    }

    async fn add_tags(
        &self,
        request: Request<TagChange>,
    ) -> Result<Response<TagChangeResponse>, Status> {
        let owner = self.caller(&request).await?;
        let TagChange { query_tags, tags } = request.into_inner();
        let updated = self.state.service.add_tags(owner, query_tags, tags).await?;
        Ok(Response::new(TagChangeResponse {
            updated_count: updated.len() as u64,
            file_ids: ids(&updated),
            skipped_files: Vec::new(),
        }))
    }

    async fn remove_tags(
        &self,
        request: Request<TagChange>,
    ) -> Result<Response<TagChangeResponse>, Status> {
        let owner = self.caller(&request).await?;
        let TagChange { query_tags, tags } = request.into_inner();
        let outcome = self
            .state
            .service
            .remove_tags(owner, query_tags, tags)
            .await?;
        let skipped_files = outcome
            .skipped
            .iter()
            .map(|f| SkippedFile {
                file_id: f.file_id.to_string(),
                name: f.name.clone(),
                current_tags: f.tags.clone(),
            })
            .collect();
        Ok(Response::new(TagChangeResponse {
            updated_count: outcome.updated.len() as u64,
            file_ids: ids(&outcome.updated),
            skipped_files,
        }))
    }

    type DownloadStream = BoxStream<DownloadResponse>;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let owner = self.caller(&request).await?;
        let target = match request.into_inner().target {
            Some(download_request::Target::FileId(id)) => DownloadTarget::Id(file_id(id)?),
            Some(download_request::Target::Name(name)) => DownloadTarget::Name(name),
            None => return Err(Status::invalid_argument("a file id or a name is required")),
        };
        let download = self.state.service.find_download(owner, target).await?;
        let info = file_info(&download.file);
        let state = Arc::clone(&self.state);
        let chunks = futures_util::stream::iter(download.chunks)
            .map(move |id| {
                let state = Arc::clone(&state);
                async move { state.service.read_chunk(id).await.map_err(Status::from) }
            })
            .buffered(3)
            .flat_map(|data| {
                let messages: Vec<Result<DownloadResponse, Status>> = match data {
                    Ok(data) => redcloud_types::pieces(&data)
                        .map(|data| Ok(DownloadResponse { info: None, data }))
                        .collect(),
                    Err(status) => vec![Err(status)],
                };
                futures_util::stream::iter(messages)
            });
        let head = futures_util::stream::once(async move {
            Ok(DownloadResponse {
                info: Some(info),
                data: Bytes::new(),
            })
        });
        Ok(Response::new(Box::pin(head.chain(chunks))))
    }

    async fn get_file(&self, request: Request<FileRef>) -> Result<Response<FileInfo>, Status> {
        let owner = self.caller(&request).await?;
        let id = file_id(request.into_inner().file_id)?;
        let file = self.state.service.file(owner, id).await?;
        Ok(Response::new(file_info(&file)))
    }

    async fn delete_file(
        &self,
        request: Request<FileRef>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let owner = self.caller(&request).await?;
        let id = file_id(request.into_inner().file_id)?;
        self.state.service.delete_file(owner, id).await?;
        Ok(Response::new(DeleteResponse {
            deleted_count: 1,
            file_ids: ids(&[id]),
        }))
    }

    async fn add_file_tags(
        &self,
        request: Request<FileTags>,
    ) -> Result<Response<FileInfo>, Status> {
        let owner = self.caller(&request).await?;
        let FileTags { file_id: id, tags } = request.into_inner();
        let file = self
            .state
            .service
            .add_file_tags(owner, file_id(id)?, tags)
            .await?;
        Ok(Response::new(file_info(&file)))
    }

    async fn remove_file_tags(
        &self,
        request: Request<FileTags>,
    ) -> Result<Response<FileInfo>, Status> {
        let owner = self.caller(&request).await?;
        let FileTags { file_id: id, tags } = request.into_inner();
        let file = self
            .state
            .service
            .remove_file_tags(owner, file_id(id)?, tags)
            .await?;
        Ok(Response::new(file_info(&file)))
    }

    async fn list_tags(
        &self,
        request: Request<ListTagsRequest>,
    ) -> Result<Response<ListTagsResponse>, Status> {
        let owner = self.caller(&request).await?;
        let tags = self
            .state
            .service
            .tag_counts(owner)
            .await?
            .into_iter()
            .map(|counted| TagCount {
                tag: counted.tag,
                count: counted.files,
            })
            .collect();
        Ok(Response::new(ListTagsResponse { tags }))
    }

    async fn create_s3_key(
        &self,
        request: Request<CreateS3KeyRequest>,
    ) -> Result<Response<S3Key>, Status> {
        let owner = self.caller(&request).await?;
        let key = self.state.service.create_s3_key(owner).await?;
        Ok(Response::new(S3Key {
            access_key_id: key.key_id,
            secret_access_key: key.secret,
            created_at: String::new(),
        }))
    }

    async fn list_s3_keys(
        &self,
        request: Request<ListS3KeysRequest>,
    ) -> Result<Response<ListS3KeysResponse>, Status> {
        let owner = self.caller(&request).await?;
        let keys = self
            .state
            .service
            .s3_keys(owner)
            .await?
            .into_iter()
            .map(|key| S3Key {
                access_key_id: key.key_id,
                secret_access_key: String::new(),
                created_at: format_timestamp(key.created_at_ms),
            })
            .collect();
        Ok(Response::new(ListS3KeysResponse { keys }))
    }

    async fn delete_s3_key(
        &self,
        request: Request<S3KeyRef>,
    ) -> Result<Response<DeleteS3KeyResponse>, Status> {
        let owner = self.caller(&request).await?;
        let key_id = request.into_inner().access_key_id;
        self.state
            .service
            .delete_s3_key(owner, key_id.clone())
            .await?;
        Ok(Response::new(DeleteS3KeyResponse { deleted: key_id }))
    }
}
