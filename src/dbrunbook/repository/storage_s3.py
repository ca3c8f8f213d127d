"""The S3 backend: ``s3://bucket/prefix`` on AWS or any S3-compatible server (SeaweedFS in the sandbox).

Uploads go through boto3's managed transfer (s3transfer): a stream of unknown length becomes a multipart
upload of ``part_size`` parts, at most ``buffered_parts`` of them in memory at once (48 MiB by default), and
an object appears under its key only when CompleteMultipartUpload succeeds. A killed upload leaves invisible
parts behind; a bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims them.

Append-only is enforced twice: a HEAD before uploading fails fast, and every PutObject and
CompleteMultipartUpload carries ``If-None-Match: *`` so a concurrent writer's object is never replaced. AWS,
MinIO and SeaweedFS (checked against 4.48: HTTP 412 PreconditionFailed on both) honour it; for a server that
rejects the header, pass ``conditional_writes=False`` and only the HEAD check remains.

With ``object_lock`` in the repository, every upload carries the lock mode and a retain-until date: the one
the caller passes, else now plus the policy's ``days``. The default lives here, not in the callers, so no
object (WAL pushed by a host, a manifest, a drill result) can be written unlocked by forgetting it. Deletes
remove every version of a key, because deleting a key in a versioned bucket only adds a delete marker and
would report success while the data stays.
"""

from __future__ import annotations

import builtins
import io
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, Self
from urllib.parse import urlsplit, urlunsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from dbrunbook.errors import (
    ConfigError,
    ObjectCorruptError,
    ObjectExistsError,
    ObjectMissingError,
    RepositoryError,
    RepositoryUnreachableError,
)
from dbrunbook.redact import REDACTOR
from dbrunbook.repository.storage import (
    ChunkReader,
    MiB,
    ObjectInfo,
    ProgressCallback,
    Storage,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from dbrunbook.inventory.model import ObjectLock, Repository
    from dbrunbook.inventory.secrets import SecretResolver

DEFAULT_REGION = "us-east-1"
PART_SIZE = 16 * MiB
MAX_CONCURRENCY = 4
BUFFERED_PARTS = 3
MAX_ATTEMPTS = 10
IMPATIENT_ATTEMPTS = 3
READ_BUFFER = MiB
RESUME_ATTEMPTS = 5

_MISSING = {"NoSuchKey", "NotFound", "404"}
_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def _if_none_match(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("IfNoneMatch", "*")


class S3Storage(Storage):
    min_part_size = 5 * MiB
    max_parts = 10_000
    delete_batch = 1000

    def __init__(
        self,
        repo: Repository,
        resolver: SecretResolver,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        part_size: int = PART_SIZE,
        max_concurrency: int = MAX_CONCURRENCY,
        buffered_parts: int = BUFFERED_PARTS,
        conditional_writes: bool = True,
    ) -> None:
        if not self.min_part_size <= part_size <= 5 * 1024 * MiB or buffered_parts < 1:
            raise ValueError(f"part_size {part_size} is outside S3's 5 MiB..5 GiB, or buffered_parts < 1")
        url = urlsplit(repo.url)
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.part_size = part_size
        self._lock: ObjectLock | None = repo.object_lock
        self._client: Any = self._make_client(repo, resolver, max_attempts, max_concurrency)
        self._endpoint = _without_userinfo(str(self._client.meta.endpoint_url))
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        # s3transfer holds each part of a non-seekable stream in memory until it is uploaded, and reads the next
        # one while waiting for a slot: its default (10 slots) would hold 176 MiB. With 16 MiB parts glibc also
        # keeps up to 32 MiB of freed parts mapped (its dynamic trim threshold), so 3 parts measure 72-75 MiB of
        # peak RSS growth for a 200 MiB stream and 4 parts 75-92 MiB: 3 keeps a margin under a 100 MiB budget.
        self._transfer.max_in_memory_upload_chunks = max(1, buffered_parts - 1)  # the +1 is the part being read
        if conditional_writes:
            for operation in ("PutObject", "CompleteMultipartUpload"):
                # s3transfer refuses IfNoneMatch in ExtraArgs; an event hook sets it on the requests themselves.
                self._client.meta.events.register(f"before-parameter-build.s3.{operation}", _if_none_match)

    @classmethod
    def from_repository(cls, repo: Repository, resolver: SecretResolver, *, patient: bool = True) -> Self:
        return cls(repo, resolver) if patient else cls(repo, resolver, max_attempts=IMPATIENT_ATTEMPTS)

    @property
    def max_object_size(self) -> int:
        return self.max_parts * self.part_size

    @staticmethod
    def _make_client(repo: Repository, resolver: SecretResolver, max_attempts: int, max_concurrency: int) -> Any:
        if (repo.access_key is None) != (repo.secret_key is None):
            raise ConfigError(f"repository {repo.url} sets only one of access_key and secret_key; set both or neither")
        # Unset keys leave boto3 to its default chain (environment, profile, instance role).
        access_key = resolver.resolve(repo.access_key).reveal() if repo.access_key else None
        secret_key = resolver.resolve(repo.secret_key).reveal() if repo.secret_key else None
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=max(10, max_concurrency + 2),
            # S3-compatible servers (SeaweedFS, MinIO) rarely resolve bucket.host names; AWS does not need this.
            s3={"addressing_style": "path"} if repo.endpoint else {},
        )
        # A private session: boto3's default one is shared module state, unsafe to build clients from in threads.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=repo.endpoint,
            region_name=repo.region or DEFAULT_REGION,
            config=config,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

    def describe(self) -> str:
        url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{url} at {self._endpoint}"

    def __str__(self) -> str:
        return self.describe()

    # -- writing --------------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        retain_until: datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        full = self._full(check_key(key))
        extra = self._lock_args(key, retain_until)
        if self.head(key) is not None:
            raise self._exists(key)
        limit = self.max_object_size

        def progress(count: int) -> None:
            if count > limit:
                # Part 10001 would be refused anyway, after uploading 156 GiB; say why, early.
                raise RepositoryError(
                    f"object {key} exceeds {limit // MiB} MiB ({self.max_parts} parts of {self.part_size // MiB} MiB)",
                    hint="split the stream into several objects, or raise part_size",
                )
            if on_progress is not None:
                on_progress(count)

        reader = ChunkReader(source, progress)
        try:
            self._client.upload_fileobj(
                io.BufferedReader(reader, READ_BUFFER), self.bucket, full, ExtraArgs=extra, Config=self._transfer
            )
        except ClientError as exc:
            if _code(exc) in _EXISTS:
                raise self._exists(key) from None
            raise self._error(exc, "upload", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "upload", key) from exc
        info = self.head(key)
        if info is None:
            raise RepositoryError(f"object {key} is not in {self} right after its upload succeeded")
        if info.size != reader.count:
            raise ObjectCorruptError(f"object {key} in {self} has {info.size} bytes; {reader.count} were uploaded")
        return info

    def _lock_args(self, key: str, retain_until: datetime | None) -> dict[str, Any]:
        if retain_until is None:
            if self._lock is None:
                return {}
            retain_until = default_retain_until(self._lock.days)
        if retain_until.tzinfo is None:
            raise ValueError("retain_until must be timezone-aware")
        if self._lock is None:
            # Silently storing an unlocked object would promise protection that is not there.
            raise ConfigError(
                f"cannot retain {key} until {retain_until:%Y-%m-%d}: {self} has no object_lock configured"
            )
        return {"ObjectLockMode": self._lock.mode, "ObjectLockRetainUntilDate": retain_until}

    # -- reading --------------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        full = self._full(check_key(key))
        # botocore's standard retry mode already retries the GET itself on throttling, 5xx and resets.
        response = self._get(key, full)
        return io.BufferedReader(_Body(self, key, full, response), READ_BUFFER)

    def _get(self, key: str, full: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.get_object(Bucket=self.bucket, Key=full, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and _code(exc) in _EXISTS:
                raise ObjectCorruptError(f"object {key} in {self} changed while it was being read") from None
            raise self._error(exc, "read", key) from exc
        return response

    def head(self, key: str) -> ObjectInfo | None:
        full = self._full(check_key(key))
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, "stat", key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "stat", key) from exc
        return ObjectInfo(key, int(response["ContentLength"]), _etag(response), response["LastModified"])

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._full(check_prefix(prefix)) if prefix else self._root()
        strip = len(self._root())
        found: builtins.list[ObjectInfo] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                for obj in page.get("Contents", []):
                    key = obj["Key"][strip:]
                    # Folder markers written by other tools ("dir/") are not objects.
                    if key and not key.endswith("/"):
                        found.append(ObjectInfo(key, int(obj["Size"]), _etag(obj), obj["LastModified"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "list", prefix or "/") from exc
        # AWS lists in UTF-8 order, but SeaweedFS walks its directory tree ("a/b" before "a-c"): sort here so
        # every backend yields the same order. Memory is one small record per object under the prefix.
        found.sort(key=lambda info: info.key)
        yield from found

    # -- deleting -------------------------------------------------------------------------------------

    def delete(self, keys: Sequence[str]) -> builtins.list[str]:
        wanted = {self._full(check_key(k)): k for k in keys}
        targets = self._versions(wanted) if self._lock is not None else [{"Key": full} for full in wanted]
        refused: set[str] = set()
        for start in range(0, len(targets), self.delete_batch):
            batch = targets[start : start + self.delete_batch]
            try:
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "delete", wanted[batch[0]["Key"]]) from exc
            for err in answer.get("Errors", []):
                key = wanted.get(err.get("Key", ""), err.get("Key", "?"))
                # S3 answers AccessDenied for a version under Object Lock too; without a lock policy it
                # means the credentials may not delete, which prune must not report as "kept by a lock".
                if err.get("Code") == "ObjectLocked" or (err.get("Code") in _DENIED and self._lock is not None):
                    refused.add(key)
                else:
                    raise RepositoryError(
                        f"S3 could not delete {key} from {self}: {err.get('Code')} {err.get('Message')}"
                    )
        return [k for k in dict.fromkeys(keys) if k in refused]

    def _versions(self, wanted: dict[str, str]) -> builtins.list[dict[str, str]]:
        # One listing per parent folder, not per key: pruning WAL deletes thousands of siblings at once.
        found: dict[tuple[str, str], dict[str, str]] = {}
        paginator = self._client.get_paginator("list_object_versions")
        for parent in sorted({full.rpartition("/")[0] for full in wanted}):
            try:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{parent}/" if parent else ""):
                    for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
                        if version["Key"] in wanted:
                            ident = (version["Key"], version["VersionId"])
                            found[ident] = {"Key": version["Key"], "VersionId": version["VersionId"]}
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "list versions of", parent or "/") from exc
        return builtins.list(found.values())

    # -- helpers --------------------------------------------------------------------------------------

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _full(self, key: str) -> str:
        return self._root() + key

    def _exists(self, key: str) -> ObjectExistsError:
        return ObjectExistsError(
            f"object {key} already exists in {self}; the repository is append-only",
            hint="a previous run stored it; a new backup needs a new name",
        )

    def _error(self, exc: Exception, action: str, key: str) -> RepositoryError:
        """One line an operator can act on. botocore messages carry URLs, not credentials; redacted anyway."""
        # OSError: a reset or truncated body seen while streaming, after botocore handed the response over.
        if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
            return RepositoryUnreachableError(
                f"S3 endpoint {self._endpoint} unreachable: {REDACTOR.redact(str(exc))}",
                hint="is the S3 server running and the repository's endpoint right?",
            )
        if isinstance(exc, NoCredentialsError):
            return RepositoryError(
                f"no S3 credentials for {self}",
                hint="set the repository's access_key and secret_key, or configure the AWS default credential chain",
            )
        if isinstance(exc, ClientError):
            return self._client_error(exc, action, key)
        return RepositoryError(f"S3 {action} {key} in {self} failed: {REDACTOR.redact(str(exc))}")

    def _client_error(self, exc: ClientError, action: str, key: str) -> RepositoryError:
        code = _code(exc)
        message = REDACTOR.redact(str(exc.response.get("Error", {}).get("Message", "")))
        if code in _MISSING:
            return ObjectMissingError(f"object {key} is missing from {self}")
        if code == "NoSuchBucket":
            return RepositoryError(f"bucket {self.bucket} does not exist at {self._endpoint}")
        if code in _DENIED:
            return RepositoryError(
                f"S3 denied {action} {key} in {self}: {code} {message}".rstrip(),
                hint="check the repository's access_key/secret_key and the bucket policy",
            )
        return RepositoryError(f"S3 {action} {key} in {self} failed: {code} {message}".rstrip())


class _Truncated(OSError):
    """The body ended before its Content-Length: a dropped connection, resumable like a reset."""


class _Body(io.RawIOBase):
    """A GET response body that reads at most what it is asked for, and resumes after a dropped connection.

    botocore retries the request, not the streaming of its body: a reset halfway through a 50 GiB object
    would otherwise fail the restore. Resuming asks for the rest with a Range and If-Match on the ETag, so
    the bytes stitched together are one version's.
    """

    def __init__(self, storage: S3Storage, key: str, full: str, response: dict[str, Any]) -> None:
        super().__init__()
        self._storage = storage
        self._key = key
        self._full = full
        self._stream: Any = response["Body"]
        self._etag = str(response["ETag"])
        self._size = int(response["ContentLength"])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._pos >= self._size or not len(buffer):
            return 0
        want = min(len(buffer), READ_BUFFER, self._size - self._pos)
        for attempt in range(RESUME_ATTEMPTS + 1):
            try:
                data: bytes = self._stream.read(want)
                if not data:
                    raise _Truncated(f"the connection closed {self._size - self._pos} bytes early")
            except (BotoCoreError, OSError) as exc:
                if attempt == RESUME_ATTEMPTS:
                    raise self._storage._error(exc, "read", self._key) from exc
                time.sleep(min(0.5 * 2**attempt, 8.0))
                self._resume()
                continue
            n = len(data)
            buffer[:n] = data
            self._pos += n
            return n
        raise AssertionError("unreachable")  # pragma: no cover

    def _resume(self) -> None:
        self._stream.close()
        response = self._storage._get(self._key, self._full, Range=f"bytes={self._pos}-", IfMatch=self._etag)
        self._stream = response["Body"]

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _etag(response: dict[str, Any]) -> str | None:
    etag = response.get("ETag")
    return str(etag).strip('"') if etag else None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def default_retain_until(days: int, now: datetime | None = None) -> datetime:
    """Whole seconds: S3 stores the date at second precision, and a HEAD must read back what was sent."""
    return ((now or datetime.now(UTC)) + timedelta(days=days)).replace(microsecond=0)


__all__ = ["S3Storage", "default_retain_until"]
