"""``backup.sign``: make backups written before manifests were signed trusted again, after proof.

Their manifests cannot be rewritten (the repository is append-only, and S3 Object Lock may hold them), so the
signature goes beside each one as a small object of its own (``backups/<id>/manifest.sig.zst.age``), over the
very bytes of the manifest as stored. Only manifests that are authentic in every other way qualify: in their
own folder, listing only their own objects, not from the future. Each is read back in full first, exactly as
``backup.verify`` does, and one that fails is not signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbrunbook.backup.verify import BackupCheck
from dbrunbook.context import ClusterContext
from dbrunbook.errors import ObjectCorruptError
from dbrunbook.repository.catalog import MANIFEST_SIG, Catalog, Refused
from dbrunbook.repository.manifest import Manifest, backup_prefix
from dbrunbook.repository.objects import load_bytes, store
from dbrunbook.repository.signing import split


@dataclass(frozen=True)
class UnsignedBackup:
    """A backup whose manifest carries no signature but is authentic in every other way."""

    backup_id: str
    kind: str
    stop_time: str
    source_host: str
    objects: int
    stored_bytes: int

    @classmethod
    def of(cls, r: Refused) -> UnsignedBackup:
        m = r.manifest
        assert m is not None
        return cls(m.backup_id, m.kind, m.stop_time.isoformat(), m.source_host, len(m.objects), m.total_size)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "stop_time": self.stop_time,
            "source_host": self.source_host,
            "objects": self.objects,
            "stored_bytes": self.stored_bytes,
        }


@dataclass(frozen=True)
class SignPlan:
    """Which refused manifests of a cluster ``backup.sign`` may sign, and the others."""

    cluster: str
    candidates: list[Refused]  # unsigned, otherwise authentic
    others: list[Refused]  # refused for another reason: never signed here

    @property
    def unsigned(self) -> tuple[UnsignedBackup, ...]:
        return tuple(UnsignedBackup.of(r) for r in self.candidates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "unsigned": [u.as_dict() for u in self.unsigned],
            "not_signable": [r.as_dict() for r in self.others],
        }


@dataclass(frozen=True)
class SignResult:
    """What ``backup.sign`` did: the plan, the backups signed, and those that failed their check (not signed)."""

    plan: SignPlan
    dry_run: bool
    signed: tuple[str, ...] = ()
    failed: tuple[BackupCheck, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            "dry_run": self.dry_run,
            "signed": list(self.signed),
            "failed": [f.as_dict() for f in self.failed],
        }


@dataclass(frozen=True)
class SigningKeyMade:
    """What ``keys.signing-init`` made: where the private key is, and the public key for ``encryption.signers``."""

    private_key: str
    public_key: str

    def as_dict(self) -> dict[str, Any]:
        return {"private_key": self.private_key, "public_key": self.public_key}


def plan_signing(cluster: str, catalog: Catalog, backup_id: str = "all") -> SignPlan:
    """Pure: which refused manifests ``backup.sign`` may sign, the others and why not. Only a manifest with no
    signature at all, authentic in every other way, and older than the first signed backup: once the
    controller signs, an unsigned newcomer is not an older dbrunbook's."""
    chosen = [r for r in catalog.refused if backup_id in ("all", r.folder)]
    since = min((m.start_time for m in catalog.manifests), default=None)
    candidates, others = [], []
    for r in chosen:
        if not (r.unsigned_only and r.manifest is not None):
            others.append(r)
        elif since is not None and r.manifest.stop_time >= since:
            others.append(
                Refused(
                    r.key,
                    f"{r.reason}; but it ended after this repository's first signed backup began "
                    f"({since.isoformat()}), so no older dbrunbook wrote it",
                    r.manifest,
                )
            )
        else:
            candidates.append(r)
    return SignPlan(cluster, candidates, others)


def verify_candidates(ctx: ClusterContext, catalog: Catalog, plan: SignPlan, jobs: int) -> list[BackupCheck]:
    """Read every object of each candidate (and of its chain, signed or not) back, as backup.verify does."""
    from dbrunbook.backup.verify import verify

    manifests: list[Manifest] = [r.manifest for r in plan.candidates if r.manifest is not None]
    extended = Catalog(sorted([*catalog.manifests, *manifests], key=lambda m: (m.stop_time, m.backup_id)))
    return verify(ctx.storage, extended, manifests, ctx.identities(), jobs=jobs)


def sign(ctx: ClusterContext, candidates: Sequence[Refused]) -> list[str]:
    """Write the detached signature of each manifest, over its bytes as they are in the repository now
    (and only if they still parse to what was verified)."""
    signed = []
    for r in candidates:
        assert r.manifest is not None
        body, _ = split(load_bytes(ctx.storage, r.key, ctx.identities()))
        if Manifest.from_json(body, r.key).digest() != r.manifest.digest():
            raise ObjectCorruptError(f"manifest {r.key} changed while it was being checked; not signed")
        key = backup_prefix(r.folder) + MANIFEST_SIG
        store(ctx.storage, "manifest signature", key, [ctx.signer.line(r.key, body)], ctx.recipients)
        signed.append(r.folder)
    return signed
