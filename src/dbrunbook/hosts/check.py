"""``inventory.check``: what each host and server actually is, compared with what the inventory declares.

:func:`assess` is pure (declared topology + probe snapshot -> problems); :func:`check_cluster` gathers the
snapshots through the execution seam, one thread per host, and never lets one host's failure hide another's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dbrunbook.engines import BinaryInfo, EngineDriver, Login, ServerProbe, get_engine
from dbrunbook.errors import DbrunbookError, HostError
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Role
from dbrunbook.redact import REDACTOR

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class HostReport:
    cluster: str
    host: str
    declared_role: str
    via: str
    reachable: bool = False
    server_version: str | None = None
    actual_role: str | None = None
    upstream: str | None = None
    replication_state: str | None = None
    lag_seconds: float | None = None
    system_id: str | None = None
    binaries: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    _exc: DbrunbookError | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_exc")
        data["ok"] = self.ok
        return data

    def fail(self, exc: DbrunbookError) -> None:
        self._exc = exc
        self.error = {
            "domain": exc.domain,
            "type": type(exc).__name__,
            "exit_code": exc.exit_code,
            "message": exc.one_line(),
        }


def assess(cluster: Cluster, host_name: str, probe: ServerProbe | None, binaries: list[BinaryInfo]) -> list[str]:
    """Every way the host differs from the inventory, as sentences an operator can act on."""
    problems: list[str] = []
    host = cluster.hosts[host_name]
    server_major = probe.major if probe else None
    for b in binaries:
        if not b.present:
            where = f" in {host.bin_dir}" if host.bin_dir else " on PATH"
            problems.append(f"client binary {b.name} not found{where}")
        elif server_major and b.major and b.major != server_major:
            problems.append(f"{b.name} is version {b.major} but the server is {server_major}")
    if probe is None:
        return problems
    if cluster.version and probe.major != cluster.version:
        problems.append(f"server is version {probe.major}, inventory expects {cluster.version}")
    if probe.role is not host.role:
        actual = "a primary (accepts writes)" if probe.role is Role.PRIMARY else "a replica (in recovery)"
        problems.append(f"declared {host.role.value} but the server is {actual}")
        return problems
    if probe.role is Role.REPLICA:
        if probe.replication_state not in ("streaming",):
            problems.append(f"replication is not running ({probe.replication_state})")
        upstream_name = cluster.upstream_of(host_name)
        assert upstream_name is not None
        up = cluster.hosts[upstream_name]
        if probe.upstream_port is not None and not _same_endpoint(
            probe.upstream_host, probe.upstream_port, up.address, up.port
        ):
            problems.append(
                f"replicates from {probe.upstream_host}:{probe.upstream_port}, "
                f"inventory says {upstream_name} ({up.address}:{up.port})"
            )
    return problems


def _same_endpoint(host_a: str | None, port_a: int, host_b: str, port_b: int) -> bool:
    if port_a != port_b:
        return False
    if host_a is None or host_a == host_b:
        return True
    return host_a in LOOPBACK and host_b in LOOPBACK


def check_host(
    cluster_name: str,
    cluster: Cluster,
    host_name: str,
    executor: HostExecutor,
    engine: EngineDriver,
    login: Login,
) -> HostReport:
    host = cluster.hosts[host_name]
    report = HostReport(cluster_name, host_name, host.role.value, executor.describe())
    probe: ServerProbe | None = None
    binaries: list[BinaryInfo] = []
    try:
        executor.connect()
        report.reachable = True
        binaries = engine.parse_binaries(executor.run(engine.binaries_command(host)).stdout)
        report.binaries = [
            {"name": b.name, "path": b.path, "version": b.version_line, "major": b.major} for b in binaries
        ]
        with engine.session(executor, host, login) as db:
            probe = engine.probe(db)
    except DbrunbookError as exc:
        report.fail(exc)
    if probe is not None:
        report.server_version = probe.version
        report.actual_role = probe.role.value
        report.system_id = probe.system_id
        if probe.upstream_port is not None:
            report.upstream = f"{probe.upstream_host}:{probe.upstream_port}"
        report.replication_state = probe.replication_state
        report.lag_seconds = probe.lag_seconds
    report.problems = assess(cluster, host_name, probe, binaries)
    return report


def check_clusters(
    clusters: dict[str, Cluster],
    executor_for: Any,
    login_for: Any,
    *,
    parallel: int = 8,
) -> list[HostReport]:
    jobs = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for cname, cluster in clusters.items():
            engine = get_engine(cluster.engine.value)
            for hname in cluster.hosts:
                jobs.append(pool.submit(_check_one, cname, cluster, hname, engine, executor_for, login_for))
        return [j.result() for j in jobs]


def _check_one(
    cname: str, cluster: Cluster, hname: str, engine: EngineDriver, executor_for: Any, login_for: Any
) -> HostReport:
    try:
        login = login_for(cluster)
        executor = executor_for(cluster, hname)
    except DbrunbookError as exc:
        host = cluster.hosts[hname]
        report = HostReport(cname, hname, host.role.value, host.connection.type)
        report.fail(exc)
        return report
    try:
        return check_host(cname, cluster, hname, executor, engine, login)
    except Exception as exc:
        # One odd host must not hide the report on all the others; the class name points at the bug.
        host = cluster.hosts[hname]
        report = HostReport(cname, hname, host.role.value, executor.describe())
        report.fail(HostError(f"{hname}: unexpected {type(exc).__name__}: {REDACTOR.redact(str(exc))}"))
        return report


def worst_error(reports: list[HostReport]) -> DbrunbookError | None:
    failed = [r for r in reports if r._exc is not None]
    if not failed:
        return None
    first = failed[0]._exc
    assert first is not None
    return first
