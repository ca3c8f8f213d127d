"""A small world for functional tests: an in-memory inventory of three clusters whose hosts are
FakeExecutors, and real file repositories (one per cluster) filled by the real repository code.

Tests describe what they need (``world.backup(...)``, ``world.wal(...)``) and get ClusterContexts built
exactly as the tasks build them, except for the executors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from dbrunbook import __version__, build_digest
from dbrunbook.context import ClusterContext
from dbrunbook.engines import EngineDriver, get_engine
from dbrunbook.errors import DbrunbookError, InventoryError
from dbrunbook.execution.audit import AuditLog
from dbrunbook.execution.executor import RunSettings
from dbrunbook.execution.testing import FakeConnect, FakeDatabase, FakeExecutor, Reply, host_basics
from dbrunbook.inventory.model import Cluster, Inventory
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.manifest import Manifest, ObjectEntry, new_backup_id, object_key
from dbrunbook.repository.objects import store
from dbrunbook.repository.signing import generate

# Made once per test session: key generation is the slowest part of building a world.
IDENTITY, RECIPIENT = generate_identity()
SIGNING_PEM, SIGNING_PUBLIC = generate()
PASSWORD = "functional-db-password"
SEGMENT_SIZE = 16 << 20
PG_BIN = "/usr/lib/postgresql/15/bin"
SYSTEM_ID = "7300000000000000001"
NOW = datetime.now(UTC).replace(microsecond=0)


def wal_name(segment: int, timeline: int = 1) -> str:
    """The WAL segment file name of segment number ``segment`` (16 MiB segments)."""
    return f"{timeline:08X}{segment >> 8:08X}{segment & 0xFF:08X}"


def segment_lsn(segment: int) -> str:
    """The LSN a 16 MiB segment starts at."""
    start = segment * SEGMENT_SIZE
    return f"{start >> 32:X}/{start & 0xFFFFFFFF:X}"


def host(role: str, port: int, data_dir: str, *, replicates_from: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "role": role,
        "connection": {"type": "ssh", "host": "192.0.2.10", "user": "dbrunbook"},
        "port": port,
        "data_dir": data_dir,
    }
    if replicates_from:
        spec["replicates_from"] = replicates_from
    return spec


def cluster(engine: str, hosts: dict[str, dict[str, Any]], repo: Path, **extra: Any) -> dict[str, Any]:
    """One cluster of the inventory: ``hosts`` by name, the first one the primary."""
    return {
        "engine": engine,
        "credentials": {"user": "dbrunbook", "password": "file:keys/db-password"},
        "hosts": hosts,
        "repository": {"url": f"file://{repo}"},
        "encryption": {
            "recipients": [RECIPIENT],
            "identities": ["file:keys/age.txt"],
            "signing_key": "file:keys/signing.pem",
            "signers": [SIGNING_PUBLIC],
        },
        **extra,
    }


def three_clusters(root: Path) -> dict[str, Any]:
    """orders-pg and orders-stg (PostgreSQL), orders-my (MariaDB); each primary has a restore host."""
    pg = {"bin_dir": PG_BIN}
    return {
        "orders-pg": cluster(
            "postgresql",
            {
                "pg1": {**host("primary", 5432, "/var/lib/postgresql/15/main"), **pg},
                "pg1-restore": {**host("replica", 5432, "/srv/restore/pg", replicates_from="pg1"), **pg},
            },
            root / "repos" / "orders-pg",
            labels={"tier": "prod", "region": "eu"},
            drill={"host": "pg1-restore"},
        ),
        "orders-stg": cluster(
            "postgresql",
            {"stg1": {**host("primary", 5432, "/var/lib/postgresql/15/main"), **pg}},
            root / "repos" / "orders-stg",
            labels={"tier": "staging", "region": "eu"},
        ),
        "orders-my": cluster(
            "mariadb",
            {
                "my1": host("primary", 3306, "/var/lib/mysql"),
                "my1-restore": host("replica", 3306, "/srv/restore/my", replicates_from="my1"),
            },
            root / "repos" / "orders-my",
            labels={"tier": "prod", "region": "us"},
            drill={"host": "my1-restore"},
        ),
    }


def fake_engine(name: str, database: FakeDatabase) -> EngineDriver:
    """The registry's engine for ``name`` (whatever class carries its capabilities), its SQL sessions
    answered by ``database``."""
    real = type(get_engine(name))
    faked = type(f"Fake{real.__name__}", (FakeConnect, real), {})
    engine: EngineDriver = faked(database)
    return engine


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    os.chmod(path, 0o600)


@dataclass
class World:
    root: Path
    spec: dict[str, Any]
    settings: RunSettings
    fakes: dict[str, FakeExecutor] = field(default_factory=dict)
    unreachable: dict[str, DbrunbookError] = field(default_factory=dict)

    @classmethod
    def build(cls, root: Path, spec: dict[str, Any] | None = None) -> World:
        _write_secret(root / "keys" / "age.txt", IDENTITY)
        _write_secret(root / "keys" / "signing.pem", SIGNING_PEM)
        _write_secret(root / "keys" / "db-password", PASSWORD)
        settings = RunSettings(audit=AuditLog(root / "audit.jsonl", task="functional", env="test"))
        return cls(root, spec or three_clusters(root), settings)

    @property
    def inventory(self) -> Inventory:
        return Inventory.model_validate({"clusters": self.spec})

    def write_inventory(self) -> Path:
        """The same inventory as a file, for the tasks that load one (--env PATH)."""
        path = self.root / "inventory.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "clusters": self.spec}, sort_keys=False))
        return path

    # --- hosts -------------------------------------------------------------------------------------

    def fake(self, host_name: str) -> FakeExecutor:
        """The fake behind an inventory host (or ``local``): a home, private directories, dbrunbook installed."""
        if host_name not in self.fakes:
            fake = FakeExecutor(host_name, self.settings, unreachable=self.unreachable.get(host_name))
            host_basics(fake, home=f"/home/{host_name}", scratch=f"/tmp/dbrunbook.{host_name}")
            installed = json.dumps({"version": __version__, "build": build_digest()})
            fake.on(r"/bin/dbrunbook-host version$", Reply(stdout=installed))
            self.fakes[host_name] = fake
        return self.fakes[host_name]

    def agent(self, host_name: str) -> str:
        return f"/home/{host_name}/.local/share/dbrunbook/venv/bin/dbrunbook-host"

    def context(self, name: str, database: FakeDatabase | None = None) -> ClusterContext:
        """The cluster's context as a task builds it; with ``database``, its engine's SQL sessions (on any
        host) reach that fake server."""
        clusters = self.inventory.clusters
        ctx = ClusterContext(name, clusters[name], SecretResolver(self.root), self.settings, lambda _c, h: self.fake(h))
        if database is not None:
            # ClusterContext.engine is a cached_property: preset it
            ctx.__dict__["engine"] = fake_engine(clusters[name].engine.value, database)
        return ctx

    def find_host(self, host_name: str) -> tuple[str, Cluster]:
        for name, c in self.inventory.clusters.items():
            if host_name in c.hosts:
                return name, c
        raise InventoryError(f"no host '{host_name}' in any cluster")

    def labels(self) -> dict[str, dict[str, str]]:
        return {name: dict(c.labels) for name, c in self.inventory.clusters.items()}

    # --- the repositories --------------------------------------------------------------------------

    def backup(
        self,
        cluster_name: str,
        kind: str,
        age: timedelta,
        *,
        parent: Manifest | None = None,
        wal: tuple[int, int] | None = None,
        binlog: tuple[str, int, str] | None = None,
        server_id: int = 1,
        took: timedelta = timedelta(minutes=5),
    ) -> Manifest:
        """A complete backup that stopped ``age`` ago, with one data object, signed and stored by the same
        code a backup task uses. ``wal``: PostgreSQL start and stop segments; ``binlog``: MariaDB's
        (file, position, GTID state) the backup starts replay from."""
        ctx = self.context(cluster_name)
        stop = NOW - age
        backup_id = new_backup_id(kind, stop)
        data = store(
            ctx.storage, "data/0001.tar", object_key(backup_id, "data/0001.tar"), [backup_id.encode()], [RECIPIENT]
        )
        extra: dict[str, Any] = {}
        pg: dict[str, Any] = {}
        if ctx.cluster.engine.value == "postgresql":
            start_seg, stop_seg = wal or (1, 1)
            pg = {
                "system_identifier": SYSTEM_ID,
                "timeline": 1,
                "start_lsn": segment_lsn(start_seg),
                "stop_lsn": segment_lsn(stop_seg),
                "start_wal": wal_name(start_seg),
                "stop_wal": wal_name(stop_seg),
            }
            extra["wal_segment_size"] = SEGMENT_SIZE
        if binlog is not None:
            extra["binlog"] = {"file": binlog[0], "position": binlog[1], "gtid": binlog[2]}
            extra["server_id"] = server_id
        manifest = Manifest(
            backup_id=backup_id,
            kind=kind,
            engine=ctx.cluster.engine.value,
            cluster=cluster_name,
            parent=parent.backup_id if parent else None,
            server_version="15.6" if pg else "10.11.6-MariaDB",
            start_time=stop - took,
            stop_time=stop,
            source_host=next(iter(ctx.cluster.hosts)),
            objects=[ObjectEntry.model_validate(data.model_dump())],
            recipients=[RECIPIENT],
            tool_version=__version__,
            extra=extra,
            **pg,
        )
        ctx.write_manifest(manifest)
        return manifest

    def wal(self, cluster_name: str, segments: Iterable[int], timeline: int = 1) -> list[str]:
        """Archive WAL segments the way archive_command does (wal.push); returns their keys."""
        from dbrunbook.engines.postgresql.wal import WalName, push

        ctx = self.context(cluster_name)
        spool = self.root / "spool"
        spool.mkdir(exist_ok=True)
        keys = []
        for seg in segments:
            path = spool / wal_name(seg, timeline)
            path.write_bytes(path.name.encode() * 64)
            push(ctx.storage, path, [RECIPIENT])
            keys += [i.key for i in ctx.storage.list(WalName(path.name).prefix())]
        return keys

    def binlogs(self, cluster_name: str, numbers: Iterable[int], server_id: int = 1) -> list[str]:
        """Archive binlog files the way binlog.sync does; returns their keys."""
        from dbrunbook.engines.mariadb.binlog import BinlogName
        from dbrunbook.repository import logs

        ctx = self.context(cluster_name)
        spool = self.root / "binlog-spool"
        spool.mkdir(exist_ok=True)
        keys = []
        for n in numbers:
            name = BinlogName(server_id, f"mariadb-bin.{n:06d}")
            path = spool / name.name
            path.write_bytes(name.name.encode() * 64)
            logs.push(ctx.storage, path, [RECIPIENT], name)
            keys += [i.key for i in ctx.storage.list(name.prefix())]
        return keys

    def keys(self, cluster_name: str, prefix: str = "") -> set[str]:
        return {i.key for i in self.context(cluster_name).storage.list(prefix)}
