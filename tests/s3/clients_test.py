"""Real S3 clients against a two-controller RedCloud cluster.

Usage: clients_test.py API0 API1 S3_0 S3_1 WORKDIR (tests/s3/run.sh starts the cluster).
Writes go through one controller and reads through the other wherever the rule allows, so
every check also crosses replication.
"""

import concurrent.futures
import datetime
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import unittest

import boto3
import botocore.config
import botocore.exceptions

API0, API1, S3_0, S3_1, WORK = sys.argv[1:6]
del sys.argv[1:6]
REDCLOUD = os.environ["REDCLOUD_BIN"]
REGION = "redcloud"


def cli(user, *args, server=API0, check=True):
    """Runs the redcloud CLI as `user` (each user has its own config file)."""
    env = dict(os.environ, REDCLOUD_CONFIG=os.path.join(WORK, f"{user}.json"))
    done = subprocess.run(
        [REDCLOUD, "--server", server, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"redcloud {args} failed: {done.stdout}{done.stderr}")
    return done


def new_user(name):
    cli(name, "register", name, "correct horse battery staple")
    key = json.loads(cli(name, "--json", "s3-key", "create").stdout)
    return key["access_key_id"], key["secret_access_key"]


def client(key, endpoint, region=REGION, secret=None):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key[0],
        aws_secret_access_key=secret or key[1],
        region_name=region,
        config=botocore.config.Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
        ),
    )


def eventually(check, timeout=20.0):
    """Retries `check` until it stops raising (replication between controllers is
    asynchronous); the last failure is raised when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, botocore.exceptions.ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


# Virtual-host-style requests name the bucket in the host (`BUCKET.s3.test`, the cluster's
# --s3-root-domain); such names resolve to the loopback address in this process only.
_resolve = socket.getaddrinfo


def _loopback_for_test_domain(host, *args, **kwargs):
    if isinstance(host, str) and (host == "s3.test" or host.endswith(".s3.test")):
        host = "127.0.0.1"
    return _resolve(host, *args, **kwargs)


socket.getaddrinfo = _loopback_for_test_domain

ALICE = new_user("alice")
BOB = new_user("bob")


class S3Clients(unittest.TestCase):
    def setUp(self):
        self.s3 = client(ALICE, S3_0)
        self.other = client(ALICE, S3_1)

    def put(self, bucket, key, body, **extra):
        return self.s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def test_put_then_get_and_head_through_the_other_controller(self):
        body = os.urandom(3 * 1024 * 1024 + 17)
        put = self.put("work", "docs/report.bin", body)
        md5 = hashlib.md5(body).hexdigest()
        self.assertEqual(put["ETag"], f'"{md5}"')
        got = eventually(lambda: self.other.get_object(Bucket="work", Key="docs/report.bin"))
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ETag"], f'"{md5}"')
        head = self.other.head_object(Bucket="work", Key="docs/report.bin")
        self.assertEqual(head["ContentLength"], len(body))
        self.assertEqual(head["ETag"], f'"{md5}"')
        self.assertEqual(
            error_code(lambda: self.other.head_object(Bucket="work", Key="docs/none")), "404"
        )
        self.assertEqual(
            error_code(lambda: self.other.get_object(Bucket="work", Key="docs/none")), "NoSuchKey"
        )

    def test_ranges(self):
        body = bytes(range(256)) * 4096
        self.put("ranges", "r.bin", body)
        for header, expected in [
            ("bytes=10-99", body[10:100]),
            ("bytes=-5", body[-5:]),
            ("bytes=1048000-", body[1048000:]),
            ("bytes=5-9999999", body[5:]),
        ]:
            got = self.s3.get_object(Bucket="ranges", Key="r.bin", Range=header)
            self.assertEqual(got["Body"].read(), expected, header)
            self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206, header)
        self.assertEqual(
            error_code(
                lambda: self.s3.get_object(Bucket="ranges", Key="r.bin", Range="bytes=2000000-")
            ),
            "InvalidRange",
        )

    def test_conditional_requests(self):
        put = self.put("cond", "c.txt", b"conditional")
        etag = put["ETag"]
        self.assertEqual(
            error_code(lambda: self.s3.get_object(Bucket="cond", Key="c.txt", IfNoneMatch=etag)),
            "304",
        )
        got = self.s3.get_object(Bucket="cond", Key="c.txt", IfNoneMatch='"0000"')
        self.assertEqual(got["Body"].read(), b"conditional")
        future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        self.assertEqual(
            error_code(
                lambda: self.s3.get_object(Bucket="cond", Key="c.txt", IfModifiedSince=future)
            ),
            "304",
        )
        past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
        got = self.s3.get_object(Bucket="cond", Key="c.txt", IfModifiedSince=past)
        self.assertEqual(got["Body"].read(), b"conditional")
        self.assertEqual(
            error_code(lambda: self.s3.get_object(Bucket="cond", Key="c.txt", IfMatch='"0000"')),
            "PreconditionFailed",
        )
        self.assertEqual(
            error_code(lambda: self.put("cond", "c.txt", b"again", IfNoneMatch="*")),
            "PreconditionFailed",
        )
        self.assertEqual(self.s3.get_object(Bucket="cond", Key="c.txt")["Body"].read(), b"conditional")

    def test_listing_pages_through_1500_keys_as_s3_does(self):
        keys = [f"k/{i:05d}" for i in range(1500)] + ["a.txt", "z/deep/x", "z/y"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: self.put("many", k, k.encode()), keys))
        expected = sorted(keys)

        def listed_v2(page_size, **args):
            pages = self.other.get_paginator("list_objects_v2").paginate(
                Bucket="many", PaginationConfig={"PageSize": page_size}, **args
            )
            seen, prefixes, count = [], [], 0
            for page in pages:
                count += 1
                self.assertLessEqual(page["KeyCount"], page_size)
                seen += [o["Key"] for o in page.get("Contents", [])]
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            return seen, prefixes, count

        seen, _, pages = eventually(lambda: self._complete(listed_v2(1000), 1503))
        self.assertEqual(seen, expected)
        self.assertEqual(pages, 2)
        seen, _, pages = listed_v2(100)
        self.assertEqual((seen, pages), (expected, 16))
        seen, prefixes, _ = listed_v2(1000, Delimiter="/")
        self.assertEqual((seen, prefixes), (["a.txt"], ["k/", "z/"]))
        seen, prefixes, _ = listed_v2(1, Delimiter="/", Prefix="z/")
        self.assertEqual((seen, prefixes), (["z/y"], ["z/deep/"]))
        v1 = self.other.get_paginator("list_objects").paginate(
            Bucket="many", PaginationConfig={"PageSize": 300}
        )
        self.assertEqual([o["Key"] for page in v1 for o in page.get("Contents", [])], expected)
        after = self.other.list_objects_v2(Bucket="many", StartAfter="k/01497", MaxKeys=3)
        self.assertEqual([o["Key"] for o in after["Contents"]], ["k/01498", "k/01499", "z/deep/x"])
        self.assertTrue(after["IsTruncated"])

    @staticmethod
    def _complete(listing, count):
        assert len(listing[0]) == count, f"{len(listing[0])} of {count} keys so far"
        return listing

    def test_odd_keys_survive_url_encoded_listings(self):
        key = "odd/a b+c%41 é.txt"
        self.put("odd", key, b"odd")
        listed = self.s3.list_objects_v2(Bucket="odd")
        self.assertEqual([o["Key"] for o in listed["Contents"]], [key])
        self.assertEqual(self.s3.get_object(Bucket="odd", Key=key)["Body"].read(), b"odd")

    def test_object_tagging_is_redcloud_tagging(self):
        self.put("tagged", "t.txt", b"t", Tagging="project=apollo&draft")
        tags = {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket="tagged", Key="t.txt")["TagSet"]}
        self.assertEqual(tags, {"tagged": "", "project": "apollo", "draft": ""})
        eventually(lambda: self.assertIn("t.txt", cli("alice", "list", "project=apollo", server=API1).stdout))
        self.s3.put_object_tagging(
            Bucket="tagged", Key="t.txt", Tagging={"TagSet": [{"Key": "stage", "Value": "final"}]}
        )
        tags = {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket="tagged", Key="t.txt")["TagSet"]}
        self.assertEqual(tags, {"tagged": "", "stage": "final"}, "the bucket's tag stays")
        self.s3.delete_object_tagging(Bucket="tagged", Key="t.txt")
        tags = self.s3.get_object_tagging(Bucket="tagged", Key="t.txt")["TagSet"]
        self.assertEqual(tags, [{"Key": "tagged", "Value": ""}])

    def test_buckets_are_tags(self):
        cli_file = os.path.join(WORK, "notes.txt")
        with open(cli_file, "w") as f:
            f.write("from the CLI")
        cli("alice", "add", cli_file, "--tags", "notes,k=v,Upper")
        names = eventually(lambda: self._has_bucket(self.s3, "notes"))
        self.assertNotIn("k=v", names, "a tag that is no bucket name is not listed")
        self.assertNotIn("Upper", names)
        self.s3.head_bucket(Bucket="notes")
        self.assertEqual(
            self.s3.get_bucket_location(Bucket="notes")["LocationConstraint"], REGION
        )
        self.assertEqual(error_code(lambda: self.s3.head_bucket(Bucket="no-such-tag")), "404")
        self.assertEqual(
            error_code(lambda: self.s3.list_objects_v2(Bucket="no-such-tag")), "NoSuchBucket"
        )
        self.assertEqual(
            error_code(lambda: self.s3.create_bucket(Bucket="notes")), "BucketAlreadyOwnedByYou"
        )
        self.assertEqual(error_code(lambda: self.s3.delete_bucket(Bucket="notes")), "BucketNotEmpty")
        self.assertEqual(error_code(lambda: self.s3.delete_bucket(Bucket="no-such-tag")), "NoSuchBucket")
        # A bucket made before any file carries its tag is there on both controllers, empty.
        self.s3.create_bucket(Bucket="made-empty")
        eventually(lambda: self._has_bucket(self.other, "made-empty"))
        self.other.head_bucket(Bucket="made-empty")
        self.assertEqual(self.other.list_objects_v2(Bucket="made-empty").get("Contents", []), [])
        self.put("made-empty", "first.txt", b"1")
        self.assertEqual(error_code(lambda: self.s3.delete_bucket(Bucket="made-empty")), "BucketNotEmpty")
        self.s3.delete_object(Bucket="made-empty", Key="first.txt")
        self.s3.delete_bucket(Bucket="made-empty")
        self.assertEqual(error_code(lambda: self.s3.head_bucket(Bucket="made-empty")), "404")
        eventually(lambda: self.assertEqual(error_code(lambda: self.other.head_bucket(Bucket="made-empty")), "404"))
        self.assertEqual(error_code(lambda: self.s3.get_bucket_acl(Bucket="notes")), "NotImplemented")

    @staticmethod
    def _has_bucket(s3, name):
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert name in names, names
        return names

    def test_the_cli_and_s3_see_one_store(self):
        body = b"uploaded by the CLI\n" * 1000
        path = os.path.join(WORK, "from-cli.txt")
        with open(path, "wb") as f:
            f.write(body)
        cli("alice", "add", path, "--tags", "shared")
        listed = eventually(
            lambda: self._listed(self.other, "shared", "from-cli.txt")
        )
        self.assertEqual(listed["ETag"], f'"{hashlib.md5(body).hexdigest()}"')
        self.assertEqual(listed["Size"], len(body))
        self.put("shared", "from-s3.txt", b"put over S3")
        eventually(lambda: self.assertIn("from-s3.txt", cli("alice", "list", "shared", server=API1).stdout))
        out = os.path.join(WORK, "downloaded.txt")
        cli("alice", "download", "from-s3.txt", "--output", out, server=API1)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"put over S3")

    @staticmethod
    def _listed(s3, bucket, key):
        for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            if entry["Key"] == key:
                return entry
        raise AssertionError(f"{key} is not listed in {bucket}")

    def test_deletes(self):
        for key in ["d1", "d2", "d3"]:
            self.put("deletes", key, key.encode())
        self.s3.delete_object(Bucket="deletes", Key="d1")
        self.s3.delete_object(Bucket="deletes", Key="never-there")
        result = self.s3.delete_objects(
            Bucket="deletes", Delete={"Objects": [{"Key": "d2"}, {"Key": "missing"}]}
        )
        self.assertEqual(sorted(d["Key"] for d in result["Deleted"]), ["d2", "missing"])
        self.assertEqual(result.get("Errors", []), [])
        keys = eventually(lambda: self._keys_are(self.other, "deletes", ["d3"]))
        self.assertEqual(keys, ["d3"])

    @staticmethod
    def _keys_are(s3, bucket, expected):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == expected, keys
        return keys

    def test_nobody_else_gets_in(self):
        self.put("private", "secret.txt", b"alice's")
        bob = client(BOB, S3_0)
        self.assertEqual(error_code(lambda: bob.get_object(Bucket="private", Key="secret.txt")), "NoSuchBucket")
        self.assertNotIn("private", [b["Name"] for b in bob.list_buckets()["Buckets"]])
        bob.put_object(Bucket="private", Key="secret.txt", Body=b"bob's")
        self.assertEqual(self.s3.get_object(Bucket="private", Key="secret.txt")["Body"].read(), b"alice's")
        forged = client(ALICE, S3_0, secret="x" * 40)
        self.assertEqual(error_code(lambda: forged.list_buckets()), "SignatureDoesNotMatch")
        unknown = client(("RCUNKNOWNUNKNOWNUNKN", "x" * 40), S3_0)
        self.assertEqual(error_code(lambda: unknown.list_buckets()), "InvalidAccessKeyId")
        elsewhere = client(ALICE, S3_0, region="us-east-1")
        self.assertEqual(error_code(lambda: elsewhere.list_buckets()), "AuthorizationHeaderMalformed")
        anonymous = boto3.client(
            "s3",
            endpoint_url=S3_0,
            region_name=REGION,
            config=botocore.config.Config(signature_version=botocore.UNSIGNED),
        )
        self.assertEqual(error_code(lambda: anonymous.list_buckets()), "AccessDenied")

    def test_a_bad_signature_is_refused_before_the_body_is_read(self):
        host, port = S3_0.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                (
                    "PUT /work/huge.bin HTTP/1.1\r\n"
                    f"Host: {host}:{port}\r\n"
                    "Content-Length: 1073741824\r\n"
                    "x-amz-date: 20260101T000000Z\r\n"
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"
                    f"Authorization: AWS4-HMAC-SHA256 Credential={ALICE[0]}/20260101/{REGION}/s3/aws4_request, "
                    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64 + "\r\n\r\n"
                ).encode()
            )
            conn.sendall(b"x" * 65536)
            answer = conn.recv(4096).decode(errors="replace")
        self.assertTrue(answer.startswith("HTTP/1.1 403"), answer[:200])

    def test_virtual_host_style_names_the_bucket_in_the_host(self):
        port = S3_0.rsplit(":", 1)[1]
        virtual = boto3.client(
            "s3",
            endpoint_url=f"http://s3.test:{port}",
            aws_access_key_id=ALICE[0],
            aws_secret_access_key=ALICE[1],
            region_name=REGION,
            config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
        )
        virtual.put_object(Bucket="vhost", Key="dir/v.txt", Body=b"virtual")
        self.assertEqual(self.s3.get_object(Bucket="vhost", Key="dir/v.txt")["Body"].read(), b"virtual")
        self.assertEqual([o["Key"] for o in virtual.list_objects_v2(Bucket="vhost")["Contents"]], ["dir/v.txt"])
        self.assertIn("vhost", [b["Name"] for b in virtual.list_buckets()["Buckets"]])

    def test_limits(self):
        self.assertEqual(error_code(lambda: self.put("limits", "k" * 256, b"x")), "KeyTooLongError")
        self.assertEqual(
            error_code(lambda: self.s3.delete_objects(
                Bucket="limits", Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})),
            "MalformedXML",
        )
        self.assertEqual(
            error_code(lambda: self.s3.delete_objects(
                Bucket="limits", Delete={"Objects": [{"Key": "k" * 1000 + str(i)} for i in range(3000)]})),
            "MaxMessageLengthExceeded",
        )

    def test_a_deleted_key_stops_working_on_every_controller(self):
        name = "carol"
        key = new_user(name)
        first, second = client(key, S3_0), client(key, S3_1)
        first.put_object(Bucket="mine", Key="x", Body=b"x")
        eventually(lambda: second.list_buckets())
        cli(name, "s3-key", "delete", key[0])
        self.assertEqual(error_code(lambda: first.list_buckets()), "InvalidAccessKeyId")
        eventually(lambda: self.assertEqual(error_code(lambda: second.list_buckets()), "InvalidAccessKeyId"))

    def test_the_extension_queries_more_tags(self):
        self.put("proj", "both.txt", b"1", Tagging="a&b")
        self.put("proj", "only-a.txt", b"2", Tagging="a")
        s3 = client(ALICE, S3_0)

        def add_tags(request, **_):
            request.url += ("&" if "?" in request.url else "?") + "x-redcloud-tags=a%2Cb"

        s3.meta.events.register("before-sign.s3.ListObjectsV2", add_tags)
        listed = s3.list_objects_v2(Bucket="proj")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["both.txt"])

    def test_multipart_upload_with_boto3(self):
        mib = 1024 * 1024
        # Parts that do not fall on chunk boundaries: the file is cut into chunks again.
        parts = {1: os.urandom(5 * mib + 1), 2: os.urandom(6 * mib), 3: os.urandom(1000)}
        upload = self.s3.create_multipart_upload(Bucket="multi", Key="big/odd.bin", Tagging="kind=archive")
        upload_id = upload["UploadId"]
        etags = {}
        for number, data in parts.items():
            etags[number] = self.s3.upload_part(
                Bucket="multi", Key="big/odd.bin", UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
            self.assertEqual(etags[number], f'"{hashlib.md5(data).hexdigest()}"')
        # A part uploaded again replaces the first one.
        parts[2] = os.urandom(6 * mib)
        etags[2] = self.s3.upload_part(
            Bucket="multi", Key="big/odd.bin", UploadId=upload_id, PartNumber=2, Body=parts[2]
        )["ETag"]
        listed = self.s3.list_parts(Bucket="multi", Key="big/odd.bin", UploadId=upload_id)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in listed],
                         [(n, etags[n], len(parts[n])) for n in (1, 2, 3)])
        uploads = self.s3.list_multipart_uploads(Bucket="multi").get("Uploads", [])
        self.assertIn(upload_id, [u["UploadId"] for u in uploads])
        self.assertEqual(
            error_code(lambda: self.s3.complete_multipart_upload(
                Bucket="multi", Key="big/odd.bin", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})),
            "InvalidPart",
        )
        self.assertEqual(
            error_code(lambda: self.s3.complete_multipart_upload(
                Bucket="multi", Key="big/odd.bin", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[2]}, {"PartNumber": 1, "ETag": etags[1]}]})),
            "InvalidPartOrder",
        )
        bob = client(BOB, S3_0)
        self.assertEqual(
            error_code(lambda: bob.list_parts(Bucket="multi", Key="big/odd.bin", UploadId=upload_id)),
            "NoSuchUpload",
        )
        self.assertEqual(
            error_code(lambda: self.s3.list_parts(Bucket="multi", Key="other-key", UploadId=upload_id)),
            "NoSuchUpload",
        )
        done = self.s3.complete_multipart_upload(
            Bucket="multi", Key="big/odd.bin", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]},
        )
        digests = b"".join(hashlib.md5(parts[n]).digest() for n in (1, 2, 3))
        expected_etag = f'"{hashlib.md5(digests).hexdigest()}-3"'
        self.assertEqual(done["ETag"], expected_etag)
        whole = parts[1] + parts[2] + parts[3]
        got = eventually(lambda: self.other.get_object(Bucket="multi", Key="big/odd.bin"))
        self.assertEqual(hashlib.sha256(got["Body"].read()).hexdigest(), hashlib.sha256(whole).hexdigest())
        self.assertEqual(got["ETag"], expected_etag)
        ranged = self.other.get_object(Bucket="multi", Key="big/odd.bin", Range=f"bytes={5 * mib - 10}-{5 * mib + 10}")
        self.assertEqual(ranged["Body"].read(), whole[5 * mib - 10 : 5 * mib + 11])
        tags = {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket="multi", Key="big/odd.bin")["TagSet"]}
        self.assertEqual(tags, {"multi": "", "kind": "archive"})
        self.assertEqual(
            error_code(lambda: self.s3.list_parts(Bucket="multi", Key="big/odd.bin", UploadId=upload_id)),
            "NoSuchUpload",
        )
        self.assertNotIn(upload_id, [u["UploadId"] for u in self.s3.list_multipart_uploads(Bucket="multi").get("Uploads", [])])

    def test_multipart_abort_and_small_parts(self):
        upload_id = self.s3.create_multipart_upload(Bucket="multi", Key="small.bin")["UploadId"]
        etags = [
            self.s3.upload_part(Bucket="multi", Key="small.bin", UploadId=upload_id, PartNumber=n, Body=b"x" * 1000)["ETag"]
            for n in (1, 2)
        ]
        self.assertEqual(
            error_code(lambda: self.s3.complete_multipart_upload(
                Bucket="multi", Key="small.bin", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags)]})),
            "EntityTooSmall",
        )
        self.s3.abort_multipart_upload(Bucket="multi", Key="small.bin", UploadId=upload_id)
        self.assertEqual(
            error_code(lambda: self.s3.list_parts(Bucket="multi", Key="small.bin", UploadId=upload_id)),
            "NoSuchUpload",
        )
        self.assertEqual(
            error_code(lambda: self.s3.upload_part(
                Bucket="multi", Key="small.bin", UploadId=upload_id, PartNumber=3, Body=b"late")),
            "NoSuchUpload",
        )
        eventually(lambda: self.assertEqual(
            error_code(lambda: self.other.list_parts(Bucket="multi", Key="small.bin", UploadId=upload_id)),
            "NoSuchUpload",
        ))
        self.assertEqual(error_code(lambda: self.s3.head_object(Bucket="multi", Key="small.bin")), "404")

    def test_multipart_uploads_list_in_pages(self):
        started = sorted(
            (key, self.s3.create_multipart_upload(Bucket="paged", Key=key)["UploadId"])
            for key in ["b", "a", "c", "a"]
        )
        pages = self.s3.get_paginator("list_multipart_uploads").paginate(
            Bucket="paged", PaginationConfig={"PageSize": 1}
        )
        listed = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
        self.assertEqual([k for k, _ in listed], ["a", "a", "b", "c"])
        self.assertEqual(sorted(listed), started)
        for key, upload_id in started:
            self.s3.abort_multipart_upload(Bucket="paged", Key=key, UploadId=upload_id)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket="paged").get("Uploads", []), [])

    def test_part_numbers_and_uploads_in_progress_have_limits(self):
        upload_id = self.s3.create_multipart_upload(Bucket="bounds", Key="k")["UploadId"]
        for number in (0, 10001):
            self.assertEqual(
                error_code(lambda: self.s3.upload_part(
                    Bucket="bounds", Key="k", UploadId=upload_id, PartNumber=number, Body=b"x")),
                "InvalidArgument",
                number,
            )
        self.s3.upload_part(Bucket="bounds", Key="k", UploadId=upload_id, PartNumber=10000, Body=b"x")
        self.s3.abort_multipart_upload(Bucket="bounds", Key="k", UploadId=upload_id)

        # A user of their own, so that other tests' uploads do not count. The last 40 tries
        # come at once: they count each other, and exactly the 20 that fit get in.
        s3 = client(new_user("dave"), S3_0)
        started = [s3.create_multipart_upload(Bucket="many", Key=f"k{i}")["UploadId"] for i in range(980)]

        def start(i):
            try:
                return s3.create_multipart_upload(Bucket="many", Key=f"at-once-{i}")["UploadId"]
            except botocore.exceptions.ClientError as error:
                self.assertEqual(error.response["Error"]["Code"], "InvalidArgument")
                return None

        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            at_once = [u for u in pool.map(start, range(40)) if u is not None]
        self.assertEqual(len(at_once), 20)
        self.assertEqual(
            error_code(lambda: s3.create_multipart_upload(Bucket="many", Key="one-more")), "InvalidArgument"
        )
        s3.abort_multipart_upload(Bucket="many", Key="k0", UploadId=started[0])
        s3.create_multipart_upload(Bucket="many", Key="one-more")

    def test_the_upload_limit_holds_for_a_put_and_for_a_multipart_upload_whole(self):
        limit = int(os.environ["UPLOAD_MAX_BYTES"])
        self.assertEqual(
            error_code(lambda: self.put("limited", "one.bin", b"\0" * (limit + 1))), "EntityTooLarge"
        )
        self.assertEqual(error_code(lambda: self.s3.head_object(Bucket="limited", Key="one.bin")), "404")
        part = os.urandom(8 * 1024 * 1024)
        upload_id = self.s3.create_multipart_upload(Bucket="limited", Key="parts.bin")["UploadId"]
        numbers = range(1, limit // len(part) + 2)
        etags = [
            self.s3.upload_part(
                Bucket="limited", Key="parts.bin", UploadId=upload_id, PartNumber=n, Body=part)["ETag"]
            for n in numbers
        ]
        self.assertEqual(
            error_code(lambda: self.s3.complete_multipart_upload(
                Bucket="limited", Key="parts.bin", UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip(numbers, etags)]})),
            "EntityTooLarge",
        )
        self.s3.abort_multipart_upload(Bucket="limited", Key="parts.bin", UploadId=upload_id)

    def test_an_unfinished_multipart_upload_expires(self):
        expiry = float(os.environ["S3_MULTIPART_EXPIRY_SECONDS"])
        upload_id = self.s3.create_multipart_upload(Bucket="expiring", Key="left.bin")["UploadId"]
        self.s3.upload_part(Bucket="expiring", Key="left.bin", UploadId=upload_id, PartNumber=1, Body=b"left behind")
        started = time.monotonic()

        def gone():
            code = error_code(lambda: self.s3.list_parts(Bucket="expiring", Key="left.bin", UploadId=upload_id))
            assert code == "NoSuchUpload", code

        eventually(gone, timeout=expiry * 1.5 + 10)
        self.assertGreaterEqual(time.monotonic() - started, expiry * 0.5, "not long before it expired")

    def test_aws_cli_copies_100_mib_in_parts_and_back(self):
        source = os.path.join(WORK, "hundred.bin")
        with open(source, "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1024 * 1024))
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=ALICE[0],
            AWS_SECRET_ACCESS_KEY=ALICE[1],
            AWS_DEFAULT_REGION=REGION,
        )

        def run(*args):
            return subprocess.run(["aws", *args], env=env, capture_output=True, text=True, timeout=600)

        done = run("--endpoint-url", S3_0, "s3", "cp", source, "s3://large/hundred.bin")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        head = self.s3.head_object(Bucket="large", Key="hundred.bin")
        self.assertTrue(head["ETag"].endswith('-13"'), f"{head['ETag']}: aws cp sends 8 MiB parts")
        back = os.path.join(WORK, "hundred-back.bin")
        eventually(lambda: self._ok(run("--endpoint-url", S3_1, "s3", "cp", "s3://large/hundred.bin", back)))
        with open(source, "rb") as f, open(back, "rb") as g:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(g.read()).digest())

    @staticmethod
    def _ok(done):
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def test_aws_cli_cp_and_sync(self):
        tree = os.path.join(WORK, "aws-tree")
        for rel, size in [("a.txt", 10), ("sub/b.bin", 200_000), ("sub/deeper/c.bin", 3_000_000)]:
            path = os.path.join(tree, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(os.urandom(size))
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=ALICE[0],
            AWS_SECRET_ACCESS_KEY=ALICE[1],
            AWS_DEFAULT_REGION=REGION,
        )

        def aws(*args, endpoint=S3_0):
            done = subprocess.run(
                ["aws", "--endpoint-url", endpoint, *args], env=env, capture_output=True, text=True, timeout=300
            )
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            return done.stdout

        aws("s3", "cp", os.path.join(tree, "a.txt"), "s3://awscli/a.txt")
        back = os.path.join(WORK, "a-back.txt")
        eventually(lambda: aws("s3", "cp", "s3://awscli/a.txt", back, endpoint=S3_1))
        with open(back, "rb") as f, open(os.path.join(tree, "a.txt"), "rb") as g:
            self.assertEqual(f.read(), g.read())
        first = aws("s3", "sync", tree, "s3://awscli/tree")
        self.assertEqual(first.count("upload:"), 3, first)
        second = aws("s3", "sync", tree, "s3://awscli/tree")
        self.assertEqual(second.strip(), "", "the second sync copies nothing")

    def test_rclone_sync_and_check(self):
        tree = os.path.join(WORK, "rclone-tree")
        for rel in ["top.txt", "one/a.txt", "one/two/b.bin", "three/c.txt"]:
            path = os.path.join(tree, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(os.urandom(1000 + len(rel) * 997))
        env = dict(
            os.environ,
            RCLONE_CONFIG_RC_TYPE="s3",
            RCLONE_CONFIG_RC_PROVIDER="Other",
            RCLONE_CONFIG_RC_ENDPOINT=S3_0,
            RCLONE_CONFIG_RC_ACCESS_KEY_ID=ALICE[0],
            RCLONE_CONFIG_RC_SECRET_ACCESS_KEY=ALICE[1],
            RCLONE_CONFIG_RC_REGION=REGION,
            RCLONE_CONFIG_RC_FORCE_PATH_STYLE="true",
        )

        def rclone(*args):
            done = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=300)
            return done.returncode, done.stdout + done.stderr

        code, out = rclone("sync", tree, "rc:rclone/tree")
        self.assertEqual(code, 0, out)
        code, out = rclone("check", tree, "rc:rclone/tree")
        self.assertEqual(code, 0, out)
        with open(os.path.join(tree, "one/a.txt"), "ab") as f:
            f.write(b"changed")
        code, out = rclone("check", tree, "rc:rclone/tree")
        self.assertNotEqual(code, 0, "rclone check notices a changed file")

    def test_s3cmd_put_get_ls_del(self):
        config = os.path.join(WORK, "s3cmd.cfg")
        host = S3_0.removeprefix("http://")
        with open(config, "w") as f:
            f.write(
                "[default]\n"
                f"access_key = {ALICE[0]}\nsecret_key = {ALICE[1]}\n"
                f"host_base = {host}\nhost_bucket = {host}\n"
                f"bucket_location = {REGION}\nuse_https = False\nsignature_v2 = False\n"
            )
        source = os.path.join(WORK, "s3cmd.txt")
        with open(source, "wb") as f:
            f.write(b"through s3cmd\n")

        def s3cmd(*args):
            done = subprocess.run(["s3cmd", "-c", config, *args], capture_output=True, text=True, timeout=120)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            return done.stdout

        self.put("s3cmd", "existing", b"makes the bucket")
        s3cmd("put", source, "s3://s3cmd/dir/s3cmd.txt")
        self.assertIn("s3://s3cmd/dir/s3cmd.txt", s3cmd("ls", "-r", "s3://s3cmd"))
        back = os.path.join(WORK, "s3cmd-back.txt")
        s3cmd("get", "--force", "s3://s3cmd/dir/s3cmd.txt", back)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), b"through s3cmd\n")
        s3cmd("del", "s3://s3cmd/dir/s3cmd.txt")
        self.assertNotIn("s3cmd.txt", s3cmd("ls", "-r", "s3://s3cmd"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
