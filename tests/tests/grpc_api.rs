//! The gRPC client API: the same operations as HTTP, with streaming upload and download, on
//! the same port.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use redcloud_proto::files::files_client::FilesClient;
use redcloud_proto::files::{
    Credentials, DownloadRequest, MeRequest, TagChange, TagQuery, UploadRequest, download_request,
};
use redcloud_tests::{ClusterBuilder, test_data};
use tokio_stream::StreamExt;
use tonic::Request;

fn authed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// `message` with the key's metadata when there is a key.
fn maybe_authed<T>(message: T, key: Option<&str>) -> Request<T> {
    match key {
        Some(key) => authed(message, key),
        None => Request::new(message),
    }
}

#[tokio::test]
async fn every_operation_over_grpc() {
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .controller_args(&["--chunk-size-bytes", "1000000"])
        .start()
        .await;
    let mut client = FilesClient::connect(c.url()).await.unwrap();
    let credentials = Credentials {
        username: "gina".into(),
        password: "pw".into(),
    };
    let registered = client
        .register(credentials.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.api_key.len(), 40);
    let exists = client.register(credentials.clone()).await.unwrap_err();
    assert_eq!(exists.code(), tonic::Code::AlreadyExists);
    assert!(!registered.username_conflict);
    let login = client.login(credentials).await.unwrap().into_inner();
    assert!(!login.username_conflict);
    let key = login.api_key;
    let me = client
        .me(authed(MeRequest {}, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            me.user_id.as_str(),
            me.username.as_str(),
            me.username_conflict
        ),
        (registered.user_id.as_str(), "gina", false)
    );
    let stranger = client.me(MeRequest {}).await.unwrap_err();
    assert_eq!(stranger.code(), tonic::Code::Unauthenticated);

    let data = test_data(9, 3_500_000);
    let mut messages = vec![UploadRequest {
        name: "big.bin".into(),
        tags: vec!["x".into(), " y ".into(), "x".into()],
        data: Bytes::new(),
    }];
    messages.extend(data.chunks(700_000).map(|piece| UploadRequest {
        data: Bytes::copy_from_slice(piece),
        ..Default::default()
    }));
    let info = client
        .upload(authed(tokio_stream::iter(messages), &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.name.as_str(), info.size, info.tags.clone()),
        ("big.bin", 3_500_000, vec!["x".to_owned(), "y".to_owned()])
    );

    let listed = client
        .list(authed(
            TagQuery {
                tags: vec!["y".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.files.len(), 1);
    let http_listed = c.list(&key, "y").await;
    assert_eq!(
        http_listed[0]["file_id"],
        info.file_id.as_str(),
        "HTTP and gRPC see the same files"
    );

    let request = DownloadRequest {
        target: Some(download_request::Target::Name("big.bin".into())),
    };
    let mut stream = client
        .download(authed(request, &key))
        .await
        .unwrap()
        .into_inner();
    let head = stream.next().await.unwrap().unwrap();
    assert_eq!(head.info.unwrap().file_id, info.file_id);
    let mut downloaded = Vec::new();
    while let Some(piece) = stream.next().await {
        downloaded.extend_from_slice(&piece.unwrap().data);
    }
    assert!(downloaded == data, "gRPC download is byte-identical");

    let added = client
        .add_tags(authed(
            TagChange {
                query_tags: vec!["x".into()],
                tags: vec!["z".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.updated_count, 1);
    let removed = client
        .remove_tags(authed(
            TagChange {
                query_tags: vec!["x".into()],
                tags: vec!["x".into(), "y".into(), "z".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.skipped_files.len(), 1);
    let empty = client
        .add_tags(authed(
            TagChange {
                query_tags: vec![],
                tags: vec!["z".into()],
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    let unauthenticated = client.list(TagQuery { tags: vec![] }).await.unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let bad_key = client
        .list(authed(TagQuery { tags: vec![] }, "dfs_nope"))
        .await
        .unwrap_err();
    assert_eq!(bad_key.code(), tonic::Code::Unauthenticated);

    let deleted = client
        .delete(authed(
            TagQuery {
                tags: vec!["x".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_count, 1);
    let missing = DownloadRequest {
        target: Some(download_request::Target::FileId(info.file_id)),
    };
    let gone = client.download(authed(missing, &key)).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn per_file_calls_and_the_tag_list_over_grpc() {
    use redcloud_proto::files::{FileRef, FileTags, ListTagsRequest, TagCount};
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let mut client = FilesClient::connect(c.url()).await.unwrap();
    let key = c.register("hana", "pw").await;
    let other = c.register("ivo", "pw").await;
    let first = c.upload_id_at(0, &key, "a.txt", b"a".to_vec(), "x,y").await;
    let second = c.upload_id_at(0, &key, "b.txt", b"b".to_vec(), "x").await;
    let foreign = c.upload_id_at(0, &other, "c.txt", b"c".to_vec(), "x").await;

    let tags = client
        .list_tags(authed(ListTagsRequest {}, &key))
        .await
        .unwrap()
        .into_inner()
        .tags;
    let count = |tag: &str, count| TagCount {
        tag: tag.into(),
        count,
    };
    assert_eq!(tags, vec![count("x", 2), count("y", 1)]);

    let file = client
        .get_file(authed(
            FileRef {
                file_id: first.clone(),
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (file.name.as_str(), file.tags.clone()),
        ("a.txt", vec!["x".to_owned(), "y".to_owned()])
    );
    for id in [foreign.clone(), "not-an-id".to_owned()] {
        let status = client
            .get_file(authed(
                FileRef {
                    file_id: id.clone(),
                },
                &key,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{id}");
    }

    let file = client
        .add_file_tags(authed(
            FileTags {
                file_id: second.clone(),
                tags: vec!["z".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(file.tags, vec!["x".to_owned(), "z".to_owned()]);
    let last = client
        .remove_file_tags(authed(
            FileTags {
                file_id: first.clone(),
                tags: vec!["x".into(), "y".into()],
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(last.code(), tonic::Code::FailedPrecondition);
    assert!(
        last.message().contains("would be left without tags"),
        "{}",
        last.message()
    );
    let file = client
        .remove_file_tags(authed(
            FileTags {
                file_id: first.clone(),
                tags: vec!["x".into()],
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(file.tags, vec!["y".to_owned()]);

    let deleted = client
        .delete_file(authed(
            FileRef {
                file_id: second.clone(),
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (deleted.deleted_count, deleted.file_ids),
        (1, vec![second.clone()])
    );
    let gone = client
        .delete_file(authed(FileRef { file_id: second }, &key))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let untouched = client
        .delete_file(authed(FileRef { file_id: foreign }, &key))
        .await
        .unwrap_err();
    assert_eq!(untouched.code(), tonic::Code::NotFound);
    assert_eq!(
        c.list(&other, "x").await.len(),
        1,
        "another user's file stays"
    );

    // Without a key, or with a wrong one, every per-file call and the tag list are refused.
    for key in [None, Some("dfs_not-a-key")] {
        let refused = [
            client
                .list_tags(maybe_authed(ListTagsRequest {}, key))
                .await
                .map(|_| ()),
            client
                .get_file(maybe_authed(
                    FileRef {
                        file_id: first.clone(),
                    },
                    key,
                ))
                .await
                .map(|_| ()),
            client
                .delete_file(maybe_authed(
                    FileRef {
                        file_id: first.clone(),
                    },
                    key,
                ))
                .await
                .map(|_| ()),
        ];
        for status in refused {
            assert_eq!(
                status.unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{key:?}"
            );
        }
        let tags = |tags: &[&str]| FileTags {
            file_id: first.clone(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        };
        let added = client
            .add_file_tags(maybe_authed(tags(&["z"]), key))
            .await
            .unwrap_err();
        assert_eq!(added.code(), tonic::Code::Unauthenticated, "{key:?}");
        let removed = client
            .remove_file_tags(maybe_authed(tags(&["y"]), key))
            .await
            .unwrap_err();
        assert_eq!(removed.code(), tonic::Code::Unauthenticated, "{key:?}");
    }
    let file = client
        .get_file(authed(FileRef { file_id: first }, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        file.tags,
        vec!["y".to_owned()],
        "nothing changed without a key"
    );
}

#[tokio::test]
async fn s3_keys_over_grpc() {
    use redcloud_proto::files::{CreateS3KeyRequest, ListS3KeysRequest, S3KeyRef};
    let c = ClusterBuilder::new(env!("CARGO_BIN_EXE_redcloud-test-node"))
        .start()
        .await;
    let mut client = FilesClient::connect(c.url()).await.unwrap();
    let key = c.register("jo", "pw").await;
    let other = c.register("kim", "pw").await;

    for credential in [None, Some("not-a-key")] {
        let refused = client
            .create_s3_key(maybe_authed(CreateS3KeyRequest {}, credential))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::Unauthenticated,
            "{credential:?}"
        );
    }
    let made = client
        .create_s3_key(authed(CreateS3KeyRequest {}, &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.access_key_id.len(), 20);
    assert_eq!(made.secret_access_key.len(), 40);

    let listed = client
        .list_s3_keys(authed(ListS3KeysRequest {}, &key))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].access_key_id, made.access_key_id);
    assert_eq!(
        listed[0].secret_access_key, "",
        "a list never shows a secret"
    );
    // The same key, dated as the HTTP API dates it.
    let over_http: serde_json::Value = c
        .http
        .get(format!("{}/s3-keys", c.url()))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        over_http["keys"][0]["access_key_id"],
        made.access_key_id.as_str()
    );
    assert_eq!(
        over_http["keys"][0]["created_at"],
        listed[0].created_at.as_str()
    );

    // Another user neither sees the key nor deletes it.
    let theirs = client
        .list_s3_keys(authed(ListS3KeysRequest {}, &other))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(theirs.is_empty());
    let by_key = |id: &str| S3KeyRef {
        access_key_id: id.to_owned(),
    };
    let foreign = client
        .delete_s3_key(authed(by_key(&made.access_key_id), &other))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::NotFound);

    let deleted = client
        .delete_s3_key(authed(by_key(&made.access_key_id), &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, made.access_key_id);
    let left = client
        .list_s3_keys(authed(ListS3KeysRequest {}, &key))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(left.is_empty());
    let again = client
        .delete_s3_key(authed(by_key(&made.access_key_id), &key))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);

    // A key id beyond the message bound is refused as it is decoded, before any lookup.
    let oversized = client
        .delete_s3_key(authed(by_key(&"k".repeat(5 << 20)), &key))
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), tonic::Code::OutOfRange, "{oversized:?}");
    let still = client
        .list_s3_keys(authed(ListS3KeysRequest {}, &key))
        .await
        .unwrap();
    assert!(
        still.into_inner().keys.is_empty(),
        "the controller answers on"
    );
}
