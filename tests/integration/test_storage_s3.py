"""The S3 storage backend against the sandbox's real SeaweedFS. Every run writes under its own prefix."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError

from dbrunbook.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectMissingError,
    RepositoryError,
    RepositoryUnreachableError,
)
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.inventory.model import ObjectLock, Repository
from dbrunbook.redact import REDACTOR
from dbrunbook.repository.storage import open_storage
from dbrunbook.repository.storage_s3 import S3Storage

MiB = 1 << 20
BUCKET = "dbrunbook-backups"
LOCK_BUCKET = "dbrunbook-locked"


class Boom(RuntimeError):
    pass


def stream(mib: int, *, tail: int = 0, fail_at: int | None = None) -> Iterator[bytes]:
    """``mib`` distinct 1 MiB chunks (and ``tail`` more bytes), generated on the fly."""
    block = hashlib.sha256(b"seed").digest() * (MiB // 32)
    for i in range(mib):
        if i == fail_at:
            raise Boom("the writer died")
        yield i.to_bytes(8, "big") + block[8:]
    if tail:
        yield b"t" * tail


def digest(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def sandbox_repo(dev: LoadedInventory, **update: Any) -> Repository:
    repo = dev.inventory.clusters["pg-main"].repository
    assert repo is not None and repo.endpoint
    return repo.model_copy(update={"url": f"s3://{BUCKET}/test-storage-{uuid.uuid4().hex[:12]}", **update})


def wipe(store: S3Storage, *, bypass: bool = False) -> None:
    client = store._client
    versions = client.list_object_versions(Bucket=store.bucket, Prefix=store.prefix + "/")
    objects = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
    ]
    if objects:
        client.delete_objects(
            Bucket=store.bucket, Delete={"Objects": objects, "Quiet": True}, BypassGovernanceRetention=bypass
        )


@pytest.fixture(scope="module")
def s3(dev: LoadedInventory) -> Iterator[S3Storage]:
    store = S3Storage(sandbox_repo(dev), SecretResolver(dev.base_dir))
    yield store
    wipe(store)


def test_open_storage_gives_the_s3_backend_and_describes_it_without_secrets(dev: LoadedInventory) -> None:
    repo = sandbox_repo(dev)
    store = open_storage(repo, SecretResolver(dev.base_dir))
    assert isinstance(store, S3Storage)
    assert store.describe() == f"{repo.url} at {repo.endpoint}"
    assert not REDACTOR.contains_secret(store.describe())
    assert (store.min_part_size, store.max_parts, store.delete_batch) == (5 * MiB, 10_000, 1000)


def test_streaming_multipart_put_reads_back_identical(s3: S3Storage) -> None:
    progress: list[int] = []
    size = 40 * MiB + 12345
    info = s3.put("base/b1/data.tar.zst.age", stream(40, tail=12345), on_progress=progress.append)
    assert info.size == size
    assert info.etag is not None and info.etag.endswith("-3"), "40 MiB in 16 MiB parts is a 3-part upload"
    assert progress[-1] == size
    with s3.open("base/b1/data.tar.zst.age") as fh:
        assert digest(iter(lambda: fh.read(MiB), b"")) == digest(stream(40, tail=12345))
    head = s3.head("base/b1/data.tar.zst.age")
    assert head is not None and (head.size, head.etag) == (size, info.etag)


def test_put_of_an_existing_key_is_refused_and_the_original_kept(s3: S3Storage) -> None:
    s3.put_bytes("dup/manifest.json", b'{"v": 1}')
    with pytest.raises(ObjectExistsError, match=r"dup/manifest\.json already exists"):
        s3.put_bytes("dup/manifest.json", b'{"v": 2}')
    with pytest.raises(ObjectExistsError):
        s3.put("dup/manifest.json", stream(20))
    assert s3.get_bytes("dup/manifest.json") == b'{"v": 1}'


@pytest.mark.parametrize("mib", [0, 20], ids=["single-put", "multipart"])
def test_the_server_refuses_overwrites_even_when_the_head_check_is_raced(
    s3: S3Storage, mib: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SeaweedFS honours If-None-Match: * on PutObject and CompleteMultipartUpload (HTTP 412): a writer
    # that passed the HEAD check before another one finished still cannot replace its object.
    key = f"race/{mib}"
    s3.put_bytes(key, b"first")
    monkeypatch.setattr(s3, "head", lambda key: None)
    with pytest.raises(ObjectExistsError):
        s3.put(key, stream(mib, tail=7))
    monkeypatch.undo()
    assert s3.get_bytes(key) == b"first"
    uploads = s3._client.list_multipart_uploads(Bucket=s3.bucket, Prefix=f"{s3.prefix}/{key}")
    assert not uploads.get("Uploads"), "the refused multipart upload must have been aborted"


def test_a_writer_that_fails_midway_leaves_nothing(s3: S3Storage) -> None:
    with pytest.raises(Boom):
        s3.put("wal/000000010000000000000007", stream(50, fail_at=40))
    assert s3.head("wal/000000010000000000000007") is None
    assert list(s3.list("wal/")) == []
    uploads = s3._client.list_multipart_uploads(Bucket=s3.bucket, Prefix=f"{s3.prefix}/wal/")
    assert not uploads.get("Uploads")


KILLED_WRITER = """
import os, time
from pathlib import Path
from dbrunbook.repository.storage_s3 import S3Storage
from dbrunbook.inventory import SecretResolver
from dbrunbook.inventory.model import Repository
store = S3Storage(Repository.model_validate_json(os.environ["REPO"]), SecretResolver(Path(os.environ["BASE_DIR"])))
block = b"k" * (1 << 20)
def forever():
    for i in range(4096):
        yield block
        if i == 80:
            print("uploading", flush=True)
        if i > 80:
            time.sleep(0.05)
store.put(os.environ["KEY"], forever())
"""


def test_a_killed_upload_leaves_nothing_under_the_key(dev: LoadedInventory, s3: S3Storage) -> None:
    key = "killed/base.tar"
    env = {
        **os.environ,
        "REPO": s3_repo_json(dev, s3),
        "BASE_DIR": str(dev.base_dir),
        "KEY": key,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "uploading", child.stderr.read() if child.stderr else ""
        # Several 16 MiB parts are on the server by now; the object must still not exist.
        time.sleep(1)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    full = f"{s3.prefix}/{key}"
    assert s3.head(key) is None
    assert list(s3.list("killed/")) == []
    uploads = s3._client.list_multipart_uploads(Bucket=s3.bucket, Prefix=full).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [full], "the orphaned upload is left for a lifecycle rule"
    for upload in uploads:
        s3._client.abort_multipart_upload(Bucket=s3.bucket, Key=full, UploadId=upload["UploadId"])


def s3_repo_json(dev: LoadedInventory, store: S3Storage) -> str:
    repo = dev.inventory.clusters["pg-main"].repository
    assert repo is not None
    return repo.model_copy(update={"url": f"s3://{store.bucket}/{store.prefix}"}).model_dump_json()


def test_list_head_and_delete(dev: LoadedInventory, s3: S3Storage) -> None:
    names = ["ls/b", "ls/a/b", "ls/a-c", "ls/a0", "ls/a/a/z", "ls/A", "ls/a.b/c"]
    for name in names:
        s3.put_bytes(name, name.encode())
    s3.put_bytes("empty", b"")
    assert s3.get_bytes("empty") == b""
    assert s3.delete(["empty"]) == []
    listed = list(s3.list("ls/"))
    # SeaweedFS itself lists in directory-walk order ("a/b" before "a-c"); the backend sorts like AWS.
    assert [o.key for o in listed] == sorted(names)
    assert all(o.size == len(o.key) and o.etag for o in listed)
    assert [o.key for o in s3.list("ls/a/")] == ["ls/a/a/z", "ls/a/b"]
    head = s3.head("ls/a0")
    assert head is not None and head.size == 5 and head.last_modified.tzinfo is not None
    assert s3.exists("ls/a0") and not s3.exists("ls/zz")

    class SmallBatches(S3Storage):
        delete_batch = 2

    small = SmallBatches(Repository.model_validate_json(s3_repo_json(dev, s3)), SecretResolver(dev.base_dir))
    assert small.delete([*names[:5], "ls/never-existed"]) == []
    assert [o.key for o in s3.list("ls/")] == sorted(names[5:])
    assert s3.delete(names) == []
    assert list(s3.list("ls/")) == []


def test_a_stream_longer_than_max_parts_allows_is_refused_early(dev: LoadedInventory, s3: S3Storage) -> None:
    class TwoParts(S3Storage):
        max_parts = 2

    small = TwoParts(
        Repository.model_validate_json(s3_repo_json(dev, s3)), SecretResolver(dev.base_dir), part_size=5 * MiB
    )
    with pytest.raises(RepositoryError, match="exceeds 10 MiB"):
        small.put("toolong", stream(11))
    assert s3.head("toolong") is None
    small.put("fits", stream(10))
    assert s3.get_bytes("fits") == b"".join(stream(10))


def test_missing_keys(s3: S3Storage) -> None:
    with pytest.raises(ObjectMissingError, match=r"base/nope/data\.tar is missing"):
        s3.open("base/nope/data.tar")
    with pytest.raises(ObjectMissingError, match="manifest-nope"):
        s3.get_bytes("manifest-nope")
    assert s3.head("nope") is None


def test_a_dropped_connection_mid_read_resumes_where_it_stopped(s3: S3Storage) -> None:
    s3.put("resume/obj", stream(20))
    fh = s3.open("resume/obj")
    h = hashlib.sha256(fh.read(3 * MiB + 17))
    buffered: Any = fh  # open() returns a BufferedReader over the backend's resumable body
    body = buffered.raw

    class Flaky:
        def __init__(self, real: Any) -> None:
            self.real = real

        def read(self, n: int) -> bytes:
            raise ResponseStreamingError(error="connection reset by peer")

        def close(self) -> None:
            self.real.close()

    body._stream = Flaky(body._stream)
    for chunk in iter(lambda: fh.read(MiB), b""):
        h.update(chunk)
    fh.close()
    assert h.hexdigest() == digest(stream(20))


def test_a_stopped_endpoint_is_unreachable_quickly(dev: LoadedInventory) -> None:
    repo = sandbox_repo(dev, endpoint="http://127.0.0.1:1")
    store = S3Storage(repo, SecretResolver(dev.base_dir), max_attempts=1)
    for action in (
        lambda: store.head("x"),
        lambda: store.put_bytes("x", b"data"),
        lambda: store.open("x"),
        lambda: list(store.list()),
        lambda: store.delete(["x"]),
    ):
        started = time.monotonic()
        with pytest.raises(
            RepositoryUnreachableError, match=r"^S3 endpoint http://127\.0\.0\.1:1 unreachable: "
        ) as err:
            action()
        assert time.monotonic() - started < 5
        assert not REDACTOR.contains_secret(err.value.one_line())


def test_wrong_credentials_are_a_repository_error_without_the_secret(
    dev: LoadedInventory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STORAGE_TEST_AK", "not-a-real-access-key")
    monkeypatch.setenv("STORAGE_TEST_SK", "not-a-real-secret-key-0123456789")
    repo = sandbox_repo(dev, access_key="env:STORAGE_TEST_AK", secret_key="env:STORAGE_TEST_SK")
    store = S3Storage(repo, SecretResolver(tmp_path), max_attempts=1)
    with pytest.raises(RepositoryError) as err:
        store.put_bytes("x", b"data")
    assert not isinstance(err.value, RepositoryUnreachableError)
    text = err.value.one_line()
    assert "not-a-real-secret-key" not in text and "not-a-real-access-key" not in text
    assert "access_key/secret_key" in text


MEMORY_PROBE = """
import json, os, threading, time
from pathlib import Path
from dbrunbook.repository.storage_s3 import S3Storage
from dbrunbook.inventory import SecretResolver
from dbrunbook.inventory.model import Repository

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

store = S3Storage(Repository.model_validate_json(os.environ["REPO"]), SecretResolver(Path(os.environ["BASE_DIR"])))
store.put_bytes("mem/warm-up", b"x" * 1000)  # imports, connection pool and threads exist before measuring
block = os.urandom(1 << 20)
def source():
    for i in range(200):
        yield i.to_bytes(8, "big") + block[8:]
peak = 0
done = threading.Event()
def sample():
    global peak
    while not done.is_set():
        peak = max(peak, rss())
        time.sleep(0.002)
sampler = threading.Thread(target=sample)
base = rss()
sampler.start()
started = time.monotonic()
info = store.put("mem/200mib", source())
seconds = time.monotonic() - started
done.set()
sampler.join()
print(json.dumps({"size": info.size, "seconds": seconds, "rss_growth": peak - base}))
"""


def test_memory_stays_bounded_while_uploading_200_mib(dev: LoadedInventory, s3: S3Storage) -> None:
    # A fresh process, so memory freed by earlier tests cannot hide growth.
    env = {**os.environ, "REPO": s3_repo_json(dev, s3), "BASE_DIR": str(dev.base_dir)}
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)
    # Sampled current RSS, not ru_maxrss: the import-time peak would hide the upload's growth.
    print(
        f"\n200 MiB upload: {200 / figures['seconds']:.0f} MiB/s, peak RSS growth {figures['rss_growth'] / MiB:.1f} MiB"
    )
    assert figures["size"] == 200 * MiB
    assert figures["rss_growth"] < 100 * MiB


def locked_repo(dev: LoadedInventory, lock: ObjectLock | None) -> Repository:
    repo = sandbox_repo(dev, object_lock=lock)
    return repo.model_copy(update={"url": repo.url.replace(f"s3://{BUCKET}/", f"s3://{LOCK_BUCKET}/")})


@pytest.fixture(scope="module")
def locked(dev: LoadedInventory) -> Iterator[S3Storage]:
    store = S3Storage(locked_repo(dev, ObjectLock(mode="GOVERNANCE", days=1)), SecretResolver(dev.base_dir))
    try:
        store._client.create_bucket(Bucket=LOCK_BUCKET, ObjectLockEnabledForBucket=True)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    conf = store._client.get_object_lock_configuration(Bucket=LOCK_BUCKET)
    assert conf["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    yield store
    # GOVERNANCE retention lets an admin bypass it, so the test leaves nothing behind.
    wipe(store, bypass=True)


@pytest.mark.parametrize("mib", [0, 20], ids=["single-put", "multipart"])
def test_object_lock_retention_is_set_and_deletes_are_refused(locked: S3Storage, mib: int) -> None:
    key = f"locked/{mib}"
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    locked.put(key, stream(mib, tail=3), retain_until=until)
    full = f"{locked.prefix}/{key}"
    head = locked._client.head_object(Bucket=locked.bucket, Key=full)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    retention = locked._client.get_object_retention(Bucket=locked.bucket, Key=full)["Retention"]
    assert (retention["Mode"], retention["RetainUntilDate"]) == ("GOVERNANCE", until)
    assert locked.delete([key]) == [key]
    # Refused means refused: not hidden behind a delete marker either.
    assert locked.get_bytes(key)[-3:] == b"ttt"


def test_objects_without_a_date_get_the_policy_default_and_free_ones_delete_with_all_versions(
    locked: S3Storage, dev: LoadedInventory
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    locked.put_bytes("default/obj", b"policy retention")
    head = locked._client.head_object(Bucket=locked.bucket, Key=f"{locked.prefix}/default/obj")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert before + timedelta(days=1) <= head["ObjectLockRetainUntilDate"] <= datetime.now(UTC) + timedelta(days=1)
    assert locked.delete(["default/obj"]) == ["default/obj"]
    # An object written unlocked (by a repository without object_lock) is deleted with all its versions.
    free = S3Storage(
        locked_repo(dev, None).model_copy(update={"url": f"s3://{LOCK_BUCKET}/{locked.prefix}"}),
        SecretResolver(dev.base_dir),
    )
    free.put_bytes("free/obj", b"no retention")
    assert locked.delete(["free/obj"]) == []
    assert locked.head("free/obj") is None
    versions = locked._client.list_object_versions(Bucket=locked.bucket, Prefix=f"{locked.prefix}/free/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


def test_retention_without_object_lock_configured_is_refused(s3: S3Storage) -> None:
    with pytest.raises(ConfigError, match="no object_lock"):
        s3.put_bytes("nolock", b"x", retain_until=datetime.now(UTC) + timedelta(days=1))
    assert s3.head("nolock") is None
