"""The filesystem storage backend, on a real directory: append-only, atomic, private, streaming."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.errors import ObjectExistsError, ObjectMissingError, RepositoryError
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.storage import ChunkReader, ObjectInfo, Storage, open_storage
from dbrunbook.repository.storage_file import TEMP_PREFIX, FileStorage

MiB = 1 << 20


class Boom(RuntimeError):
    pass


def chunks(count: int, size: int = MiB, *, fail_at: int | None = None) -> Iterator[bytes]:
    for i in range(count):
        if i == fail_at:
            raise Boom("the writer died")
        yield bytes([i % 251]) * size


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def storage(root: Path) -> FileStorage:
    return FileStorage(root, fsync=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_open_storage_picks_the_file_backend_without_importing_boto3(tmp_path: Path) -> None:
    already = "boto3" in sys.modules
    store = open_storage(Repository(url=f"file://{tmp_path}/r"), SecretResolver(tmp_path))
    assert isinstance(store, FileStorage)
    assert store.root == tmp_path / "r"
    assert store.describe() == f"file://{tmp_path}/r"
    if not already:
        assert "boto3" not in sys.modules


def test_put_streams_a_generator_and_reads_it_back(storage: FileStorage) -> None:
    seen: list[int] = []
    info = storage.put("base/2024/data.tar", chunks(5), on_progress=seen.append)
    expected = b"".join(chunks(5))
    assert info.key == "base/2024/data.tar"
    assert info.size == len(expected)
    assert info.etag is None
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(minutes=1)
    assert seen[-1] == len(expected)
    assert seen == sorted(seen)
    with storage.open("base/2024/data.tar") as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(expected).digest()


def test_put_accepts_a_binary_file_and_bytes(storage: FileStorage) -> None:
    storage.put("a", io.BytesIO(b"from a file"))
    storage.put_bytes("b", b"from bytes")
    storage.put_bytes("empty", b"")
    assert storage.get_bytes("a") == b"from a file"
    assert storage.get_bytes("b") == b"from bytes"
    assert storage.get_bytes("empty") == b""
    with pytest.raises(TypeError, match="put_bytes"):
        storage.put("c", b"raw bytes")  # type: ignore[arg-type]


def test_put_refuses_an_existing_key_and_keeps_the_original(storage: FileStorage) -> None:
    storage.put_bytes("manifest.json", b"original")
    with pytest.raises(ObjectExistsError, match=r"manifest\.json already exists"):
        storage.put_bytes("manifest.json", b"replacement")
    assert storage.get_bytes("manifest.json") == b"original"
    assert [o.key for o in storage.list()] == ["manifest.json"]


def test_a_concurrent_writer_loses_at_link_time(storage: FileStorage, root: Path) -> None:
    # Both writers pass the up-front check; the link() at the end lets exactly one of them win.
    storage.put_bytes("race/marker", b"x")
    started = threading.Event()
    release = threading.Event()

    def slow() -> Iterator[bytes]:
        started.set()
        release.wait(10)
        yield b"second"

    errors: list[BaseException] = []

    def second() -> None:
        try:
            storage.put("race/obj", slow())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    assert started.wait(10)
    storage.put_bytes("race/obj", b"first")
    release.set()
    thread.join(10)
    assert len(errors) == 1
    assert isinstance(errors[0], ObjectExistsError)
    assert storage.get_bytes("race/obj") == b"first"
    assert not [p for p in (root / "race").iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_a_writer_that_dies_midway_leaves_nothing(storage: FileStorage, root: Path) -> None:
    with pytest.raises(Boom):
        storage.put("wal/000000010000000000000001", chunks(8, fail_at=3))
    assert storage.head("wal/000000010000000000000001") is None
    assert list(storage.list()) == []
    assert [p.name for p in (root / "wal").iterdir()] == []
    # The key is still free for a retry.
    storage.put("wal/000000010000000000000001", chunks(2))
    assert storage.exists("wal/000000010000000000000001")


def test_temp_files_are_never_listed_while_a_write_is_in_progress(storage: FileStorage, root: Path) -> None:
    storage.put_bytes("dir/done", b"done")
    seen_during: list[list[str]] = []

    def watching() -> Iterator[bytes]:
        yield b"first part"
        temps = [p.name for p in (root / "dir").iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(temps) == 1, "the partial object should be on disk under a temporary name"
        seen_during.append([o.key for o in storage.list()])
        assert storage.head("dir/partial") is None
        yield b"second part"

    storage.put("dir/partial", watching())
    assert seen_during == [["dir/done"]]
    assert [o.key for o in storage.list()] == ["dir/done", "dir/partial"]


def test_objects_are_0600_and_directories_0700(storage: FileStorage, root: Path) -> None:
    old = os.umask(0o022)
    try:
        storage.put_bytes("deep/er/obj", b"secret rows")
    finally:
        os.umask(old)
    assert mode(root / "deep" / "er" / "obj") == 0o600
    for directory in (root, root / "deep", root / "deep" / "er"):
        assert mode(directory) == 0o700, directory


def test_missing_key_names_the_key(storage: FileStorage) -> None:
    with pytest.raises(ObjectMissingError, match=r"base/none/data\.tar"):
        storage.open("base/none/data.tar")
    with pytest.raises(ObjectMissingError, match="nothing"):
        storage.get_bytes("nothing")
    assert storage.head("nothing") is None
    assert not storage.exists("nothing")


def test_list_is_sorted_by_key_like_s3(storage: FileStorage) -> None:
    # "a/b" vs "a-c": '-' sorts before '/', so a plain directory walk would get this wrong.
    names = ["b", "a/b", "a-c", "a0", "a/a/z", "A", "a.b/c", "a~"]
    for name in names:
        storage.put_bytes(name, name.encode())
    assert [o.key for o in storage.list()] == sorted(names)
    assert [o.key for o in storage.list("a")] == sorted(n for n in names if n.startswith("a"))
    assert [o.key for o in storage.list("a/")] == ["a/a/z", "a/b"]
    assert [o.key for o in storage.list("a.b/")] == ["a.b/c"]
    assert [o.key for o in storage.list("a/a/z")] == ["a/a/z"]
    assert list(storage.list("zzz/")) == []
    info = next(iter(storage.list("a/b")))
    assert info == ObjectInfo("a/b", 3, None, info.last_modified)


def test_list_on_a_repository_that_does_not_exist_yet_is_empty(tmp_path: Path) -> None:
    assert list(FileStorage(tmp_path / "never").list()) == []


def test_head_reports_size(storage: FileStorage) -> None:
    storage.put_bytes("x/y", b"12345")
    info = storage.head("x/y")
    assert info is not None
    assert (info.key, info.size) == ("x/y", 5)
    assert storage.head("x") is None  # a directory is not an object


def test_delete_removes_objects_and_empty_directories(storage: FileStorage, root: Path) -> None:
    for key in ("wal/1", "wal/2", "base/b1/data", "keep"):
        storage.put_bytes(key, b"x")
    assert storage.delete(["wal/1", "wal/2", "base/b1/data", "never-existed"]) == []
    assert [o.key for o in storage.list()] == ["keep"]
    assert sorted(p.name for p in root.iterdir()) == ["keep"]
    assert root.is_dir()


def test_delete_reports_refused_keys_instead_of_failing(
    storage: FileStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put_bytes("locked/a", b"x")
    storage.put_bytes("free/b", b"x")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        # Root ignores directory permissions, so the refusal a 0500 directory gives is simulated.
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert storage.delete(["locked/a", "free/b"]) == ["locked/a"]
    assert [o.key for o in storage.list()] == ["locked/a"]


def test_retain_until_is_ignored(storage: FileStorage) -> None:
    info = storage.put_bytes("r", b"x", retain_until=datetime.now(UTC) + timedelta(days=30))
    assert info.size == 1
    assert storage.delete(["r"]) == []


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "a/../b", "..", "./a", "a/", "a\\b", "nul\0", f"d/{TEMP_PREFIX}x", "x" * 1025]
)
def test_bad_keys_are_refused(storage: FileStorage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put_bytes(key, b"x")


def test_bad_prefixes_are_refused(storage: FileStorage) -> None:
    with pytest.raises(ValueError):
        list(storage.list("../etc"))


def test_a_file_in_the_way_is_a_repository_error(storage: FileStorage) -> None:
    storage.put_bytes("plain", b"x")
    with pytest.raises(RepositoryError):
        storage.put_bytes("plain/child", b"y")


def test_memory_stays_bounded_while_streaming(storage: FileStorage) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        storage.put("big", chunks(64))  # 64 MiB, one MiB at a time
        _, peak = tracemalloc.get_traced_memory()
        with storage.open("big") as fh:
            while fh.read(MiB):
                pass
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB
    assert peak_read < 8 * MiB


def test_chunk_reader_hands_out_what_it_was_given() -> None:
    reader = ChunkReader(iter([b"ab", b"", b"cdef"]))
    buffered = io.BufferedReader(reader, 3)
    assert buffered.read(5) == b"abcde"
    assert buffered.read() == b"f"
    assert reader.count == 6


def test_file_storage_is_a_storage(storage: FileStorage) -> None:
    assert isinstance(storage, Storage)
    assert storage.max_parts is None
    assert storage.delete_batch >= 1
