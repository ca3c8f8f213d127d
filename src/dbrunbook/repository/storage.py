"""The backup repository's storage: one append-only interface, a filesystem and an S3 backend.

Objects are written once and never replaced: :meth:`Storage.put` refuses a key that exists, so a retried or
concurrent backup can never swap the bytes a manifest's digest describes. An object becomes visible only
when it is complete, so a killed upload leaves nothing under its final key. Writes and reads stream: memory
stays bounded by a few buffers (S3: a few multipart parts), whatever the object size.

Keys are ``/``-separated relative names under the repository's URL (``s3://bucket/prefix`` or
``file:///path``). Backends are imported lazily by :func:`open_storage`, so only S3 repositories pay for
importing boto3.
"""

from __future__ import annotations

import builtins
import importlib
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, ClassVar, cast

if TYPE_CHECKING:
    from typing import Self

    from dbrunbook.inventory.model import Repository
    from dbrunbook.inventory.secrets import SecretResolver

MiB = 1 << 20
READ_CHUNK = MiB
MAX_KEY_BYTES = 1024  # S3's limit; the filesystem backend keeps it too, so a repository can move between them

ProgressCallback = Callable[[int], None]
Source = BinaryIO | Iterable[bytes]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None
    last_modified: datetime


class Storage(ABC):
    """An append-only object store under one repository URL.

    The class attributes state the backend's limits, as Barman's cloud interface does, so callers can size
    their objects: a stream longer than ``max_parts`` parts of the backend's part size has to be split.
    """

    min_part_size: ClassVar[int]
    """Smallest multipart part the backend accepts (1 when it has no multipart uploads)."""
    max_parts: ClassVar[int | None]
    """Most parts one object may have; ``None`` when objects are not uploaded in parts."""
    delete_batch: ClassVar[int]
    """Most keys one delete request carries."""

    @classmethod
    @abstractmethod
    def from_repository(cls, repo: Repository, resolver: SecretResolver, *, patient: bool = True) -> Self:
        """``patient=False`` gives up after a few quick retries: for callers that are retried anyway
        (PostgreSQL's archiver re-runs a failed archive_command), where minutes of backoff only hide an
        outage from the server log."""

    @abstractmethod
    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        retain_until: datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        """Stream ``source`` into a new object ``key``; raise ObjectExistsError when the key exists.

        ``on_progress`` receives the running total of bytes taken from ``source``; the S3 backend calls it
        from a transfer thread.
        """

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        return self.put(key, io.BytesIO(data), retain_until=retain_until, on_progress=on_progress)

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object; raise ObjectMissingError when it does not exist."""

    def get_bytes(self, key: str) -> bytes:
        """The whole object, for small ones (manifests): large objects should be read through :meth:`open`."""
        with self.open(key) as fh:
            return fh.read()

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix, as in S3), sorted by key."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> builtins.list[str]:
        """Delete ``keys``; return those the store refused (object lock, access denied) for the caller to
        report. Keys that do not exist count as deleted."""

    @abstractmethod
    def describe(self) -> str:
        """The repository's URL, without credentials."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the repository or mean different objects on different backends."""
    _check_name(key, "key")
    if key.endswith("/"):
        raise ValueError(f"object key {key!r} ends with '/'")
    return key


def check_prefix(prefix: str) -> str:
    if prefix:
        _check_name(prefix.removesuffix("/"), "prefix")
    return prefix


def _check_name(name: str, what: str) -> None:
    if not name:
        raise ValueError(f"object {what} is empty")
    if len(name.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object {what} {name[:60]!r}... is longer than {MAX_KEY_BYTES} bytes")
    if name.startswith("/") or "\\" in name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError(f"object {what} {name!r} must be a relative '/'-separated name without control characters")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"object {what} {name!r} has an empty, '.' or '..' segment")


def iter_chunks(source: BinaryIO | Iterable[bytes], chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """The source's bytes in pieces, never more than one piece at a time in memory."""
    if isinstance(source, bytes | bytearray | memoryview):
        # bytes is an Iterable of ints: iterating it would "work" and store garbage.
        raise TypeError("put() takes a binary file or an iterable of bytes; use put_bytes() for a bytes value")
    read = getattr(source, "read", None)
    if read is not None:
        # Iterating a binary file yields lines: one unbounded line could be the whole object.
        while chunk := read(chunk_size):
            yield chunk
        return
    for chunk in source:
        if chunk:
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


class ChunkReader(io.RawIOBase):
    """A non-seekable file over an iterable of chunks, counting what it hands out.

    Holds at most one source chunk, so wrapping a generator costs one chunk of memory.
    """

    def __init__(self, source: BinaryIO | Iterable[bytes], on_progress: ProgressCallback | None = None) -> None:
        super().__init__()
        self._chunks = iter_chunks(source)
        self._pending = memoryview(b"")
        self._on_progress = on_progress
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.count += n
        if self._on_progress is not None:
            self._on_progress(self.count)
        return n


_BACKENDS = {
    "file": ("dbrunbook.repository.storage_file", "FileStorage"),
    "s3": ("dbrunbook.repository.storage_s3", "S3Storage"),
}


def open_storage(repo: Repository, resolver: SecretResolver, *, patient: bool = True) -> Storage:
    """The storage backend for ``repo.url``, importing only that backend's module."""
    scheme = repo.url.partition("://")[0]
    if scheme not in _BACKENDS:
        raise ValueError(f"no storage backend for {scheme}:// URLs")
    module_name, class_name = _BACKENDS[scheme]
    backend = cast("type[Storage]", getattr(importlib.import_module(module_name), class_name))
    return backend.from_repository(repo, resolver, patient=patient)


__all__ = [
    "ChunkReader",
    "ObjectInfo",
    "ProgressCallback",
    "Source",
    "Storage",
    "check_key",
    "check_prefix",
    "iter_chunks",
    "open_storage",
]
