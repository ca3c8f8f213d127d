"""What ``sandbox.up``, ``sandbox.status`` and ``sandbox.down`` report: the sandbox's clusters, endpoints and
servers, typed; ``as_dict`` renders the ``--json`` document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HostState:
    """One sandbox server as ``sandbox.status`` shows it."""

    name: str
    role: str
    port: int
    via: str  # how dbrunbook reaches it: local, ssh, or ssh+sudo
    running: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "port": self.port, "via": self.via, "running": self.running}


@dataclass(frozen=True)
class ClusterState:
    """One sandbox cluster: a local primary and a replica reached over SSH."""

    name: str
    engine: str
    primary_dsn: str
    replica_dsns: tuple[str, ...]
    hosts: tuple[HostState, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": self.engine,
            "primary_dsn": self.primary_dsn,
            "replica_dsns": list(self.replica_dsns),
            "hosts": [h.as_dict() for h in self.hosts],
        }


@dataclass(frozen=True)
class SandboxStatus:
    """``sandbox.status`` (and ``sandbox.up``, with the servers it restarted): clusters, endpoints, what runs."""

    clusters: tuple[ClusterState, ...]
    s3_endpoint: str
    bucket: str
    ssh: str
    ssh_sudo: str | None  # pg-main-2's login: another user, who reaches the OS user through sudo (None: direct)
    notes: tuple[str, ...]
    password_files: dict[str, str]
    running: dict[str, bool]  # server -> running, in the order shown
    root: str
    inventory: str
    restarted: tuple[str, ...] | None = None  # only sandbox.up says, with the reason of each restart

    @property
    def all_running(self) -> bool:
        return all(self.running.values())

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "clusters": [c.as_dict() for c in self.clusters],
            "s3_endpoint": self.s3_endpoint,
            "bucket": self.bucket,
            "ssh": self.ssh,
            "ssh_sudo": self.ssh_sudo,
            "notes": list(self.notes),
            "password_files": dict(self.password_files),
            "running": dict(self.running),
            "all_running": self.all_running,
            "root": self.root,
            "inventory": self.inventory,
        }
        if self.restarted is not None:
            doc["restarted"] = list(self.restarted)
        return doc


@dataclass(frozen=True)
class SandboxDown:
    """What ``sandbox.down`` did; the task adds whether it was a dry run and the plan."""

    stopped: bool
    purged: bool
    root: str
    dry_run: bool | None = None
    plan: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"stopped": self.stopped, "purged": self.purged, "root": self.root}
        if self.dry_run is not None:
            doc["dry_run"] = self.dry_run
        if self.plan is not None:
            doc["plan"] = list(self.plan)
        return doc
