//! The HTTP wire contract of `http-api.md`, endpoint by endpoint and error row by error row,
//! against a real controller and chunkserver.
#![allow(clippy::unwrap_used)]

use redcloud_tests::{Cluster, ClusterBuilder, status_json};
use serde_json::{Value, json};

fn cluster() -> ClusterBuilder {
    ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
}

async fn post_json(c: &Cluster, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = c.http.post(format!("{}{path}", c.url())).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    status_json(request.send().await.unwrap()).await
}

async fn delete_json(c: &Cluster, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = c.http.delete(format!("{}{path}", c.url())).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    status_json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn service_routes_health_readiness_and_unknown_paths() {
    let c = cluster().start().await;
    let (status, body) = status_json(c.http.get(c.url()).send().await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"message": "RedCloud Files Controller API", "status": "running"})
        )
    );
    let (status, body) = status_json(
        c.http
            .get(format!("{}/health", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "healthy", "service": "controller"}))
    );
    let (status, body) = status_json(
        c.http
            .get(format!("{}/ready", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ready"], json!(true));

    let (status, body) = status_json(
        c.http
            .get(format!("{}/nope", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body), (404, json!({"detail": "Not Found"})));
    let (status, body) = status_json(
        c.http
            .put(format!("{}/files", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (405, json!({"detail": "Method Not Allowed"}))
    );

    let echoed = c
        .http
        .get(c.url())
        .header("X-Request-ID", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let generated = c.http.get(c.url()).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
}

#[tokio::test]
async fn ready_is_503_without_a_chunkserver() {
    let c = cluster().chunkservers(0).start().await;
    let (status, body) = status_json(
        c.http
            .get(format!("{}/ready", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["ready"], json!(false));
    let key = c.register("alice", "pw").await;
    let (status, body) = status_json(c.upload(&key, "a.txt", b"data".to_vec(), "t").await).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "CHUNKSERVER_UNAVAILABLE");
}

#[tokio::test]
async fn register_and_login() {
    let c = cluster().start().await;
    let (status, body) = post_json(
        &c,
        "/auth/register",
        None,
        json!({"username": "alice", "password": "s3cret"}),
    )
    .await;
    assert_eq!(status, 201);
    let first_key = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(first_key.len(), 40);
    assert!(first_key.starts_with("dfs_"));
    uuid::Uuid::parse_str(body["user_id"].as_str().unwrap()).unwrap();
    assert_eq!(body["username_conflict"], false);
    let (status, me) = status_json(c.get(&first_key, "/auth/me").await).await;
    assert_eq!(
        (status, me),
        (
            200,
            json!({"user_id": body["user_id"], "username": "alice", "username_conflict": false})
        )
    );
    let (status, _) = status_json(c.get("dfs_nobody", "/auth/me").await).await;
    assert_eq!(status, 401, "/auth/me needs a key");

    let (status, body) = post_json(
        &c,
        "/auth/register",
        None,
        json!({"username": "alice", "password": "other"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("USER_ALREADY_EXISTS"))
    );
    let (status, _) = post_json(
        &c,
        "/auth/register",
        None,
        json!({"username": "Alice", "password": "x"}),
    )
    .await;
    assert_eq!(status, 201, "usernames are case-sensitive");
    for empty in [
        json!({"username": "", "password": "x"}),
        json!({"username": "bob", "password": ""}),
    ] {
        let (status, body) = post_json(&c, "/auth/register", None, empty).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_REQUEST"))
        );
    }
    // The longest password the contract allows, far past bcrypt's old 72 bytes.
    let long_password = "p".repeat(1_024);
    let (status, _) = post_json(
        &c,
        "/auth/register",
        None,
        json!({"username": "long", "password": long_password}),
    )
    .await;
    assert_eq!(status, 201, "no 72-byte limit");

    let (status, body) = post_json(&c, "/auth/register", None, json!({"username": "carol"})).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
    assert_eq!(body["detail"][0]["msg"], "Field required");
    let (status, body) = post_json(
        &c,
        "/auth/register",
        None,
        json!({"username": 7, "password": "x"}),
    )
    .await;
    assert_eq!(
        (status, body["detail"][0]["type"].as_str()),
        (422, Some("string_type"))
    );
    let raw = c
        .http
        .post(format!("{}/auth/register", c.url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(raw).await;
    assert_eq!(
        (status, body["detail"][0]["type"].as_str()),
        (422, Some("json_invalid"))
    );

    let (status, body) = post_json(
        &c,
        "/auth/login",
        None,
        json!({"username": "alice", "password": "s3cret"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["username_conflict"], false);
    let second_key = body["api_key"].as_str().unwrap().to_owned();
    assert_ne!(second_key, first_key);
    let (status, body) = status_json(c.get(&first_key, "/files?tags=").await).await;
    assert_eq!(
        (status, body),
        (401, json!({"detail": "Invalid or expired API Key"})),
        "login revokes the previous key"
    );
    assert_eq!(c.get(&second_key, "/files?tags=").await.status(), 200);

    let (status, wrong) = post_json(
        &c,
        "/auth/login",
        None,
        json!({"username": "alice", "password": "nope"}),
    )
    .await;
    assert_eq!(
        (status, wrong["code"].as_str()),
        (401, Some("INVALID_CREDENTIALS"))
    );
    let (status, unknown) = post_json(
        &c,
        "/auth/login",
        None,
        json!({"username": "nobody", "password": "nope"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        wrong, unknown,
        "the same answer for unknown users and wrong passwords"
    );
}

#[tokio::test]
async fn authorization_errors_come_in_the_documented_order() {
    let c = cluster().start().await;
    let (status, body) = status_json(
        c.http
            .get(format!("{}/files?tags=a", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        json!({"detail": [{"type": "missing", "loc": ["header", "authorization"], "msg": "Field required", "input": null}]})
    );

    let (status, body) = status_json(
        c.http
            .get(format!("{}/files", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let locs: Vec<&Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["header", "authorization"]),
            &json!(["query", "tags"])
        ],
        "one 422 lists every problem"
    );

    for header in ["Basic abc", "bearer dfs_x", "Bearer"] {
        let response = c
            .http
            .get(format!("{}/files", c.url()))
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(response).await;
        assert_eq!(
            (status, body),
            (
                401,
                json!({"detail": "Invalid authorization header format"})
            ),
            "{header}"
        );
    }
    let (status, body) = status_json(c.get("dfs_not-a-real-key", "/files").await).await;
    assert_eq!(
        (status, body),
        (401, json!({"detail": "Invalid or expired API Key"})),
        "401 before the missing query is noticed"
    );
    let (status, body) =
        post_json(&c, "/files/tags", Some("garbage"), json!("not an object")).await;
    assert_eq!(
        (status, body),
        (401, json!({"detail": "Invalid or expired API Key"}))
    );
}

#[tokio::test]
async fn upload_list_and_replace() {
    let c = cluster().start().await;
    let alice = c.register("alice", "pw").await;
    let bob = c.register("bob", "pw").await;

    let (status, body) = status_json(
        c.upload(
            &alice,
            "report.pdf",
            b"version one".to_vec(),
            " work, urgent,work ,,",
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "report.pdf");
    assert_eq!(body["size"], 11);
    assert_eq!(body["tags"], json!(["work", "urgent"]));
    assert_eq!(body["replaced_file_id"], Value::Null);
    let first_id = body["file_id"].as_str().unwrap().to_owned();

    let (status, body) = status_json(
        c.upload(&alice, "report.pdf", b"version two".to_vec(), "work")
            .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["replaced_file_id"], json!(first_id));
    assert_eq!(
        c.download(&alice, "report.pdf").await,
        (200, b"version two".to_vec())
    );
    let (status, _) =
        status_json(c.get(&alice, &format!("/files/{first_id}/download")).await).await;
    assert_eq!(status, 404, "the replaced file is gone");

    c.upload(&alice, "b.txt", b"bbb".to_vec(), "urgent,Zed")
        .await;
    c.upload(&alice, "a.txt", b"aaa".to_vec(), "work,urgent")
        .await;
    c.upload(&bob, "bobs.txt", b"bob".to_vec(), "work").await;

    let names = |files: Vec<Value>| {
        files
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(c.list(&alice, "").await),
        ["a.txt", "b.txt", "report.pdf"],
        "empty query lists everything, by name"
    );
    assert_eq!(
        names(c.list(&alice, "work,urgent").await),
        ["a.txt"],
        "a query is an AND"
    );
    assert_eq!(
        names(c.list(&alice, "urgent,urgent").await),
        ["a.txt", "b.txt"],
        "duplicates ignored"
    );
    assert_eq!(
        names(c.list(&alice, "URGENT").await),
        Vec::<String>::new(),
        "case-sensitive"
    );
    assert_eq!(
        names(c.list(&bob, "").await),
        ["bobs.txt"],
        "scoped to the caller"
    );

    let files = c.list(&alice, "Zed").await;
    let b = &files[0];
    assert_eq!(b["tags"], json!(["Zed", "urgent"]), "sorted");
    assert_eq!(b["size"], 3);
    assert!(uuid::Uuid::parse_str(b["owner_id"].as_str().unwrap()).is_ok());
    let created = b["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 26, "{created}");
    assert_eq!(&created[10..11], "T");
    assert!(!created.contains('+') && !created.ends_with('Z'));

    let (status, body) = status_json(c.upload(&alice, "x.txt", b"x".to_vec(), " , ").await).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"detail": "At least one tag is required for file upload"})
        )
    );
    let no_tags = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
    );
    let response = c
        .http
        .post(format!("{}/files", c.url()))
        .bearer_auth(&alice)
        .multipart(no_tags)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "tags"]))
    );
    let no_file = reqwest::multipart::Form::new().text("tags", "a");
    let response = c
        .http
        .post(format!("{}/files", c.url()))
        .bearer_auth(&alice)
        .multipart(no_file)
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "file"]))
    );

    let (status, body) = status_json(c.upload(&alice, "empty.bin", Vec::new(), "t").await).await;
    assert_eq!((status, body["size"].as_u64()), (201, Some(0)));
    assert_eq!(c.download(&alice, "empty.bin").await, (200, Vec::new()));
}

#[tokio::test]
async fn delete_and_tag_changes() {
    let c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    for (name, tags) in [("a", "x,y"), ("b", "x"), ("c", "y,z")] {
        assert_eq!(
            c.upload(&key, name, name.as_bytes().to_vec(), tags)
                .await
                .status(),
            201
        );
    }
    let (status, body) = status_json(
        c.http
            .delete(format!("{}/files", c.url()))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["query", "tags"]))
    );
    let (status, body) = delete_json(&c, "/files?tags=", &key, None).await;
    assert_eq!(
        (status, body),
        (200, json!({"deleted_count": 0, "file_ids": []}))
    );

    for (body, message) in [
        (
            json!({"query_tags": [], "new_tags": ["n"]}),
            "Query tags cannot be empty",
        ),
        (
            json!({"query_tags": ["x"], "new_tags": []}),
            "New tags cannot be empty",
        ),
    ] {
        let (status, answer) = post_json(&c, "/files/tags", Some(&key), body).await;
        assert_eq!(
            (status, answer),
            (400, json!({"detail": message, "code": "INVALID_TAG_QUERY"}))
        );
    }
    let (status, body) =
        post_json(&c, "/files/tags", Some(&key), json!({"query_tags": ["x"]})).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "new_tags"]))
    );
    let (status, body) = post_json(
        &c,
        "/files/tags",
        Some(&key),
        json!({"query_tags": ["x"], "new_tags": ["y", "new"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["updated_count"], 2,
        "a file already carrying a tag still counts"
    );
    let (_, none) = post_json(
        &c,
        "/files/tags",
        Some(&key),
        json!({"query_tags": ["absent"], "new_tags": ["n"]}),
    )
    .await;
    assert_eq!(none, json!({"updated_count": 0, "file_ids": []}));
    let tags_of = |files: Vec<Value>, name: &str| {
        files.into_iter().find(|f| f["name"] == name).unwrap()["tags"].clone()
    };
    assert_eq!(
        tags_of(c.list(&key, "").await, "b"),
        json!(["new", "x", "y"])
    );

    for (body, message) in [
        (
            json!({"query_tags": [], "tags_to_remove": ["x"]}),
            "Query tags cannot be empty",
        ),
        (
            json!({"query_tags": ["x"], "tags_to_remove": []}),
            "Tags to remove cannot be empty",
        ),
    ] {
        let (status, answer) = delete_json(&c, "/files/tags", &key, Some(body)).await;
        assert_eq!(
            (status, answer),
            (400, json!({"detail": message, "code": "INVALID_TAG_QUERY"}))
        );
    }
    // c carries only y and z: removing both would leave it tagless, so it is skipped.
    let (status, body) = delete_json(
        &c,
        "/files/tags",
        &key,
        Some(json!({"query_tags": ["y"], "tags_to_remove": ["y", "z", "new", "x"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["updated_count"], 0);
    let skipped: Vec<&str> = body["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3);
    let (_, body) = delete_json(
        &c,
        "/files/tags",
        &key,
        Some(json!({"query_tags": ["z"], "tags_to_remove": ["y"]})),
    )
    .await;
    assert_eq!(body["updated_count"], 1);
    assert_eq!(tags_of(c.list(&key, "").await, "c"), json!(["z"]));
    let (_, body) = delete_json(
        &c,
        "/files/tags",
        &key,
        Some(json!({"query_tags": ["z"], "tags_to_remove": ["z"]})),
    )
    .await;
    assert_eq!(
        body["skipped_files"],
        json!([{"file_id": body["skipped_files"][0]["file_id"], "name": "c", "current_tags": ["z"]}])
    );

    let (status, body) = delete_json(&c, "/files?tags=x", &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["deleted_count"], 2);
    assert_eq!(body["file_ids"].as_array().unwrap().len(), 2);
    let left: Vec<Value> = c.list(&key, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "c");
    assert_eq!(c.download(&key, "a").await.0, 404);
}

#[tokio::test]
async fn downloads_headers_ranges_and_permissions() {
    let c = cluster()
        .controller_args(&["--chunk-size-bytes", "65536"])
        .start()
        .await;
    let alice = c.register("alice", "pw").await;
    let bob = c.register("bob", "pw").await;
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let name = "naïve \"plan\".bin";
    let (status, body) = status_json(c.upload(&alice, name, data.clone(), "t").await).await;
    assert_eq!(status, 201, "{body}");
    let id = body["file_id"].as_str().unwrap().to_owned();

    let response = c.get(&alice, &format!("/files/{id}/download")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["content-length"], "300000");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"na_ve _plan_.bin\"; filename*=UTF-8''na%C3%AFve%20%22plan%22.bin"), "{disposition}");
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        data,
        "a multi-chunk file comes back byte-identical"
    );

    let encoded = "na%C3%AFve%20%22plan%22.bin";
    assert_eq!(c.download(&alice, encoded).await, (200, data.clone()));

    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=-100", 299_900, 299_999),
        ("bytes=299990-", 299_990, 299_999),
    ] {
        let response = c
            .http
            .get(format!("{}/files/{id}/download", c.url()))
            .bearer_auth(&alice)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{end}/300000")
        );
        assert_eq!(
            response.bytes().await.unwrap().to_vec(),
            data[start..=end].to_vec(),
            "{range}"
        );
    }
    let response = c
        .http
        .get(format!("{}/files/{id}/download", c.url()))
        .bearer_auth(&alice)
        .header("Range", "bytes=400000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    assert_eq!(response.headers()["content-range"], "bytes */300000");

    let (status, body) = status_json(c.get(&bob, &format!("/files/{id}/download")).await).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"detail": "You do not have permission to download this file"})
        )
    );
    let unknown = uuid::Uuid::new_v4();
    let (status, body) =
        status_json(c.get(&alice, &format!("/files/{unknown}/download")).await).await;
    assert_eq!(status, 404);
    assert!(body.get("code").is_none(), "a 404 carries no code: {body}");
    assert_eq!(body["detail"], format!("File {unknown} not found"));
    let (status, body) = status_json(
        c.get(&bob, &format!("/files/by-name/{encoded}/download"))
            .await,
    )
    .await;
    assert_eq!(status, 404, "by name looks only at the caller's files");
    assert!(body.get("code").is_none());
}

#[tokio::test]
async fn size_limit_and_full_storage() {
    let c = cluster()
        .controller_args(&["--upload-max-bytes", "100000"])
        .chunkserver_args(&["--capacity-bytes", "50000"])
        .start()
        .await;
    let key = c.register("alice", "pw").await;
    let (status, body) = status_json(c.upload(&key, "big", vec![1; 100_001], "t").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );
    let (status, body) = status_json(
        c.upload(&key, "too-big-for-disk", vec![2; 60_000], "t")
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (507, Some("STORAGE_FULL")),
        "{body}"
    );
    assert_eq!(
        c.upload(&key, "fits", vec![3; 40_000], "t").await.status(),
        201
    );
}

#[tokio::test]
async fn unreachable_data_is_a_503_not_a_broken_200() {
    let mut c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    assert_eq!(
        c.upload(&key, "f", b"payload".to_vec(), "t").await.status(),
        201
    );
    c.chunkservers[0].kill();
    let (status, body) = status_json(c.get(&key, "/files/by-name/f/download").await).await;
    assert_eq!(
        (status, body),
        (
            503,
            json!({"detail": "Storage service temporarily unavailable", "code": "CHUNKSERVER_UNAVAILABLE"})
        )
    );
}

#[tokio::test]
async fn per_file_routes_and_the_tag_list() {
    let c = cluster().start().await;
    let alice = c.register("alice", "pw").await;
    let bob = c.register("bob", "pw").await;
    let mut ids = std::collections::BTreeMap::new();
    for (name, tags) in [("a", "x,y"), ("b", "x"), ("c", "y,z")] {
        let id = c
            .upload_id_at(0, &alice, name, name.as_bytes().to_vec(), tags)
            .await;
        ids.insert(name, id);
    }
    let bobs = c.upload_id_at(0, &bob, "secret", b"s".to_vec(), "x").await;
    let get = |key: &str, path: String| {
        let request = c.http.get(format!("{}{path}", c.url())).bearer_auth(key);
        async move { status_json(request.send().await.unwrap()).await }
    };

    let (status, body) = get(&alice, "/tags".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"tags": [{"tag": "x", "count": 2}, {"tag": "y", "count": 2}, {"tag": "z", "count": 1}]}),
        "only the caller's files count"
    );
    let (status, body) = get(&alice, format!("/files/{}", ids["a"])).await;
    assert_eq!(
        (status, &body["name"], &body["tags"]),
        (200, &json!("a"), &json!(["x", "y"]))
    );
    assert_eq!(body["file_id"], json!(ids["a"]));

    // Another user's file, a missing one and a malformed id are all simply not found.
    for path in [
        format!("/files/{bobs}"),
        format!("/files/{}", uuid::Uuid::new_v4()),
        "/files/not-an-id".to_owned(),
    ] {
        let (status, body) = get(&alice, path.clone()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().ends_with("not found"),
            "{body}"
        );
        let (status, _) = delete_json(&c, &path, &alice, None).await;
        assert_eq!(status, 404, "DELETE {path}");
        let (status, _) = post_json(
            &c,
            &format!("{path}/tags"),
            Some(&alice),
            json!({"tags": ["t"]}),
        )
        .await;
        assert_eq!(status, 404, "POST {path}/tags");
    }
    let (status, _) = status_json(
        c.http
            .get(format!("{}/files/{}", c.url(), ids["a"]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status, 422,
        "no key, no file (a missing header is a 422, as everywhere)"
    );

    let tags_path = format!("/files/{}/tags", ids["a"]);
    let (status, body) = post_json(
        &c,
        &tags_path,
        Some(&alice),
        json!({"tags": ["n", "x", "n"]}),
    )
    .await;
    assert_eq!((status, &body["tags"]), (200, &json!(["n", "x", "y"])));
    let (status, body) = post_json(&c, &tags_path, Some(&alice), json!({"tags": []})).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"detail": "New tags cannot be empty", "code": "INVALID_TAG_QUERY"})
        )
    );
    let (status, body) = post_json(&c, &tags_path, Some(&alice), json!({"labels": ["n"]})).await;
    assert_eq!(
        (status, &body["detail"][0]["loc"]),
        (422, &json!(["body", "tags"]))
    );
    let (status, body) = post_json(
        &c,
        &tags_path,
        Some(&alice),
        json!({"tags": ["t".repeat(1000)]}),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("INVALID_REQUEST")),
        "{body}"
    );

    // The last tag stays, and the answer says why.
    let (status, body) = delete_json(
        &c,
        &format!("/files/{}/tags", ids["b"]),
        &alice,
        Some(json!({"tags": ["x"]})),
    )
    .await;
    assert_eq!((status, &body["code"]), (409, &json!("LAST_TAGS")));
    assert_eq!(
        body["detail"],
        "'b' would be left without tags: a file always keeps at least one, so add another tag before removing 'x'"
    );
    let (_, body) = get(&alice, format!("/files/{}", ids["b"])).await;
    assert_eq!(
        body["tags"],
        json!(["x"]),
        "a refused removal changes nothing"
    );
    let (status, body) = delete_json(
        &c,
        &tags_path,
        &alice,
        Some(json!({"tags": ["x", "absent"]})),
    )
    .await;
    assert_eq!((status, &body["tags"]), (200, &json!(["n", "y"])));
    let (status, body) = delete_json(&c, &tags_path, &alice, Some(json!({"tags": []}))).await;
    assert_eq!(
        (status, &body["detail"]),
        (400, &json!("Tags to remove cannot be empty"))
    );

    let (status, body) = delete_json(&c, &format!("/files/{}", ids["c"]), &alice, None).await;
    assert_eq!(
        (status, body),
        (200, json!({"deleted_count": 1, "file_ids": [ids["c"]]}))
    );
    let (status, _) = get(&alice, format!("/files/{}", ids["c"])).await;
    assert_eq!(status, 404, "gone");
    let (status, _) = delete_json(&c, &format!("/files/{}", ids["c"]), &alice, None).await;
    assert_eq!(status, 404, "a second delete finds nothing");
    let (_, body) = get(&alice, "/tags".into()).await;
    assert_eq!(
        body,
        json!({"tags": [{"tag": "n", "count": 1}, {"tag": "x", "count": 1}, {"tag": "y", "count": 1}]})
    );
    let names: Vec<Value> = c
        .list(&alice, "")
        .await
        .into_iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("a"), json!("b")]);
    assert_eq!(c.list(&bob, "x").await.len(), 1, "bob's file untouched");
}

#[tokio::test]
async fn the_web_app_is_served_with_a_same_origin_policy() {
    let c = cluster().start().await;
    let response = c.http.get(format!("{}/app", c.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.url().path(),
        "/app/",
        "redirected to where relative links resolve"
    );
    for (path, content_type, needle) in [
        (
            "/app/",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"app.js\">",
        ),
        (
            "/app/app.js",
            "text/javascript; charset=utf-8",
            "x-redcloud-frontier",
        ),
        ("/app/app.css", "text/css; charset=utf-8", ":focus-visible"),
    ] {
        let response = c
            .http
            .get(format!("{}{path}", c.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("script-src 'self'") && policy.contains("default-src 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
        // User strings reach the page as text only.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!body.contains(sink), "{path} uses {sink}");
        }
    }
    let (status, _) = status_json(
        c.http
            .get(format!("{}/app/missing.js", c.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

/// Walks `dir` and says whether any file holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            any_file_holds(&path, needle)
        } else {
            std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
        }
    })
}

#[tokio::test]
async fn s3_keys_are_made_sealed_listed_and_deleted_everywhere() {
    let c = cluster().controllers(2).start().await;
    let alice = c.register("alice", "pw").await;
    let bob = c.register("bob", "pw").await;
    let url_of = |i: usize| c.url_of(i);

    let made = c
        .http
        .post(format!("{}/s3-keys", url_of(0)))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(made.headers()["cache-control"], "no-store");
    let (status, key) = status_json(made).await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["access_key_id"].as_str().unwrap().to_owned();
    let secret = key["secret_access_key"].as_str().unwrap().to_owned();
    assert!(
        key_id.len() == 20
            && key_id.starts_with("RC")
            && key_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "{key_id}"
    );
    assert!(
        secret.len() == 40
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
        "{secret}"
    );

    // The other controller lists it (ids and dates only), once the operation reached it.
    let list = |i: usize, key: &str| {
        let request = c
            .http
            .get(format!("{}/s3-keys", url_of(i)))
            .bearer_auth(key);
        async move { status_json(request.send().await.unwrap()).await }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = list(1, &alice).await;
        assert_eq!(status, 200);
        if body["keys"].as_array().unwrap().len() == 1 {
            assert_eq!(body["keys"][0]["access_key_id"], json!(key_id));
            assert!(body["keys"][0]["created_at"].is_string());
            assert!(body["keys"][0].get("secret_access_key").is_none());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never replicated");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(list(1, &bob).await, (200, json!({"keys": []})));

    // The secret travels only sealed, under the cluster secret, bound to its key id.
    let reader = redcloud_cli::logtool::Reader::new(
        redcloud_cli::logtool::Source::Dir(c.controller.data_dir().to_owned()),
        &redcloud_tests::cluster_link(),
    )
    .unwrap();
    let sealed = reader
        .ops()
        .await
        .unwrap()
        .into_iter()
        .find_map(|op| match op.payload {
            redcloud_controller::MetaOp::S3KeyCreated {
                key_id: id,
                sealed_secret,
                ..
            } if id == key_id => Some(sealed_secret),
            _ => None,
        })
        .expect("the key's creation is in the log");
    let sealer = redcloud_tests::cluster_link().sealer();
    assert_eq!(
        sealer.open(key_id.as_bytes(), &sealed).unwrap(),
        secret.as_bytes()
    );
    assert!(sealer.open(b"RCANOTHERKEYID000000", &sealed).is_err());
    for node in [&c.controller, &c.more_controllers[0]] {
        assert!(
            !any_file_holds(node.data_dir(), secret.as_bytes()),
            "the plaintext secret is stored under {}",
            node.data_dir().display()
        );
    }

    // Only its owner can delete it, through any controller; then it is gone everywhere.
    let delete = |i: usize, key: &str, id: &str| {
        let request = c
            .http
            .delete(format!("{}/s3-keys/{id}", url_of(i)))
            .bearer_auth(key);
        async move { status_json(request.send().await.unwrap()).await }
    };
    let (status, body) = delete(1, &bob, &key_id).await;
    assert_eq!((status, &body["code"]), (404, &json!("S3_KEY_NOT_FOUND")));
    let (status, body) = delete(1, &alice, "RCNOSUCHKEY000000000").await;
    assert_eq!((status, &body["code"]), (404, &json!("S3_KEY_NOT_FOUND")));
    assert_eq!(
        delete(1, &alice, &key_id).await,
        (200, json!({"deleted": key_id}))
    );
    let (status, body) = delete(1, &alice, &key_id).await;
    assert_eq!((status, &body["code"]), (404, &json!("S3_KEY_NOT_FOUND")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while list(0, &alice).await != (200, json!({"keys": []})) {
        assert!(
            std::time::Instant::now() < deadline,
            "the deletion never replicated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A user holds a bounded number of keys; without a key (a missing header is a request
    // of the wrong shape, as on every route) or with a wrong one, nothing.
    for _ in 0..16 {
        let (status, body) = post_json(&c, "/s3-keys", Some(&alice), json!({})).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post_json(&c, "/s3-keys", Some(&alice), json!({})).await;
    assert_eq!(
        (status, &body["code"], &body["detail"]),
        (
            400,
            &json!("INVALID_REQUEST"),
            &json!("You hold 16 S3 access keys, the most allowed: delete one first")
        )
    );
    let (status, _) = status_json(
        c.http
            .post(format!("{}/s3-keys", url_of(0)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = status_json(
        c.http
            .get(format!("{}/s3-keys", url_of(1)))
            .bearer_auth("dfs_not-a-key")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    // Requests at once on one controller count each other: the limit holds exactly.
    let carl = c.register("carl", "pw").await;
    let tries = (0..40).map(|_| post_json(&c, "/s3-keys", Some(&carl), json!({})));
    let made = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|(status, _)| *status == 201)
        .count();
    assert_eq!(made, 16);
    let (status, listed) = status_json(
        c.http
            .get(format!("{}/s3-keys", url_of(0)))
            .bearer_auth(&carl)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 16);
}
