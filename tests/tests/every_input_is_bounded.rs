//! Every limit of `http-api.md` ("Limits"), over HTTP and gRPC: names, tags, tag counts per
//! request and per file, credentials, JSON bodies and multipart parts. Sizes get 413
//! PAYLOAD_TOO_LARGE, the rest 400 INVALID_REQUEST, always as JSON, and nothing changes.
#![allow(clippy::unwrap_used)]

use redcloud_proto::files::files_client::FilesClient;
use redcloud_proto::files::{Credentials, TagQuery};
use redcloud_tests::{Cluster, ClusterBuilder, status_json};
use serde_json::{Value, json};

fn cluster() -> ClusterBuilder {
    ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
}

async fn post_json(c: &Cluster, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = c.http.post(format!("{}{path}", c.url())).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    status_json(request.send().await.unwrap()).await
}

fn assert_invalid(answer: (u16, Value), what: &str) {
    assert_eq!(
        (answer.0, answer.1["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{what}: {}",
        answer.1
    );
    assert!(answer.1["detail"].is_string(), "{what}: {}", answer.1);
}

async fn upload(c: &Cluster, key: &str, name: &str, tags: &str) -> reqwest::Response {
    c.upload(key, name, b"x".to_vec(), tags).await
}

async fn register(c: &Cluster, username: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": username, "password": password});
    post_json(c, "/auth/register", None, &body).await
}

fn tag_list(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn file_names_and_tags_are_bounded() {
    let c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    assert_eq!(upload(&c, &key, &"n".repeat(255), "t").await.status(), 201);
    assert_invalid(
        status_json(upload(&c, &key, &"n".repeat(256), "t").await).await,
        "a 256-byte name",
    );
    assert_invalid(
        status_json(upload(&c, &key, "tab\there", "t").await).await,
        "a name with a control character",
    );
    assert_eq!(upload(&c, &key, "ok", &"t".repeat(128)).await.status(), 201);
    assert_invalid(
        status_json(upload(&c, &key, "long-tag", &"t".repeat(129)).await).await,
        "a 129-byte tag",
    );
    assert_invalid(
        status_json(upload(&c, &key, "ctl-tag", "a\u{1b}b").await).await,
        "a tag with a control character",
    );

    // JSON tag lists are taken as given, so a comma or an empty tag must be refused there.
    for (bad, what) in [
        (json!(["a,b"]), "a comma"),
        (json!([""]), "an empty tag"),
        (json!(["x\ny"]), "a control character"),
        (json!(["t".repeat(129)]), "129 bytes"),
    ] {
        let body = json!({"query_tags": ["t"], "new_tags": bad});
        assert_invalid(post_json(&c, "/files/tags", Some(&key), &body).await, what);
    }
    let files = c.list(&key, "").await;
    assert_eq!(files.len(), 2, "nothing refused was stored");
    assert!(
        files
            .iter()
            .all(|f| f["tags"].as_array().unwrap().len() == 1),
        "no refused tag change happened: {files:?}"
    );
}

#[tokio::test]
async fn a_request_carries_at_most_a_hundred_tags() {
    let c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    let hundred = tag_list("t", 100).join(",");
    let hundred_and_one = tag_list("t", 101).join(",");

    let (status, body) = status_json(c.upload(&key, "ok", b"x".to_vec(), &hundred).await).await;
    assert_eq!((status, body["tags"].as_array().unwrap().len()), (201, 100));
    assert_invalid(
        status_json(
            c.upload(&key, "over", b"x".to_vec(), &hundred_and_one)
                .await,
        )
        .await,
        "101 tags in the multipart field",
    );
    assert_eq!(
        c.get(&key, &format!("/files?tags={hundred}"))
            .await
            .status(),
        200
    );
    assert_invalid(
        status_json(c.get(&key, &format!("/files?tags={hundred_and_one}")).await).await,
        "101 tags in the query parameter",
    );
    for field in ["query_tags", "new_tags"] {
        let mut body = json!({"query_tags": ["t0"], "new_tags": ["n"]});
        body[field] = json!(tag_list("t", 101));
        assert_invalid(
            post_json(&c, "/files/tags", Some(&key), &body).await,
            &format!("101 tags in {field}"),
        );
    }
    let files = c.list(&key, "").await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["tags"].as_array().unwrap().len(), 100);

    // gRPC calls the same service, so it refuses the same lists.
    let mut client = FilesClient::connect(c.url()).await.unwrap();
    let mut request = tonic::Request::new(TagQuery {
        tags: tag_list("t", 101),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let refused = client.list(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

#[tokio::test]
async fn a_file_carries_at_most_a_thousand_tags() {
    let c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    let first = tag_list("a", 100).join(",");
    assert_eq!(
        c.upload(&key, "full", b"x".to_vec(), &first).await.status(),
        201
    );
    assert_eq!(
        c.upload(&key, "small", b"y".to_vec(), "a0").await.status(),
        201
    );
    for round in 1..10 {
        let body = json!({"query_tags": ["a0"], "new_tags": tag_list(&format!("r{round}-"), 100)});
        let (status, answer) = post_json(&c, "/files/tags", Some(&key), &body).await;
        assert_eq!((status, &answer["updated_count"]), (200, &json!(2)));
    }
    let count_of = |files: &[Value], name: &str| {
        files.iter().find(|f| f["name"] == name).unwrap()["tags"]
            .as_array()
            .unwrap()
            .len()
    };
    let files = c.list(&key, "a0").await;
    assert_eq!(count_of(&files, "full"), 1_000);
    assert_eq!(count_of(&files, "small"), 901);

    // Tags the file already has do not count again; one new tag is one too many.
    let again = json!({"query_tags": ["a0"], "new_tags": ["a0", "r1-5"]});
    assert_eq!(
        post_json(&c, "/files/tags", Some(&key), &again).await.0,
        200
    );
    let over = json!({"query_tags": ["a0"], "new_tags": ["one-more"]});
    assert_invalid(
        post_json(&c, "/files/tags", Some(&key), &over).await,
        "a 1,001st tag",
    );
    let files = c.list(&key, "a0").await;
    assert_eq!(count_of(&files, "full"), 1_000);
    assert_eq!(
        count_of(&files, "small"),
        901,
        "the refused change touched no file, not even one with room"
    );
}

#[tokio::test]
async fn credentials_are_bounded_over_http_and_grpc() {
    let c = cluster().start().await;
    assert_eq!(
        register(&c, &"ü".repeat(64), &"p".repeat(1_024)).await.0,
        201,
        "64 characters and 1,024 bytes are allowed"
    );
    assert_invalid(register(&c, &"u".repeat(65), "pw").await, "65 characters");
    assert_invalid(register(&c, "bad\u{7}name", "pw").await, "a bell");
    assert_invalid(
        register(&c, "long-pw", &"p".repeat(1_025)).await,
        "1,025 bytes",
    );
    let (status, body) = post_json(
        &c,
        "/auth/login",
        None,
        &json!({"username": "ü".repeat(64), "password": "p".repeat(1_025)}),
    )
    .await;
    assert_invalid((status, body), "a login with a 1,025-byte password");

    let mut client = FilesClient::connect(c.url()).await.unwrap();
    let refused = client
        .register(Credentials {
            username: "grpc".into(),
            password: "p".repeat(1_025),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let refused = client
        .register(Credentials {
            username: "u".repeat(65),
            password: "pw".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}

#[tokio::test]
async fn oversized_bodies_and_parts_get_a_json_413() {
    let c = cluster().start().await;
    let key = c.register("alice", "pw").await;
    let big_list = json!({"query_tags": ["t"], "new_tags": ["x".repeat(1024 * 1024)], "tags": ["x".repeat(1024 * 1024)]});
    let one_file = format!("/files/{}/tags", uuid::Uuid::new_v4());
    for (path, auth) in [
        ("/files/tags", Some(key.as_str())),
        (one_file.as_str(), Some(key.as_str())),
        ("/auth/login", None),
    ] {
        let (status, body) = post_json(&c, path, auth, &big_list).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("PAYLOAD_TOO_LARGE")),
            "{path}: {body}"
        );
        assert!(body["detail"].is_string());
    }
    // Without a Content-Length the limit holds too: the body is cut off as it passes it.
    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let response = c
        .http
        .post(format!("{}/auth/register", c.url()))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );

    let fits = "t,".repeat(100) + &" ".repeat(64 * 1024 - 200);
    assert_eq!(fits.len(), 64 * 1024);
    assert_eq!(
        c.upload(&key, "fits", b"x".to_vec(), &fits).await.status(),
        201
    );
    let (status, body) = status_json(
        c.upload(&key, "over", b"x".to_vec(), &(fits.clone() + " "))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{body}"
    );

    let extra = reqwest::multipart::Form::new()
        .text("tags", "t")
        .text("comment", "hello")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("extra"),
        );
    let response = c
        .http
        .post(format!("{}/files", c.url()))
        .bearer_auth(&key)
        .multipart(extra)
        .send()
        .await
        .unwrap();
    assert_invalid(
        status_json(response).await,
        "a part other than file and tags",
    );
    let names: Vec<Value> = c
        .list(&key, "")
        .await
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, [json!("fits")]);
}
