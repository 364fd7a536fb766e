//! S3 multipart uploads over the file model. Each part is stored as it arrives and recorded
//! as a file owned by the upload's id, an id no user has: replication, the upload deadline and
//! garbage collection treat parts exactly as files, and no user sees them. Completion records
//! the file from the parts' chunks (or, when the parts do not fall on chunk boundaries, from
//! their bytes cut into chunks again) and deletes the parts in the same append; abort and
//! expiry delete them. Parts recorded after their upload ended (on another controller, during
//! a partition) are deleted by the expiry sweep.

use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use md5::Digest as _;
use uuid::Uuid;

use crate::error::ApiError;
use crate::meta::{ContentMd5, MetaOp};
use crate::readmodel::{FileRecord, MultipartUpload};
use crate::service::{DownloadTarget, Service, Uploaded, check_upload};
use crate::upload::StoredData;

/// The tag every part file carries (files are never tagless).
const PART_TAG: &str = "s3-part";
/// Highest part number, as in S3.
pub const PART_NUMBER_MAX: u32 = 10_000;
/// Least size of every part but the last, as in S3.
pub const PART_MIN_BYTES: u64 = 5 * 1024 * 1024;
/// Most multipart uploads one user may have in progress at once.
pub const UPLOADS_PER_USER_MAX: usize = 1000;
/// Part files deleted per operation by the expiry sweep.
const SWEEP_BATCH: usize = 1000;

/// A stored part of an upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its part number.
    pub number: u32,
    /// Bytes.
    pub size: u64,
    /// The MD5 of its content: its ETag.
    pub md5: ContentMd5,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A completion that has been checked: which parts make the file, in order.
#[derive(Debug, Clone)]
pub struct Completion {
    owner: Uuid,
    upload: MultipartUpload,
    parts: Vec<FileRecord>,
    /// Every live file of the upload, to be deleted with the completion.
    part_ids: Vec<Uuid>,
    md5: ContentMd5,
}

fn part_name(number: u32) -> String {
    format!("{number:05}")
}

/// The part number of a part file shown under `name` (a conflict copy's name is none).
fn part_number(name: &str) -> Option<u32> {
    (name.len() == 5)
        .then(|| name.parse().ok())
        .flatten()
        .filter(|n| (1..=PART_NUMBER_MAX).contains(n))
}

impl Service {
    /// Starts a multipart upload of the caller's file `name`, which gets `tags` on completion.
    pub async fn start_multipart(
        &self,
        owner: Uuid,
        name: String,
        tags: Vec<String>,
    ) -> Result<Uuid, ApiError> {
        check_upload(&name, Some(&tags))?;
        let _one_at_a_time = self.counted_creations.lock().await;
        let held = self
            .read(move |r| r.multipart_uploads_of(&owner))
            .await?
            .len();
        if held >= UPLOADS_PER_USER_MAX {
            return Err(crate::limits::LimitError::TooManyUploads {
                max: UPLOADS_PER_USER_MAX,
            }
            .into());
        }
        let upload_id = Uuid::new_v4();
        self.log
            .append(vec![MetaOp::MultipartStarted {
                upload_id,
                owner_id: owner,
                name,
                tags,
                started_at_ms: self.clock.now_ms(),
            }])
            .await?;
        Ok(upload_id)
    }

    /// The caller's upload `upload_id`, while it is in progress.
    pub async fn multipart_upload(
        &self,
        owner: Uuid,
        upload_id: Uuid,
    ) -> Result<MultipartUpload, ApiError> {
        self.read(move |r| r.multipart_upload(&upload_id))
            .await?
            .filter(|upload| upload.owner_id == owner)
            .ok_or_else(|| ApiError::UploadNotFound(upload_id.to_string()))
    }

    /// The caller's uploads in progress.
    pub async fn multipart_uploads(&self, owner: Uuid) -> Result<Vec<MultipartUpload>, ApiError> {
        self.read(move |r| r.multipart_uploads_of(&owner)).await
    }

    /// Stores part `number` of the caller's upload, replacing an earlier part of that number;
    /// returns its MD5. With `expected_md5`, a part of another MD5 is refused unrecorded.
    pub async fn store_part<S, E>(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        number: u32,
        expected_md5: Option<[u8; 16]>,
        body: S,
    ) -> Result<ContentMd5, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if !(1..=PART_NUMBER_MAX).contains(&number) {
            return Err(ApiError::InvalidRequest(format!(
                "part numbers run from 1 to {PART_NUMBER_MAX}, not {number}"
            )));
        }
        self.multipart_upload(owner, upload_id).await?;
        let stored = self.store_checked(body, expected_md5).await?;
        let md5 = stored.md5;
        self.record_file(
            upload_id,
            part_name(number),
            vec![PART_TAG.to_owned()],
            stored,
        )
        .await?;
        Ok(md5)
    }

    /// The parts of the caller's upload, by part number.
    pub async fn parts(
        &self,
        owner: Uuid,
        upload_id: Uuid,
    ) -> Result<(MultipartUpload, Vec<StoredPart>), ApiError> {
        let upload = self.multipart_upload(owner, upload_id).await?;
        let parts = self
            .part_files(upload_id)
            .await?
            .into_iter()
            .filter_map(|file| {
                Some(StoredPart {
                    number: part_number(&file.name)?,
                    size: file.size,
                    md5: file.md5?,
                    created_at_ms: file.created_at_ms,
                })
            })
            .collect();
        Ok((upload, parts))
    }

    /// Every live file of the upload: its parts and any conflict copies of them.
    async fn part_files(&self, upload_id: Uuid) -> Result<Vec<FileRecord>, ApiError> {
        self.read(move |r| r.files_matching(&upload_id, &[])).await
    }

    /// Checks a completion of the caller's upload from the parts `wanted` lists (part number
    /// and ETag, in ascending order); [`Service::complete_multipart`] carries it out.
    pub async fn plan_completion(
        &self,
        owner: Uuid,
        upload_id: Uuid,
        wanted: Vec<(u32, String)>,
    ) -> Result<Completion, ApiError> {
        let upload = self.multipart_upload(owner, upload_id).await?;
        if wanted.is_empty() || wanted.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(ApiError::InvalidPartOrder);
        }
        let files = self.part_files(upload_id).await?;
        let mut chosen: Vec<FileRecord> = Vec::with_capacity(wanted.len());
        for (i, (number, etag)) in wanted.iter().enumerate() {
            let part = files
                .iter()
                .find(|f| part_number(&f.name) == Some(*number))
                .ok_or_else(|| ApiError::InvalidPart(format!("part {number} was not uploaded")))?;
            let ours = part.md5.map(|m| m.etag()).unwrap_or_default();
            if etag.trim_matches('"') != ours {
                return Err(ApiError::InvalidPart(format!(
                    "part {number} has ETag \"{ours}\", not {etag}"
                )));
            }
            if i + 1 < wanted.len() && part.size < PART_MIN_BYTES {
                return Err(ApiError::PartTooSmall {
                    part: *number,
                    size: part.size,
                    min: PART_MIN_BYTES,
                });
            }
            chosen.push(part.clone());
        }
        // Parts are stored one by one, each within the upload limit: the file they make
        // must be too, or parts would be a way around it.
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        let limit = self.limits.max_file_bytes();
        if size > limit {
            return Err(ApiError::PayloadTooLarge {
                what: "file",
                limit,
            });
        }
        let mut digests = md5::Md5::new();
        for part in &chosen {
            digests.update(part.md5.map(|m| m.digest).unwrap_or_default());
        }
        Ok(Completion {
            owner,
            md5: ContentMd5 {
                digest: digests.finalize().into(),
                parts: wanted.len() as u32,
            },
            parts: chosen,
            part_ids: files.iter().map(|f| f.file_id).collect(),
            upload,
        })
    }

    /// Carries out a checked completion: records the file, and deletes the parts and ends
    /// the upload in the same append.
    pub async fn complete_multipart(&self, completion: Completion) -> Result<Uploaded, ApiError> {
        let Completion {
            owner,
            upload,
            parts,
            part_ids,
            md5,
        } = completion;
        let stored = self.assemble(&parts).await?;
        let mut ended = Vec::new();
        if !part_ids.is_empty() {
            ended.push(MetaOp::FilesDeleted { file_ids: part_ids });
        }
        ended.push(MetaOp::MultipartEnded {
            upload_id: upload.upload_id,
        });
        self.record_as(owner, upload.name, upload.tags, stored, md5, ended)
            .await
    }

    /// The completed file's data. When every part but the last is whole chunks of one size,
    /// the parts' chunks are the file's as they are; otherwise the parts' bytes are read and
    /// cut into chunks again (chunks already stored are found by content and not sent twice
    /// to a chunkserver that holds them).
    async fn assemble(&self, parts: &[FileRecord]) -> Result<StoredData, ApiError> {
        let ids: Vec<Uuid> = parts.iter().map(|p| p.file_id).collect();
        let layouts = self
            .read(move |r| {
                ids.iter()
                    .map(|id| Ok((r.chunk_size_of(id)?, r.chunks_of(id)?)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let chunk_size = layouts.first().map_or(1, |(size, _)| *size);
        // Parts stored with smaller chunks than today's could list more chunks than a file
        // may have: those are cut again, at today's size.
        let chunk_count: usize = layouts.iter().map(|(_, chunks)| chunks.len()).sum();
        let aligned = layouts.iter().all(|(size, _)| *size == chunk_size)
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| p.size % chunk_size.max(1) == 0)
            && chunk_count as u64 <= crate::upload::MAX_CHUNKS_PER_FILE;
        if aligned {
            return Ok(StoredData {
                size: parts.iter().map(|p| p.size).sum(),
                chunks: layouts.into_iter().flat_map(|(_, chunks)| chunks).collect(),
                chunk_size,
                // Never read: a completed file's ETag is the MD5 of its parts' MD5s, which
                // `record_as` is given; the content's own MD5 would cost reading it all.
                md5: ContentMd5 {
                    digest: [0; 16],
                    parts: 0,
                },
                started: Instant::now(),
            });
        }
        let mut bodies = Vec::with_capacity(parts.len());
        for part in parts.iter().filter(|p| p.size > 0) {
            let download = self
                .find_download(part.owner_id, DownloadTarget::Id(part.file_id))
                .await?;
            bodies.push(self.read_range(download, 0, part.size - 1).await?.boxed());
        }
        self.store_data(futures_util::stream::iter(bodies).flatten())
            .await
    }

    /// Aborts the caller's upload: its parts are deleted and it ends.
    pub async fn abort_multipart(&self, owner: Uuid, upload_id: Uuid) -> Result<(), ApiError> {
        self.multipart_upload(owner, upload_id).await?;
        self.end_upload(upload_id).await
    }

    async fn end_upload(&self, upload_id: Uuid) -> Result<(), ApiError> {
        let part_ids: Vec<Uuid> = self
            .part_files(upload_id)
            .await?
            .into_iter()
            .map(|f| f.file_id)
            .collect();
        let mut ops = Vec::new();
        if !part_ids.is_empty() {
            ops.push(MetaOp::FilesDeleted { file_ids: part_ids });
        }
        ops.push(MetaOp::MultipartEnded { upload_id });
        self.log.append(ops).await?;
        Ok(())
    }

    /// Ends every upload started before `started_before_ms` and deletes the parts that
    /// arrived after their upload ended; returns how many uploads and straggling parts it
    /// ended and deleted.
    pub async fn sweep_multipart(
        &self,
        started_before_ms: u64,
    ) -> Result<(usize, usize), ApiError> {
        let expired = self
            .read(move |r| r.multipart_uploads_started_before(started_before_ms))
            .await?;
        for upload in &expired {
            tracing::info!(upload_id = %upload.upload_id, owner = %upload.owner_id, name = %upload.name, "an S3 multipart upload expired");
            self.end_upload(upload.upload_id).await?;
        }
        let stragglers = self.read(|r| r.parts_of_ended_uploads(SWEEP_BATCH)).await?;
        let straggling = stragglers.len();
        if !stragglers.is_empty() {
            self.log
                .append(vec![MetaOp::FilesDeleted {
                    file_ids: stragglers,
                }])
                .await?;
        }
        Ok((expired.len(), straggling))
    }
}

/// Aborts expired uploads and deletes straggling parts, every so often, until `shutdown`.
pub async fn run_sweeps(
    state: std::sync::Arc<crate::http::AppState>,
    expiry: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let interval = (expiry / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = state.service.clock.now_ms();
        let before = now.saturating_sub(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
        match state.service.sweep_multipart(before).await {
            Ok((0, 0)) => {}
            Ok((expired, stragglers)) => {
                tracing::info!(expired, stragglers, "S3 multipart sweep");
            }
            Err(error) => tracing::warn!(%error, "S3 multipart sweep failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_files_are_named_by_number_and_only_those_names_are_parts() {
        assert_eq!(part_name(7), "00007");
        assert_eq!(part_number("00007"), Some(7));
        assert_eq!(
            part_number(&part_name(PART_NUMBER_MAX)),
            Some(PART_NUMBER_MAX)
        );
        for other in ["00000", "10001", "7", "00007 (1)", "abcde", "0007x"] {
            assert_eq!(part_number(other), None, "{other}");
        }
    }
}
