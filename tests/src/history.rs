//! What clients were told, and a checker that holds the cluster to it, in the spirit of
//! Jepsen: scenario tests make their requests through recording [`Client`]s, so the [`History`]
//! holds every request and its answer; after the heal, [`History::check`] observes every
//! controller (each user's files, their bytes, every login, every key) and [`verdict`] compares
//! the observation with the history.
//!
//! Only what a client can see counts as evidence. A file may vanish only through an answer
//! that names it: a delete that reported its id, or an upload that reported it as
//! `replaced_file_id` (both had seen the file, so they causally follow its upload). A tag may
//! appear on a file only if the file's upload or an add-tags answer naming the file gave it.
//! A request that ended in a 5xx or a transport error is *indeterminate* (it may have taken
//! effect) and excuses what it could have done; a 4xx took no effect.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::{Cluster, status_json};

const FRONTIER_HEADER: &str = "x-redcloud-frontier";

/// A set of tags or query tags.
pub type Tags = BTreeSet<String>;

/// The tags `names` as a set.
pub fn tags(names: &[&str]) -> Tags {
    names.iter().map(|t| (*t).to_owned()).collect()
}

/// One request a client made, and what it was told.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Which recording client made it.
    pub client: usize,
    /// The controller it went to.
    pub controller: usize,
    /// The request.
    pub op: Op,
    /// The answer.
    pub reply: Reply,
}

/// A request. `user` is the caller's user id.
#[derive(Clone, Debug)]
pub enum Op {
    /// `POST /auth/register`.
    Register {
        /// The name asked for.
        username: String,
        /// The password given.
        password: String,
    },
    /// `POST /files`.
    Upload {
        /// The caller.
        user: String,
        /// The file's name.
        name: String,
        /// The tags given.
        tags: Tags,
        /// The bytes sent.
        data: Content,
    },
    /// `DELETE /files?tags=...`.
    Delete {
        /// The caller.
        user: String,
        /// The query.
        query: Tags,
    },
    /// `POST /files/tags`.
    AddTags {
        /// The caller.
        user: String,
        /// The query.
        query: Tags,
        /// The tags to add.
        tags: Tags,
    },
    /// `DELETE /files/tags`.
    RemoveTags {
        /// The caller.
        user: String,
        /// The query.
        query: Tags,
        /// The tags to remove.
        tags: Tags,
    },
    /// `GET /files?tags=...`.
    List {
        /// The caller.
        user: String,
        /// The query.
        query: Tags,
    },
}

/// What a client was told.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Registered as this user id.
    Registered {
        /// The new account's id.
        user_id: String,
    },
    /// Stored as `file_id`, replacing `replaced`.
    Uploaded {
        /// The new file's id.
        file_id: String,
        /// The file the upload replaced.
        replaced: Option<String>,
    },
    /// A delete or tag change took effect on these files.
    Changed {
        /// The files it changed.
        file_ids: BTreeSet<String>,
    },
    /// A listing.
    Listed {
        /// The files shown.
        files: Vec<Seen>,
    },
    /// A 4xx: the request took no effect.
    Refused {
        /// The status.
        status: u16,
        /// The error body.
        body: String,
    },
    /// A 5xx or a transport error: the request may or may not have taken effect.
    Indeterminate {
        /// What went wrong.
        detail: String,
    },
}

/// A file as a listing showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its id.
    pub file_id: String,
    /// Its (display) name.
    pub name: String,
    /// Its owner's user id.
    pub owner_id: String,
    /// Its tags.
    pub tags: Tags,
}

impl Seen {
    fn from_json(file: &Value) -> Self {
        let text = |field: &str| file[field].as_str().unwrap_or_default().to_owned();
        Self {
            file_id: text("file_id"),
            name: text("name"),
            owner_id: text("owner_id"),
            tags: file["tags"]
                .as_array()
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A file's bytes; printed as its length, so a history stays readable.
#[derive(Clone, PartialEq, Eq)]
pub struct Content(pub Vec<u8>);

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// What one controller showed after the heal.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// Every file of each user (`GET /files?tags=`), by user id.
    pub files: BTreeMap<String, Vec<Seen>>,
    /// Each listed file's download by id: its bytes, or what refused it.
    pub downloads: BTreeMap<String, Result<Content, String>>,
    /// Each `(username, password)` a registration was told about: the account login entered.
    pub logins: BTreeMap<(String, String), Result<String, String>>,
    /// Each registered user's first key: the account `GET /auth/me` says it belongs to.
    pub keys: BTreeMap<String, Result<String, String>>,
}

/// A broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An acknowledged upload is missing, and no answer removed it.
    Lost {
        /// The controller.
        controller: usize,
        /// The file.
        file_id: String,
        /// The name it was uploaded under.
        name: String,
    },
    /// A file downloads with other bytes than were uploaded, or not at all.
    WrongBytes {
        /// The controller.
        controller: usize,
        /// The file.
        file_id: String,
        /// What came back.
        detail: String,
    },
    /// A file a delete or replace was acknowledged for is listed again.
    Resurrected {
        /// The controller.
        controller: usize,
        /// The file.
        file_id: String,
    },
    /// A read showed a file no upload made.
    PhantomFile {
        /// Which read.
        read: String,
        /// The file.
        file_id: String,
    },
    /// A read showed a file with a tag it was never given.
    PhantomTag {
        /// Which read.
        read: String,
        /// The file.
        file_id: String,
        /// The tag.
        tag: String,
    },
    /// A read showed a file without one of the tags it asked for.
    OffQuery {
        /// Which read.
        read: String,
        /// The file.
        file_id: String,
    },
    /// A read showed a file without any tag.
    Tagless {
        /// Which read.
        read: String,
        /// The file.
        file_id: String,
    },
    /// A read showed another user's file.
    Trespass {
        /// Which read.
        read: String,
        /// The file.
        file_id: String,
    },
    /// A password a registration was told works does not enter that account.
    LockedOut {
        /// The controller.
        controller: usize,
        /// The username.
        username: String,
        /// What login answered.
        detail: String,
    },
    /// A registration's key no longer enters its account.
    KeyLost {
        /// The controller.
        controller: usize,
        /// The account.
        user_id: String,
        /// What `GET /auth/me` answered.
        detail: String,
    },
}

/// A recorder shared by every client of a scenario.
#[derive(Clone, Default)]
pub struct History {
    entries: Arc<Mutex<Vec<Entry>>>,
    clients: Arc<Mutex<usize>>,
    /// Each registered account's key, by user id; kept out of the entries so a printed history
    /// shows no key.
    keys: Arc<Mutex<BTreeMap<String, String>>>,
}

impl History {
    /// A new recording client talking to controller `controller`.
    pub fn client(&self, cluster: &Cluster, controller: usize) -> Client {
        let id = {
            let mut clients = self.clients.lock().unwrap();
            *clients += 1;
            *clients - 1
        };
        Client {
            history: self.clone(),
            id,
            http: cluster.http.clone(),
            base: cluster.url_of(controller),
            controller,
            account: None,
            frontier: None,
        }
    }

    /// Every entry so far, in the order the answers arrived.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    fn record(&self, entry: Entry) {
        self.entries.lock().unwrap().push(entry);
    }

    /// Every account whose registration was acknowledged.
    fn registered(&self) -> Vec<Account> {
        let keys = self.keys.lock().unwrap();
        self.entries()
            .into_iter()
            .filter_map(|entry| match (entry.op, entry.reply) {
                (Op::Register { username, password }, Reply::Registered { user_id }) => {
                    Some(Account {
                        username,
                        password,
                        api_key: keys[&user_id].clone(),
                        user_id,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// What every controller of `cluster` shows now, for every account a registration was
    /// acknowledged for. Call it once the cluster converged.
    pub async fn observe(&self, cluster: &Cluster) -> Vec<Observation> {
        let accounts = self.registered();
        let mut observations = Vec::new();
        for controller in 0..=cluster.more_controllers.len() {
            let base = cluster.url_of(controller);
            let mut seen = Observation::default();
            for account in &accounts {
                let listed = cluster
                    .http
                    .get(format!("{base}/files?tags="))
                    .bearer_auth(&account.api_key)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = status_json(listed).await;
                assert_eq!(status, 200, "listing on controller {controller}: {body}");
                let files: Vec<Seen> = body["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Seen::from_json)
                    .collect();
                for file in &files {
                    let download = cluster
                        .http
                        .get(format!("{base}/files/{}/download", file.file_id))
                        .bearer_auth(&account.api_key)
                        .send()
                        .await
                        .unwrap();
                    let status = download.status().as_u16();
                    let bytes = download.bytes().await.map(|b| b.to_vec());
                    let outcome = match (status, bytes) {
                        (200, Ok(bytes)) => Ok(Content(bytes)),
                        (status, Ok(_)) => Err(format!("status {status}")),
                        (status, Err(error)) => Err(format!("status {status}, body: {error}")),
                    };
                    seen.downloads.insert(file.file_id.clone(), outcome);
                }
                seen.files.insert(account.user_id.clone(), files);

                let me = cluster
                    .http
                    .get(format!("{base}/auth/me"))
                    .bearer_auth(&account.api_key)
                    .send()
                    .await
                    .unwrap();
                let (status, body) = status_json(me).await;
                let owner = match (status, body["user_id"].as_str()) {
                    (200, Some(user_id)) => Ok(user_id.to_owned()),
                    _ => Err(format!("{status} {body}")),
                };
                seen.keys.insert(account.user_id.clone(), owner);
            }
            observations.push(seen);
        }
        // Logins last: each one issues a new key, which replaces the registration's key.
        for (controller, seen) in observations.iter_mut().enumerate() {
            let base = cluster.url_of(controller);
            for account in &accounts {
                let login = cluster
                    .http
                    .post(format!("{base}/auth/login"))
                    .json(&json!({"username": account.username, "password": account.password}))
                    .send()
                    .await
                    .unwrap();
                let (status, body) = status_json(login).await;
                let entered = match status {
                    200 => entered_account(&cluster.http, &base, &body).await,
                    _ => Err(format!("{status} {body}")),
                };
                seen.logins.insert(
                    (account.username.clone(), account.password.clone()),
                    entered,
                );
            }
        }
        observations
    }

    /// Observes `cluster` and fails, printing every violation and the whole history, if the
    /// observation or any read the clients saw broke a promise.
    pub async fn check(&self, cluster: &Cluster) {
        let entries = self.entries();
        let observations = self.observe(cluster).await;
        let violations = verdict(&entries, &observations);
        if !violations.is_empty() {
            let mut report = String::new();
            for entry in &entries {
                report.push_str(&format!("  {entry:?}\n"));
            }
            panic!(
                "{} violations of what clients were told:\n{}\nhistory ({} requests):\n{report}",
                violations.len(),
                violations
                    .iter()
                    .map(|v| format!("  {v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                entries.len()
            );
        }
    }
}

/// The account a login answer's key enters.
async fn entered_account(
    http: &reqwest::Client,
    base: &str,
    login: &Value,
) -> Result<String, String> {
    let key = login["api_key"]
        .as_str()
        .ok_or("no api_key in the answer")?;
    let me = http
        .get(format!("{base}/auth/me"))
        .bearer_auth(key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let (status, body) = status_json(me).await;
    body["user_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("{status} {body}"))
}

/// An account whose registration was acknowledged.
struct Account {
    username: String,
    password: String,
    user_id: String,
    api_key: String,
}

/// A client whose every request and answer lands in its [`History`]. It sends back the newest
/// `X-RedCloud-Frontier` it was given, as the CLI does, so it reads its own writes.
pub struct Client {
    history: History,
    id: usize,
    http: reqwest::Client,
    base: String,
    controller: usize,
    account: Option<(String, String)>,
    frontier: Option<String>,
}

impl Client {
    /// This client's number in the history.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Another recording client in the same session (account and newest frontier token),
    /// talking to `controller` of `cluster`.
    pub fn same_session_at(&self, cluster: &Cluster, controller: usize) -> Client {
        let mut other = self.history.client(cluster, controller);
        other.account.clone_from(&self.account);
        other.frontier.clone_from(&self.frontier);
        other
    }

    /// The controller this client talks to.
    pub fn controller(&self) -> usize {
        self.controller
    }

    /// The API key this client acts with.
    pub fn api_key(&self) -> &str {
        self.key()
    }

    /// The user id this client acts as.
    pub fn user_id(&self) -> &str {
        &self.account.as_ref().expect("register first").1
    }

    fn user(&self) -> String {
        self.user_id().to_owned()
    }

    fn key(&self) -> &str {
        &self.account.as_ref().expect("register first").0
    }

    /// Registers `username`; true when it was acknowledged (this client then acts as it).
    pub async fn register(&mut self, username: &str, password: &str) -> bool {
        let sent = self
            .http
            .post(format!("{}/auth/register", self.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await;
        let (reply, body) = self.answer(sent, 201).await;
        let reply = match (reply, body["api_key"].as_str(), body["user_id"].as_str()) {
            (None, Some(key), Some(user_id)) => {
                self.history
                    .keys
                    .lock()
                    .unwrap()
                    .insert(user_id.to_owned(), key.to_owned());
                self.account = Some((key.to_owned(), user_id.to_owned()));
                Reply::Registered {
                    user_id: user_id.to_owned(),
                }
            }
            (Some(failed), _, _) => failed,
            (None, _, _) => Reply::Indeterminate {
                detail: format!("a 201 without api_key and user_id: {body}"),
            },
        };
        let registered = matches!(reply, Reply::Registered { .. });
        self.record(
            Op::Register {
                username: username.to_owned(),
                password: password.to_owned(),
            },
            reply,
        );
        registered
    }

    /// Uploads `data` as `name` with `tags`; the new file's id when acknowledged.
    pub async fn upload(&mut self, name: &str, data: Vec<u8>, tags: &Tags) -> Option<String> {
        let form = reqwest::multipart::Form::new()
            .text("tags", tags.iter().cloned().collect::<Vec<_>>().join(","))
            .part(
                "file",
                reqwest::multipart::Part::bytes(data.clone()).file_name(name.to_owned()),
            );
        let sent = self
            .with_session(self.http.post(format!("{}/files", self.base)))
            .multipart(form)
            .send()
            .await;
        let (reply, body) = self.answer(sent, 201).await;
        let reply = reply.unwrap_or_else(|| match body["file_id"].as_str() {
            Some(file_id) => Reply::Uploaded {
                file_id: file_id.to_owned(),
                replaced: body["replaced_file_id"].as_str().map(str::to_owned),
            },
            None => Reply::Indeterminate {
                detail: format!("a 201 without file_id: {body}"),
            },
        });
        let file_id = match &reply {
            Reply::Uploaded { file_id, .. } => Some(file_id.clone()),
            _ => None,
        };
        let op = Op::Upload {
            user: self.user(),
            name: name.to_owned(),
            tags: tags.clone(),
            data: Content(data),
        };
        self.record(op, reply);
        file_id
    }

    /// Deletes the files matching `query`; the ids deleted, when acknowledged.
    pub async fn delete(&mut self, query: &Tags) -> Option<BTreeSet<String>> {
        let url = format!("{}/files?tags={}", self.base, joined(query));
        let sent = self.with_session(self.http.delete(url)).send().await;
        let reply = self.changed(sent).await;
        let op = Op::Delete {
            user: self.user(),
            query: query.clone(),
        };
        self.record_changed(op, reply)
    }

    /// Adds `tags` to the files matching `query`; the ids changed, when acknowledged.
    pub async fn add_tags(&mut self, query: &Tags, tags: &Tags) -> Option<BTreeSet<String>> {
        let sent = self
            .with_session(self.http.post(format!("{}/files/tags", self.base)))
            .json(&json!({"query_tags": query, "new_tags": tags}))
            .send()
            .await;
        let reply = self.changed(sent).await;
        let op = Op::AddTags {
            user: self.user(),
            query: query.clone(),
            tags: tags.clone(),
        };
        self.record_changed(op, reply)
    }

    /// Removes `tags` from the files matching `query`; the ids changed, when acknowledged.
    pub async fn remove_tags(&mut self, query: &Tags, tags: &Tags) -> Option<BTreeSet<String>> {
        let sent = self
            .with_session(self.http.delete(format!("{}/files/tags", self.base)))
            .json(&json!({"query_tags": query, "tags_to_remove": tags}))
            .send()
            .await;
        let reply = self.changed(sent).await;
        let op = Op::RemoveTags {
            user: self.user(),
            query: query.clone(),
            tags: tags.clone(),
        };
        self.record_changed(op, reply)
    }

    /// Lists the files matching `query` (all of them when it is empty).
    pub async fn list(&mut self, query: &Tags) -> Option<Vec<Seen>> {
        let url = format!("{}/files?tags={}", self.base, joined(query));
        let sent = self.with_session(self.http.get(url)).send().await;
        let (reply, body) = self.answer(sent, 200).await;
        let reply = reply.unwrap_or_else(|| Reply::Listed {
            files: body["files"]
                .as_array()
                .map(|files| files.iter().map(Seen::from_json).collect())
                .unwrap_or_default(),
        });
        let files = match &reply {
            Reply::Listed { files } => Some(files.clone()),
            _ => None,
        };
        let op = Op::List {
            user: self.user(),
            query: query.clone(),
        };
        self.record(op, reply);
        files
    }

    fn with_session(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.bearer_auth(self.key());
        match &self.frontier {
            Some(token) => request.header(FRONTIER_HEADER, token),
            None => request,
        }
    }

    /// The reply a failed request earns (`None` when it got `expected`), and the JSON body.
    async fn answer(
        &mut self,
        sent: reqwest::Result<reqwest::Response>,
        expected: u16,
    ) -> (Option<Reply>, Value) {
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let detail = error.to_string();
                return (Some(Reply::Indeterminate { detail }), Value::Null);
            }
        };
        if let Some(token) = response.headers().get(FRONTIER_HEADER) {
            self.frontier = token.to_str().ok().map(str::to_owned);
        }
        let status = response.status().as_u16();
        let body = match response.text().await {
            Ok(text) => text,
            Err(error) => {
                let detail = format!("status {status}, body cut off: {error}");
                return (Some(Reply::Indeterminate { detail }), Value::Null);
            }
        };
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let reply = match status {
            s if s == expected => None,
            400..=499 => Some(Reply::Refused { status, body }),
            _ => Some(Reply::Indeterminate {
                detail: format!("status {status}: {body}"),
            }),
        };
        (reply, json)
    }

    async fn changed(&mut self, sent: reqwest::Result<reqwest::Response>) -> Reply {
        let (reply, body) = self.answer(sent, 200).await;
        reply.unwrap_or_else(|| Reply::Changed {
            file_ids: body["file_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn record_changed(&self, op: Op, reply: Reply) -> Option<BTreeSet<String>> {
        let changed = match &reply {
            Reply::Changed { file_ids } => Some(file_ids.clone()),
            _ => None,
        };
        self.record(op, reply);
        changed
    }

    fn record(&self, op: Op, reply: Reply) {
        self.history.record(Entry {
            client: self.id,
            controller: self.controller,
            op,
            reply,
        });
    }
}

fn joined(tags: &Tags) -> String {
    tags.iter().cloned().collect::<Vec<_>>().join(",")
}

/// `report (conflict 3f2a91c4).pdf` → `report.pdf`: the name a conflict copy was uploaded as.
fn uploaded_name(shown: &str) -> String {
    match (shown.find(" (conflict "), shown.rfind(')')) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{}", &shown[..start], &shown[end + 1..])
        }
        _ => shown.to_owned(),
    }
}

/// What the history says about one file.
#[derive(Default)]
struct FileFacts {
    owner: String,
    /// The acknowledged upload's name and bytes (`None`: only an indeterminate upload could
    /// have made it).
    uploaded: Option<(String, Content)>,
    /// Every tag an answer gave it (or an indeterminate request could have).
    allowed: Tags,
    /// Acknowledged answers that removed it.
    removed_by: Vec<String>,
}

/// Every violation of what the clients in `entries` were told, in their own reads and in what
/// the controllers showed after the heal (`observations`, one per controller).
#[must_use]
pub fn verdict(entries: &[Entry], observations: &[Observation]) -> Vec<Violation> {
    let mut files: BTreeMap<String, FileFacts> = BTreeMap::new();
    for (n, entry) in entries.iter().enumerate() {
        match (&entry.op, &entry.reply) {
            (
                Op::Upload {
                    user,
                    name,
                    tags,
                    data,
                },
                Reply::Uploaded { file_id, replaced },
            ) => {
                let facts = files.entry(file_id.clone()).or_default();
                facts.owner.clone_from(user);
                facts.uploaded = Some((name.clone(), data.clone()));
                facts.allowed.extend(tags.iter().cloned());
                if let Some(old) = replaced {
                    files
                        .entry(old.clone())
                        .or_default()
                        .removed_by
                        .push(format!("request {n}: upload of {name} replaced it"));
                }
            }
            (Op::Delete { .. }, Reply::Changed { file_ids }) => {
                for id in file_ids {
                    let facts = files.entry(id.clone()).or_default();
                    facts.removed_by.push(format!("request {n}: delete"));
                }
            }
            (Op::AddTags { tags, .. }, Reply::Changed { file_ids }) => {
                for id in file_ids {
                    let facts = files.entry(id.clone()).or_default();
                    facts.allowed.extend(tags.iter().cloned());
                }
            }
            _ => {}
        }
    }
    let indeterminate: Vec<&Op> = entries
        .iter()
        .filter(|e| matches!(e.reply, Reply::Indeterminate { .. }))
        .map(|e| &e.op)
        .collect();

    // What a file no acknowledged upload made could be: the work of an indeterminate upload of
    // that owner and name.
    let possible_upload = |seen: &Seen| -> Option<Tags> {
        let name = uploaded_name(&seen.name);
        let tags: Tags = indeterminate
            .iter()
            .filter_map(|op| match op {
                Op::Upload {
                    user,
                    name: uploaded,
                    tags,
                    ..
                } if *user == seen.owner_id && *uploaded == name => Some(tags.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        (!tags.is_empty()).then_some(tags)
    };
    let allowed = |seen: &Seen| -> Option<Tags> {
        let mut tags = match files.get(&seen.file_id) {
            Some(facts) if facts.uploaded.is_some() => facts.allowed.clone(),
            _ => {
                let mut tags = possible_upload(seen)?;
                if let Some(facts) = files.get(&seen.file_id) {
                    tags.extend(facts.allowed.iter().cloned());
                }
                tags
            }
        };
        for op in &indeterminate {
            if let Op::AddTags {
                user, tags: added, ..
            } = op
                && *user == seen.owner_id
            {
                tags.extend(added.iter().cloned());
            }
        }
        Some(tags)
    };
    let mut violations = Vec::new();
    let mut check_read = |read: String, reader: &str, query: &Tags, shown: &[Seen]| {
        for seen in shown {
            let file_id = seen.file_id.clone();
            if seen.owner_id != reader {
                violations.push(Violation::Trespass {
                    read: read.clone(),
                    file_id: file_id.clone(),
                });
            }
            if seen.tags.is_empty() {
                violations.push(Violation::Tagless {
                    read: read.clone(),
                    file_id: file_id.clone(),
                });
            }
            if !query.is_subset(&seen.tags) {
                violations.push(Violation::OffQuery {
                    read: read.clone(),
                    file_id: file_id.clone(),
                });
            }
            let Some(allowed) = allowed(seen) else {
                violations.push(Violation::PhantomFile {
                    read: read.clone(),
                    file_id,
                });
                continue;
            };
            for tag in seen.tags.difference(&allowed) {
                violations.push(Violation::PhantomTag {
                    read: read.clone(),
                    file_id: file_id.clone(),
                    tag: tag.clone(),
                });
            }
        }
    };
    for (n, entry) in entries.iter().enumerate() {
        if let (Op::List { user, query }, Reply::Listed { files }) = (&entry.op, &entry.reply) {
            let read = format!(
                "request {n}: list by client {} on controller {}",
                entry.client, entry.controller
            );
            check_read(read, user, query, files);
        }
    }
    for (controller, observation) in observations.iter().enumerate() {
        for (user, shown) in &observation.files {
            let read = format!("final listing of user {user} on controller {controller}");
            check_read(read, user, &Tags::new(), shown);
        }
    }

    for (controller, observation) in observations.iter().enumerate() {
        let listed: BTreeSet<&str> = observation
            .files
            .values()
            .flatten()
            .map(|seen| seen.file_id.as_str())
            .collect();
        for (file_id, facts) in &files {
            let present = listed.contains(file_id.as_str());
            if present && !facts.removed_by.is_empty() {
                violations.push(Violation::Resurrected {
                    controller,
                    file_id: file_id.clone(),
                });
            }
            let Some((name, data)) = &facts.uploaded else {
                continue;
            };
            if present {
                match observation.downloads.get(file_id) {
                    Some(Ok(bytes)) if bytes == data => {}
                    Some(Ok(bytes)) => violations.push(Violation::WrongBytes {
                        controller,
                        file_id: file_id.clone(),
                        detail: format!("{bytes:?}, uploaded {data:?}"),
                    }),
                    Some(Err(detail)) => violations.push(Violation::WrongBytes {
                        controller,
                        file_id: file_id.clone(),
                        detail: detail.clone(),
                    }),
                    None => violations.push(Violation::WrongBytes {
                        controller,
                        file_id: file_id.clone(),
                        detail: "listed but never downloaded".to_owned(),
                    }),
                }
            } else if facts.removed_by.is_empty()
                && !could_have_removed(&indeterminate, facts, name)
            {
                violations.push(Violation::Lost {
                    controller,
                    file_id: file_id.clone(),
                    name: name.clone(),
                });
            }
        }
        for ((username, _), entered) in &observation.logins {
            let expected: BTreeSet<&str> = entries
                .iter()
                .filter_map(|e| match (&e.op, &e.reply) {
                    (Op::Register { username: u, .. }, Reply::Registered { user_id })
                        if u == username =>
                    {
                        Some(user_id.as_str())
                    }
                    _ => None,
                })
                .collect();
            let fine = match entered {
                Ok(user_id) => expected.contains(user_id.as_str()),
                Err(_) => false,
            };
            if !fine {
                violations.push(Violation::LockedOut {
                    controller,
                    username: username.clone(),
                    detail: format!("{entered:?}"),
                });
            }
        }
        for (user_id, owner) in &observation.keys {
            if owner.as_deref() != Ok(user_id.as_str()) {
                violations.push(Violation::KeyLost {
                    controller,
                    user_id: user_id.clone(),
                    detail: format!("{owner:?}"),
                });
            }
        }
    }
    violations.extend(wrong_accounts(entries, observations));
    violations
}

/// A login must enter the very account the password was registered with, not merely one of
/// that name's accounts.
fn wrong_accounts(entries: &[Entry], observations: &[Observation]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for entry in entries {
        let (Op::Register { username, password }, Reply::Registered { user_id }) =
            (&entry.op, &entry.reply)
        else {
            continue;
        };
        for (controller, observation) in observations.iter().enumerate() {
            if let Some(Ok(entered)) = observation
                .logins
                .get(&(username.clone(), password.clone()))
                && entered != user_id
            {
                violations.push(Violation::LockedOut {
                    controller,
                    username: username.clone(),
                    detail: format!("entered {entered}, registered as {user_id}"),
                });
            }
        }
    }
    violations
}

/// Whether an indeterminate request could have removed the file: a delete of its owner whose
/// query its tags could match, or an upload of its owner under its name.
fn could_have_removed(indeterminate: &[&Op], facts: &FileFacts, name: &str) -> bool {
    indeterminate.iter().any(|op| match op {
        Op::Delete { user, query } => *user == facts.owner && query.is_subset(&facts.allowed),
        Op::Upload {
            user,
            name: uploaded,
            ..
        } => *user == facts.owner && uploaded == name,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANA: &str = "user-ana";

    fn entry(op: Op, reply: Reply) -> Entry {
        Entry {
            client: 0,
            controller: 0,
            op,
            reply,
        }
    }

    fn upload(name: &str, file_tags: &[&str], file_id: &str) -> Entry {
        entry(
            Op::Upload {
                user: ANA.to_owned(),
                name: name.to_owned(),
                tags: tags(file_tags),
                data: Content(name.as_bytes().to_vec()),
            },
            Reply::Uploaded {
                file_id: file_id.to_owned(),
                replaced: None,
            },
        )
    }

    fn seen(file_id: &str, name: &str, file_tags: &[&str]) -> Seen {
        Seen {
            file_id: file_id.to_owned(),
            name: name.to_owned(),
            owner_id: ANA.to_owned(),
            tags: tags(file_tags),
        }
    }

    /// One controller showing `shown`, each file downloading as its name's bytes.
    fn showing(shown: Vec<Seen>) -> Observation {
        let mut observation = Observation::default();
        for file in &shown {
            observation.downloads.insert(
                file.file_id.clone(),
                Ok(Content(uploaded_name(&file.name).into_bytes())),
            );
        }
        observation.files.insert(ANA.to_owned(), shown);
        observation
    }

    fn changed(op: Op, ids: &[&str]) -> Entry {
        entry(
            op,
            Reply::Changed {
                file_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            },
        )
    }

    #[test]
    fn a_faithful_cluster_passes() {
        let history = vec![
            upload("a.txt", &["red"], "f1"),
            upload("b.txt", &["red"], "f2"),
            changed(
                Op::AddTags {
                    user: ANA.to_owned(),
                    query: tags(&["red"]),
                    tags: tags(&["blue"]),
                },
                &["f1"],
            ),
            changed(
                Op::Delete {
                    user: ANA.to_owned(),
                    query: tags(&["red"]),
                },
                &["f2"],
            ),
        ];
        let after = showing(vec![seen("f1", "a.txt", &["blue", "red"])]);
        assert_eq!(verdict(&history, &[after]), vec![]);
    }

    #[test]
    fn an_upload_no_answer_removed_is_lost_when_missing() {
        let history = vec![upload("a.txt", &["red"], "f1")];
        assert_eq!(
            verdict(&history, &[showing(vec![])]),
            vec![Violation::Lost {
                controller: 0,
                file_id: "f1".to_owned(),
                name: "a.txt".to_owned()
            }]
        );
    }

    #[test]
    fn a_replaced_file_may_vanish_but_never_return() {
        let mut history = vec![upload("a.txt", &["red"], "f1")];
        history.push(entry(
            Op::Upload {
                user: ANA.to_owned(),
                name: "a.txt".to_owned(),
                tags: tags(&["red"]),
                data: Content(b"a.txt".to_vec()),
            },
            Reply::Uploaded {
                file_id: "f2".to_owned(),
                replaced: Some("f1".to_owned()),
            },
        ));
        let replaced = showing(vec![seen("f2", "a.txt", &["red"])]);
        assert_eq!(verdict(&history, &[replaced]), vec![]);
        let both = showing(vec![
            seen("f1", "a.txt", &["red"]),
            seen("f2", "a.txt", &["red"]),
        ]);
        assert_eq!(
            verdict(&history, &[both]),
            vec![Violation::Resurrected {
                controller: 0,
                file_id: "f1".to_owned()
            }]
        );
    }

    #[test]
    fn a_tag_only_ever_removed_is_a_phantom() {
        // The defect of issue 11: `remove [a, x]` racing `remove [b]` left the file tagged x.
        let history = vec![
            upload("a.txt", &["a", "b"], "f1"),
            changed(
                Op::RemoveTags {
                    user: ANA.to_owned(),
                    query: tags(&["a"]),
                    tags: tags(&["a", "x"]),
                },
                &["f1"],
            ),
        ];
        let after = showing(vec![seen("f1", "a.txt", &["a", "x"])]);
        assert_eq!(
            verdict(&history, &[after]),
            vec![Violation::PhantomTag {
                read: format!("final listing of user {ANA} on controller 0"),
                file_id: "f1".to_owned(),
                tag: "x".to_owned()
            }]
        );
    }

    #[test]
    fn reads_during_the_workload_are_checked_too() {
        let history = vec![
            upload("a.txt", &["red"], "f1"),
            entry(
                Op::List {
                    user: ANA.to_owned(),
                    query: tags(&["blue"]),
                },
                Reply::Listed {
                    files: vec![
                        seen("f1", "a.txt", &["red"]),
                        seen("f9", "z.txt", &["blue"]),
                    ],
                },
            ),
        ];
        let after = showing(vec![seen("f1", "a.txt", &["red"])]);
        let read = "request 1: list by client 0 on controller 0".to_owned();
        assert_eq!(
            verdict(&history, &[after]),
            vec![
                Violation::OffQuery {
                    read: read.clone(),
                    file_id: "f1".to_owned()
                },
                Violation::PhantomFile {
                    read,
                    file_id: "f9".to_owned()
                },
            ]
        );
    }

    #[test]
    fn an_indeterminate_request_excuses_what_it_could_have_done() {
        let history = vec![
            upload("a.txt", &["red"], "f1"),
            entry(
                Op::Delete {
                    user: ANA.to_owned(),
                    query: tags(&["red"]),
                },
                Reply::Indeterminate {
                    detail: "connection reset".to_owned(),
                },
            ),
            entry(
                Op::Upload {
                    user: ANA.to_owned(),
                    name: "b.txt".to_owned(),
                    tags: tags(&["green"]),
                    data: Content(b"b.txt".to_vec()),
                },
                Reply::Indeterminate {
                    detail: "status 503".to_owned(),
                },
            ),
        ];
        let after = showing(vec![seen("f7", "b (conflict 0a1b2c3d).txt", &["green"])]);
        assert_eq!(verdict(&history, &[after]), vec![]);
    }

    #[test]
    fn every_password_a_registration_was_told_must_enter_its_account() {
        let register = |password: &str, user_id: &str| {
            entry(
                Op::Register {
                    username: "sam".to_owned(),
                    password: password.to_owned(),
                },
                Reply::Registered {
                    user_id: user_id.to_owned(),
                },
            )
        };
        let history = vec![register("one", "u1"), register("two", "u2")];
        let mut after = Observation::default();
        let key = |password: &str| ("sam".to_owned(), password.to_owned());
        after.logins.insert(key("one"), Ok("u1".to_owned()));
        after
            .logins
            .insert(key("two"), Err("401 INVALID_CREDENTIALS".to_owned()));
        after.keys.insert("u2".to_owned(), Ok("u2".to_owned()));
        assert_eq!(
            verdict(&history, &[after.clone()]),
            vec![Violation::LockedOut {
                controller: 0,
                username: "sam".to_owned(),
                detail: "Err(\"401 INVALID_CREDENTIALS\")".to_owned()
            }]
        );
        after.logins.insert(key("two"), Ok("u1".to_owned()));
        assert_eq!(
            verdict(&history, &[after]),
            vec![Violation::LockedOut {
                controller: 0,
                username: "sam".to_owned(),
                detail: "entered u1, registered as u2".to_owned()
            }]
        );
    }
}
