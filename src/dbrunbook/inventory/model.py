"""The inventory's shape: environments hold clusters, clusters hold hosts.

Models are frozen pydantic models with ``extra="forbid"`` so a typo in a key is an error, not a silently
ignored setting. Secret fields hold *references* (``env:NAME``, ``file:/path``, ``aws-sm:id#key``,
``aws-ssm:/path``); values are resolved late, by :mod:`dbrunbook.inventory.secrets`, and never stored here.

Sections that later capabilities fill in (repository, encryption, retention, drill) are reserved now so
that inventories written today stay valid.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

SECRET_SCHEMES = ("env:", "file:", "aws-sm:", "aws-ssm:")

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_secret_ref(value: str) -> str:
    if not value.startswith(SECRET_SCHEMES):
        raise ValueError(
            "must be a secret reference (env:NAME, file:/path, aws-sm:ID#KEY or aws-ssm:/path), never a literal secret"
        )
    scheme, _, rest = value.partition(":")
    if not rest:
        raise ValueError(f"secret reference '{scheme}:' names nothing")
    if scheme == "aws-sm" and rest.startswith("#"):
        raise ValueError("aws-sm reference needs a secret id before '#'")
    return value


SecretRefStr = Annotated[str, AfterValidator(_check_secret_ref)]


class Engine(StrEnum):
    POSTGRESQL = "postgresql"
    MARIADB = "mariadb"
    MYSQL = "mysql"


class Role(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"


class LocalConnection(_Strict):
    type: Literal["local"]


class SshConnection(_Strict):
    type: Literal["ssh"]
    host: str
    port: Port = 22
    user: str
    key: str | None = Field(default=None, description="path to a private key file")
    key_passphrase: SecretRefStr | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    known_hosts: str | None = Field(
        default=None, description="known_hosts file; when set, unknown or changed host keys are refused"
    )


Connection = Annotated[LocalConnection | SshConnection, Field(discriminator="type")]


class Credentials(_Strict):
    user: str
    password: SecretRefStr | None = None
    database: str | None = Field(default=None, description="database to connect to for admin SQL")


class Host(_Strict):
    role: Role = Field(strict=False)
    connection: Connection
    replicates_from: str | None = None
    address: str = Field(default="127.0.0.1", description="server address as seen from the host itself")
    port: Port
    data_dir: str
    bin_dir: str | None = Field(default=None, description="server and client binaries; PATH when unset")
    os_user: str | None = Field(default=None, description="OS user that owns the server's files")
    socket_dir: str | None = None
    tool_venv: str = Field(
        default="~/.local/share/dbrunbook/venv",
        description="where hosts.setup installs dbrunbook for host-side commands",
    )

    def binary(self, name: str) -> str:
        """A server or client program on this host: in bin_dir when set, else found on PATH."""
        return f"{self.bin_dir.rstrip('/')}/{name}" if self.bin_dir else name


class ObjectLock(_Strict):
    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    days: int = Field(ge=1)


class Repository(_Strict):
    url: Annotated[str, StringConstraints(pattern=r"^(s3://[^/]+(/.*)?|file:///.*)$")]
    endpoint: str | None = None
    region: str | None = None
    access_key: SecretRefStr | None = None
    secret_key: SecretRefStr | None = None
    object_lock: ObjectLock | None = None


class Encryption(_Strict):
    recipients: list[Annotated[str, StringConstraints(pattern=r"^age1[0-9a-z]{58}$")]] = Field(min_length=1)
    identities: list[SecretRefStr] = Field(default_factory=list)
    signing_key: SecretRefStr | None = Field(
        default=None, description="Ed25519 private key (PEM) the controller signs manifests with; never on hosts"
    )
    signers: list[Annotated[str, StringConstraints(pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$")]] = Field(
        default_factory=list, description="public keys whose signed manifests are trusted (ed25519:...)"
    )


def _known_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return name


class Retention(_Strict):
    keep_last: int | None = Field(default=None, ge=1)
    daily: int | None = Field(default=None, ge=0)
    weekly: int | None = Field(default=None, ge=0)
    monthly: int | None = Field(default=None, ge=0)
    yearly: int | None = Field(default=None, ge=0)
    pitr_window: str | None = Field(default=None, pattern=r"^\d+[smhdw]$")
    max_chain: int | None = Field(default=None, ge=0)
    timezone: Annotated[str, AfterValidator(_known_zone)] = "UTC"


class Validation(_Strict):
    name: str
    sql: str
    database: str | None = None
    expect: str | int | float | None = None
    compare: Literal["==", "!=", ">", ">=", "<", "<="] = "=="


LOCAL = "local"  # a drill place: the machine dbrunbook runs on


class Drill(_Strict):
    host: str | None = Field(
        default=LOCAL,
        description="inventory host the drill restores on, or local: the machine dbrunbook runs on",
    )
    data_dir: str | None = None
    port: Port | None = None
    bin_dir: str | None = Field(default=None, description="local drills: the server binaries (default: found)")
    os_user: str | None = Field(default=None, description="local drills: OS user of the drill's server")
    rto_target: str | None = Field(default=None, pattern=r"^\d+[smhd]$")
    rpo_target: str | None = Field(default=None, pattern=r"^\d+[smhd]$")
    validations: list[Validation] = Field(default_factory=list)


CRON = r"^\s*\S+\s+\S+\s+\S+\s+\S+\s+\S+\s*$"


class Schedule(_Strict):
    """When each job runs, as five-field cron expressions (minute hour day-of-month month day-of-week),
    rendered by ``schedule.render`` for cron, systemd timers or Kubernetes CronJobs."""

    full: str | None = Field(default=None, pattern=CRON, description="backup.full")
    incremental: str | None = Field(default=None, pattern=CRON, description="backup.incremental")
    logical: str | None = Field(default=None, pattern=CRON, description="backup.full --kind logical")
    log_sync: str | None = Field(
        default=None, pattern=CRON, description="binlog.sync (MariaDB); wal.check (PostgreSQL archives by itself)"
    )
    verify: str | None = Field(default=None, pattern=CRON, description="backup.verify")
    prune: str | None = Field(default=None, pattern=CRON, description="backup.prune --yes")
    drill: str | None = Field(default=None, pattern=CRON, description="drill.run")


class Cluster(_Strict):
    engine: Engine = Field(strict=False)
    version: str | None = Field(default=None, description="expected server major version, e.g. '15' or '10.11'")
    credentials: Credentials
    replication: Credentials | None = None
    hosts: dict[Name, Host] = Field(min_length=1)
    repository: Repository | None = None
    encryption: Encryption | None = None
    retention: Retention | None = None
    drill: Drill | None = None
    schedule: Schedule | None = None
    labels: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,63}$")], str] = Field(
        default_factory=dict, description="free key/value tags that --limit selects clusters by (tier: prod)"
    )

    @model_validator(mode="after")
    def _topology(self) -> Cluster:
        primaries = [n for n, h in self.hosts.items() if h.role is Role.PRIMARY]
        if len(primaries) > 1:
            raise ValueError(f"has {len(primaries)} primaries ({', '.join(primaries)}); exactly one is allowed")
        if not primaries:
            raise ValueError("has no primary host")
        for name, host in self.hosts.items():
            up = host.replicates_from
            if host.role is Role.PRIMARY and up is not None:
                raise ValueError(f"host '{name}' is a primary but sets replicates_from")
            if up is not None and up not in self.hosts:
                raise ValueError(
                    f"host '{name}' replicates_from unknown host '{up}' (known: {', '.join(sorted(self.hosts))})"
                )
            if up == name:
                raise ValueError(f"host '{name}' replicates from itself")
        return self

    def drill_settings(self) -> Drill:
        """The ``drill`` section, or its defaults when the inventory has none."""
        return self.drill or Drill()

    def primary(self) -> tuple[str, Host]:
        return next((n, h) for n, h in self.hosts.items() if h.role is Role.PRIMARY)

    def upstream_of(self, host_name: str) -> str | None:
        """The host a replica streams from: its declared upstream, else the primary."""
        host = self.hosts[host_name]
        if host.role is Role.PRIMARY:
            return None
        return host.replicates_from or self.primary()[0]


class Inventory(_Strict):
    version: Literal[1] = 1
    clusters: dict[Name, Cluster] = Field(min_length=1)

    @model_validator(mode="after")
    def _drill_hosts(self) -> Inventory:
        # A drill may restore on another cluster's host (a shared restore machine), so check fleet-wide.
        known = {h for c in self.clusters.values() for h in c.hosts}
        if LOCAL in known:
            raise ValueError(f"no host may be named '{LOCAL}': the name means this machine (where drills restore)")
        for name, cluster in self.clusters.items():
            place = (cluster.drill.host if cluster.drill else None) or LOCAL
            if place != LOCAL and place not in known:
                raise ValueError(f"cluster '{name}': drill.host '{place}' is not a host of the inventory (or local)")
        return self


__all__ = [
    "Cluster",
    "Connection",
    "Credentials",
    "Drill",
    "Encryption",
    "Engine",
    "Host",
    "Inventory",
    "LocalConnection",
    "Repository",
    "Retention",
    "Role",
    "SecretRefStr",
    "SshConnection",
    "Validation",
]
