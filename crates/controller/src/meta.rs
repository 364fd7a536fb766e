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
    /// Retired controllers whose operations every live controller held up to these seqs when
    /// it was written. Frontiers sent between controllers that hold the same folds leave those
    /// origins out, so what travels grows with the live controllers, not with history. A fold
    /// counts only as far as the operation's own causal past reaches (its author held that).
    OriginsFolded {
        /// Per retired origin, the seq up to which it is folded.
        folded: VersionVector,
    },
}
