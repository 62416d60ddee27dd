"""The S3 endpoint as unmodified boto3 and aws-cli see it.

Run by `crates/cli/tests/it/s3.rs` against a real `wok up`, with the
virtualenv of `scripts/install-s3-tools.sh`. Every check is a function
named after what it proves; a failing check says what differed, the run
goes on, and the exit status is 1 if any check failed.

Environment (set by the Rust test):
  WOK_S3_ENDPOINT                       http://127.0.0.1:PORT
  WOK_S3_PHASE                          "main" (default) or "revoked"
  WOK_S3_ACCESS_KEY_ID, _SECRET_ACCESS_KEY
                                        the admin pair (project `default`)
  WOK_S3_OTHER_ACCESS_KEY_ID, ...       a service key of project `other`
  WOK_S3_PUBLIC_ACCESS_KEY_ID, ...      a public key of `default`
  WOK_S3_REVOKED_ACCESS_KEY_ID, ...     a service key of `default`, revoked
                                        by the Rust test between the phases
  WOK_S3_DATA_DIR                       the server's data directory
  WOK_S3_BLOBS_DIR                      where the object bytes are files, if not
                                        in it (a node on --blobs: the S3 server's)
  WOK_S3_ADMIN_TOKEN                    for wok's REST API (access rules)
  WOK_S3_ONLY                           optional regex: run matching checks
"""

import base64
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import zlib

import boto3
import botocore
import botocore.httpchecksum
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["WOK_S3_ENDPOINT"]
PHASE = os.environ.get("WOK_S3_PHASE", "main")
ONLY = re.compile(os.environ.get("WOK_S3_ONLY", ""))
MiB = 1 << 20

# The bucket most checks work in, created once before them.
BUCKET = "suite"


def pair(name):
    prefix = f"WOK_S3_{name}_" if name else "WOK_S3_"
    return os.environ[prefix + "ACCESS_KEY_ID"], os.environ[prefix + "SECRET_ACCESS_KEY"]


def client(access_key_id=None, secret_access_key=None, **config):
    if access_key_id is None:
        access_key_id, secret_access_key = pair("")
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            **config,
        ),
    )


s3 = client()


# --- checking -------------------------------------------------------------


class CheckFailed(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")


def expect_true(what, condition, detail=""):
    if not condition:
        raise CheckFailed(f"{what} {detail}".rstrip())


def expect_bytes(what, got, want):
    if got != want:
        raise CheckFailed(
            f"{what}: got {len(got)} bytes (md5 {md5_hex(got)}), "
            f"want {len(want)} bytes (md5 {md5_hex(want)})"
        )


def expect_error(what, call, codes, status):
    """Runs `call`, which must fail with one of `codes` (a code or a tuple;
    None for HEAD replies, which have no body) and HTTP `status` (or one of
    a tuple)."""
    codes = codes if isinstance(codes, tuple) else (codes,)
    statuses = status if isinstance(status, tuple) else (status,)
    try:
        result = call()
    except ClientError as error:
        got_code = error.response.get("Error", {}).get("Code")
        got_status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        if got_status not in statuses or (codes != (None,) and got_code not in codes):
            raise CheckFailed(
                f"{what}: got error {got_code} {got_status}, want {'/'.join(map(str, codes))} {status}"
            )
        return error
    raise CheckFailed(f"{what}: succeeded ({summary(result)}), want {'/'.join(map(str, codes))} {status}")


def summary(result):
    if isinstance(result, dict):
        return {key: value for key, value in result.items() if key != "ResponseMetadata"}
    return result


def status_of(response):
    return response["ResponseMetadata"]["HTTPStatusCode"]


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def b64(digest):
    return base64.b64encode(digest).decode()


def crc32_b64(data):
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def crc32c_b64(data):
    """CRC32C (Castagnoli), which botocore computes only with awscrt."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return b64((crc ^ 0xFFFFFFFF).to_bytes(4, "big"))


def sha256_b64(data):
    return b64(hashlib.sha256(data).digest())


def random_bytes(size, seed):
    """Incompressible, reproducible bytes (os.urandom would do too)."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 32
    return bytes(out[:size])


def keys_of(listing):
    return [item["Key"] for item in listing.get("Contents", [])]


def exists(bucket, key, via=None):
    try:
        (via or s3).head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        if status_of(error.response) == 404:
            return False
        raise


def headers_of(request):
    """A request's headers as botocore sends them: lowercase str."""
    return {
        name.lower(): value.decode() if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }


def ensure_bucket(name, via=None):
    try:
        (via or s3).create_bucket(Bucket=name)
    except ClientError as error:
        if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise


CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


# --- 1. buckets -----------------------------------------------------------


@check
def buckets_create_list_head_delete():
    name = "suite-buckets"
    expect("CreateBucket status", status_of(s3.create_bucket(Bucket=name)), 200)
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    expect_true("ListBuckets shows the new bucket", name in names, f"(listed {names})")
    expect_error("CreateBucket again", lambda: s3.create_bucket(Bucket=name), "BucketAlreadyOwnedByYou", 409)
    expect("HeadBucket status", status_of(s3.head_bucket(Bucket=name)), 200)
    expect_error("HeadBucket of a missing bucket", lambda: s3.head_bucket(Bucket="suite-missing"), None, 404)
    s3.put_object(Bucket=name, Key="keep", Body=b"x")
    expect_error("DeleteBucket of a bucket with an object", lambda: s3.delete_bucket(Bucket=name), "BucketNotEmpty", 409)
    s3.delete_object(Bucket=name, Key="keep")
    expect("DeleteBucket status", status_of(s3.delete_bucket(Bucket=name)), 204)
    expect_error("HeadBucket after DeleteBucket", lambda: s3.head_bucket(Bucket=name), None, 404)
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    expect_true("ListBuckets no longer shows the bucket", name not in names, f"(listed {names})")
    expect_error("DeleteBucket of a missing bucket", lambda: s3.delete_bucket(Bucket=name), "NoSuchBucket", 404)


@check
def invalid_bucket_names_are_refused():
    for name in ["Upper-Case", "under_score", "ab", "-leading", "a" * 64]:
        expect_error(f"CreateBucket {name!r}", lambda: s3.create_bucket(Bucket=name), "InvalidBucketName", 400)


# --- 2. objects -----------------------------------------------------------


@check
def put_get_round_trip_with_content_type_metadata_and_md5_etag():
    data = random_bytes(70_000, "round trip")
    put = s3.put_object(
        Bucket=BUCKET,
        Key="objects/a.bin",
        Body=data,
        ContentType="application/x-suite",
        Metadata={"color": "blue", "owner-name": "Ada Lovelace"},
    )
    expect("PutObject ETag", put["ETag"], f'"{md5_hex(data)}"')
    got = s3.get_object(Bucket=BUCKET, Key="objects/a.bin")
    expect_bytes("GetObject body", got["Body"].read(), data)
    expect("GetObject status", status_of(got), 200)
    expect("GetObject ContentType", got["ContentType"], "application/x-suite")
    expect("GetObject Metadata", got["Metadata"], {"color": "blue", "owner-name": "Ada Lovelace"})
    expect("GetObject ETag", got["ETag"], f'"{md5_hex(data)}"')
    expect("GetObject ContentLength", got["ContentLength"], len(data))
    expect_error("GetObject of a missing key", lambda: s3.get_object(Bucket=BUCKET, Key="objects/missing"), "NoSuchKey", 404)
    expect_error(
        "GetObject in a missing bucket", lambda: s3.get_object(Bucket="suite-missing", Key="a"), "NoSuchBucket", 404
    )
    # Overwriting replaces bytes and metadata.
    s3.put_object(Bucket=BUCKET, Key="objects/a.bin", Body=b"new")
    got = s3.get_object(Bucket=BUCKET, Key="objects/a.bin")
    expect_bytes("GetObject after overwrite", got["Body"].read(), b"new")
    expect("Metadata after overwrite", got["Metadata"], {})


@check
def get_object_ranges():
    data = bytes(range(256)) * 40
    s3.put_object(Bucket=BUCKET, Key="objects/range.bin", Body=data)
    got = s3.get_object(Bucket=BUCKET, Key="objects/range.bin", Range="bytes=10-19")
    expect("ranged GetObject status", status_of(got), 206)
    expect("ranged GetObject ContentRange", got["ContentRange"], f"bytes 10-19/{len(data)}")
    expect("ranged GetObject ContentLength", got["ContentLength"], 10)
    expect_bytes("ranged GetObject body", got["Body"].read(), data[10:20])
    got = s3.get_object(Bucket=BUCKET, Key="objects/range.bin", Range="bytes=-5")
    expect_bytes("suffix range body", got["Body"].read(), data[-5:])
    expect("suffix range ContentRange", got["ContentRange"], f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}")
    got = s3.get_object(Bucket=BUCKET, Key="objects/range.bin", Range="bytes=10000-")
    expect_bytes("open range body", got["Body"].read(), data[10000:])
    expect_error(
        "GetObject with a range past the end",
        lambda: s3.get_object(Bucket=BUCKET, Key="objects/range.bin", Range=f"bytes={len(data) + 10}-"),
        "InvalidRange",
        416,
    )


@check
def get_and_head_conditionals():
    data = b"conditional " * 100
    etag = s3.put_object(Bucket=BUCKET, Key="objects/cond.txt", Body=data)["ETag"]
    head = s3.head_object(Bucket=BUCKET, Key="objects/cond.txt")
    modified = head["LastModified"]
    later = modified + datetime.timedelta(hours=1)
    earlier = modified - datetime.timedelta(hours=1)
    for operation in ("GetObject", "HeadObject"):
        call = s3.get_object if operation == "GetObject" else s3.head_object
        error_code = "PreconditionFailed" if operation == "GetObject" else None
        not_modified = "NotModified" if operation == "GetObject" else None

        def run(**conditions):
            return lambda: call(Bucket=BUCKET, Key="objects/cond.txt", **conditions)

        expect_error(f"{operation} If-Match another ETag", run(IfMatch='"0123456789abcdef0123456789abcdef"'), error_code, 412)
        expect(f"{operation} If-Match the ETag", status_of(run(IfMatch=etag)()), 200)
        expect(f"{operation} If-Match *", status_of(run(IfMatch="*")()), 200)
        expect_error(f"{operation} If-None-Match the ETag", run(IfNoneMatch=etag), (not_modified, "304"), 304)
        expect(f"{operation} If-None-Match another ETag", status_of(run(IfNoneMatch='"abc"')()), 200)
        expect_error(f"{operation} If-Modified-Since a later time", run(IfModifiedSince=later), (not_modified, "304"), 304)
        expect_error(f"{operation} If-Modified-Since LastModified", run(IfModifiedSince=modified), (not_modified, "304"), 304)
        expect(f"{operation} If-Modified-Since an earlier time", status_of(run(IfModifiedSince=earlier)()), 200)
        expect_error(f"{operation} If-Unmodified-Since an earlier time", run(IfUnmodifiedSince=earlier), error_code, 412)
        expect(f"{operation} If-Unmodified-Since a later time", status_of(run(IfUnmodifiedSince=later)()), 200)
    head = s3.head_object(Bucket=BUCKET, Key="objects/cond.txt")
    expect("HeadObject ContentLength", head["ContentLength"], len(data))
    expect("HeadObject ETag", head["ETag"], etag)
    expect_error("HeadObject of a missing key", lambda: s3.head_object(Bucket=BUCKET, Key="objects/nope"), None, 404)


@check
def empty_objects_and_response_overrides():
    reply = s3.put_object(Bucket=BUCKET, Key="objects/empty", Body=b"")
    expect("empty object ETag", reply["ETag"], f'"{md5_hex(b"")}"')
    got = s3.get_object(Bucket=BUCKET, Key="objects/empty")
    expect_bytes("empty object body", got["Body"].read(), b"")
    expect("empty object ContentLength", got["ContentLength"], 0)
    expect_error(
        "a range of an empty object", lambda: s3.get_object(Bucket=BUCKET, Key="objects/empty", Range="bytes=0-0"), "InvalidRange", 416
    )
    s3.put_object(Bucket=BUCKET, Key="objects/folder/", Body=b"")
    expect("a key ending in /", keys_of(s3.list_objects_v2(Bucket=BUCKET, Prefix="objects/folder/")), ["objects/folder/"])
    s3.put_object(Bucket=BUCKET, Key="objects/override", Body=b"data", ContentType="text/plain")
    got = s3.get_object(
        Bucket=BUCKET,
        Key="objects/override",
        ResponseContentType="application/x-override",
        ResponseContentDisposition='attachment; filename="x.bin"',
        ResponseCacheControl="no-store",
    )
    expect("response-content-type override", got["ContentType"], "application/x-override")
    expect("response-content-disposition override", got.get("ContentDisposition"), 'attachment; filename="x.bin"')
    expect("response-cache-control override", got.get("CacheControl"), "no-store")


@check
def put_object_conditionals():
    key = "objects/put-cond.txt"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"first", IfNoneMatch="*")
    expect_error(
        "PutObject If-None-Match * over an object",
        lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"second", IfNoneMatch="*"),
        "PreconditionFailed",
        412,
    )
    expect_error(
        "PutObject If-Match another ETag",
        lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"second", IfMatch=f'"{md5_hex(b"other")}"'),
        "PreconditionFailed",
        412,
    )
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"second", IfMatch=f'"{md5_hex(b"first")}"')
    expect_bytes("after the conditional puts", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), b"second")


@check
def delete_object_and_delete_objects():
    s3.put_object(Bucket=BUCKET, Key="objects/delete-me", Body=b"x")
    expect("DeleteObject status", status_of(s3.delete_object(Bucket=BUCKET, Key="objects/delete-me")), 204)
    expect_true("object gone after DeleteObject", not exists(BUCKET, "objects/delete-me"))
    expect("DeleteObject of a missing key", status_of(s3.delete_object(Bucket=BUCKET, Key="objects/delete-me")), 204)

    keys = [f"batch/{i}" for i in range(5)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    reply = s3.delete_objects(
        Bucket=BUCKET,
        Delete={"Objects": [{"Key": key} for key in keys[:3] + ["batch/missing"]]},
    )
    deleted = sorted(item["Key"] for item in reply.get("Deleted", []))
    expect("DeleteObjects Deleted", deleted, sorted(keys[:3] + ["batch/missing"]))
    expect("DeleteObjects Errors", reply.get("Errors", []), [])
    expect("keys left after DeleteObjects", keys_of(s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/")), keys[3:])
    reply = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in keys[3:]], "Quiet": True}
    )
    expect("quiet DeleteObjects Deleted", reply.get("Deleted", []), [])
    expect("quiet DeleteObjects Errors", reply.get("Errors", []), [])
    expect("keys left after quiet DeleteObjects", keys_of(s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/")), [])


@check
def copy_object_copy_and_replace_metadata_and_source_conditions():
    data = random_bytes(40_000, "copy")
    source = s3.put_object(
        Bucket=BUCKET, Key="copy/source", Body=data, ContentType="text/x-source", Metadata={"origin": "source"}
    )
    reply = s3.copy_object(Bucket=BUCKET, Key="copy/same", CopySource={"Bucket": BUCKET, "Key": "copy/source"})
    expect("CopyObject ETag", reply["CopyObjectResult"]["ETag"], source["ETag"])
    got = s3.get_object(Bucket=BUCKET, Key="copy/same")
    expect_bytes("copied bytes", got["Body"].read(), data)
    expect("copied ContentType (COPY)", got["ContentType"], "text/x-source")
    expect("copied Metadata (COPY)", got["Metadata"], {"origin": "source"})

    s3.copy_object(
        Bucket=BUCKET,
        Key="copy/replaced",
        CopySource=f"{BUCKET}/copy/source",
        MetadataDirective="REPLACE",
        ContentType="text/x-replaced",
        Metadata={"origin": "replaced", "extra": "1"},
    )
    got = s3.head_object(Bucket=BUCKET, Key="copy/replaced")
    expect("copied ContentType (REPLACE)", got["ContentType"], "text/x-replaced")
    expect("copied Metadata (REPLACE)", got["Metadata"], {"origin": "replaced", "extra": "1"})
    expect("copied ETag (REPLACE)", got["ETag"], source["ETag"])

    # Into another bucket of the same project.
    ensure_bucket("suite-copy")
    s3.copy_object(Bucket="suite-copy", Key="there", CopySource={"Bucket": BUCKET, "Key": "copy/source"})
    expect_bytes("copied across buckets", s3.get_object(Bucket="suite-copy", Key="there")["Body"].read(), data)

    # Onto itself with REPLACE: how clients change an object's metadata.
    s3.copy_object(
        Bucket=BUCKET,
        Key="copy/same",
        CopySource={"Bucket": BUCKET, "Key": "copy/same"},
        MetadataDirective="REPLACE",
        Metadata={"changed": "yes"},
        ContentType="text/x-changed",
    )
    got = s3.get_object(Bucket=BUCKET, Key="copy/same")
    expect_bytes("copied onto itself", got["Body"].read(), data)
    expect("metadata after copying onto itself", (got["ContentType"], got["Metadata"]), ("text/x-changed", {"changed": "yes"}))
    special = "copy/a+b c%20é.txt"
    s3.put_object(Bucket=BUCKET, Key=special, Body=b"special source")
    s3.copy_object(Bucket=BUCKET, Key="copy/from-special", CopySource={"Bucket": BUCKET, "Key": special})
    expect_bytes("copied from a special key", s3.get_object(Bucket=BUCKET, Key="copy/from-special")["Body"].read(), b"special source")
    s3.copy_object(Bucket=BUCKET, Key=special + ".copy", CopySource={"Bucket": BUCKET, "Key": special})
    expect_bytes("copied to a special key", s3.get_object(Bucket=BUCKET, Key=special + ".copy")["Body"].read(), b"special source")

    modified = s3.head_object(Bucket=BUCKET, Key="copy/source")["LastModified"]
    source_ref = {"Bucket": BUCKET, "Key": "copy/source"}
    for name, conditions in [
        ("CopySourceIfMatch another ETag", {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'}),
        ("CopySourceIfNoneMatch the ETag", {"CopySourceIfNoneMatch": source["ETag"]}),
        ("CopySourceIfModifiedSince a later time", {"CopySourceIfModifiedSince": modified + datetime.timedelta(hours=1)}),
        ("CopySourceIfUnmodifiedSince an earlier time", {"CopySourceIfUnmodifiedSince": modified - datetime.timedelta(hours=1)}),
    ]:
        expect_error(
            f"CopyObject {name}",
            lambda: s3.copy_object(Bucket=BUCKET, Key="copy/conditional", CopySource=source_ref, **conditions),
            "PreconditionFailed",
            412,
        )
    expect_true("no copy made when a source condition failed", not exists(BUCKET, "copy/conditional"))
    s3.copy_object(Bucket=BUCKET, Key="copy/conditional", CopySource=source_ref, CopySourceIfMatch=source["ETag"])
    expect_true("copy made when the source condition held", exists(BUCKET, "copy/conditional"))
    expect_error(
        "CopyObject from a missing key",
        lambda: s3.copy_object(Bucket=BUCKET, Key="copy/x", CopySource={"Bucket": BUCKET, "Key": "copy/missing"}),
        "NoSuchKey",
        404,
    )


# --- 3. listing -----------------------------------------------------------


@check
def list_objects_v2_prefix_and_delimiter():
    keys = ["tree/a.txt", "tree/b/1.txt", "tree/b/2.txt", "tree/c/d/3.txt", "tree/e.txt", "treetop.txt"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="tree/")
    expect("keys under prefix tree/", keys_of(listing), sorted(k for k in keys if k.startswith("tree/")))
    expect("KeyCount", listing["KeyCount"], 5)
    expect("IsTruncated", listing["IsTruncated"], False)
    sizes = {item["Key"]: item["Size"] for item in listing["Contents"]}
    expect("listed Size", sizes["tree/a.txt"], len("tree/a.txt"))
    expect("listed ETag", listing["Contents"][0]["ETag"], f'"{md5_hex(b"tree/a.txt")}"')
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="tree/", Delimiter="/")
    expect("keys with delimiter /", keys_of(listing), ["tree/a.txt", "tree/e.txt"])
    expect(
        "CommonPrefixes with delimiter /",
        [item["Prefix"] for item in listing.get("CommonPrefixes", [])],
        ["tree/b/", "tree/c/"],
    )
    expect("KeyCount with delimiter", listing["KeyCount"], 4)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="tree", Delimiter="/")
    expect("top-level keys with prefix tree", keys_of(listing), ["treetop.txt"])
    expect("top-level CommonPrefixes", [item["Prefix"] for item in listing["CommonPrefixes"]], ["tree/"])
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="nothing-here/")
    expect("empty listing", (keys_of(listing), listing["KeyCount"]), ([], 0))
    expect_error("ListObjectsV2 of a missing bucket", lambda: s3.list_objects_v2(Bucket="suite-missing"), "NoSuchBucket", 404)
    # ListObjects (v1), which older tools use.
    listing = s3.list_objects(Bucket=BUCKET, Prefix="tree/", Delimiter="/")
    expect("ListObjects (v1) keys", keys_of(listing), ["tree/a.txt", "tree/e.txt"])
    expect("ListObjects (v1) CommonPrefixes", [item["Prefix"] for item in listing["CommonPrefixes"]], ["tree/b/", "tree/c/"])


@check
def list_objects_v2_pages_cover_every_key_once():
    keys = [f"pages/{i:03d}" for i in range(23)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    seen, token, pages = [], None, 0
    while True:
        arguments = {"Bucket": BUCKET, "Prefix": "pages/", "MaxKeys": 5}
        if token:
            arguments["ContinuationToken"] = token
        page = s3.list_objects_v2(**arguments)
        pages += 1
        expect_true(f"page {pages} has at most MaxKeys keys", page["KeyCount"] <= 5, f"(KeyCount {page['KeyCount']})")
        expect(f"page {pages} KeyCount", page["KeyCount"], len(page.get("Contents", [])))
        seen += keys_of(page)
        if not page["IsTruncated"]:
            expect_true("last page has no NextContinuationToken", "NextContinuationToken" not in page)
            break
        token = page["NextContinuationToken"]
        expect_true("pagination terminates", pages < 20)
    expect("keys over all pages", seen, keys)
    expect("number of pages", pages, 5)
    paginated = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="pages/", PaginationConfig={"PageSize": 4}):
        paginated += keys_of(page)
    expect("keys through boto3's paginator", paginated, keys)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="pages/", StartAfter="pages/019")
    expect("keys after StartAfter", keys_of(listing), keys[20:])
    expect("StartAfter echoed", listing.get("StartAfter"), "pages/019")
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="pages/", StartAfter="pages/010", MaxKeys=3)
    expect("first page after StartAfter", keys_of(listing), keys[11:14])
    listing = s3.list_objects_v2(
        Bucket=BUCKET, Prefix="pages/", StartAfter="pages/010", ContinuationToken=listing["NextContinuationToken"]
    )
    expect("next page after StartAfter", keys_of(listing), keys[14:])


@check
def list_objects_v2_pages_with_delimiter_cover_every_entry_once():
    keys = ["dpages/a.txt", "dpages/b/1.txt", "dpages/b/2.txt", "dpages/b/3.txt", "dpages/c/d/4.txt", "dpages/e.txt", "dpages/f/5.txt"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    entries, token = [], None
    for _ in range(20):
        arguments = {"Bucket": BUCKET, "Prefix": "dpages/", "Delimiter": "/", "MaxKeys": 1}
        if token:
            arguments["ContinuationToken"] = token
        page = s3.list_objects_v2(**arguments)
        entries += keys_of(page) + [item["Prefix"] for item in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    expect(
        "entries over pages of one (keys and common prefixes)",
        entries,
        ["dpages/a.txt", "dpages/b/", "dpages/c/", "dpages/e.txt", "dpages/f/"],
    )


@check
def special_characters_in_keys_round_trip_through_listing():
    special = "special/a+b c%20é.txt"
    others = ["special/dir +%é/x.txt", "special/q?x=1&y#z.txt", "special/~tilde'quote\".txt"]
    for key in [special] + others:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="special/")
    expect("special keys as listed (encoding-type=url)", keys_of(listing), sorted([special] + others))
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="special/", Delimiter="/")
    expect("special keys with delimiter", keys_of(listing), sorted([special] + others[1:]))
    expect("special common prefix", [item["Prefix"] for item in listing["CommonPrefixes"]], ["special/dir +%é/"])
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="special/dir +%é/")
    expect("listing under a special prefix", keys_of(listing), [others[0]])
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="special/", StartAfter=special)
    expect("StartAfter a special key", keys_of(listing), sorted(others)[sorted([special] + others).index(special):])
    for key in [special] + others:
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        expect_bytes(f"GetObject {key!r}", got, key.encode())
    # The same without encoding-type=url, as plain S3 clients list.
    def no_encoding(params, **kwargs):
        params.pop("EncodingType", None)

    plain = client()
    plain.meta.events.register("before-parameter-build.s3.ListObjectsV2", no_encoding)
    expect("special key listed without encoding-type", keys_of(plain.list_objects_v2(Bucket=BUCKET, Prefix="special/a")), [special])
    listing = s3.list_objects(Bucket=BUCKET, Prefix="special/a")
    expect("special key through ListObjects (v1)", keys_of(listing), [special])


# --- 4. multipart ---------------------------------------------------------


def upload_parts(key, parts, **create):
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key, **create)["UploadId"]
    etags = []
    for number, part in enumerate(parts, start=1):
        reply = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=part)
        expect(f"UploadPart {number} ETag", reply["ETag"], f'"{md5_hex(part)}"')
        etags.append(reply["ETag"])
    return upload_id, etags


@check
def multipart_upload_list_complete():
    key = "multipart/object.bin"
    parts = [random_bytes(5 * MiB, "p1"), random_bytes(5 * MiB, "p2"), random_bytes(MiB + 123, "p3")]
    upload_id, etags = upload_parts(key, parts, ContentType="application/x-parts", Metadata={"kind": "multipart"})
    listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)
    expect("ListParts numbers", [part["PartNumber"] for part in listed["Parts"]], [1, 2, 3])
    expect("ListParts sizes", [part["Size"] for part in listed["Parts"]], [len(part) for part in parts])
    expect("ListParts ETags", [part["ETag"] for part in listed["Parts"]], etags)
    page = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id, MaxParts=2)
    expect("ListParts first page", ([p["PartNumber"] for p in page["Parts"]], page["IsTruncated"]), ([1, 2], True))
    page = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumberMarker=page["NextPartNumberMarker"])
    expect("ListParts second page", ([p["PartNumber"] for p in page["Parts"]], page["IsTruncated"]), ([3], False))
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    expect_true(
        "ListMultipartUploads shows the upload",
        any(upload["UploadId"] == upload_id and upload["Key"] == key for upload in uploads),
        f"(listed {uploads})",
    )
    expect_true("the object does not exist before completion", not exists(BUCKET, key))
    reply = s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]},
    )
    want_etag = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest() + "-3"
    expect("CompleteMultipartUpload ETag", reply["ETag"], f'"{want_etag}"')
    got = s3.get_object(Bucket=BUCKET, Key=key)
    expect_bytes("completed object", got["Body"].read(), b"".join(parts))
    expect("completed object ETag", got["ETag"], f'"{want_etag}"')
    expect("completed object ContentType", got["ContentType"], "application/x-parts")
    expect("completed object Metadata", got["Metadata"], {"kind": "multipart"})
    # A range across the boundary of parts 1 and 2.
    got = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    expect_bytes("range across parts", got["Body"].read(), b"".join(parts)[5 * MiB - 10 : 5 * MiB + 10])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    expect_true("completed upload no longer listed", all(u["UploadId"] != upload_id for u in uploads), f"(listed {uploads})")
    expect_error(
        "ListParts of a completed upload",
        lambda: s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id),
        "NoSuchUpload",
        404,
    )


@check
def multipart_abort():
    key = "multipart/aborted.bin"
    upload_id, _ = upload_parts(key, [b"some bytes"])
    reply = s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
    expect("AbortMultipartUpload status", status_of(reply), 204)
    expect_error("ListParts after abort", lambda: s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id), "NoSuchUpload", 404)
    expect_error(
        "UploadPart after abort",
        lambda: s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2, Body=b"late"),
        "NoSuchUpload",
        404,
    )
    expect_error(
        "CompleteMultipartUpload after abort",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f'"{md5_hex(b"some bytes")}"'}]},
        ),
        "NoSuchUpload",
        404,
    )
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    expect_true("aborted upload no longer listed", all(u["UploadId"] != upload_id for u in uploads), f"(listed {uploads})")
    expect_true("no object from an aborted upload", not exists(BUCKET, key))
    expect_error(
        "UploadPart to an unknown upload id",
        lambda: s3.upload_part(Bucket=BUCKET, Key=key, UploadId="0" * 32, PartNumber=1, Body=b"x"),
        "NoSuchUpload",
        404,
    )


@check
def multipart_complete_refuses_wrong_etag_and_small_parts():
    key = "multipart/wrong-etag.bin"
    upload_id, etags = upload_parts(key, [b"only part"])
    expect_error(
        "CompleteMultipartUpload with a wrong ETag",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]},
        ),
        "InvalidPart",
        400,
    )
    expect_error(
        "CompleteMultipartUpload naming a part never uploaded",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[0]}]},
        ),
        "InvalidPart",
        400,
    )
    expect_true("no object after a refused completion", not exists(BUCKET, key))
    # The upload survives a refused completion.
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}]}
    )
    expect_bytes("completed after a refusal", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), b"only part")

    key = "multipart/small.bin"
    upload_id, etags = upload_parts(key, [random_bytes(MiB, "small"), b"tail"])
    expect_error(
        "CompleteMultipartUpload with a non-last part under 5 MiB",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]},
        ),
        "EntityTooSmall",
        400,
    )
    expect_true("no object after EntityTooSmall", not exists(BUCKET, key))
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)


def rest(method, path, body=None):
    """Calls wok's REST API with the admin token; returns (status, JSON)."""
    request = urllib.request.Request(
        f"{ENDPOINT}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {os.environ['WOK_S3_ADMIN_TOKEN']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@check
def multipart_uploads_keep_the_bucket_size_limit():
    bucket = "limited-parts"
    status, _ = rest("PUT", f"/v1/buckets/{bucket}", {"max_object_bytes": 6 * MiB})
    expect("creating a bucket with a 6 MiB limit", status, 201)
    key = "too-big.bin"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    first = random_bytes(5 * MiB, "limit 1")
    one = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=first)
    # The second part would make the object 10 MiB: refused at once.
    expect_error(
        "UploadPart past the bucket's limit",
        lambda: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=random_bytes(5 * MiB, "limit 2")),
        "EntityTooLarge",
        400,
    )
    # Parts uploaded at once each fit, but not together: refused at completion.
    other = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=b"small")
    expect_error(
        "CompleteMultipartUpload past the bucket's limit (uploaded concurrently)",
        lambda: rest_concurrent_parts(bucket),
        "EntityTooLarge",
        400,
    )
    # What fits completes.
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": one["ETag"]}, {"PartNumber": 3, "ETag": other["ETag"]}]},
    )
    expect("the object that fits", s3.head_object(Bucket=bucket, Key=key)["ContentLength"], 5 * MiB + 5)
    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)


def rest_concurrent_parts(bucket):
    """Uploads two 5 MiB parts at the same time (each fits the 6 MiB
    limit while the other is not stored yet), then completes them."""
    import concurrent.futures

    key = "concurrent.bin"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda number: s3.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=random_bytes(5 * MiB, f"c{number}")
                    ),
                    [1, 2],
                )
            )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": reply["ETag"]} for n, reply in zip([1, 2], replies)]},
        )
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


@check
def multipart_part_order_reupload_and_special_keys():
    key = "multipart/a+b c%20é.bin"
    first, second = random_bytes(5 * MiB, "order 1"), b"last part"
    upload_id, etags = upload_parts(key, [first, second])
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="multipart/a+b").get("Uploads", [])
    expect("ListMultipartUploads key with special characters", [u["Key"] for u in uploads if u["UploadId"] == upload_id], [key])
    expect_error(
        "CompleteMultipartUpload with parts out of order",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]},
        ),
        "InvalidPartOrder",
        400,
    )
    # Uploading part 2 again replaces it; its old ETag no longer completes.
    replaced = b"replaced last part"
    new_etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2, Body=replaced)["ETag"]
    listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id)["Parts"]
    expect("ListParts after a re-upload", [(p["PartNumber"], p["ETag"]) for p in listed], [(1, etags[0]), (2, new_etag)])
    expect_error(
        "CompleteMultipartUpload with a replaced part's old ETag",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]},
        ),
        "InvalidPart",
        400,
    )
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": new_etag}]},
    )
    expect_bytes("object with a re-uploaded part", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), first + replaced)
    expect("listed key of a completed special upload", keys_of(s3.list_objects_v2(Bucket=BUCKET, Prefix="multipart/a+b")), [key])
    expect_error(
        "AbortMultipartUpload of an unknown upload",
        lambda: s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId="f" * 32),
        "NoSuchUpload",
        404,
    )


@check
def multipart_through_upload_fileobj_with_crc32():
    # boto3's managed transfer: 8 MiB parts, each with a CRC32 header.
    data = random_bytes(17 * MiB, "transfer")
    s3.upload_fileobj(io.BytesIO(data), BUCKET, "multipart/transfer.bin")
    head = s3.head_object(Bucket=BUCKET, Key="multipart/transfer.bin", ChecksumMode="ENABLED")
    expect_true("ETag of a 3-part upload ends in -3", head["ETag"].endswith('-3"'), f"(ETag {head['ETag']})")
    expect("size of the transferred object", head["ContentLength"], len(data))
    out = io.BytesIO()
    s3.download_fileobj(BUCKET, "multipart/transfer.bin", out)
    expect_bytes("download_fileobj", out.getvalue(), data)
    got = s3.get_object(Bucket=BUCKET, Key="multipart/transfer.bin", ChecksumMode="ENABLED")
    expect_bytes("GetObject of the transferred object", got["Body"].read(), data)


@check
def upload_part_copy_and_managed_copy():
    source = random_bytes(6 * MiB + 100, "part copy")
    s3.put_object(Bucket=BUCKET, Key="multipart/copy-source", Body=source)
    key = "multipart/copied-parts"
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    ref = {"Bucket": BUCKET, "Key": "multipart/copy-source"}
    first = s3.upload_part_copy(
        Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, CopySource=ref, CopySourceRange=f"bytes=0-{5 * MiB - 1}"
    )["CopyPartResult"]
    expect("UploadPartCopy ETag", first["ETag"], f'"{md5_hex(source[: 5 * MiB])}"')
    second = s3.upload_part_copy(
        Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2, CopySource=ref, CopySourceRange=f"bytes={5 * MiB}-{len(source) - 1}"
    )["CopyPartResult"]
    whole = s3.upload_part_copy(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=3, CopySource=ref)["CopyPartResult"]
    expect("UploadPartCopy of the whole source ETag", whole["ETag"], f'"{md5_hex(source)}"')
    expect_error(
        "UploadPartCopy of a range past the end",
        lambda: s3.upload_part_copy(
            Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=4, CopySource=ref, CopySourceRange=f"bytes={len(source)}-{len(source) + 10}"
        ),
        "InvalidRange",
        416,
    )
    expect_error(
        "UploadPartCopy with CopySourceIfMatch another ETag",
        lambda: s3.upload_part_copy(
            Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=4, CopySource=ref, CopySourceIfMatch='"0123456789abcdef0123456789abcdef"'
        ),
        "PreconditionFailed",
        412,
    )
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]},
    )
    expect_bytes("object from copied parts", s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), source)
    # boto3's managed copy: UploadPartCopy above 8 MiB.
    big = random_bytes(9 * MiB, "managed copy")
    s3.put_object(Bucket=BUCKET, Key="multipart/managed-source", Body=big)
    s3.copy({"Bucket": BUCKET, "Key": "multipart/managed-source"}, BUCKET, "multipart/managed-copy")
    head = s3.head_object(Bucket=BUCKET, Key="multipart/managed-copy")
    expect_true("managed copy made parts", head["ETag"].endswith('-2"'), f"(ETag {head['ETag']})")
    expect_bytes("managed copy", s3.get_object(Bucket=BUCKET, Key="multipart/managed-copy")["Body"].read(), big)


# --- 5. checksums ---------------------------------------------------------


@check
def default_crc32_checksum_is_verified_and_returned():
    data = random_bytes(10_000, "crc32")
    seen = {}

    def capture(request, **kwargs):
        seen.update(headers_of(request))

    s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        reply = s3.put_object(Bucket=BUCKET, Key="checksums/crc32", Body=data)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", capture)
    expect("x-amz-checksum-crc32 boto3 sent", seen.get("x-amz-checksum-crc32"), crc32_b64(data))
    expect("PutObject ChecksumCRC32", reply.get("ChecksumCRC32"), crc32_b64(data))
    got = s3.get_object(Bucket=BUCKET, Key="checksums/crc32", ChecksumMode="ENABLED")
    expect("GetObject ChecksumCRC32", got.get("ChecksumCRC32"), crc32_b64(data))
    # boto3 validates the returned checksum while reading.
    expect_bytes("GetObject body (validated by boto3)", got["Body"].read(), data)
    head = s3.head_object(Bucket=BUCKET, Key="checksums/crc32", ChecksumMode="ENABLED")
    expect("HeadObject ChecksumCRC32", head.get("ChecksumCRC32"), crc32_b64(data))
    ranged = s3.get_object(Bucket=BUCKET, Key="checksums/crc32", Range="bytes=0-9", ChecksumMode="ENABLED")
    expect("no whole-object checksum on a range", ranged.get("ChecksumCRC32"), None)
    expect_bytes("range of a checksummed object", ranged["Body"].read(), data[:10])


@check
def explicit_sha256_sha1_and_crc32c_checksums():
    data = random_bytes(12_345, "sha")
    reply = s3.put_object(Bucket=BUCKET, Key="checksums/sha256", Body=data, ChecksumAlgorithm="SHA256")
    expect("PutObject ChecksumSHA256", reply.get("ChecksumSHA256"), sha256_b64(data))
    got = s3.get_object(Bucket=BUCKET, Key="checksums/sha256", ChecksumMode="ENABLED")
    expect("GetObject ChecksumSHA256", got.get("ChecksumSHA256"), sha256_b64(data))
    expect_bytes("GetObject body (SHA256 validated by boto3)", got["Body"].read(), data)
    reply = s3.put_object(Bucket=BUCKET, Key="checksums/sha1", Body=data, ChecksumAlgorithm="SHA1")
    expect("PutObject ChecksumSHA1", reply.get("ChecksumSHA1"), b64(hashlib.sha1(data).digest()))
    try:
        reply = s3.put_object(Bucket=BUCKET, Key="checksums/crc32c-sdk", Body=data, ChecksumAlgorithm="CRC32C")
        expect("PutObject ChecksumCRC32C (computed by botocore)", reply.get("ChecksumCRC32C"), crc32c_b64(data))
    except botocore.exceptions.MissingDependencyException as error:
        print(f"      SKIP ChecksumAlgorithm=CRC32C through botocore: it needs awscrt ({error})".replace("\n", " "))
    # CRC32C computed here and sent as the header value: the server verifies it.
    value = crc32c_b64(data)
    reply = s3.put_object(Bucket=BUCKET, Key="checksums/crc32c", Body=data, ChecksumCRC32C=value)
    expect("PutObject ChecksumCRC32C (sent by the suite)", reply.get("ChecksumCRC32C"), value)
    head = s3.head_object(Bucket=BUCKET, Key="checksums/crc32c", ChecksumMode="ENABLED")
    expect("HeadObject ChecksumCRC32C", head.get("ChecksumCRC32C"), value)
    expect_error(
        "PutObject with a wrong ChecksumCRC32C",
        lambda: s3.put_object(Bucket=BUCKET, Key="checksums/crc32c-bad", Body=data, ChecksumCRC32C=crc32c_b64(b"other")),
        "BadDigest",
        400,
    )
    expect_true("nothing stored after a wrong CRC32C", not exists(BUCKET, "checksums/crc32c-bad"))


@check
def wrong_checksum_or_content_md5_is_refused_and_nothing_stored():
    data = b"checksummed bytes " * 100
    s3.put_object(Bucket=BUCKET, Key="checksums/kept", Body=b"old")
    expect_error(
        "PutObject with a bogus ChecksumCRC32",
        lambda: s3.put_object(Bucket=BUCKET, Key="checksums/bad-crc32", Body=data, ChecksumCRC32=crc32_b64(b"other")),
        "BadDigest",
        400,
    )
    expect_true("nothing stored after a bogus CRC32", not exists(BUCKET, "checksums/bad-crc32"))
    expect_error(
        "PutObject with a bogus ChecksumSHA256",
        lambda: s3.put_object(Bucket=BUCKET, Key="checksums/kept", Body=data, ChecksumSHA256=sha256_b64(b"other")),
        "BadDigest",
        400,
    )
    expect_bytes("an overwrite refused leaves the old object", s3.get_object(Bucket=BUCKET, Key="checksums/kept")["Body"].read(), b"old")
    expect_error(
        "PutObject with a wrong Content-MD5",
        lambda: s3.put_object(Bucket=BUCKET, Key="checksums/bad-md5", Body=data, ContentMD5=b64(hashlib.md5(b"other").digest())),
        "BadDigest",
        400,
    )
    expect_true("nothing stored after a wrong Content-MD5", not exists(BUCKET, "checksums/bad-md5"))
    reply = s3.put_object(Bucket=BUCKET, Key="checksums/good-md5", Body=data, ContentMD5=b64(hashlib.md5(data).digest()))
    expect("PutObject with the right Content-MD5", reply["ETag"], f'"{md5_hex(data)}"')
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="checksums/bad-part")["UploadId"]
    expect_error(
        "UploadPart with a bogus ChecksumCRC32",
        lambda: s3.upload_part(
            Bucket=BUCKET, Key="checksums/bad-part", UploadId=upload_id, PartNumber=1, Body=data, ChecksumCRC32=crc32_b64(b"x")
        ),
        "BadDigest",
        400,
    )
    expect("parts after a refused UploadPart", s3.list_parts(Bucket=BUCKET, Key="checksums/bad-part", UploadId=upload_id).get("Parts", []), [])
    s3.abort_multipart_upload(Bucket=BUCKET, Key="checksums/bad-part", UploadId=upload_id)


class _HttpsLooking:
    """A parsed URL that claims https: botocore then sends bodies
    aws-chunked with the checksum in a trailer, as it does over TLS."""

    def __init__(self, parsed):
        self._parsed = parsed

    def __getattr__(self, name):
        return getattr(self._parsed, name)

    @property
    def scheme(self):
        return "https"


class trailer_mode:
    """Within: botocore's https behaviour (STREAMING-UNSIGNED-PAYLOAD-TRAILER)
    on plain http, by patching `botocore.httpchecksum.urlparse`."""

    def __enter__(self):
        self.original = botocore.httpchecksum.urlparse
        botocore.httpchecksum.urlparse = lambda url: _HttpsLooking(self.original(url))

    def __exit__(self, *exc):
        botocore.httpchecksum.urlparse = self.original


@check
def aws_chunked_trailer_checksums():
    sent = []

    def capture(request, **kwargs):
        sent.append(headers_of(request))

    client_ = client()
    client_.meta.events.register("before-send.s3.*", capture)
    data = random_bytes(300_000, "trailer")
    with trailer_mode():
        for algorithm, extra, compute in [
            ("CRC32", {}, crc32_b64),
            ("SHA256", {"ChecksumAlgorithm": "SHA256"}, sha256_b64),
        ]:
            sent.clear()
            key = f"trailer/{algorithm}"
            reply = client_.put_object(Bucket=BUCKET, Key=key, Body=io.BytesIO(data), **extra)
            headers = sent[-1]
            expect(f"{algorithm}: x-amz-content-sha256 sent", headers.get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            expect(f"{algorithm}: x-amz-trailer sent", headers.get("x-amz-trailer"), f"x-amz-checksum-{algorithm.lower()}")
            expect(f"{algorithm}: PutObject checksum echoed", reply.get(f"Checksum{algorithm}"), compute(data))
            got = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
            expect(f"{algorithm}: stored checksum", got.get(f"Checksum{algorithm}"), compute(data))
            expect_bytes(f"{algorithm}: stored bytes", got["Body"].read(), data)

        # A corrupted trailer value: botocore computes the right one; we
        # make it send another.
        for algorithm, cls in [("CRC32", botocore.httpchecksum.Crc32Checksum), ("SHA256", botocore.httpchecksum.Sha256Checksum)]:
            original = cls.b64digest
            cls.b64digest = lambda self: crc32_b64(b"corrupted") if algorithm == "CRC32" else sha256_b64(b"corrupted")
            try:
                sent.clear()
                key = f"trailer/corrupted-{algorithm}"
                extra = {"ChecksumAlgorithm": algorithm}
                expect_error(
                    f"PutObject with a corrupted {algorithm} trailer",
                    lambda: client_.put_object(Bucket=BUCKET, Key=key, Body=io.BytesIO(data), **extra),
                    "BadDigest",
                    400,
                )
                expect(f"corrupted {algorithm}: trailer mode used", sent[-1].get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            finally:
                cls.b64digest = original
            expect_true(f"nothing stored after a corrupted {algorithm} trailer", not exists(BUCKET, key))

        # Managed multipart in trailer mode: every part aws-chunked.
        sent.clear()
        big = random_bytes(9 * MiB, "trailer multipart")
        client_.upload_fileobj(io.BytesIO(big), BUCKET, "trailer/multipart")
        parts = [h for h in sent if h.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"]
        expect("parts sent aws-chunked", len(parts), 2)
    expect_bytes("multipart in trailer mode", s3.get_object(Bucket=BUCKET, Key="trailer/multipart")["Body"].read(), big)


@check
def completing_an_upload_again_answers_the_same_object():
    key = "multipart/twice.bin"
    upload_id, etags = upload_parts(key, [random_bytes(5 * MiB, "twice 1"), b"end"])
    parts = {"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]}
    first = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload=parts)
    # An SDK retries when the first answer was lost: S3 answers again.
    again = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload=parts)
    expect("the second completion's ETag", again["ETag"], first["ETag"])
    expect("the second completion's status", status_of(again), 200)
    # Not for other parts, nor once the object is gone.
    expect_error(
        "completing again with other parts",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}]}
        ),
        "NoSuchUpload",
        404,
    )
    s3.delete_object(Bucket=BUCKET, Key=key)
    expect_error(
        "completing again once the object is gone",
        lambda: s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload=parts),
        "NoSuchUpload",
        404,
    )


@check
def completion_checksums_are_verified():
    key = "multipart/checksummed.bin"
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    data = [random_bytes(5 * MiB, "sum 1"), b"tail of it"]
    replies = [
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=part, ChecksumAlgorithm="SHA256")
        for n, part in enumerate(data, start=1)
    ]
    right = [{"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]} for n, r in enumerate(replies, start=1)]
    wrong = [dict(part) for part in right]
    wrong[1]["ChecksumSHA256"] = sha256_b64(b"not this part")
    expect_error(
        "CompleteMultipartUpload with a part's wrong ChecksumSHA256",
        lambda: s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": wrong}),
        "InvalidPart",
        400,
    )
    expect_true("no object after a wrong part checksum", not exists(BUCKET, key))
    expect_error(
        "CompleteMultipartUpload with a wrong whole-object ChecksumSHA256",
        lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": right}, ChecksumSHA256=sha256_b64(b"no")
        ),
        "BadDigest",
        400,
    )
    reply = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": right})
    expect_true("the right checksums complete", reply["ETag"].endswith('-2"'), reply["ETag"])


@check
def list_objects_v1_markers_and_edges():
    bucket = "listing-v1"
    ensure_bucket(bucket)
    for key in ["a/1", "a/2", "b/1", "c", "d"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    expect("v1 first page", ([p["Prefix"] for p in page.get("CommonPrefixes", [])], page["IsTruncated"]), (["a/", "b/"], True))
    expect("v1 NextMarker is the last entry listed", page.get("NextMarker"), "b/")
    expect("v1 Marker of a first page", page.get("Marker"), "")
    page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2, Marker=page["NextMarker"])
    expect("v1 second page", [o["Key"] for o in page.get("Contents", [])], ["c", "d"])
    expect("v1 second page is the last", page["IsTruncated"], False)
    expect("v1 Marker echoed", page.get("Marker"), "b/")
    page = s3.list_objects(Bucket=bucket, MaxKeys=2)
    expect("v1 without a delimiter has no NextMarker", (page.get("NextMarker"), page["IsTruncated"]), (None, True))
    page = s3.list_objects(Bucket=bucket, MaxKeys=0)
    expect("v1 max-keys=0", (page.get("Contents", []), page["IsTruncated"]), ([], False))
    page = s3.list_objects(Bucket=bucket, Delimiter="")
    expect("v1 an empty delimiter is none", (page.get("Delimiter"), len(page.get("Contents", []))), (None, 5))
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="")
    expect("v2 an empty delimiter is none", (page.get("Delimiter"), page["KeyCount"]), (None, 5))
    # A placeholder key that is the prefix itself: paging past it goes on
    # to what is under the prefix.
    s3.put_object(Bucket=bucket, Key="a/", Body=b"")
    page = s3.list_objects(Bucket=bucket, Prefix="a/", Delimiter="/", MaxKeys=1)
    expect("v1 the placeholder first", ([o["Key"] for o in page.get("Contents", [])], page.get("NextMarker")), (["a/"], "a/"))
    page = s3.list_objects(Bucket=bucket, Prefix="a/", Delimiter="/", Marker="a/")
    expect("v1 after the placeholder", [o["Key"] for o in page.get("Contents", [])], ["a/1", "a/2"])
    for key in ["a/", "a/1", "a/2", "b/1", "c", "d"]:
        s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_bucket(Bucket=bucket)


@check
def responses_carry_a_request_id():
    reply = s3.head_bucket(Bucket=BUCKET)
    expect_true("x-amz-request-id on a success", reply["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"))
    error = expect_error("GetObject of a missing key", lambda: s3.get_object(Bucket=BUCKET, Key="no/such"), "NoSuchKey", 404)
    request_id = error.response["ResponseMetadata"].get("RequestId")
    expect_true("RequestId in an error body", request_id and len(request_id) >= 16, repr(error.response))
    expect("the body's RequestId is the header's", error.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"), request_id)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "no/such"}, ExpiresIn=60)
    try:
        urllib.request.urlopen(url)
        raise CheckFailed("a missing key was served")
    except urllib.error.HTTPError as failure:
        body = failure.read().decode()
        header = failure.headers.get("x-amz-request-id")
        expect_true("<RequestId> in the XML error body", header and f"<RequestId>{header}</RequestId>" in body, body)


@check
def delete_objects_takes_at_most_1000_keys():
    expect_error(
        "DeleteObjects with 1001 keys",
        lambda: s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": f"k{n}"} for n in range(1001)]}),
        "MalformedXML",
        400,
    )
    reply = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": f"k{n}"} for n in range(1000)]})
    expect("DeleteObjects with 1000 keys", len(reply.get("Deleted", [])), 1000)


@check
def copying_an_object_onto_itself_needs_a_change():
    s3.put_object(Bucket=BUCKET, Key="self/copy", Body=b"me", Metadata={"v": "1"})
    expect_error(
        "CopyObject onto itself with nothing changed",
        lambda: s3.copy_object(Bucket=BUCKET, Key="self/copy", CopySource={"Bucket": BUCKET, "Key": "self/copy"}),
        "InvalidRequest",
        400,
    )
    s3.copy_object(
        Bucket=BUCKET, Key="self/copy", CopySource={"Bucket": BUCKET, "Key": "self/copy"}, MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    expect("metadata replaced in place", s3.head_object(Bucket=BUCKET, Key="self/copy")["Metadata"], {"v": "2"})


@check
def get_object_by_part_number():
    key = "multipart/by-part.bin"
    parts = [random_bytes(5 * MiB, "bp 1"), random_bytes(5 * MiB, "bp 2"), b"the third"]
    upload_id, etags = upload_parts(key, parts)
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]}
    )
    got = s3.get_object(Bucket=BUCKET, Key=key, PartNumber=2)
    expect_bytes("part 2", got["Body"].read(), parts[1])
    expect("PartsCount", got.get("PartsCount"), 3)
    expect("status of a part", status_of(got), 206)
    third = s3.get_object(Bucket=BUCKET, Key=key, PartNumber=3)
    expect("Content-Range of part 3", third.get("ContentRange"), f"bytes {10 * MiB}-{10 * MiB + 8}/{10 * MiB + 9}")
    head = s3.head_object(Bucket=BUCKET, Key=key, PartNumber=1)
    expect("HeadObject of part 1", head["ContentLength"], 5 * MiB)
    expect_error("part 4 of 3", lambda: s3.get_object(Bucket=BUCKET, Key=key, PartNumber=4), "InvalidPartNumber", 416)
    s3.put_object(Bucket=BUCKET, Key="single/part", Body=b"whole")
    single = s3.get_object(Bucket=BUCKET, Key="single/part", PartNumber=1)
    expect_bytes("part 1 of a single put", single["Body"].read(), b"whole")
    expect("a single put's part 1 is the object", (status_of(single), single.get("ContentRange")), (200, None))
    s3.put_object(Bucket=BUCKET, Key="single/empty", Body=b"")
    empty = s3.get_object(Bucket=BUCKET, Key="single/empty", PartNumber=1)
    expect("part 1 of an empty object", (empty["Body"].read(), status_of(empty), empty.get("ContentRange")), (b"", 200, None))


@check
def kept_response_headers_round_trip():
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    headers = dict(
        CacheControl="public, max-age=60",
        ContentDisposition='attachment; filename="report.txt"',
        ContentEncoding="identity",
        ContentLanguage="nb-NO",
        Expires=expires,
    )
    s3.put_object(Bucket=BUCKET, Key="headers/kept", Body=b"with headers", **headers)

    def check_headers(what, reply):
        for name, value in headers.items():
            expect(f"{what} {name}", reply.get(name), value)

    check_headers("GetObject", s3.get_object(Bucket=BUCKET, Key="headers/kept"))
    check_headers("HeadObject", s3.head_object(Bucket=BUCKET, Key="headers/kept"))
    s3.copy_object(Bucket=BUCKET, Key="headers/copied", CopySource={"Bucket": BUCKET, "Key": "headers/kept"})
    check_headers("a copy", s3.head_object(Bucket=BUCKET, Key="headers/copied"))
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="headers/multipart", **headers)["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key="headers/multipart", UploadId=upload_id, PartNumber=1, Body=b"one part")
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="headers/multipart", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )
    check_headers("a multipart object", s3.head_object(Bucket=BUCKET, Key="headers/multipart"))


@check
def presigned_urls_are_valid_a_week_at_most():
    # SigV4 presigning (boto3 presigns with SigV2 by default, whose expiry
    # is a time, not a duration).
    v4 = client(signature_version="s3v4")
    s3.put_object(Bucket=BUCKET, Key="presigned/week", Body=b"a week")
    url = v4.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned/week"}, ExpiresIn=604801)
    try:
        urllib.request.urlopen(url)
        raise CheckFailed("a presigned URL valid over a week was served")
    except urllib.error.HTTPError as error:
        body = error.read().decode()
        expect("status of an over-long presigned URL", error.code, 400)
        expect_true("its error code", "<Code>AuthorizationQueryParametersError</Code>" in body, body)
    # The same URL with the parameter's name percent-encoded (the same name
    # once decoded, and the same signature).
    try:
        urllib.request.urlopen(url.replace("X-Amz-Expires=", "X-Amz-%45xpires="))
        raise CheckFailed("an over-long presigned URL with an encoded name was served")
    except urllib.error.HTTPError as error:
        expect("status of an encoded over-long expiry", error.code, 400)
    url = v4.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned/week"}, ExpiresIn=604800)
    with urllib.request.urlopen(url) as response:
        expect("a presigned URL valid a week", response.read(), b"a week")


def sigv4_put(key, body, content_sha256, chunks=None, tamper_chunk=None, final_chunk=True):
    """A PutObject signed by hand (SigV4): with `chunks`, an aws-chunked
    body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) of those chunks, each signed;
    `tamper_chunk` flips a byte of that chunk's data after signing;
    `final_chunk=False` leaves the closing zero chunk out. Returns (status,
    body)."""
    import hmac
    import http.client
    import urllib.parse

    access_key, secret_key = pair("")
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/us-east-1/s3/aws4_request"
    host = urllib.parse.urlparse(ENDPOINT).netloc
    path = f"/{BUCKET}/{key}"
    headers = {"host": host, "x-amz-content-sha256": content_sha256, "x-amz-date": amz_date}
    if chunks is not None:
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(sum(len(chunk) for chunk in chunks))
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["PUT", path, "", *[f"{name}:{headers[name]}" for name in sorted(headers)], "", signed, content_sha256]
    )

    def hmac_sha256(key_bytes, text):
        return hmac.new(key_bytes, text.encode(), hashlib.sha256).digest()

    signing_key = hmac_sha256(
        hmac_sha256(hmac_sha256(hmac_sha256(f"AWS4{secret_key}".encode(), day), "us-east-1"), "s3"), "aws4_request"
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    if chunks is not None:
        payload = b""
        previous = signature
        empty = hashlib.sha256(b"").hexdigest()
        for index, chunk in enumerate(chunks + ([b""] if final_chunk else [])):
            chunk_to_sign = "\n".join(
                ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, empty, hashlib.sha256(chunk).hexdigest()]
            )
            previous = hmac.new(signing_key, chunk_to_sign.encode(), hashlib.sha256).hexdigest()
            if index == tamper_chunk:
                chunk = bytes([chunk[0] ^ 1]) + chunk[1:]
            payload += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
        body = payload
    headers["content-length"] = str(len(body))
    connection = http.client.HTTPConnection(host)
    connection.request("PUT", path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read().decode()


@check
def signed_bodies_are_verified():
    body = b"the signed body"
    status, _ = sigv4_put("signed/plain", body, hashlib.sha256(body).hexdigest())
    expect("a signed body with its SHA-256", status, 200)
    status, text = sigv4_put("signed/mismatch", body, hashlib.sha256(b"another body").hexdigest())
    expect("a body whose SHA-256 is not the signed one", status, 400)
    expect_true("its code", "<Code>XAmzContentSHA256Mismatch</Code>" in text, text)
    expect_true("nothing stored after a hash mismatch", not exists(BUCKET, "signed/mismatch"))
    chunks = [random_bytes(64 * 1024, "chunk 1"), b"the last data chunk"]
    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    status, text = sigv4_put("signed/chunked", b"", streaming, chunks=chunks)
    expect("an aws-chunked body with every chunk signed", status, 200)
    expect_bytes("the chunked object", s3.get_object(Bucket=BUCKET, Key="signed/chunked")["Body"].read(), b"".join(chunks))
    status, text = sigv4_put("signed/bad-chunk", b"", streaming, chunks=chunks, tamper_chunk=1)
    expect("a chunk whose signature does not match", status, 403)
    expect_true("its code", "<Code>SignatureDoesNotMatch</Code>" in text, text)
    status, text = sigv4_put("signed/no-final", b"", streaming, chunks=chunks, final_chunk=False)
    expect("an aws-chunked body without its final chunk", status, 400)
    expect_true("its code", "<Code>IncompleteBody</Code>" in text, text)
    for key in ["signed/bad-chunk", "signed/no-final"]:
        expect_true(f"nothing stored at {key}", not exists(BUCKET, key))


@check
def concurrent_writes_overwrites_and_deletes_all_succeed():
    # No retries: every request must succeed the first time, as aws-cli's
    # ten threads and boto3's transfer manager expect.
    import concurrent.futures

    once = client()
    failures = []

    def work(worker):
        for round_ in range(24):
            key = f"concurrent/{worker}-{round_ % 3}"
            try:
                once.put_object(Bucket=BUCKET, Key=key, Body=f"{worker} {round_}".encode())
                if round_ % 4 == 3:
                    once.delete_object(Bucket=BUCKET, Key=key)
            except ClientError as error:
                failures.append(f"{key}: {error.response['Error'].get('Code')} {error.response['Error'].get('Message')}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(work, range(12)))
    expect_true("no request failed under concurrency", not failures, f"({len(failures)} failed: {failures[:3]})")


# --- 6. presigned URLs ----------------------------------------------------


def presigning_clients():
    """boto3's default presigning (SigV2 query for S3 in us-east-1) and
    SigV4 (`aws s3 presign`, most other SDKs)."""
    return [("default", s3), ("s3v4", client(signature_version="s3v4"))]


@check
def presigned_get_and_put():
    data = random_bytes(5000, "presigned")
    s3.put_object(Bucket=BUCKET, Key="presigned/a b+c.bin", Body=data)
    for signing, signer in presigning_clients():
        url = signer.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned/a b+c.bin"}, ExpiresIn=300)
        with urllib.request.urlopen(url) as response:
            expect(f"presigned GET ({signing}) status", response.status, 200)
            expect_bytes(f"presigned GET ({signing}) body", response.read(), data)
        url = signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": BUCKET, "Key": "presigned/a b+c.bin", "ResponseContentType": "text/x-overridden"},
            ExpiresIn=300,
        )
        with urllib.request.urlopen(url) as response:
            expect(f"presigned GET ({signing}) response-content-type", response.headers["Content-Type"], "text/x-overridden")
        tampered = url.replace("presigned/a", "presigned/b")
        try:
            urllib.request.urlopen(tampered)
            raise CheckFailed(f"a presigned URL ({signing}) for another key was accepted")
        except urllib.error.HTTPError as error:
            expect(f"presigned URL ({signing}) altered", error.code, 403)
        key = f"presigned/put-{signing}"
        url = signer.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
        # The URL signs no content type; urllib would add a form one.
        request = urllib.request.Request(url, data=b"put through a presigned URL", method="PUT", headers={"Content-Type": ""})
        with urllib.request.urlopen(request) as response:
            expect(f"presigned PUT ({signing}) status", response.status, 200)
        expect_bytes(
            f"object from a presigned PUT ({signing})",
            s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(),
            b"put through a presigned URL",
        )
    # Anonymous requests get nothing.
    try:
        urllib.request.urlopen(f"{ENDPOINT}/{BUCKET}/presigned/a%20b%2Bc.bin")
        raise CheckFailed("an unsigned GET of an object succeeded")
    except urllib.error.HTTPError as error:
        expect_true("unsigned GET refused", error.code in (401, 403, 404), f"(status {error.code})")


@check
def presigned_url_expires():
    s3.put_object(Bucket=BUCKET, Key="presigned/expiring", Body=b"soon gone")
    urls = [
        (signing, signer.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned/expiring"}, ExpiresIn=1))
        for signing, signer in presigning_clients()
    ]
    time.sleep(2.1)
    for signing, url in urls:
        try:
            with urllib.request.urlopen(url) as response:
                raise CheckFailed(f"an expired presigned URL ({signing}) answered {response.status}")
        except urllib.error.HTTPError as error:
            expect(f"expired presigned URL ({signing}) status", error.code, 403)
            body = error.read().decode(errors="replace")
            expect_true(f"expired presigned URL ({signing}) says AccessDenied", "<Code>AccessDenied</Code>" in body, f"(body {body})")


# --- 7. auth --------------------------------------------------------------


@check
def wrong_secret_and_unknown_keys_are_refused():
    access_key_id, secret = pair("")
    wrong = client(access_key_id, secret + "x")
    expect_error("ListBuckets with a wrong secret", wrong.list_buckets, "SignatureDoesNotMatch", 403)
    expect_error(
        "GetObject with a wrong secret", lambda: wrong.get_object(Bucket=BUCKET, Key="objects/range.bin"), "SignatureDoesNotMatch", 403
    )
    expect_error(
        "PutObject with a wrong secret",
        lambda: wrong.put_object(Bucket=BUCKET, Key="auth/wrong-secret", Body=b"x"),
        "SignatureDoesNotMatch",
        403,
    )
    expect_true("nothing stored with a wrong secret", not exists(BUCKET, "auth/wrong-secret"))
    for unknown in ["AKIAUNKNOWNKEY000000", "wok_service_default_" + "0" * 16, access_key_id + "x"]:
        expect_error(
            f"ListBuckets with unknown access key {unknown}",
            client(unknown, secret).list_buckets,
            ("InvalidAccessKeyId", "SignatureDoesNotMatch"),
            403,
        )
    unknown = client("AKIAUNKNOWNKEY000000", secret)
    expect_error(
        "GetObject with an unknown access key",
        lambda: unknown.get_object(Bucket=BUCKET, Key="objects/range.bin"),
        ("InvalidAccessKeyId",),
        403,
    )


@check
def another_projects_key_cannot_see_or_touch_these_buckets():
    other = client(*pair("OTHER"))
    s3.put_object(Bucket=BUCKET, Key="auth/secret.txt", Body=b"top secret")
    names = [bucket["Name"] for bucket in other.list_buckets()["Buckets"]]
    expect_true("the other project lists none of default's buckets", BUCKET not in names, f"(listed {names})")
    denied = ("NoSuchBucket", "AccessDenied")
    for what, call in [
        ("GetObject", lambda: other.get_object(Bucket=BUCKET, Key="auth/secret.txt")),
        ("ListObjectsV2", lambda: other.list_objects_v2(Bucket=BUCKET)),
        ("PutObject", lambda: other.put_object(Bucket=BUCKET, Key="auth/secret.txt", Body=b"overwritten")),
        ("DeleteObject", lambda: other.delete_object(Bucket=BUCKET, Key="auth/secret.txt")),
        ("DeleteObjects", lambda: other.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "auth/secret.txt"}]})),
        ("CopyObject out", lambda: other.copy_object(Bucket=BUCKET, Key="auth/copy", CopySource=f"{BUCKET}/auth/secret.txt")),
        ("CreateMultipartUpload", lambda: other.create_multipart_upload(Bucket=BUCKET, Key="auth/mp")),
        ("DeleteBucket", lambda: other.delete_bucket(Bucket=BUCKET)),
    ]:
        try:
            result = call()
        except ClientError as error:
            code = error.response["Error"].get("Code")
            expect_true(f"other project: {what} refused as NoSuchBucket/AccessDenied", code in denied, f"(got {code})")
            continue
        raise CheckFailed(f"other project: {what} succeeded: {summary(result)}")
    expect_error("other project: HeadBucket", lambda: other.head_bucket(Bucket=BUCKET), None, (403, 404))
    # Its own bucket is its own, and copying from ours into it fails too.
    ensure_bucket("suite-other-own", other)
    expect_error(
        "other project: CopyObject into its bucket from ours",
        lambda: other.copy_object(Bucket="suite-other-own", Key="stolen", CopySource=f"{BUCKET}/auth/secret.txt"),
        denied,
        (403, 404),
    )
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    expect_true("default does not list the other project's bucket", "suite-other-own" not in names, f"(listed {names})")
    expect_bytes("our object untouched", s3.get_object(Bucket=BUCKET, Key="auth/secret.txt")["Body"].read(), b"top secret")


@check
def public_key_on_a_private_bucket_is_denied_everything():
    public = client(*pair("PUBLIC"))
    s3.put_object(Bucket=BUCKET, Key="auth/private.txt", Body=b"private")
    for what, call in [
        ("ListBuckets", public.list_buckets),
        ("CreateBucket", lambda: public.create_bucket(Bucket="suite-public")),
        ("DeleteBucket", lambda: public.delete_bucket(Bucket=BUCKET)),
        ("GetObject", lambda: public.get_object(Bucket=BUCKET, Key="auth/private.txt")),
        ("ListObjectsV2", lambda: public.list_objects_v2(Bucket=BUCKET)),
        ("PutObject", lambda: public.put_object(Bucket=BUCKET, Key="auth/public-put", Body=b"x")),
        ("DeleteObject", lambda: public.delete_object(Bucket=BUCKET, Key="auth/private.txt")),
        ("CreateMultipartUpload", lambda: public.create_multipart_upload(Bucket=BUCKET, Key="auth/mp")),
        ("CopyObject", lambda: public.copy_object(Bucket=BUCKET, Key="auth/c", CopySource=f"{BUCKET}/auth/private.txt")),
    ]:
        expect_error(f"public key: {what}", call, "AccessDenied", 403)
    expect_error("public key: HeadObject", lambda: public.head_object(Bucket=BUCKET, Key="auth/private.txt"), None, 403)
    expect_error("public key: HeadBucket", lambda: public.head_bucket(Bucket=BUCKET), None, 403)
    expect_true("nothing written by the public key", not exists(BUCKET, "auth/public-put"))
    expect_true("nothing deleted by the public key", exists(BUCKET, "auth/private.txt"))
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    expect_true("no bucket created by the public key", "suite-public" not in names)


def set_access(bucket, access):
    """Sets a bucket's access rule through wok's REST API (admin token)."""
    request = urllib.request.Request(
        f"{ENDPOINT}/v1/buckets/{bucket}/_access",
        data=json.dumps({"access": access}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {os.environ['WOK_S3_ADMIN_TOKEN']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        expect(f"setting {bucket} {access}", response.status, 200)


@check
def public_key_follows_bucket_access_rules():
    public = client(*pair("PUBLIC"))
    readable, writable = "suite-public-read", "suite-public-rw"
    for bucket in (readable, writable):
        ensure_bucket(bucket)
        s3.put_object(Bucket=bucket, Key="shared.txt", Body=b"shared")
    set_access(readable, "public-read")
    set_access(writable, "public-read-write")

    expect_bytes("public-read: GetObject", public.get_object(Bucket=readable, Key="shared.txt")["Body"].read(), b"shared")
    expect("public-read: HeadObject", public.head_object(Bucket=readable, Key="shared.txt")["ContentLength"], 6)
    expect("public-read: ListObjectsV2", keys_of(public.list_objects_v2(Bucket=readable)), ["shared.txt"])
    url = public.generate_presigned_url("get_object", Params={"Bucket": readable, "Key": "shared.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url) as response:
        expect_bytes("public-read: presigned GET by the public key", response.read(), b"shared")
    for what, call in [
        ("PutObject", lambda: public.put_object(Bucket=readable, Key="new.txt", Body=b"x")),
        ("DeleteObject", lambda: public.delete_object(Bucket=readable, Key="shared.txt")),
        ("DeleteObjects", lambda: public.delete_objects(Bucket=readable, Delete={"Objects": [{"Key": "shared.txt"}]})),
        ("CreateMultipartUpload", lambda: public.create_multipart_upload(Bucket=readable, Key="mp")),
        ("CopyObject into it", lambda: public.copy_object(Bucket=readable, Key="c", CopySource=f"{writable}/shared.txt")),
        ("CopyObject into a private bucket", lambda: public.copy_object(Bucket=BUCKET, Key="c", CopySource=f"{readable}/shared.txt")),
        ("DeleteBucket", lambda: public.delete_bucket(Bucket=readable)),
        ("ListBuckets", public.list_buckets),
    ]:
        expect_error(f"public-read: {what}", call, "AccessDenied", 403)
    expect_true("public-read: nothing written", not exists(readable, "new.txt") and exists(readable, "shared.txt"))

    public.put_object(Bucket=writable, Key="by-public.txt", Body=b"public wrote")
    expect_bytes("public-read-write: read back", s3.get_object(Bucket=writable, Key="by-public.txt")["Body"].read(), b"public wrote")
    public.copy_object(Bucket=writable, Key="copied.txt", CopySource={"Bucket": readable, "Key": "shared.txt"})
    expect_bytes("public-read-write: copied from public-read", s3.get_object(Bucket=writable, Key="copied.txt")["Body"].read(), b"shared")
    upload_id = public.create_multipart_upload(Bucket=writable, Key="mp")["UploadId"]
    etag = public.upload_part(Bucket=writable, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
    public.complete_multipart_upload(
        Bucket=writable, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    public.delete_object(Bucket=writable, Key="by-public.txt")
    expect_true("public-read-write: deleted", not exists(writable, "by-public.txt"))
    expect_error("public-read-write: DeleteBucket", lambda: public.delete_bucket(Bucket=writable), "AccessDenied", 403)

    # Back to private: denied again at once.
    set_access(readable, "private")
    expect_error(
        "private again: GetObject", lambda: public.get_object(Bucket=readable, Key="shared.txt"), "AccessDenied", 403
    )


@check
def key_to_be_revoked_works_before_revocation():
    revocable = client(*pair("REVOKED"))
    names = [bucket["Name"] for bucket in revocable.list_buckets()["Buckets"]]
    expect_true("a service key of default lists default's buckets", BUCKET in names, f"(listed {names})")
    revocable.put_object(Bucket=BUCKET, Key="auth/by-service-key", Body=b"service")
    expect_bytes("service key reads back", revocable.get_object(Bucket=BUCKET, Key="auth/by-service-key")["Body"].read(), b"service")


def revoked_key_is_refused():
    revoked = client(*pair("REVOKED"))
    for what, call in [
        ("ListBuckets", revoked.list_buckets),
        ("GetObject", lambda: revoked.get_object(Bucket=BUCKET, Key="auth/by-service-key")),
        ("PutObject", lambda: revoked.put_object(Bucket=BUCKET, Key="auth/after-revocation", Body=b"x")),
    ]:
        expect_error(f"revoked key: {what}", call, ("InvalidAccessKeyId", "AccessDenied"), 403)
    expect_true("nothing written by the revoked key", not exists(BUCKET, "auth/after-revocation"))
    url = client(*pair("REVOKED")).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "auth/by-service-key"}, ExpiresIn=300
    )
    try:
        urllib.request.urlopen(url)
        raise CheckFailed("a presigned URL of a revoked key worked")
    except urllib.error.HTTPError as error:
        expect("presigned URL of a revoked key", error.code, 403)
    # The admin pair still works.
    expect_bytes("admin still reads", s3.get_object(Bucket=BUCKET, Key="auth/by-service-key")["Body"].read(), b"service")


def deleting_everything_leaves_no_files():
    """Run last: empties every bucket of both projects through S3; then no
    blob file may be left (overwritten, deleted, refused, aborted and
    replaced bytes all cleaned up)."""
    for via in (s3, client(*pair("OTHER"))):
        for bucket in [b["Name"] for b in via.list_buckets()["Buckets"]]:
            for page in via.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for upload in page.get("Uploads", []):
                    via.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            for page in via.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": key} for key in keys_of(page)]
                if keys:
                    reply = via.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    expect(f"errors deleting everything in {bucket}", reply.get("Errors", []), [])
            via.delete_bucket(Bucket=bucket)
        expect("buckets left", via.list_buckets()["Buckets"], [])
    # The object bytes: files in the data directory, or those of the S3
    # server a node on --blobs keeps them in.
    root = os.environ.get("WOK_S3_BLOBS_DIR") or os.path.join(os.environ["WOK_S3_DATA_DIR"], "objects")
    left = [os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files]
    expect("blob files left once everything is deleted", left, [])


# --- 8. aws-cli -----------------------------------------------------------


def aws(*args, check=True):
    access_key_id, secret = pair("")
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=access_key_id,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=AWS_CONFIG,
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(WORK, "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    command = [os.path.join(os.path.dirname(sys.executable), "aws"), "--endpoint-url", ENDPOINT, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise CheckFailed(f"aws {' '.join(args)} exited {done.returncode}: {done.stderr.strip()} {done.stdout.strip()}")
    return done


WORK = tempfile.mkdtemp(prefix="wok-s3-suite-")
AWS_CONFIG = os.path.join(WORK, "aws-config")
with open(AWS_CONFIG, "w") as config:
    config.write("[default]\ns3 =\n    addressing_style = path\n")


def tree_files(root):
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, root)] = file.read()
    return found


@check
def aws_cli_mb_cp_ls_head_object_rm():
    out = aws("s3", "mb", "s3://suite-cli").stdout
    expect("aws s3 mb output", out.strip(), "make_bucket: suite-cli")
    big = os.path.join(WORK, "big.bin")
    data = random_bytes(20 * MiB, "aws cli")
    with open(big, "wb") as file:
        file.write(data)
    aws("s3", "cp", big, "s3://suite-cli/dir/big.bin")
    head = json.loads(aws("s3api", "head-object", "--bucket", "suite-cli", "--key", "dir/big.bin").stdout)
    expect("head-object ContentLength", head["ContentLength"], len(data))
    expect_true("head-object ETag of a multipart cp ends in -3", head["ETag"].endswith('-3"'), f"(ETag {head['ETag']})")
    down = os.path.join(WORK, "big-down.bin")
    aws("s3", "cp", "s3://suite-cli/dir/big.bin", down)
    with open(down, "rb") as file:
        expect_bytes("aws s3 cp down", file.read(), data)
    aws("s3", "cp", "s3://suite-cli/dir/big.bin", "s3://suite-cli/dir/copy.bin")
    head = json.loads(aws("s3api", "head-object", "--bucket", "suite-cli", "--key", "dir/copy.bin").stdout)
    expect("aws s3 cp S3 to S3 size", head["ContentLength"], len(data))
    expect_true("aws s3 cp S3 to S3 made parts", head["ETag"].endswith('-3"'), f"(ETag {head['ETag']})")
    aws("s3", "rm", "s3://suite-cli/dir/copy.bin")
    listing = aws("s3", "ls", "s3://suite-cli/dir/").stdout
    expect_true("aws s3 ls shows the object and its size", re.search(rf"\s{len(data)} big\.bin$", listing, re.M), f"(output {listing!r})")
    listing = aws("s3", "ls", "s3://suite-cli/").stdout
    expect_true("aws s3 ls shows the prefix", "PRE dir/" in listing, f"(output {listing!r})")
    listing = aws("s3", "ls").stdout
    expect_true("aws s3 ls lists the bucket", re.search(r"\ssuite-cli$", listing, re.M), f"(output {listing!r})")
    missing = aws("s3api", "head-object", "--bucket", "suite-cli", "--key", "missing", check=False)
    expect_true("head-object of a missing key fails with 404", missing.returncode != 0 and "404" in missing.stderr, f"({missing.stderr!r})")


@check
def aws_cli_sync_up_and_down():
    source = os.path.join(WORK, "tree-up")
    files = {
        "a.txt": b"alpha\n",
        "with space.txt": b"spaced\n",
        "sub/b.txt": b"beta\n",
        "sub/deeper/c.bin": random_bytes(200_000, "sync c"),
        "sub/deeper/plus+percent%.txt": b"odd name\n",
    }
    # Written a minute ago: S3 times have whole seconds, and sync uploads
    # again a file modified later than its object (in the same second).
    past = time.time() - 60
    for name, data in files.items():
        path = os.path.join(source, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
        os.utime(path, (past, past))
    out = aws("s3", "sync", source, "s3://suite-cli/tree/").stdout
    uploads = [line for line in out.splitlines() if "upload:" in line]
    expect("files uploaded by the first sync", len(uploads), len(files))
    listed = aws("s3", "ls", "--recursive", "s3://suite-cli/tree/").stdout
    for name in files:
        expect_true(f"aws s3 ls --recursive shows tree/{name}", f"tree/{name}" in listed, f"(output {listed!r})")
    target = os.path.join(WORK, "tree-down")
    aws("s3", "sync", "s3://suite-cli/tree/", target)
    expect("tree synced down", tree_files(target), files)
    out = aws("s3", "sync", source, "s3://suite-cli/tree/").stdout
    expect("second sync up uploads nothing", out.strip(), "")
    out = aws("s3", "sync", "s3://suite-cli/tree/", target).stdout
    expect("second sync down downloads nothing", out.strip(), "")
    # A changed file is the only one sent again.
    with open(os.path.join(source, "sub/b.txt"), "wb") as file:
        file.write(b"beta, longer now\n")
    out = aws("s3", "sync", source, "s3://suite-cli/tree/").stdout
    uploads = [line for line in out.splitlines() if "upload:" in line]
    expect_true("sync after a change uploads just that file", len(uploads) == 1 and "sub/b.txt" in uploads[0], f"(output {out!r})")


@check
def aws_cli_rm_recursive_and_rb():
    out = aws("s3", "rm", "--recursive", "s3://suite-cli/").stdout
    expect_true("aws s3 rm --recursive deleted objects", out.count("delete:") >= 6, f"(output {out!r})")
    listing = aws("s3api", "list-objects-v2", "--bucket", "suite-cli").stdout
    expect("objects left after rm --recursive", json.loads(listing or "{}").get("Contents", []), [])
    aws("s3", "rb", "s3://suite-cli")
    expect_error("HeadBucket after aws s3 rb", lambda: s3.head_bucket(Bucket="suite-cli"), None, 404)


# --- running --------------------------------------------------------------


def run(checks):
    failed = []
    for function in checks:
        if not ONLY.search(function.__name__):
            continue
        started = time.monotonic()
        try:
            function()
            print(f"ok    {function.__name__} ({time.monotonic() - started:.1f}s)", flush=True)
        except CheckFailed as error:
            failed.append(function.__name__)
            print(f"FAIL  {function.__name__}: {error}", flush=True)
        except Exception:
            failed.append(function.__name__)
            print(f"FAIL  {function.__name__}: unexpected exception", flush=True)
            traceback.print_exc(file=sys.stdout)
    return failed


def main():
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}, phase {PHASE}, endpoint {ENDPOINT}", flush=True)
    try:
        if PHASE == "revoked":
            failed = run([revoked_key_is_refused, deleting_everything_leaves_no_files])
        else:
            ensure_bucket(BUCKET)
            failed = run(CHECKS)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    if failed:
        print(f"{len(failed)} check(s) failed: {', '.join(failed)}")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
