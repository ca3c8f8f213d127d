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

from dbrunbook.context import ClusterContext
from dbrunbook.errors import ObjectCorruptError
from dbrunbook.repository.catalog import MANIFEST_SIG, Catalog, Refused
from dbrunbook.repository.manifest import Manifest, backup_prefix
from dbrunbook.repository.objects import load_bytes, store
from dbrunbook.repository.signing import split


@dataclass(frozen=True)
class SignPlan:
    cluster: str
    candidates: list[Refused]  # unsigned, otherwise authentic
    others: list[Refused]  # refused for another reason: never signed here

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "unsigned": [_describe(r) for r in self.candidates],
            "not_signable": [r.as_dict() for r in self.others],
        }


def _describe(r: Refused) -> dict[str, Any]:
    m = r.manifest
    assert m is not None
    return {
        "backup_id": m.backup_id,
        "kind": m.kind,
        "stop_time": m.stop_time.isoformat(),
        "source_host": m.source_host,
        "objects": len(m.objects),
        "stored_bytes": m.total_size,
    }


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


def verify_candidates(ctx: ClusterContext, catalog: Catalog, plan: SignPlan, jobs: int) -> list[dict[str, Any]]:
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
