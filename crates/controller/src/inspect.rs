//! Looking into a log to explain divergence: which operations touch an entity, which rule
//! decided each step of its history, and how two nodes' logs and read models differ. Pure
//! functions over operations; `redcloud log` does the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use redcloud_eventlog::{Dot, NodeId, Op, Seq, VersionVector};
use serde::Serialize;
use uuid::Uuid;

use crate::meta::MetaOp;

/// An entity named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// `user:NAME` or `user:UUID`.
    User(String),
    /// `file:UUID`.
    File(Uuid),
    /// `name:NAME`: every file uploaded under that name.
    Name(String),
    /// `tag:TAG`.
    Tag(String),
}

impl FromStr for Entity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!("{text:?}: name an entity as user:NAME, file:UUID, name:FILENAME or tag:TAG")
        })?;
        if value.is_empty() {
            return Err(format!("{text:?}: the {kind} is empty"));
        }
        match kind {
            "user" => Ok(Self::User(value.to_owned())),
            "file" => Uuid::parse_str(value)
                .map(Self::File)
                .map_err(|e| format!("{value:?} is not a file id: {e}")),
            "name" => Ok(Self::Name(value.to_owned())),
            "tag" => Ok(Self::Tag(value.to_owned())),
            other => Err(format!(
                "unknown entity kind {other:?}: use user:, file:, name: or tag:"
            )),
        }
    }
}

/// What an entity resolves to in a given log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    users: BTreeSet<Uuid>,
    /// The S3 access keys of those users (their deletions name only the key).
    s3_keys: BTreeSet<String>,
    /// The users' S3 multipart uploads.
    uploads: BTreeSet<Uuid>,
    files: BTreeSet<Uuid>,
    tag: Option<String>,
}

impl Matcher {
    /// Resolves `entity` against `ops` (user names and file names to ids).
    pub fn new(entity: &Entity, ops: &[Op<MetaOp>]) -> Self {
        let mut matcher = Self::default();
        match entity {
            Entity::User(name) => {
                if let Ok(id) = Uuid::parse_str(name) {
                    matcher.users.insert(id);
                }
                for op in ops {
                    if let MetaOp::UserRegistered {
                        user_id, username, ..
                    } = &op.payload
                        && username == name
                    {
                        matcher.users.insert(*user_id);
                    }
                }
            }
            Entity::File(id) => {
                matcher.files.insert(*id);
            }
            Entity::Name(wanted) => {
                for op in ops {
                    if let MetaOp::FileAdded { file_id, name, .. } = &op.payload
                        && name == wanted
                    {
                        matcher.files.insert(*file_id);
                    }
                }
            }
            Entity::Tag(tag) => matcher.tag = Some(tag.clone()),
        }
        for op in ops {
            if let MetaOp::S3KeyCreated {
                key_id, user_id, ..
            } = &op.payload
                && matcher.users.contains(user_id)
            {
                matcher.s3_keys.insert(key_id.clone());
            }
            if let MetaOp::MultipartStarted {
                upload_id,
                owner_id,
                ..
            } = &op.payload
                && matcher.users.contains(owner_id)
            {
                matcher.uploads.insert(*upload_id);
            }
        }
        matcher
    }

    /// Whether `op` changes the entity.
    pub fn touches(&self, op: &MetaOp) -> bool {
        let any_file = |ids: &[Uuid]| ids.iter().any(|id| self.files.contains(id));
        let has_tag = |tags: &[String]| self.tag.as_ref().is_some_and(|t| tags.contains(t));
        match op {
            MetaOp::UserRegistered { user_id, .. } | MetaOp::ApiKeyIssued { user_id, .. } => {
                self.users.contains(user_id)
            }
            MetaOp::FileAdded {
                file_id,
                tags,
                replaces,
                ..
            } => self.files.contains(file_id) || any_file(replaces) || has_tag(tags),
            MetaOp::FilesDeleted { file_ids } => any_file(file_ids),
            MetaOp::TagsAdded { file_ids, tags } | MetaOp::TagsRemoved { file_ids, tags } => {
                any_file(file_ids) || has_tag(tags)
            }
            MetaOp::S3KeyCreated { key_id, .. } | MetaOp::S3KeyDeleted { key_id } => {
                self.s3_keys.contains(key_id)
            }
            MetaOp::MultipartStarted { upload_id, .. } | MetaOp::MultipartEnded { upload_id } => {
                self.uploads.contains(upload_id)
            }
            MetaOp::BucketCreated { owner_id, name, .. }
            | MetaOp::BucketDeleted { owner_id, name } => {
                self.users.contains(owner_id) || self.tag.as_ref() == Some(name)
            }
            MetaOp::ControllerSeen { .. }
            | MetaOp::ChunkserverSeen { .. }
            | MetaOp::ControllerRetired { .. }
            | MetaOp::ChunkserverRetired { .. }
            | MetaOp::OriginsFolded { .. } => false,
        }
    }
}

/// A one-line description of an operation's payload.
pub fn describe(op: &MetaOp) -> String {
    let ids = |ids: &[Uuid]| {
        ids.iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match op {
        MetaOp::UserRegistered {
            user_id, username, ..
        } => format!("user {username:?} registered as {user_id}"),
        MetaOp::ApiKeyIssued { user_id, .. } => format!("new API key for user {user_id}"),
        MetaOp::FileAdded {
            file_id,
            owner_id,
            name,
            size,
            chunks,
            tags,
            replaces,
            ..
        } => {
            let mut text = format!(
                "file {file_id} {name:?} added by {owner_id}: {size} bytes, {} chunks, tags [{}]",
                chunks.len(),
                tags.join(",")
            );
            if !replaces.is_empty() {
                text.push_str(&format!(", replacing {}", ids(replaces)));
            }
            text
        }
        MetaOp::FilesDeleted { file_ids } => format!("files deleted: {}", ids(file_ids)),
        MetaOp::TagsAdded { file_ids, tags } => {
            format!("tags [{}] added to {}", tags.join(","), ids(file_ids))
        }
        MetaOp::TagsRemoved { file_ids, tags } => {
            format!("tags [{}] removed from {}", tags.join(","), ids(file_ids))
        }
        MetaOp::ControllerSeen { node_id, address } => {
            format!("controller {node_id} joined at {address}")
        }
        MetaOp::ChunkserverSeen { node_id, address } => {
            format!("chunkserver {node_id} seen at {address}")
        }
        MetaOp::ControllerRetired { node_id, reason } => {
            format!("controller {node_id} retired: {reason}")
        }
        MetaOp::ChunkserverRetired { node_id, reason } => {
            format!("chunkserver {node_id} retired: {reason}")
        }
        MetaOp::OriginsFolded { folded } => {
            format!("retired controllers folded out of frontiers at {folded}")
        }
        MetaOp::S3KeyCreated {
            key_id, user_id, ..
        } => format!("S3 access key {key_id} made for user {user_id}"),
        MetaOp::S3KeyDeleted { key_id } => format!("S3 access key {key_id} deleted"),
        MetaOp::MultipartStarted {
            upload_id,
            owner_id,
            name,
            tags,
            ..
        } => format!(
            "S3 multipart upload {upload_id} of {name:?} started by {owner_id}, tags [{}]",
            tags.join(",")
        ),
        MetaOp::MultipartEnded { upload_id } => {
            format!("S3 multipart upload {upload_id} ended")
        }
        MetaOp::BucketCreated { owner_id, name, .. } => {
            format!("bucket {name:?} made by {owner_id}")
        }
        MetaOp::BucketDeleted { owner_id, name } => {
            format!("bucket {name:?} deleted by {owner_id}")
        }
    }
}

/// Whether `earlier` is in the causal past of `later`.
fn precedes(earlier: &Op<MetaOp>, later: &Op<MetaOp>) -> bool {
    later.deps.contains(earlier.dot)
}

/// One step of an entity's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The operation (`origin:seq`).
    pub dot: String,
    /// Its causal context.
    pub deps: String,
    /// Its hybrid logical clock stamp (`wall_ms.logical`).
    pub hlc: String,
    /// What it did.
    pub change: String,
    /// Which rule decided its effect.
    pub rule: String,
}

/// Every operation of `ops` that touched `entity`, in log order, each with the rule that
/// decided its effect.
pub fn history(entity: &Entity, ops: &[Op<MetaOp>]) -> Vec<Step> {
    let matcher = Matcher::new(entity, ops);
    ops.iter()
        .filter(|op| matcher.touches(&op.payload))
        .map(|op| Step {
            dot: op.dot.to_string(),
            deps: op.deps.to_string(),
            hlc: op.hlc.to_string(),
            change: describe(&op.payload),
            rule: rule(op, ops, &matcher),
        })
        .collect()
}

/// The newest (by LWW stamp) of `candidates`.
fn newest<'a>(candidates: impl Iterator<Item = &'a Op<MetaOp>>) -> Option<&'a Op<MetaOp>> {
    candidates.max_by_key(|op| op.stamp())
}

fn rule(op: &Op<MetaOp>, ops: &[Op<MetaOp>], matcher: &Matcher) -> String {
    match &op.payload {
        MetaOp::UserRegistered { username, .. } => {
            let rivals: Vec<&Op<MetaOp>> = ops
                .iter()
                .filter(|o| {
                    matches!(&o.payload, MetaOp::UserRegistered { username: u, .. } if u == username)
                })
                .collect();
            let first = rivals.iter().min_by_key(|o| o.stamp()).map(|o| o.dot);
            match (rivals.len(), first) {
                (1, _) => "first registration of the name".to_owned(),
                (_, Some(first)) if first == op.dot => format!(
                    "earliest of {} registrations of the name (by stamp): login by name tries this account first",
                    rivals.len()
                ),
                (_, Some(first)) => format!(
                    "registration concurrent with {first}, which has the earlier stamp: this account keeps its files and password, login by name tries it after that one, and its owner is told of the username conflict"
                ),
                (_, None) => "registration".to_owned(),
            }
        }
        MetaOp::ApiKeyIssued { user_id, .. } => {
            let keys = ops.iter().filter(|o| match &o.payload {
                MetaOp::ApiKeyIssued { user_id: u, .. }
                | MetaOp::UserRegistered { user_id: u, .. } => u == user_id,
                _ => false,
            });
            match newest(keys) {
                Some(winner) if winner.dot == op.dot => {
                    "LWW key: the newest stamp, current".to_owned()
                }
                Some(winner) => format!("LWW key: superseded by {}", winner.dot),
                None => "LWW key".to_owned(),
            }
        }
        MetaOp::FileAdded {
            owner_id,
            name,
            replaces,
            ..
        } => {
            let concurrent: Vec<Dot> = ops
                .iter()
                .filter(|o| o.dot != op.dot && !precedes(o, op) && !precedes(op, o))
                .filter(|o| {
                    matches!(&o.payload, MetaOp::FileAdded { owner_id: w, name: n, .. } if w == owner_id && n == name)
                })
                .map(|o| o.dot)
                .collect();
            let mut rule = if replaces.is_empty() {
                "new file".to_owned()
            } else {
                "causal order: replaces the files of that name it had seen".to_owned()
            };
            if !concurrent.is_empty() {
                let list: Vec<String> = concurrent.iter().map(ToString::to_string).collect();
                rule.push_str(&format!(
                    "; concurrent upload of the same name with {}: conflict copy, both live, the newest stamp keeps the name",
                    list.join(", ")
                ));
            }
            rule
        }
        MetaOp::FilesDeleted { .. } => {
            "causal order: deletes the files it names; a delete wins over concurrent tag changes"
                .to_owned()
        }
        MetaOp::TagsAdded { file_ids, tags } | MetaOp::TagsRemoved { file_ids, tags } => {
            let mut verdicts = Vec::new();
            for file in file_ids
                .iter()
                .filter(|f| matcher.files.is_empty() || matcher.files.contains(f))
            {
                for tag in tags
                    .iter()
                    .filter(|t| matcher.tag.as_ref().is_none_or(|m| m == *t))
                {
                    let writes = ops.iter().filter(|o| tag_write(&o.payload, file, tag));
                    let verdict = match newest(writes) {
                        Some(winner) if winner.dot == op.dot => "current".to_owned(),
                        Some(winner) => format!("superseded by {}", winner.dot),
                        None => "no effect".to_owned(),
                    };
                    verdicts.push(format!("{file}/{tag}: {verdict}"));
                }
            }
            format!("LWW per (file, tag): {}", verdicts.join("; "))
        }
        MetaOp::ControllerSeen { .. } | MetaOp::ChunkserverSeen { .. } => {
            "LWW address by stamp".to_owned()
        }
        MetaOp::ControllerRetired { .. } => "retired for good".to_owned(),
        MetaOp::S3KeyCreated { key_id, .. } => {
            let deleted = ops
                .iter()
                .find(|o| matches!(&o.payload, MetaOp::S3KeyDeleted { key_id: k } if k == key_id));
            match deleted {
                Some(deletion) => format!("key made; deleted for good by {}", deletion.dot),
                None => "key made, live".to_owned(),
            }
        }
        MetaOp::S3KeyDeleted { .. } | MetaOp::MultipartEnded { .. } => {
            "an end is for good, whatever arrives after".to_owned()
        }
        MetaOp::BucketCreated { owner_id, name, .. } | MetaOp::BucketDeleted { owner_id, name } => {
            let winner = newest(ops.iter().filter(|o| {
                matches!(&o.payload,
                    MetaOp::BucketCreated { owner_id: w, name: n, .. }
                    | MetaOp::BucketDeleted { owner_id: w, name: n } if w == owner_id && n == name)
            }));
            match winner {
                Some(w) if w.dot == op.dot => {
                    "LWW per (owner, bucket): the newest, it decides".to_owned()
                }
                Some(w) => format!("LWW per (owner, bucket): superseded by {}", w.dot),
                None => "LWW per (owner, bucket)".to_owned(),
            }
        }
        MetaOp::MultipartStarted { upload_id, .. } => {
            let ended = ops.iter().find(
                |o| matches!(&o.payload, MetaOp::MultipartEnded { upload_id: u } if u == upload_id),
            );
            match ended {
                Some(end) => format!("upload started; ended for good by {}", end.dot),
                None => "upload started, in progress".to_owned(),
            }
        }
        MetaOp::ChunkserverRetired { .. } => {
            "retired until a newer sighting (LWW by stamp)".to_owned()
        }
        MetaOp::OriginsFolded { .. } => {
            "highest seq per origin, within the operation's causal past".to_owned()
        }
    }
}

/// Whether `op` sets tag `tag` of `file` (an upload sets its initial tags).
fn tag_write(op: &MetaOp, file: &Uuid, tag: &String) -> bool {
    match op {
        MetaOp::FileAdded { file_id, tags, .. } => file_id == file && tags.contains(tag),
        MetaOp::TagsAdded { file_ids, tags } | MetaOp::TagsRemoved { file_ids, tags } => {
            file_ids.contains(file) && tags.contains(tag)
        }
        _ => false,
    }
}

/// Operations one side holds and the other lacks, per origin, as seq ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The origin.
    pub origin: String,
    /// First seq lacking.
    pub from: u64,
    /// Last seq lacking.
    pub to: u64,
}

/// The frontier of a causally closed set of operations.
pub fn frontier_of(ops: &[Op<MetaOp>]) -> VersionVector {
    ops.iter().map(|op| (op.dot.origin, op.dot.seq)).collect()
}

/// The operations `has` covers and `lacks` does not.
pub fn missing(has: &VersionVector, lacks: &VersionVector) -> Vec<Missing> {
    has.missing_from(lacks)
        .into_iter()
        .map(|(origin, range)| Missing {
            origin: origin.to_string(),
            from: range.start().get(),
            to: range.end().get(),
        })
        .collect()
}

/// An entity whose read-model state differs between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityDiff {
    /// `user:UUID` or `file:UUID`.
    pub entity: String,
    /// Its state on the first node (none when absent).
    pub a: Option<String>,
    /// Its state on the second node.
    pub b: Option<String>,
    /// The operations that touched it on the first node; `*` marks those the second lacks.
    pub ops_a: Vec<String>,
    /// The operations that touched it on the second node; `*` marks those the first lacks.
    pub ops_b: Vec<String>,
}

/// Compares two read models' entities (see [`crate::Projection::entities`]) and names, for
/// each difference, the operations that decided it on each side.
pub fn diff_entities(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    ops_a: &[Op<MetaOp>],
    ops_b: &[Op<MetaOp>],
) -> Vec<EntityDiff> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let (front_a, front_b) = (frontier_of(ops_a), frontier_of(ops_b));
    let mut diffs = Vec::new();
    for key in keys {
        if a.get(key) == b.get(key) {
            continue;
        }
        let Some(entity) = entity_of_key(key) else {
            continue;
        };
        let touching = |ops: &[Op<MetaOp>], other: &VersionVector| -> Vec<String> {
            let matcher = Matcher::new(&entity, ops);
            ops.iter()
                .filter(|op| matcher.touches(&op.payload))
                .map(|op| {
                    let mark = if other.contains(op.dot) { "" } else { "*" };
                    format!("{}{mark}", op.dot)
                })
                .collect()
        };
        diffs.push(EntityDiff {
            entity: key.clone(),
            a: a.get(key).cloned(),
            b: b.get(key).cloned(),
            ops_a: touching(ops_a, &front_b),
            ops_b: touching(ops_b, &front_a),
        });
    }
    diffs
}

fn entity_of_key(key: &str) -> Option<Entity> {
    let (kind, id) = key.split_once(':')?;
    match kind {
        "user" => Some(Entity::User(id.to_owned())),
        "file" => Uuid::parse_str(id).ok().map(Entity::File),
        _ => None,
    }
}

/// Parses `origin:seq` (origin in hex, as logs print it).
pub fn parse_dot(text: &str) -> Result<Dot, String> {
    let (origin, seq) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not an operation (origin:seq)"))?;
    let origin: NodeId = origin
        .parse()
        .map_err(|e| format!("{text:?}: bad origin: {e}"))?;
    let seq: u64 = seq.parse().map_err(|e| format!("{text:?}: bad seq: {e}"))?;
    Ok(Dot::new(origin, Seq::new(seq)))
}

/// Parses a frontier written as `origin:seq,origin:seq`.
pub fn parse_frontier(text: &str) -> Result<VersionVector, String> {
    let mut vv = VersionVector::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let dot = parse_dot(part)?;
        vv.raise(dot.origin, dot.seq);
    }
    Ok(vv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redcloud_eventlog::Hlc;

    fn op(origin: u64, seq: u64, deps: &[(u64, u64)], wall: u64, payload: MetaOp) -> Op<MetaOp> {
        let mut vv = VersionVector::new();
        for (o, s) in deps {
            vv.raise(NodeId::new(*o), Seq::new(*s));
        }
        Op {
            dot: Dot::new(NodeId::new(origin), Seq::new(seq)),
            deps: vv,
            hlc: Hlc::new(wall, 0),
            payload,
        }
    }

    fn added(file: Uuid, owner: Uuid, name: &str, tags: &[&str], replaces: Vec<Uuid>) -> MetaOp {
        MetaOp::FileAdded {
            file_id: file,
            owner_id: owner,
            name: name.to_owned(),
            size: 1,
            chunk_size: 1,
            chunks: Vec::new(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            created_at_ms: 0,
            replaces,
            md5: None,
        }
    }

    #[test]
    fn entities_parse_or_say_what_is_expected() {
        assert_eq!("tag:work".parse(), Ok(Entity::Tag("work".to_owned())));
        assert_eq!("user:alice".parse(), Ok(Entity::User("alice".to_owned())));
        assert!(
            "file:nope"
                .parse::<Entity>()
                .unwrap_err()
                .contains("not a file id")
        );
        assert!("alice".parse::<Entity>().unwrap_err().contains("user:NAME"));
        assert!(
            "disk:x"
                .parse::<Entity>()
                .unwrap_err()
                .contains("unknown entity kind")
        );
    }

    #[test]
    fn history_names_the_rule_of_every_step() {
        let owner = Uuid::from_u128(1);
        let (f1, f2, f3) = (
            Uuid::from_u128(11),
            Uuid::from_u128(12),
            Uuid::from_u128(13),
        );
        let ops = vec![
            op(1, 1, &[], 100, added(f1, owner, "a.txt", &["work"], vec![])),
            // Two uploads of a.txt that both saw f1 but not each other.
            op(
                1,
                2,
                &[(1, 1)],
                200,
                added(f2, owner, "a.txt", &["work"], vec![f1]),
            ),
            op(
                2,
                1,
                &[(1, 1)],
                150,
                added(f3, owner, "a.txt", &["work"], vec![f1]),
            ),
            op(
                2,
                2,
                &[(1, 1), (2, 1)],
                300,
                MetaOp::TagsRemoved {
                    file_ids: vec![f3],
                    tags: vec!["work".to_owned()],
                },
            ),
            op(
                1,
                3,
                &[(1, 2)],
                250,
                MetaOp::TagsAdded {
                    file_ids: vec![f3],
                    tags: vec!["work".to_owned()],
                },
            ),
        ];
        let steps = history(&Entity::Name("a.txt".to_owned()), &ops);
        assert_eq!(steps.len(), 5);
        assert_eq!(steps[0].rule, "new file");
        assert!(steps[1].rule.starts_with("causal order: replaces"));
        assert!(
            steps[1].rule.contains("conflict copy")
                && steps[1].rule.contains(&ops[2].dot.to_string())
        );
        assert!(steps[2].rule.contains(&ops[1].dot.to_string()));
        assert!(steps[3].rule.ends_with(": current"), "{}", steps[3].rule);
        assert!(
            steps[4]
                .rule
                .contains(&format!("superseded by {}", ops[3].dot)),
            "{}",
            steps[4].rule
        );

        let by_tag = history(&Entity::Tag("work".to_owned()), &ops);
        assert_eq!(by_tag.len(), 5);
        assert!(history(&Entity::Tag("play".to_owned()), &ops).is_empty());
    }

    #[test]
    fn both_registrations_of_a_name_are_shown_and_the_later_is_a_conflict() {
        let reg = |id: u128| MetaOp::UserRegistered {
            user_id: Uuid::from_u128(id),
            username: "bob".to_owned(),
            password_hash: String::new(),
            api_key_hash: [0; 32],
        };
        let ops = vec![op(1, 1, &[], 500, reg(1)), op(2, 1, &[], 400, reg(2))];
        let steps = history(&Entity::User("bob".to_owned()), &ops);
        assert!(
            steps[0]
                .rule
                .contains(&format!("concurrent with {}", ops[1].dot))
                && steps[0].rule.contains("username conflict")
        );
        assert!(steps[1].rule.contains("tries this account first"));
    }

    #[test]
    fn diffs_name_the_operations_the_other_side_lacks() {
        let owner = Uuid::from_u128(1);
        let f = Uuid::from_u128(5);
        let base = op(1, 1, &[], 100, added(f, owner, "x", &["t"], vec![]));
        let delete = op(
            1,
            2,
            &[(1, 1)],
            200,
            MetaOp::FilesDeleted { file_ids: vec![f] },
        );
        let a_ops = vec![base.clone(), delete];
        let b_ops = vec![base];
        let key = format!("file:{f}");
        let a: BTreeMap<String, String> = [(key.clone(), "deleted".to_owned())].into();
        let b: BTreeMap<String, String> = [(key.clone(), "live".to_owned())].into();
        let diffs = diff_entities(&a, &b, &a_ops, &b_ops);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].entity, key);
        assert_eq!(
            diffs[0].ops_a,
            [format!("{}", a_ops[0].dot), format!("{}*", a_ops[1].dot)]
        );
        assert_eq!(diffs[0].ops_b, [a_ops[0].dot.to_string()]);
        assert_eq!(
            missing(
                &VersionVector::from_iter([(NodeId::new(1), Seq::new(2))]),
                &VersionVector::from_iter([(NodeId::new(1), Seq::new(1))])
            ),
            [Missing {
                origin: NodeId::new(1).to_string(),
                from: 2,
                to: 2
            }]
        );
        assert!(diff_entities(&a, &a, &a_ops, &a_ops).is_empty());
    }

    #[test]
    fn frontiers_parse_from_what_logs_print() {
        let vv = parse_frontier("0000000000000001:3, 00000000000000ff:9").unwrap();
        assert_eq!(vv.get(NodeId::new(1)), Seq::new(3));
        assert_eq!(vv.get(NodeId::new(255)), Seq::new(9));
        assert!(parse_frontier("1-3").is_err());
    }
}
