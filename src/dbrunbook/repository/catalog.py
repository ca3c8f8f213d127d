"""The catalog is derived from the repository: a backup exists exactly when its manifest does, and counts
only when that manifest is authentic (:func:`authenticity`): signed by a trusted key, stored in its own
folder, listing only objects of that folder, and not from the future. Any other manifest is *refused*: left
out of every decision (restore, retention, incrementals) and reported with its key.

Every listing asks the repository which manifests exist; only their decrypted contents are cached locally
(:class:`ManifestCache`), keyed by the object's key, size, ETag and modification time. Manifests are never
rewritten, so an entry stays true for as long as the object it was read from; a manifest that changed in
place (which the repository rules forbid) misses the cache and is read, and checked, again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dbrunbook.errors import (
    BackupError,
    DbrunbookError,
    EncryptionError,
    NoMatchingIdentityError,
    ObjectCorruptError,
    ObjectExistsError,
)
from dbrunbook.repository.manifest import SUFFIX, Manifest, backup_prefix, manifest_key, new_backup_id, object_key
from dbrunbook.repository.objects import load_key, store
from dbrunbook.repository.signing import Trust
from dbrunbook.repository.signing import split as split_signed
from dbrunbook.repository.storage import ObjectInfo, Storage

MANIFEST_SIG = f"manifest.sig{SUFFIX}"  # backup.sign's signature of a manifest written before signing
FUTURE_SKEW = timedelta(minutes=10)  # clocks differ; a manifest further ahead than this was not written now
# Plaintext; the largest real ones (thousands of objects, row counts) are a few MiB.
MAX_MANIFEST = 64 << 20


@dataclass(frozen=True)
class Refused:
    """A manifest the catalog does not trust, and why (one line, for the operator)."""

    key: str
    reason: str
    manifest: Manifest | None = None  # parsed, when it could be
    unsigned_only: bool = False  # authentic in every other way: an older dbrunbook's, for backup.sign
    no_identity: bool = False  # no identity of the keyring opens it: a keyring problem more than a forgery

    @property
    def folder(self) -> str:
        return self.key.split("/")[1]

    def line(self) -> str:
        return f"manifest {self.key} refused: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "folder": self.folder, "reason": self.reason}

    def error(self, message: str) -> DbrunbookError:
        """The error a task stops with because of this refusal: a keyring problem (76) or not trusted (80)."""
        return NoMatchingIdentityError(message) if self.no_identity else BackupError(message)


@dataclass(frozen=True)
class Catalog:
    manifests: list[Manifest]  # oldest first
    refused: list[Refused] = field(default_factory=list)

    def find(self, backup_id: str | None) -> Manifest:
        if backup_id in (None, "latest") and self.manifests:
            return self.manifests[-1]
        for m in self.manifests:
            if m.backup_id == backup_id:
                return m
        for r in self.refused:
            if r.folder == backup_id:
                raise r.error(f"backup {backup_id} is not trusted: {r.line()}")
        if not self.manifests:
            if self.refused:
                raise self.refused[0].error(
                    f"the repository holds no trusted backup of this cluster; {len(self.refused)} manifests "
                    f"refused, first: {self.refused[0].line()}"
                )
            raise BackupError("the repository holds no complete backup of this cluster")
        known = ", ".join(m.backup_id for m in self.manifests[-5:])
        raise BackupError(f"no backup '{backup_id}' in the repository (newest: {known})")

    def chain(self, manifest: Manifest) -> list[Manifest]:
        """The backups a restore of ``manifest`` needs, its full backup first."""
        by_id = {m.backup_id: m for m in self.manifests}
        chain = [manifest]
        while chain[0].parent is not None:
            parent = by_id.get(chain[0].parent)
            if parent is None:
                raise BackupError(
                    f"backup {manifest.backup_id} needs {chain[0].parent}, which is not in the repository: "
                    "its chain is broken"
                )
            if len(chain) > len(self.manifests):
                raise BackupError(f"backup {manifest.backup_id} has a cycle in its parents")
            chain.insert(0, parent)
        return chain


START_MARK = "started.json"


def claim_backup_id(
    storage: Storage,
    kind: str,
    recipients: Sequence[str],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """A new backup id that no other run uses: its folder's first object (who started it, when) is written
    with the repository's create-only put, so two backups of one kind started in the same second (two cron
    jobs, two controllers) get different ids instead of failing half-way on each other's objects."""
    import json
    import os
    import socket

    from dbrunbook import __version__

    for _ in range(10):
        backup_id = new_backup_id(kind, now())
        mark = {
            "backup_id": backup_id,
            "kind": kind,
            "started": now().isoformat(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "tool_version": __version__,
        }
        try:
            store(storage, START_MARK, object_key(backup_id, START_MARK), [json.dumps(mark).encode()], recipients)
        except ObjectExistsError:
            sleep(1.0)
            continue
        return backup_id
    raise BackupError(f"could not claim a new {kind} backup id in {storage.describe()}: every try was taken")


class ManifestCache:
    """Decrypted manifests on the controller's disk (0600 files in a 0700 folder), so listing a repository
    of a thousand backups costs one LIST, not a thousand GETs and decryptions.

    ``DBRUNBOOK_CACHE_DIR`` moves it; set to ``off`` it disables it. Manifests hold no secrets (digests,
    LSNs, database names, public recipients), but they are encrypted in the repository, so the cache is
    private to the user who decrypted them.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls) -> ManifestCache | None:
        configured = os.environ.get("DBRUNBOOK_CACHE_DIR")
        if configured in ("off", "0", "none"):
            return None
        base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(base / "dbrunbook" / "manifests" if not configured else base / "manifests")

    def _path(self, storage: Storage, info: ObjectInfo) -> Path:
        ident = "\0".join(
            [storage.describe(), info.key, str(info.size), info.etag or "", info.last_modified.isoformat()]
        )
        return self.root / f"{hashlib.sha256(ident.encode()).hexdigest()}.json"

    def get(self, storage: Storage, info: ObjectInfo) -> bytes | None:
        try:
            return self._path(storage, info).read_bytes()
        except OSError:
            return None

    def put(self, storage: Storage, info: ObjectInfo, plaintext: bytes) -> None:
        path = self._path(storage, info)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(plaintext)
            tmp.replace(path)
        except OSError:
            pass  # a cache that cannot be written only costs the next listing some GETs


def authenticity(manifest: Manifest, key: str, now: datetime, cluster: str) -> str | None:
    """Why a (signed) manifest still cannot be a backup, or None. Pure: these are what a forger who can write
    to the repository would get wrong on purpose, and what prune must never act on."""
    folder = key.split("/")[1]
    if manifest.backup_id != folder:
        return f"it claims backup id {manifest.backup_id} but is stored under backups/{folder}/"
    prefix = backup_prefix(folder)
    outside = next((o.key for o in manifest.objects if not o.key.startswith(prefix) or ".." in o.key.split("/")), None)
    if outside is not None:
        return f"it lists object {outside}, outside its folder {prefix}"
    if manifest.stop_time > now + FUTURE_SKEW:
        return f"its stop_time {manifest.stop_time.isoformat()} is in the future (check this host's clock)"
    if manifest.parent == manifest.backup_id:
        return "it names itself as its parent"
    if manifest.cluster != cluster:
        return f"it belongs to cluster {manifest.cluster}, not {cluster} (do two clusters share one repository prefix?)"
    return None


def _plaintext(
    storage: Storage,
    info: ObjectInfo,
    identities: Sequence[str],
    cache: ManifestCache | None,
    valid: Callable[[bytes], bool] = lambda _b: True,
) -> bytes:
    cached = cache.get(storage, info) if cache else None
    if cached is not None and valid(cached):
        return cached  # a damaged cache file is read again from the repository, never trusted
    if info.size > MAX_MANIFEST:
        raise ObjectCorruptError(f"object {info.key} is {info.size} bytes, too big for a manifest")
    plaintext = b""
    for chunk in load_key(storage, info.key, identities):
        plaintext += chunk
        if len(plaintext) > MAX_MANIFEST:  # a small object that decompresses without end is not a manifest
            raise ObjectCorruptError(f"object {info.key} decompresses to more than a manifest can hold")
    if cache:
        cache.put(storage, info, plaintext)
    return plaintext


def _parses(plaintext: bytes) -> bool:
    try:
        Manifest.from_json(split_signed(plaintext)[0], "cache")
    except ObjectCorruptError:
        return False
    return True


def load_catalog(
    storage: Storage,
    identities: Sequence[str],
    cluster: str,
    system_id: str | None = None,
    *,
    trust: Trust,
    cache: ManifestCache | None = None,
    now: datetime | None = None,
) -> Catalog:
    now = now or datetime.now(UTC)
    listing = list(storage.list("backups/"))
    detached = {o.key: o for o in listing if o.key.endswith("/" + MANIFEST_SIG)}
    manifests: list[Manifest] = []
    refused: list[Refused] = []
    # Only backups/<id>/manifest.json...: a file of that name deeper in a folder is just an object.
    candidates = [o for o in listing if o.key == manifest_key(o.key.split("/")[1])]
    for info in sorted(candidates, key=lambda o: o.key):
        try:
            body, line = split_signed(_plaintext(storage, info, identities, cache, _parses))
            sig_key = backup_prefix(info.key.split("/")[1]) + MANIFEST_SIG
            if line is None and sig_key in detached:
                line = _plaintext(storage, detached[sig_key], identities, cache)
            m = Manifest.from_json(body, info.key)
        except (ObjectCorruptError, EncryptionError) as exc:
            # Damaged, not a manifest, or encrypted to no key of ours: never a backup, never a reason to stop.
            refused.append(Refused(info.key, exc.message, no_identity=isinstance(exc, NoMatchingIdentityError)))
            continue
        unsigned = trust.check(info.key, body, line)
        other = authenticity(m, info.key, now, cluster)
        if unsigned or other:
            reason = "; ".join(r for r in (unsigned, other) if r)
            # Only a manifest with no signature at all can be an older dbrunbook's: a bad or foreign one is not.
            legacy = line is None and not other
            if legacy:
                reason += " (written before signing? check it, then run backup.sign)"
            refused.append(Refused(info.key, reason, m, unsigned_only=legacy))
            continue
        if system_id and m.system_identifier and m.system_identifier != system_id:
            raise BackupError(
                f"backup {m.backup_id} is of PostgreSQL system {m.system_identifier}, not {system_id}: this "
                "repository prefix holds another server's backups (a re-initialised cluster?)",
                hint="give the new server its own repository prefix",
            )
        manifests.append(m)
    manifests.sort(key=lambda m: (m.stop_time, m.backup_id))
    return Catalog(manifests, refused)
