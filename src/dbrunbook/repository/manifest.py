"""The backup manifest: the one object that makes a backup exist. Written last, never rewritten.

It is stored zstd-compressed and age-encrypted like every other object, under
``backups/<id>/manifest.json.zst.age``; see docs/repository-format.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dbrunbook.errors import ObjectCorruptError

FORMAT: Literal[1] = 1
SUFFIX = ".zst.age"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectEntry(_Frozen):
    """One stored object of a backup, with the digests restore and verify check."""

    name: str = Field(description="name inside the backup, e.g. 'data/0001.tar'")
    key: str = Field(description="repository key of the stored (compressed, encrypted) bytes")
    size: int = Field(ge=0, description="stored bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the stored bytes")
    plain_size: int = Field(ge=0)
    plain_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the plaintext")


class Manifest(_Frozen):
    format: Literal[1] = FORMAT
    backup_id: str
    kind: Literal["physical", "logical", "incremental"]
    engine: str
    cluster: str
    system_identifier: str | None = None
    parent: str | None = None
    server_version: str
    timeline: int | None = None
    start_lsn: str | None = None
    stop_lsn: str | None = None
    start_wal: str | None = Field(default=None, description="first WAL segment needed to become consistent")
    stop_wal: str | None = Field(default=None, description="last WAL segment needed to become consistent")
    start_time: datetime
    stop_time: datetime
    source_host: str
    databases: list[str] = Field(default_factory=list)
    objects: list[ObjectEntry]
    recipients: list[str] = Field(description="age recipients the objects were encrypted to")
    tool_version: str
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    def digest(self) -> str:
        """What the controller checked, as a host re-reading the manifest can compare it (same build on both
        ends): a host command never trusts a manifest the controller did not verify."""
        import hashlib

        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Manifest:
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise ObjectCorruptError(
                f"manifest {key} is not a valid dbrunbook manifest: {str(exc).splitlines()[0]}"
            ) from None

    @property
    def total_size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def plain_size(self) -> int:
        return sum(o.plain_size for o in self.objects)

    def object(self, name: str) -> ObjectEntry:
        return next(o for o in self.objects if o.name == name)


def backup_prefix(backup_id: str) -> str:
    return f"backups/{backup_id}/"


def manifest_key(backup_id: str) -> str:
    return f"{backup_prefix(backup_id)}manifest.json{SUFFIX}"


def object_key(backup_id: str, name: str) -> str:
    return f"{backup_prefix(backup_id)}{name}{SUFFIX}"


KIND_LETTER = {"physical": "F", "logical": "L", "incremental": "I"}


def new_backup_id(kind: str, now: datetime | None = None) -> str:
    """Sortable by time, kind visible at a glance: 20261122T031500Z-F."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{KIND_LETTER[kind]}"
