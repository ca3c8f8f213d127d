"""Leases: runs on one cluster's repository that would damage each other never overlap.

A prune during an incremental could delete its parent; a second drill of a cluster would kill the first
one's server; cron's ``flock`` only covers one job on one machine. So every run that reads or writes backups
holds a lease in the repository itself, where every controller of the cluster sees it:

- ``shared``: backups, restores, verify, drills. Any number at once, except that a *singleton* purpose
  (one drill per cluster: they share a place) conflicts with itself;
- ``exclusive``: prune, key rotation, backup.sign. Nothing else at the same time.

The repository is append-only (and may sit under S3 Object Lock), so a lease is a folder of objects that are
only ever added: ``locks/<id>~<mode>~<purpose>~<ttl>/000000.json`` says who holds it, each renewal adds the
next number, and ``released.json`` ends it. Everything that decides a conflict is in the key names, so one
LIST answers. Times are the repository's own (each object's Last-Modified), never this machine's clock: a
lease is alive while its newest object is younger than its ttl, and only then. A run killed without
releasing blocks others for at most the ttl; a stale lease is never taken over because of a backup's age.

Taking a lease: write the first object (create-only), then list. Any other live lease that conflicts makes
this run release its own and refuse. Two runs that start at the same moment may both see each other and both
refuse (after a short retry): never both go ahead, since each writes before it looks.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dbrunbook.errors import DbrunbookError, LeaseHeld
from dbrunbook.repository.storage import ObjectInfo, Storage

ROOT = "locks/"
TTL = 300  # seconds without a renewal after which a lease is dead
MAX_TTL = 600  # a lease claiming longer (not one of ours) counts as this: nothing blocks for days
RENEW_EVERY = 60.0
MARGIN = 60.0  # a holder gives up its lease this long before others may see it as dead
SINGLETON = frozenset({"drill"})
RELEASED = "released.json"
_PREFIX = re.compile(r"^locks/(\d{8}T\d{6}Z-[0-9a-f]{8})~(shared|exclusive)~([a-z0-9-]{1,40})~(\d{1,6})/")


@dataclass(frozen=True)
class LeaseName:
    lease_id: str
    mode: str  # shared | exclusive
    purpose: str  # backup, restore, verify, drill, prune, keys-rotate, sign
    ttl: int

    @property
    def prefix(self) -> str:
        return f"{ROOT}{self.lease_id}~{self.mode}~{self.purpose}~{self.ttl}/"

    @staticmethod
    def of_key(key: str) -> LeaseName | None:
        m = _PREFIX.match(key)
        return LeaseName(m.group(1), m.group(2), m.group(3), int(m.group(4))) if m else None

    def conflicts_with(self, other: LeaseName) -> bool:
        if "exclusive" in (self.mode, other.mode):
            return True
        return self.purpose == other.purpose and self.purpose in SINGLETON


@dataclass(frozen=True)
class LeaseState:
    """One lease as a listing shows it."""

    name: LeaseName
    first: ObjectInfo
    renewed: datetime  # the newest object's Last-Modified
    released: bool

    def alive(self, now: datetime) -> bool:
        return not self.released and now - self.renewed < timedelta(seconds=min(self.name.ttl, MAX_TTL))


def leases(listing: Iterable[ObjectInfo]) -> list[LeaseState]:
    """Pure: the leases in a listing of ``locks/``, oldest first."""
    groups: dict[LeaseName, list[ObjectInfo]] = {}
    for info in listing:
        name = LeaseName.of_key(info.key)
        if name is not None:
            groups.setdefault(name, []).append(info)
    out = []
    for name, infos in groups.items():
        infos.sort(key=lambda i: i.key)
        out.append(
            LeaseState(
                name,
                infos[0],
                max(i.last_modified for i in infos),
                any(i.key.endswith("/" + RELEASED) for i in infos),
            )
        )
    return sorted(out, key=lambda s: s.name.lease_id)


def blocking(mine: LeaseName, states: Iterable[LeaseState], now: datetime) -> list[LeaseState]:
    """Pure: the live leases of others that ``mine`` conflicts with."""
    return [s for s in states if s.name != mine and s.alive(now) and mine.conflicts_with(s.name)]


def describe(storage: Storage, state: LeaseState, now: datetime) -> str:
    """'prune (exclusive) by alice@ops-1 pid 4242, since 03:00:12Z, renewed 20s ago' for a refusal."""
    holder = "an unknown holder"
    try:
        doc = json.loads(storage.get_bytes(state.first.key))
        if isinstance(doc, dict):  # anything can write here: never let its content crash a refusal
            holder = f"{doc.get('owner', '?')} pid {doc.get('pid', '?')} ({doc.get('command', '?')})"[:200]
    except (DbrunbookError, ValueError, TypeError):
        pass
    age = int((now - state.renewed).total_seconds())
    return (
        f"{state.name.purpose} ({state.name.mode}) by {holder}, since {state.first.last_modified:%Y-%m-%d %H:%M:%SZ}, "
        f"renewed {age}s ago (expires {state.name.ttl - age}s after its last renewal)"
    )


@dataclass(frozen=True)
class LiveLease:
    """A lease someone holds now, as backup.list shows it."""

    purpose: str
    mode: str
    lease_id: str
    holder: str  # who, since when, renewed when (see describe)


def held(storage: Storage, now: datetime | None = None) -> list[LiveLease]:
    """The live leases, for backup.list. It writes nothing, so it has no repository time to go by: ``now``
    defaults to this machine's clock."""
    from datetime import UTC

    states = leases(storage.list(ROOT))
    if not states:
        return []
    at = now or datetime.now(UTC)
    return [
        LiveLease(s.name.purpose, s.name.mode, s.name.lease_id, describe(storage, s, at)) for s in states if s.alive(at)
    ]


class Lease:
    """A lease this process holds, renewed by a daemon thread until released."""

    def __init__(
        self, storage: Storage, name: LeaseName, retain: Callable[[], datetime | None], renew_every: float
    ) -> None:
        self.storage = storage
        self.name = name
        self._retain = retain
        self._renew_every = renew_every
        self._seq = 0
        self._stop = threading.Event()
        self._lost: str | None = None
        self._last_ok = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name=f"lease-{name.purpose}")

    def _put(self, leaf: str, doc: dict[str, Any]) -> ObjectInfo:
        return self.storage.put_bytes(self.name.prefix + leaf, json.dumps(doc).encode(), retain_until=self._retain())

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._renew_every):
            self._seq += 1
            sent = time.monotonic()  # others date the renewal by when it landed, at the latest: count from here
            try:
                self._put(f"{self._seq:06d}.json", {"renewal": self._seq})
            except DbrunbookError as exc:
                self._note_gap(exc.one_line())
                continue
            self._note_gap(None)
            if self._lost is None:
                self._last_ok = sent

    def _note_gap(self, why: str | None) -> None:
        """Once the holder could have looked dead to others, the lease is lost for good: another run may have
        started meanwhile, and a later renewal must not hide that."""
        if self._lost is None and time.monotonic() - self._last_ok > self.name.ttl - MARGIN:
            self._lost = why or f"no renewal for {self.name.ttl - MARGIN:g}s (a pause or a slow repository)"

    def check(self) -> None:
        """Before an irreversible step: refuse to go on once others may have taken over, by this process's
        own record and by the repository's (the lease must still be there, not released, not swept)."""
        self._note_gap(None)
        problem = self._lost
        if problem is None:
            try:
                names = [i.key.rsplit("/", 1)[-1] for i in self.storage.list(self.name.prefix)]
            except DbrunbookError as exc:
                names, problem = [], exc.one_line()
            if problem is None and (not names or RELEASED in names):
                problem = "its objects are gone from the repository"
        if problem is not None:
            raise LeaseHeld(
                f"this run lost its {self.name.purpose} lease ({problem}); stopping before anything else is changed"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a renewal still in flight must land before the marker
        try:
            self._put(RELEASED, {"released": True})
            keys = [i.key for i in self.storage.list(self.name.prefix) if not i.key.endswith("/" + RELEASED)]
            self.storage.delete(keys)  # refused under Object Lock until it expires: the marker says it is over
        except DbrunbookError:
            pass  # it expires on its own after its ttl


def acquire(
    storage: Storage,
    cluster: str,
    purpose: str,
    *,
    exclusive: bool,
    command: str,
    object_lock: bool,
    ttl: int = TTL,
    renew_every: float = RENEW_EVERY,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> Lease:
    """Take a lease or raise LeaseHeld naming the holder. Never waits for a holder: a run without a terminal
    must not hang, and a cron job is better retried by the next schedule than stacked behind another."""
    from datetime import UTC

    def retain() -> datetime | None:
        # Under Object Lock every object needs a retention date; a lease's need not outlive it by much.
        return datetime.now(UTC) + timedelta(seconds=2 * ttl) if object_lock else None

    owner = f"{getpass.getuser()}@{socket.gethostname()}"
    for attempt in range(attempts):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = LeaseName(f"{stamp}-{random.getrandbits(32):08x}", "exclusive" if exclusive else "shared", purpose, ttl)
        lease = Lease(storage, name, retain, renew_every)
        first = lease._put(
            "000000.json",
            {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "command": command, "cluster": cluster},
        )
        states = leases(storage.list(ROOT))
        now = max([first.last_modified, *(s.renewed for s in states)])
        against = blocking(name, states, now)
        if not against:
            lease._thread.start()
            _sweep(storage, states, now)
            return lease
        lease.release()
        if attempt + 1 < attempts and all(s.first.last_modified >= first.last_modified for s in against):
            sleep(0.5 + random.random())  # noqa: S311 - two runs that started together: one of them goes ahead
            continue
        raise LeaseHeld(
            f"{cluster}: {purpose} refused: the repository is busy with {describe(storage, against[0], now)}",
            hint="run it again once that is done; a holder that was killed expires after its ttl",
        )
    raise AssertionError("unreachable")


def _sweep(storage: Storage, states: Iterable[LeaseState], now: datetime) -> None:
    """Delete what ended leases left (best effort: Object Lock may keep them until their retention ends)."""
    dead = [s for s in states if not s.alive(now) and now - s.renewed > timedelta(seconds=s.name.ttl)]
    keys = [i.key for s in dead for i in storage.list(s.name.prefix)]
    if keys:
        with contextlib.suppress(DbrunbookError):
            storage.delete(keys)
