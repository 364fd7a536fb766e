//! The controller's operations: every metadata change, as it travels in the event log.
//!
//! Each variant is a payload of [`redcloud_eventlog::Op`]; the read model folds them with the
//! conflict rules of `readmodel`. Fields added later must be optional (`#[serde(default)]`).

use redcloud_eventlog::VersionVector;
use redcloud_types::ChunkId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// SHA-256 of an API key. Keys are 122 random bits, so a fast hash is enough; only the hash
/// is ever stored or replicated.
pub type KeyHash = [u8; 32];

/// The MD5 an S3 client expects as a file's ETag: of the content for a file uploaded in one
/// piece, or of the parts' MD5s (`parts` > 0) for one assembled from a multipart upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentMd5 {
    /// The digest.
    #[serde(with = "digest_bytes")]
    pub digest: [u8; 16],
    /// How many parts it was computed over; 0 for the content itself.
    pub parts: u32,
}

impl ContentMd5 {
    /// S3's ETag text, without quotes: 32 hex digits, followed by `-N` for `N` parts.
    pub fn etag(&self) -> String {
        let hex = hex::encode(self.digest);
        if self.parts == 0 {
            hex
        } else {
            format!("{hex}-{}", self.parts)
        }
    }
}

/// A digest as MessagePack bytes (18 bytes on the wire) rather than serde's default of an
/// array of numbers (up to 33).
mod digest_bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(digest: &[u8; 16], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(digest)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 16], D::Error> {
        struct Digest;
        impl de::Visitor<'_> for Digest {
            type Value = [u8; 16];

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("16 bytes")
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<[u8; 16], E> {
                bytes
                    .try_into()
                    .map_err(|_| E::invalid_length(bytes.len(), &self))
            }
        }
        deserializer.deserialize_bytes(Digest)
    }
}

/// One metadata change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    /// A user registered. Concurrent registrations of one name all keep their accounts; login
    /// by name tries them earliest (by stamp) first.
    UserRegistered {
        /// The new user.
        user_id: Uuid,
        /// Case-sensitive.
        username: String,
        /// Argon2id PHC string.
        password_hash: String,
        /// Hash of the key issued at registration.
        api_key_hash: KeyHash,
    },
    /// A user logged in: a new key replaces the previous one (last writer wins).
    ApiKeyIssued {
        /// The user.
        user_id: Uuid,
        /// Hash of the new key.
        api_key_hash: KeyHash,
    },
    /// A file was uploaded.
    FileAdded {
        /// The new file.
        file_id: Uuid,
        /// Its owner.
        owner_id: Uuid,
        /// The name it was uploaded under.
        name: String,
        /// Bytes.
        size: u64,
        /// Bytes per chunk; every chunk but the last has this size.
        chunk_size: u64,
        /// Its chunks, in order.
        chunks: Vec<ChunkId>,
        /// Its tags, de-duplicated, in input order.
        tags: Vec<String>,
        /// Milliseconds since the Unix epoch.
        created_at_ms: u64,
        /// Files of the same owner and name that the uploader's controller knew of: this upload
        /// causally follows them and deletes them.
        replaces: Vec<Uuid>,
        /// The MD5 that S3 clients compare the file's ETag with; absent for files uploaded
        /// before it was kept.
        #[serde(default)]
        md5: Option<ContentMd5>,
    },
    /// Files were deleted.
    FilesDeleted {
        /// The files.
        file_ids: Vec<Uuid>,
    },
    /// Tags were added to files.
    TagsAdded {
        /// The files.
        file_ids: Vec<Uuid>,
        /// The tags.
        tags: Vec<String>,
    },
    /// Tags were removed from files.
    TagsRemoved {
        /// The files.
        file_ids: Vec<Uuid>,
        /// The tags.
        tags: Vec<String>,
    },
    /// A controller joined the cluster (its first operation). Every controller ever seen must
    /// know of a deletion before the deleted data is collected.
    ControllerSeen {
        /// Its node id (16 hex digits).
        node_id: String,
        /// Where it served when it joined (host:port).
        address: String,
    },
    /// A chunkserver was first seen, or seen at a new address.
    ChunkserverSeen {
        /// Its node id.
        node_id: String,
        /// Its gRPC address.
        address: String,
    },
    /// A controller was retired (`redcloud cluster forget`, or silent for longer than
    /// `--retire-after`): it no longer holds back collection and leaves frontier tokens, peer
    /// lists and the status page. The operations it made stay valid wherever they arrive.
    /// Retirement is for good: the node rejoins only on an empty data directory, under a new
    /// id.
    ControllerRetired {
        /// Its node id (16 hex digits).
        node_id: String,
        /// Who retired it and why, for the operator.
        reason: String,
    },
    /// A chunkserver was retired: it leaves the registry and the status page, and no chunk
    /// waits for a copy on it. A heartbeat from it later makes it known again (a newer
    /// `ChunkserverSeen`).
    ChunkserverRetired {
        /// Its node id.
        node_id: String,
        /// Who retired it and why, for the operator.
        reason: String,
    },
    /// A user made an S3 access key. The secret SigV4 needs on the server travels only
    /// sealed, under a key derived from the cluster secret (`s3keys`), bound to its key id.
    S3KeyCreated {
        /// The access key id (public: clients send it with every request).
        key_id: String,
        /// Whose key it is.
        user_id: Uuid,
        /// The secret access key, sealed.
        sealed_secret: Vec<u8>,
        /// Milliseconds since the Unix epoch.
        created_at_ms: u64,
    },
    /// An S3 access key was deleted: for good, whatever the order its creation and deletion
    /// arrive in.
    S3KeyDeleted {
        /// The access key id.
        key_id: String,
    },
    /// A user made a bucket (S3 `CreateBucket`): the tag `name` is listed as a bucket before
    /// any file carries it. Per (owner, name), creation and deletion: last writer wins.
    BucketCreated {
        /// Whose.
        owner_id: Uuid,
        /// The tag.
        name: String,
        /// Milliseconds since the Unix epoch.
        created_at_ms: u64,
    },
    /// A user deleted a bucket (S3 `DeleteBucket`, refused while files carry the tag).
    BucketDeleted {
        /// Whose.
        owner_id: Uuid,
        /// The tag.
        name: String,
    },
    /// An S3 multipart upload began. Its parts are stored as files owned by `upload_id`, an
    /// id no user has, so no user sees them; they are deleted when the upload ends, and the
    /// ordinary collection takes their chunks unless the completed file holds them.
    MultipartStarted {
        /// The upload, and the owner of its parts.
        upload_id: Uuid,
        /// Who started it.
        owner_id: Uuid,
        /// The file name it completes into.
        name: String,
        /// The tags the completed file gets.
        tags: Vec<String>,
        /// Milliseconds since the Unix epoch.
        started_at_ms: u64,
    },
    /// An S3 multipart upload ended (completed, aborted or expired): for good, whatever the
    /// order its start and end arrive in.
    MultipartEnded {
        /// The upload.
        upload_id: Uuid,
    },
    /// Retired controllers whose operations every live controller held up to these seqs when
    /// it was written. Frontiers sent between controllers that hold the same folds leave those
    /// origins out, so what travels grows with the live controllers, not with history. A fold
    /// counts only as far as the operation's own causal past reaches (its author held that).
    OriginsFolded {
        /// Per retired origin, the seq up to which it is folded.
        folded: VersionVector,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FileAdded` as it was written before it kept an MD5: same variant name and position.
    #[derive(Serialize)]
    enum Before {
        #[allow(dead_code)]
        UserRegistered,
        #[allow(dead_code)]
        ApiKeyIssued,
        FileAdded {
            file_id: Uuid,
            owner_id: Uuid,
            name: String,
            size: u64,
            chunk_size: u64,
            chunks: Vec<ChunkId>,
            tags: Vec<String>,
            created_at_ms: u64,
            replaces: Vec<Uuid>,
        },
    }

    #[test]
    fn a_file_added_before_md5s_were_kept_decodes_without_one() {
        let file_id = Uuid::from_u128(7);
        let before = rmp_serde::to_vec(&Before::FileAdded {
            file_id,
            owner_id: Uuid::from_u128(8),
            name: "a".to_owned(),
            size: 1,
            chunk_size: 1,
            chunks: vec![ChunkId::of(b"a")],
            tags: vec!["t".to_owned()],
            created_at_ms: 9,
            replaces: Vec::new(),
        })
        .unwrap();
        match rmp_serde::from_slice::<MetaOp>(&before).unwrap() {
            MetaOp::FileAdded {
                file_id: id, md5, ..
            } => {
                assert_eq!(id, file_id);
                assert_eq!(md5, None);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn an_md5_travels_as_sixteen_bytes_and_nothing_else_decodes() {
        let md5 = ContentMd5 {
            digest: [0xab; 16],
            parts: 3,
        };
        let bytes = rmp_serde::to_vec(&md5).unwrap();
        assert_eq!(bytes.len(), 1 + 2 + 16 + 1, "{bytes:02x?}");
        assert_eq!(rmp_serde::from_slice::<ContentMd5>(&bytes).unwrap(), md5);
        assert_eq!(md5.etag(), format!("{}-3", "ab".repeat(16)));
        assert_eq!(ContentMd5 { parts: 0, ..md5 }.etag(), "ab".repeat(16));
        // A two-element array holding 15 bytes (bin 8) and 0.
        let short: Vec<u8> = [0x92, 0xc4, 15]
            .into_iter()
            .chain([1; 15])
            .chain([0])
            .collect();
        assert!(rmp_serde::from_slice::<ContentMd5>(&short).is_err());
    }
}
