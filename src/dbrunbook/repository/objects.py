"""The object pipeline: plaintext chunks -> zstd -> age -> repository, with both digests, and back.

Everything streams: memory use is a few chunks whatever the object size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import zstandard

from dbrunbook.errors import NoMatchingIdentityError, ObjectCorruptError
from dbrunbook.repository.compress import DEFAULT_LEVEL, compress_chunks, decompress_chunks
from dbrunbook.repository.crypto import decrypt_chunks, encrypt_chunks
from dbrunbook.repository.manifest import ObjectEntry
from dbrunbook.repository.storage import Storage
from dbrunbook.repository.streams import prefetch

READ_CHUNK = 1 << 20


class _Tap:
    """Counts and hashes the bytes flowing through an iterator."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.hash.update(chunk)
            self.size += len(chunk)
            yield chunk


def store(
    storage: Storage,
    name: str,
    key: str,
    chunks: Iterable[bytes],
    recipients: Sequence[str],
    *,
    level: int = DEFAULT_LEVEL,
    retain_until: Any = None,
    pipelined: bool = False,
) -> ObjectEntry:
    """``pipelined``: hash, compress and encrypt+upload in three threads (bounded queues between them) and
    zstd with two workers. For one big stream (a dump, a mariabackup stream) it roughly halves the time;
    callers that already run several objects at once gain nothing from it."""
    if pipelined:
        plain = _Tap(prefetch(chunks))
        compressed = prefetch(compress_chunks(prefetch(plain), level=level, threads=2))
        stored = _Tap(encrypt_chunks(compressed, recipients))
    else:
        plain = _Tap(chunks)
        stored = _Tap(encrypt_chunks(compress_chunks(plain, level=level), recipients))
    storage.put(key, stored, retain_until=retain_until)
    return ObjectEntry(
        name=name,
        key=key,
        size=stored.size,
        sha256=stored.hash.hexdigest(),
        plain_size=plain.size,
        plain_sha256=plain.hash.hexdigest(),
    )


def read_raw(storage: Storage, key: str) -> Iterator[bytes]:
    with storage.open(key) as fh:
        while True:
            chunk = fh.read(READ_CHUNK)
            if not chunk:
                return
            yield chunk


def load(
    storage: Storage,
    entry: ObjectEntry,
    identities: Sequence[str],
    *,
    check_plain: bool = True,
    pipelined: bool = False,
) -> Iterator[bytes]:
    """Yield the plaintext of a stored object, failing with the object's name on any mismatch.

    The digests can only be known at the end; a caller that writes the chunks somewhere must treat
    an exception as "everything written from this object is garbage".

    ``check_plain=False`` skips hashing the plaintext (a third of a restore's CPU): the stored bytes still
    match the manifest's SHA-256 and age authenticates every 64 KiB chunk, so the plaintext is exactly
    what was encrypted. ``backup.verify`` always checks both.
    """
    plain = entry.plain_sha256 if check_plain else None
    yield from load_key(
        storage, entry.key, identities, expect_sha256=entry.sha256, expect_plain=plain, pipelined=pipelined
    )


def load_key(
    storage: Storage,
    key: str,
    identities: Sequence[str],
    *,
    expect_sha256: str | None = None,
    expect_plain: str | None = None,
    pipelined: bool = False,
) -> Iterator[bytes]:
    """``pipelined``: read+hash, decrypt and decompress in separate threads (one big object read alone)."""
    stored = _Tap(prefetch(read_raw(storage, key)) if pipelined else read_raw(storage, key))
    plain = hashlib.sha256() if expect_plain is not None else None
    decrypted = decrypt_chunks(iter(stored), identities)
    try:
        for chunk in decompress_chunks(prefetch(decrypted) if pipelined else decrypted):
            if plain is not None:
                plain.update(chunk)
            yield chunk
    except NoMatchingIdentityError as exc:
        raise NoMatchingIdentityError(f"object {key}: {exc.message}") from None
    except ObjectCorruptError as exc:
        raise ObjectCorruptError(f"object {key}: {exc.message}") from None
    except zstandard.ZstdError as exc:
        raise ObjectCorruptError(f"object {key}: decompression failed ({exc})") from None
    if expect_sha256 is not None and stored.hash.hexdigest() != expect_sha256:
        raise ObjectCorruptError(f"object {key}: stored bytes do not match the manifest's SHA-256")
    if plain is not None and plain.hexdigest() != expect_plain:
        raise ObjectCorruptError(f"object {key}: content does not match the manifest's SHA-256")


def load_bytes(storage: Storage, key: str, identities: Sequence[str]) -> bytes:
    return b"".join(load_key(storage, key, identities))
