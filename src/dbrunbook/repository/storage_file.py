"""The filesystem backend: a repository in a local (or mounted) directory, ``file:///path``.

An object is written to a hidden temporary name in its target directory, fsynced, then hard-linked to its
final name. ``link`` fails when the name exists, which is what makes the store append-only even between
concurrent writers: unlike ``rename``, it can never replace an object. A writer killed midway leaves at
most a temporary file, which :meth:`FileStorage.list` never shows.

Directories are created 0700 and objects 0600: a repository holds database contents.

``retain_until`` is ignored: a plain filesystem has no retention to set. Immutability there is the
storage's job (WORM mounts, ``chattr +i``, snapshots) and out of this tool's reach.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ParamSpec, Self, TypeVar
from urllib.parse import unquote, urlsplit

from dbrunbook.errors import ObjectExistsError, ObjectMissingError, RepositoryError
from dbrunbook.repository.storage import (
    ObjectInfo,
    ProgressCallback,
    Storage,
    check_key,
    check_prefix,
    iter_chunks,
)

if TYPE_CHECKING:
    from dbrunbook.inventory.model import Repository
    from dbrunbook.inventory.secrets import SecretResolver

TEMP_PREFIX = ".dbrunbook-tmp-"
DIR_MODE = 0o700
FILE_MODE = 0o600

P = ParamSpec("P")
R = TypeVar("R")


class FileStorage(Storage):
    min_part_size = 1
    max_parts = None
    delete_batch = 1000

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        if not root.is_absolute():
            raise ValueError(f"repository directory {root} is not absolute")
        self.root = root
        # Tests may turn fsync off for speed; an operator's repository always syncs.
        self._fsync = fsync

    @classmethod
    def from_repository(cls, repo: Repository, resolver: SecretResolver, *, patient: bool = True) -> Self:
        parts = urlsplit(repo.url)
        if parts.netloc:
            raise ValueError(f"repository URL {repo.url} names a host; use file:///absolute/path")
        return cls(Path(unquote(parts.path)))

    def describe(self) -> str:
        return f"file://{self.root}"

    # -- writing --------------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        retain_until: datetime | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ObjectInfo:
        path = self._path(key)
        if os.path.lexists(path):
            # Checked up front so a duplicate fails before streaming gigabytes; link() below is the real guard.
            raise self._exists(key)
        tmp, fd = self._create_temp(path.parent)
        try:
            try:
                size = self._write(key, fd, source, on_progress)
                if self._fsync:
                    self._guard("sync", key, os.fsync, fd)
            finally:
                os.close(fd)
            self._link(key, tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if self._fsync:
            self._guard("sync the directory of", key, self._sync_dir, path.parent)
        info = self.head(key)
        if info is None or info.size != size:
            raise RepositoryError(f"object {key} vanished or changed size right after it was written to {self}")
        return info

    def _link(self, key: str, tmp: Path, path: Path) -> None:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise self._exists(key) from None
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise RepositoryError(
                    f"{self} does not support hard links ({exc.strerror}); "
                    "the filesystem backend needs them to store objects without ever replacing one"
                ) from exc
            raise self._failed("write", key, exc) from exc

    def _create_temp(self, directory: Path) -> tuple[Path, int]:
        # A concurrent delete may prune the (then empty) directory between mkdir and open: try again.
        for _ in range(5):
            self._make_dirs(directory)
            tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._failed("create a temporary file for", str(directory), exc) from exc
            # The umask may have taken bits away; state the mode exactly.
            os.fchmod(fd, FILE_MODE)
            return tmp, fd
        raise RepositoryError(f"directory {directory} keeps disappearing while writing to {self}")

    def _write(
        self, key: str, fd: int, source: BinaryIO | Iterable[bytes], on_progress: ProgressCallback | None
    ) -> int:
        # Errors raised by the source itself propagate unchanged: they are the caller's, not the repository's.
        size = 0
        for chunk in iter_chunks(source):
            view = memoryview(chunk)
            while view:
                view = view[self._guard("write", key, os.write, fd, view) :]
            size += len(chunk)
            if on_progress is not None:
                on_progress(size)
        return size

    def _guard(self, action: str, key: str, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise self._failed(action, key, exc) from exc

    def _make_dirs(self, directory: Path) -> None:
        # os.makedirs applies its mode only to the leaf; every level we create must be 0700.
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self._failed("create directory", str(path), exc) from exc
            os.chmod(path, DIR_MODE)

    @staticmethod
    def _sync_dir(directory: Path) -> None:
        # The new name is durable only once its directory entry is.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading --------------------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None
        except OSError as exc:
            raise self._failed("read", key, exc) from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._failed("stat", key, exc) from exc
        if not path.is_file():
            return None
        return ObjectInfo(key, st.st_size, None, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        # Start in the deepest directory the prefix names whole; the rest is matched by string.
        start = prefix.rpartition("/")[0]
        yield from self._walk(self.root / start if start else self.root, f"{start}/" if start else "", prefix)

    def _walk(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._failed("list", rel or "/", exc) from exc
        # A directory sorts as "name/": then walking depth-first yields keys in plain string order, as S3 does.
        named = sorted((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in entries)
        for name, entry in named:
            key = rel + name
            if entry.name.startswith(TEMP_PREFIX):
                continue
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key, st.st_size, None, datetime.fromtimestamp(st.st_mtime, UTC))

    # -- deleting -------------------------------------------------------------------------------------

    def delete(self, keys: Sequence[str]) -> builtins.list[str]:
        refused: builtins.list[str] = []
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except PermissionError:
                refused.append(key)
                continue
            except OSError as exc:
                raise self._failed("delete", key, exc) from exc
            self._prune(path.parent)
        return refused

    def _prune(self, directory: Path) -> None:
        # Empty directories left by pruned WAL or backups would pile up forever.
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # -- helpers --------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
            raise ValueError(f"object key {key!r} uses the reserved prefix {TEMP_PREFIX!r}")
        return self.root / key

    def _exists(self, key: str) -> ObjectExistsError:
        return ObjectExistsError(
            f"object {key} already exists in {self}; the repository is append-only",
            hint="a previous run stored it; a new backup needs a new name",
        )

    def _missing(self, key: str) -> ObjectMissingError:
        return ObjectMissingError(f"object {key} is missing from {self}")

    def _failed(self, action: str, key: str, exc: OSError) -> RepositoryError:
        return RepositoryError(f"cannot {action} {key} in {self}: {exc.strerror or exc}")

    def __str__(self) -> str:
        return self.describe()


__all__ = ["FileStorage"]
