"""Repository leases: the conflict rules (pure) and taking, refusing, expiring and releasing leases on a real
file repository (times are the repository's own: each object's modification time)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbrunbook.errors import LeaseHeld
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.lease import ROOT, Lease, LeaseName, acquire, blocking, held, leases
from dbrunbook.repository.storage import ObjectInfo, Storage, open_storage

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _name(mode: str, purpose: str, n: int = 0) -> LeaseName:
    return LeaseName(f"20261201T030000Z-{n:08x}", mode, purpose, 300)


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        (("shared", "backup"), ("shared", "backup"), False),
        (("shared", "backup"), ("shared", "restore"), False),
        (("shared", "drill"), ("shared", "backup"), False),
        (("shared", "drill"), ("shared", "drill"), True),
        (("exclusive", "prune"), ("shared", "backup"), True),
        (("shared", "verify"), ("exclusive", "keys-rotate"), True),
        (("exclusive", "prune"), ("exclusive", "prune"), True),
    ],
)
def test_conflict_rules(a: tuple[str, str], b: tuple[str, str], conflict: bool) -> None:
    assert _name(*a, 1).conflicts_with(_name(*b, 2)) is conflict
    assert _name(*b, 2).conflicts_with(_name(*a, 1)) is conflict


def _info(name: LeaseName, leaf: str, at: datetime) -> ObjectInfo:
    return ObjectInfo(name.prefix + leaf, 10, None, at)


def test_a_lease_lives_while_renewed_and_ends_when_released_or_expired() -> None:
    backup, drill, old = _name("shared", "backup", 1), _name("shared", "drill", 2), _name("shared", "backup", 3)
    listing = [
        _info(backup, "000000.json", T0),
        _info(backup, "000001.json", T0 + timedelta(seconds=60)),
        _info(drill, "000000.json", T0),
        _info(drill, "released.json", T0 + timedelta(seconds=10)),
        _info(old, "000000.json", T0 - timedelta(hours=1)),
        ObjectInfo(f"{ROOT}stray", 1, None, T0),
    ]
    states = {s.name: s for s in leases(listing)}
    assert set(states) == {backup, drill, old}
    now = T0 + timedelta(seconds=120)
    assert states[backup].alive(now) and not states[drill].alive(now) and not states[old].alive(now)
    assert not states[backup].alive(T0 + timedelta(seconds=361))  # 300 s after its last renewal
    prune = _name("exclusive", "prune", 9)
    assert [s.name for s in blocking(prune, states.values(), now)] == [backup]
    assert blocking(_name("shared", "drill", 9), states.values(), now) == []


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))


def _take(storage: Storage, purpose: str, *, exclusive: bool = False) -> Lease:
    return acquire(
        storage, "c1", purpose, exclusive=exclusive, command=f"test {purpose}", object_lock=False, sleep=lambda _s: None
    )


def test_prune_is_refused_while_a_backup_holds_its_lease_and_runs_after(storage: Storage) -> None:
    backup = _take(storage, "backup")
    also = _take(storage, "backup")  # shared: two backups at once are fine
    with pytest.raises(
        LeaseHeld, match=r"prune refused: the repository is busy with backup \(shared\) by .*test backup"
    ):
        _take(storage, "prune", exclusive=True)
    assert len(held(storage)) == 2  # the refused run left no lease behind
    backup.release()
    also.release()
    prune = _take(storage, "prune", exclusive=True)
    with pytest.raises(LeaseHeld, match=r"drill refused.*prune \(exclusive\)"):
        _take(storage, "drill")
    prune.release()
    assert held(storage) == []
    assert {i.key.rsplit("/", 1)[-1] for i in storage.list(ROOT)} == {"released.json"}  # only the end markers


def test_a_second_drill_is_refused_naming_the_first(storage: Storage) -> None:
    first = _take(storage, "drill")
    with pytest.raises(LeaseHeld) as caught:
        _take(storage, "drill")
    assert "drill (shared)" in caught.value.message and f"pid {os.getpid()}" in caught.value.message
    first.release()


def test_a_killed_holder_blocks_only_until_its_ttl(storage: Storage, tmp_path: Path) -> None:
    killed = _take(storage, "backup")
    killed._stop.set()  # as if the process died: no renewal, no release
    with pytest.raises(LeaseHeld):
        _take(storage, "prune", exclusive=True)
    for path in (tmp_path / "repo" / "locks").rglob("*.json"):  # its last sign of life, 301 s ago
        old = path.stat().st_mtime - 301
        os.utime(path, (old, old))
    prune = _take(storage, "prune", exclusive=True)
    assert [h.purpose for h in held(storage)] == ["prune"]  # and the dead one was swept away
    prune.release()


def test_a_holder_stops_before_acting_once_its_lease_may_have_lapsed(storage: Storage) -> None:
    held_lease = _take(storage, "prune", exclusive=True)
    held_lease.check()  # fine while renewed and present
    held_lease._last_ok -= 241  # a pause longer than ttl - margin: others may have seen it dead
    with pytest.raises(LeaseHeld, match="lost its prune lease"):
        held_lease.check()
    held_lease._last_ok += 241  # a later renewal does not bring it back
    with pytest.raises(LeaseHeld):
        held_lease.check()
    held_lease.release()


def test_a_holder_whose_lease_was_swept_away_stops(storage: Storage) -> None:
    held_lease = _take(storage, "backup")
    storage.delete([i.key for i in storage.list(held_lease.name.prefix)])  # another run took it for dead
    with pytest.raises(LeaseHeld, match="gone from the repository"):
        held_lease.check()
    held_lease.release()


def test_a_forged_lease_neither_crashes_a_refusal_nor_blocks_for_days(storage: Storage) -> None:
    forged = LeaseName("20261201T030000Z-deadbeef", "exclusive", "prune", 999999)
    storage.put_bytes(forged.prefix + "000000.json", b"[]")
    with pytest.raises(LeaseHeld, match="by an unknown holder"):
        _take(storage, "backup")
    (state,) = [st for st in leases(storage.list(ROOT)) if st.name == forged]
    assert not state.alive(state.renewed + timedelta(seconds=601))  # counted as 10 minutes at most
