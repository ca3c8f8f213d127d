"""MariaDB restore and point-in-time recovery: a fresh server instance on the target host, the backup put in
it (dump loaded, or mariabackup chain prepared), then archived binlogs replayed up to the target.

The plan is a pure function of the catalog and the archive listing; :func:`run_my_restore` only executes
it. The restored server is left running on its own port and data directory, like a PostgreSQL restore.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbrunbook.engines.access import ClusterAccess
from dbrunbook.engines.mariadb.binlog import Coordinates, Gtid, ReplayTarget, covers, files_to_replay, parse_gtid_state
from dbrunbook.engines.mariadb.driver import MariaDB, client_defaults
from dbrunbook.engines.mariadb.host import Replay
from dbrunbook.engines.mariadb.restore_result import MyRestored
from dbrunbook.engines.mariadb.rowcount import uncounted
from dbrunbook.engines.restore_result import RestoreDryRun, dry_run_lines
from dbrunbook.errors import RestoreError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.execution.poll import REAL, Clock, wait_until
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository import hostconfig
from dbrunbook.repository.manifest import Manifest, manifest_key

Step = Callable[[str], None]
Confirm = Callable[[str], None]
PID_FILE = "mariadbd.pid"
SOCKET = "mariadbd.sock"
LOG = "dbrunbook-restore.log"
START_SCRIPT = (
    'log=$1; want=$2; shift 2; for b in "$want" /usr/sbin/mariadbd /usr/libexec/mariadbd /usr/sbin/mysqld; do '
    '[ -x "$b" ] && break; done; setsid "$b" "$@" >>"$log" 2>&1 </dev/null &'
)


@dataclass(frozen=True)
class MyRestorePlan:
    cluster: str
    backup_id: str
    kind: str
    chain: list[str]
    host: str
    data_dir: str
    port: int
    target: ReplayTarget
    start: Coordinates
    server_id: int
    binlogs: list[str]
    binlog_keys: list[str] = field(repr=False)
    check_rows: bool = False  # count every table after the load against the dump's own counts
    digests: dict[str, str] = field(default_factory=dict, repr=False)  # backup id -> Manifest.digest()

    def steps(self) -> list[str]:
        out = [f"check that {self.data_dir} is empty and port {self.port} is free on {self.host}"]
        if self.kind == "logical":
            out.append(f"create a new server in {self.data_dir} (mariadb-install-db) and start it on port {self.port}")
            out.append(f"load dump.sql of {self.backup_id}")
            if self.check_rows:
                out.append("count the rows of every table and compare them with the counts the dump recorded")
        else:
            out.append(f"extract {' + '.join(self.chain)} (mbstream) and prepare (mariabackup --prepare)")
            out.append(f"start the restored server on port {self.port}")
        if self.binlogs:
            out.append(
                f"replay {len(self.binlogs)} archived binlogs of server {self.server_id} from "
                f"{self.start.file}:{self.start.position} ({self.binlogs[0]}..{self.binlogs[-1]}) "
                f"up to {self.target.describe()}, in the same session"
            )
        else:
            out.append("no binlog to replay: the server stays at the backup's own point")
        return out

    def dry_run_lines(self) -> list[str]:
        return dry_run_lines(self.backup_id, self.host, self.data_dir, self.steps())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "backup": self.backup_id,
            "kind": self.kind,
            "chain": self.chain,
            "to": self.host,
            "data_dir": self.data_dir,
            "port": self.port,
            "target": self.target.describe(),
            "start": self.start.as_dict(),
            "binlogs": self.binlogs,
            "steps": self.steps(),
        }


def plan_my_restore(
    cluster: str,
    manifest: Manifest,
    chain: Sequence[Manifest],
    archive: dict[str, str],
    to: str,
    data_dir: str,
    port: int,
    target: ReplayTarget,
    *,
    check_rows: bool = False,
) -> MyRestorePlan:
    """What a restore will do, or why it cannot: a target before the backup, a hole in the binlogs."""
    coords = manifest.extra.get("binlog")
    if not coords:
        raise RestoreError(f"backup {manifest.backup_id} records no binlog position: it cannot be rolled forward")
    start = Coordinates(str(coords["file"]), int(coords["position"]), str(coords.get("gtid") or ""))
    # A dump is consistent at its start; mariabackup at its end (it notes the position under its last lock).
    consistent_at = manifest.start_time if manifest.kind == "logical" else manifest.stop_time
    if target.kind == "time" and target.time and target.time < consistent_at:
        raise RestoreError(
            f"target time {target.time.isoformat()} is before backup {manifest.backup_id} "
            f"({consistent_at.isoformat()}): pick an older backup with --backup"
        )
    if target.kind == "gtid" and target.gtid and covers(parse_gtid_state(start.gtid), target.gtid):
        raise RestoreError(
            f"GTID {target.gtid} is already in backup {manifest.backup_id} (at {start.gtid}): pick an older backup"
        )
    why_not = uncounted(manifest) if check_rows else None
    if why_not is not None:
        raise RestoreError(
            f"--check-rows compares a dump's recorded row counts, but {why_not}",
            hint="drop --check-rows; physical copies are checked table by table with mariadb-check (drill.run)",
        )
    names = files_to_replay(start, list(archive), target)
    return MyRestorePlan(
        cluster=cluster,
        backup_id=manifest.backup_id,
        kind=manifest.kind,
        chain=[m.backup_id for m in chain],
        host=to,
        data_dir=data_dir.rstrip("/") or "/",
        port=port,
        target=target,
        start=start,
        server_id=int(manifest.extra.get("server_id", 0)),
        binlogs=names,
        binlog_keys=[archive[n] for n in names],
        check_rows=check_rows,
        digests={m.backup_id: m.digest() for m in [*chain, manifest]},
    )


def server_argv(host: Host, data_dir: str, port: int) -> list[str]:
    """A private server for the restored data: loopback only, its own socket, pid file and binlog (so its
    GTID position tells how far the replay got)."""
    return [
        host.binary("mariadbd"),
        "--no-defaults",
        f"--datadir={data_dir}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={data_dir}/{SOCKET}",
        f"--pid-file={data_dir}/{PID_FILE}",
        f"--server-id={port}",
        "--log-bin=dbrunbook-restore-bin",
        "--binlog-format=ROW",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--skip-name-resolve",
        # Replayed row events and BINLOG statements can be far bigger than the 16 MiB default.
        "--max-allowed-packet=1G",
        # A restore that crashes is run again, so it need not pay for durability while it loads; these
        # speed up a dump load. The server keeps them until it is restarted with your own settings.
        "--innodb-flush-log-at-trx-commit=2",
        "--sync-binlog=0",
        "--innodb-buffer-pool-size=256M",
        "--innodb-log-file-size=256M",
    ]


def _port_check(agent: str, port: int) -> Command:
    python = agent.rsplit("/", 1)[0] + "/python"
    probe = (
        "import socket,sys; s=socket.socket(); s.settimeout(3); "
        "sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 1)"
    )
    return Command((python, "-c", probe, str(port)), mutating=False, check=False, description="is the port in use")


def _prepare_target(ex: HostExecutor, agent: str, plan: MyRestorePlan, *, force: bool, confirm: Confirm) -> None:
    d = plan.data_dir
    empty = ex.run(
        Command(
            ("sh", "-c", 'test ! -e "$1" || test -z "$(ls -A "$1")"', "sh", d),
            mutating=False,
            check=False,
            description="is the data directory empty",
        )
    ).ok
    busy = ex.run(_port_check(agent, plan.port)).exit_code == 0
    if (not empty or busy) and not force:
        what = f"{d} is not empty" if not empty else f"port {plan.port} is in use"
        raise RestoreError(f"refusing to restore on {plan.host}: {what}", hint="use --force to replace it")
    if not empty or busy:
        confirm(f"stop the server of {d} on {plan.host} and delete everything in it")
        stop_server(ex, d)
        ex.run(Command(("find", d, "-mindepth", "1", "-delete"), description="empty the data directory"))
        if ex.run(_port_check(agent, plan.port)).exit_code == 0 and not ex.settings.dry_run:
            raise RestoreError(f"port {plan.port} on {plan.host} is used by a server outside {d}; pick another --port")
    ex.run(Command(("mkdir", "-p", "-m", "0700", d), description="create the data directory"))


def stop_server(ex: HostExecutor, data_dir: str, grace: int = 60) -> None:
    """Stop the server a restore started in ``data_dir`` (by its pid file); nothing when there is none."""
    script = (
        'p=$(cat "$1/' + PID_FILE + '" 2>/dev/null) || exit 0; kill "$p" 2>/dev/null || exit 0; '
        # After SIGKILL it still waits until the process is gone: its port and files are free on return.
        'i=0; while kill -0 "$p" 2>/dev/null; do i=$((i+1)); [ $i -gt $2 ] && kill -9 "$p"; '
        "[ $i -gt $(($2+30)) ] && exit 0; sleep 1; done"
    )
    ex.run(
        Command(("sh", "-c", script, "sh", data_dir, str(grace)), check=False, description="stop the restored server")
    )


def _start(ex: HostExecutor, host: Host, plan: MyRestorePlan, timeout: float = 120, *, clock: Clock = REAL) -> None:
    log = f"{plan.data_dir}/{LOG}"
    argv = server_argv(host, plan.data_dir, plan.port)
    ex.run(
        Command(
            # Distributions put the server in sbin or libexec, not beside the clients bin_dir names.
            ("sh", "-c", START_SCRIPT, "sh", log, *argv),
            description=f"start MariaDB on port {plan.port}",
        )
    )
    if ex.settings.dry_run:
        return
    ping = Command(
        (host.binary("mariadb-admin"), f"--socket={plan.data_dir}/{SOCKET}", "--connect-timeout=2", "ping"),
        mutating=False,
        check=False,
        description="is the server up",
    )

    def state() -> str | None:
        if ex.run(ping).ok:
            return "up"
        # Wait as long as the server may take (InnoDB writes its redo log first, slowly on a busy host); give
        # up early only when its log says it stopped.
        stopped = ex.run(
            Command(("grep", "-q", "-e", "] Aborting", log), mutating=False, check=False, description="did it stop")
        ).ok
        return "stopped" if stopped else None

    if wait_until(state, timeout=timeout, interval=1.0, clock=clock) == "up":
        return
    tail = ex.run(Command(("tail", "-n", "5", log), mutating=False, check=False)).stdout
    raise RestoreError(
        f"the restored MariaDB on {plan.host} did not start: {' | '.join(tail.strip().splitlines()[-3:])}"
    )


def run_my_restore(
    ctx: ClusterAccess,
    plan: MyRestorePlan,
    target_cluster: Cluster,
    *,
    force: bool,
    confirm: Confirm,
    jobs: int = 2,
    step: Step = lambda _m: None,
) -> MyRestored | RestoreDryRun:
    host = target_cluster.hosts[plan.host]
    ex = ctx.executor_for(target_cluster, plan.host)
    agent = ctx.agent_on(ex, host)
    engine = ctx.engine
    assert isinstance(engine, MariaDB)
    started = time.monotonic()
    step("checking the target")
    _prepare_target(ex, agent, plan, force=force, confirm=confirm)
    with hostconfig.temporary(ex, ctx.name, ctx.cluster, ctx.resolver, with_identities=True) as config:
        if plan.kind == "logical":
            step(f"creating a new server in {plan.data_dir}")
            ex.run(
                Command(
                    (
                        host.binary("mariadb-install-db"),
                        "--no-defaults",
                        f"--datadir={plan.data_dir}",
                        "--skip-test-db",
                        "--auth-root-authentication-method=socket",
                    ),
                    description="create the system tables",
                )
            )
        else:
            _unpack_chain(ex, agent, config, host, plan, engine, step)
        step(f"starting MariaDB on port {plan.port}")
        _start(ex, host, plan)
        if ctx.settings.dry_run:
            return RestoreDryRun(plan, ctx.settings.plan)
        replayed: Replay | None = None
        if plan.kind == "logical" or plan.binlogs:
            step(
                ("loading the dump" if plan.kind == "logical" else "")
                + (" and " if plan.kind == "logical" and plan.binlogs else "")
                + (f"replaying {len(plan.binlogs)} binlogs up to {plan.target.describe()}" if plan.binlogs else "")
            )
            replayed = _replay(ctx, ex, agent, config, host, plan, engine)
    reached = _reached(ctx, target_cluster, plan)
    return MyRestored(
        plan,
        replayed,
        reached,
        rto_seconds=round(time.monotonic() - started, 2),
        socket=f"{plan.data_dir}/{SOCKET}",
        log=f"{plan.data_dir}/{LOG}",
        stop=f"kill $(cat {shlex.quote(plan.data_dir)}/{PID_FILE})",
    )


def _unpack_chain(
    ex: HostExecutor, agent: str, config: str, host: Host, plan: MyRestorePlan, engine: MariaDB, step: Step
) -> None:
    if engine.stream_tool is None or engine.backup_tool is None:
        raise RestoreError(f"{engine.name}: physical restores need Percona XtraBackup, not supported yet")
    with ex.private_dir() as scratch:
        for i, backup_id in enumerate(plan.chain):
            dest = plan.data_dir if i == 0 else f"{scratch}/inc{i}"
            step(f"extracting {backup_id}")
            ex.run(Command(("mkdir", "-p", dest), description="extraction directory"))
            ex.run(
                Command(
                    (
                        agent,
                        "my-extract",
                        "--config",
                        config,
                        "--manifest-key",
                        manifest_key(backup_id),
                        "--manifest-digest",
                        plan.digests[backup_id],
                        "--",
                        host.binary(engine.stream_tool),
                        "-x",
                        "-C",
                        dest,
                    ),
                    description="extract the backup",
                )
            )
        tool = host.binary(engine.backup_tool)
        step(f"preparing {len(plan.chain)} backups (mariabackup --prepare)")
        ex.run(Command((tool, "--prepare", f"--target-dir={plan.data_dir}"), description="prepare the full backup"))
        for i in range(1, len(plan.chain)):
            ex.run(
                Command(
                    (tool, "--prepare", f"--target-dir={plan.data_dir}", f"--incremental-dir={scratch}/inc{i}"),
                    description=f"apply incremental {plan.chain[i]}",
                )
            )


def _replay(
    ctx: ClusterAccess, ex: HostExecutor, agent: str, config: str, host: Host, plan: MyRestorePlan, engine: MariaDB
) -> Replay | None:
    """Load and replay through the agent; what it did, as it reports it (None: it reported nothing)."""
    import json

    socket = f"{plan.data_dir}/{SOCKET}"
    target_flags: list[str] = []
    if plan.target.kind == "time" and plan.target.time:
        target_flags = ["--target-time", plan.target.time.isoformat()]
    elif plan.target.kind == "position":
        target_flags = ["--target-position", f"{plan.target.file}:{plan.target.position}"]
    elif plan.target.kind == "gtid":
        target_flags = ["--target-gtid", str(plan.target.gtid)]

    def command(defaults: str | None) -> Command:
        return Command(
            (
                agent,
                "my-replay",
                "--config",
                config,
                *(
                    [
                        "--dump-manifest-key",
                        manifest_key(plan.backup_id),
                        "--dump-manifest-digest",
                        plan.digests[plan.backup_id],
                    ]
                    if plan.kind == "logical"
                    else []
                ),
                "--start",
                f"{plan.start.file}:{plan.start.position}",
                *(a for k in plan.binlog_keys for a in ("--binlog-key", k)),
                "--binlog-tool",
                host.binary(engine.binlog_tool),
                *target_flags,
                *(["--check-rows"] if plan.check_rows else []),
                "--",
                *engine.client_argv(host, defaults, socket, plan.port),
            ),
            description="load and replay",
        )

    if plan.kind == "logical":
        res = ex.run(command(None))  # the new server's socket account of the OS user
    else:
        login = ctx.login()
        text = client_defaults(login.user, login.password.reveal() if login.password else "")
        with ex.secret_file(text, "client.cnf") as defaults:
            res = ex.run(command(defaults))
    lines = res.stdout.strip().splitlines()
    return Replay.from_json(json.loads(lines[-1])) if lines else None


def _reached(ctx: ClusterAccess, target_cluster: Cluster, plan: MyRestorePlan) -> str:
    """Where the restored server stands: the backup's GTID state moved on by what the replay logged."""
    host = target_cluster.hosts[plan.host].model_copy(update={"port": plan.port})
    ex = ctx.executor_for(target_cluster, plan.host)
    with ctx.engine.session(ex, host, ctx.login()) as db:
        logged = db.scalar(SqlStatement("SELECT @@gtid_binlog_pos", mutating=False, description="replayed GTIDs"))
    state = parse_gtid_state(plan.start.gtid)
    for g in parse_gtid_state(str(logged or "")).values():
        if g.server != plan.port:  # the dump's own statements are logged under the restored server's id
            state[g.domain] = g
    return ",".join(str(g) for g in sorted(state.values(), key=lambda g: g.domain))


__all__ = ["Gtid", "MyRestorePlan", "plan_my_restore", "run_my_restore", "stop_server"]
