-- The read model: a projection of the event log. Everything here can be rebuilt by replaying
-- the log; `meta.applied_frontier` records how much of it is in these tables.
-- Stamps are 20-byte big-endian (hlc wall ms, hlc logical, origin): byte order is LWW order.

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
    user_id BLOB PRIMARY KEY,
    username TEXT NOT NULL,
    registered_stamp BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    key_hash BLOB NOT NULL,
    key_stamp BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_by_username ON users (username, registered_stamp);
CREATE INDEX IF NOT EXISTS users_by_key ON users (key_hash);

CREATE TABLE IF NOT EXISTS files (
    file_id BLOB PRIMARY KEY,
    owner_id BLOB NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    stamp BLOB NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    -- The name shown: `name` for the newest live file of its (owner, name), a conflict name
    -- for the others. NULL while deleted.
    display_name TEXT,
    -- 1 for a live file shown under a conflict name.
    conflict INTEGER NOT NULL DEFAULT 0,
    -- The MD5 S3 clients see as the ETag (NULL where none was kept), and how many parts it
    -- is of (0: of the content).
    md5 BLOB,
    md5_parts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_owner_name ON files (owner_id, name);
CREATE INDEX IF NOT EXISTS files_by_display ON files (owner_id, display_name) WHERE deleted = 0;
-- Every change to an owner's live files names its conflict copies again: they must be few to
-- find.
CREATE INDEX IF NOT EXISTS files_conflicts ON files (owner_id, file_id) WHERE conflict = 1;

CREATE TABLE IF NOT EXISTS file_chunks (
    file_id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    chunk_id BLOB NOT NULL,
    PRIMARY KEY (file_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_chunks_by_chunk ON file_chunks (chunk_id);

CREATE TABLE IF NOT EXISTS file_tags (
    file_id BLOB NOT NULL,
    tag TEXT NOT NULL,
    present INTEGER NOT NULL,
    stamp BLOB NOT NULL,
    -- Whether the tag shows: present or, when none is present, one of the carried tags that
    -- the newest removal took away.
    effective INTEGER NOT NULL,
    -- Whether some operation ever added the tag to the file (a row can also exist only to
    -- record that a tag the file never had was removed).
    carried INTEGER NOT NULL,
    PRIMARY KEY (file_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_tags_by_tag ON file_tags (tag, file_id) WHERE effective = 1;
-- Keep the never-tagless rule cheap for files with many tags.
CREATE INDEX IF NOT EXISTS file_tags_present ON file_tags (file_id) WHERE present = 1;
CREATE INDEX IF NOT EXISTS file_tags_fallback ON file_tags (file_id) WHERE present = 0 AND effective = 1;
CREATE INDEX IF NOT EXISTS file_tags_carried ON file_tags (file_id, stamp) WHERE carried = 1;

-- Every operation that deleted a file (a delete, or an upload that replaced it). Its data may
-- be collected once one of them is known to every controller.
CREATE TABLE IF NOT EXISTS file_deletions (
    file_id BLOB NOT NULL,
    origin INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (file_id, origin, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS controllers (
    node_id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    stamp BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chunkservers (
    node_id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    stamp BLOB NOT NULL
) WITHOUT ROWID;

-- Retired nodes (`ControllerRetired`, `ChunkserverRetired`), with the newest retirement. A
-- controller is retired for good; a chunkserver only while its newest retirement is newer
-- than its newest `ChunkserverSeen`.
CREATE TABLE IF NOT EXISTS retired_nodes (
    kind TEXT NOT NULL,
    node_id TEXT NOT NULL,
    stamp BLOB NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (kind, node_id)
) WITHOUT ROWID;

-- S3 access keys. A key is created once (its id is random) and deleted for good: a row can
-- hold a deletion whose creation has not arrived yet (user_id NULL until it does). Of two
-- creations of one id (never made by a healthy node), the earliest by stamp describes it.
CREATE TABLE IF NOT EXISTS s3_keys (
    key_id TEXT PRIMARY KEY,
    user_id BLOB,
    sealed_secret BLOB,
    created_at_ms INTEGER,
    created_stamp BLOB,
    deleted INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS s3_keys_by_user ON s3_keys (user_id, key_id) WHERE deleted = 0;

-- Buckets made with S3 CreateBucket, per owner: the newest creation or deletion (by stamp)
-- says whether it is listed. A bucket also exists while any live file carries its tag.
CREATE TABLE IF NOT EXISTS buckets (
    owner_id BLOB NOT NULL,
    name TEXT NOT NULL,
    present INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    stamp BLOB NOT NULL,
    PRIMARY KEY (owner_id, name)
) WITHOUT ROWID;

-- S3 multipart uploads; their parts are files whose owner is the upload id. A row with a NULL
-- owner is an upload whose end arrived before its start.
CREATE TABLE IF NOT EXISTS multipart_uploads (
    upload_id BLOB PRIMARY KEY,
    owner_id BLOB,
    name TEXT,
    -- MessagePack array of the tags.
    tags BLOB,
    started_at_ms INTEGER,
    started_stamp BLOB,
    ended INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS multipart_uploads_by_owner ON multipart_uploads (owner_id, name) WHERE ended = 0;
