"""PostgreSQL physical restore and point-in-time recovery.

:func:`~dbrunbook.engines.postgresql.restore_plan.plan_restore` is pure: backup + target + destination -> a plan
that explains itself (the dry run prints it). :func:`run_restore` executes it on the target host through the
execution seam.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from dbrunbook.engines import Login
from dbrunbook.engines.access import ClusterAccess
from dbrunbook.engines.postgresql.archive import restore_command
from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.engines.postgresql.restore_plan import RestorePlan, recovery_settings
from dbrunbook.engines.postgresql.restore_result import PgRestored, RecoveryStop
from dbrunbook.engines.restore_result import RestoreDryRun, WalReached
from dbrunbook.errors import DatabaseAuthError, DbrunbookError, RecoveryStoppedEarly, RestoreError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor, redacted
from dbrunbook.execution.poll import REAL, Clock, wait_until
from dbrunbook.inventory.model import Cluster, Host
from dbrunbook.repository import hostconfig
from dbrunbook.repository.manifest import Manifest, manifest_key

Confirm = Callable[[str], None]
Step = Callable[[str], None]


def backup_tablespaces(ctx: ClusterAccess, chain: Sequence[Manifest]) -> dict[str, str]:
    """Every tablespace of the chain (oid -> directory on the source), from its tablespace_map objects."""
    from dbrunbook.engines.postgresql.physical import parse_tablespace_map
    from dbrunbook.repository.objects import load_bytes

    found: dict[str, str] = {}
    for m in chain:
        for o in m.objects:
            if o.name == "tablespace_map":
                found.update(parse_tablespace_map(load_bytes(ctx.storage, o.key, ctx.identities()).decode()))
    return found


def prepare_target(ex: HostExecutor, host: Host, plan: RestorePlan, *, force: bool, confirm: Confirm) -> None:
    d = plan.data_dir
    busy_spaces = _busy_tablespaces(ex, plan, force=force)
    data_empty = _is_empty(ex, d, "data directory")
    port_busy = _port_in_use(ex, host, plan.port)
    if (not data_empty or port_busy) and not force:
        what = f"{d} is not empty" if not data_empty else f"port {plan.port} is in use"
        raise RestoreError(f"refusing to restore on {plan.host}: {what}", hint="use --force to replace it")
    if not data_empty or port_busy:
        _clear_data_dir(ex, host, plan, confirm)
    if busy_spaces:
        # Last, once every refusal above has had its chance: nothing is deleted for a restore that stops.
        confirm(f"delete everything in tablespace directories {', '.join(busy_spaces.values())} on {plan.host}")
        for loc in busy_spaces.values():
            ex.run(Command(("find", loc, "-mindepth", "1", "-delete"), description="empty a tablespace directory"))
    ex.run(Command(("mkdir", "-p", "-m", "0700", d), description="create the data directory"))
    ex.run(Command(("chmod", "0700", d), description="data directory mode"))


def _is_empty(ex: HostExecutor, path: str, what: str) -> bool:
    return ex.run(
        Command(
            ("sh", "-c", 'test ! -e "$1" || test -z "$(ls -A "$1")"', "sh", path),
            mutating=False,
            check=False,
            description=f"is the {what} empty",
        )
    ).ok


def _port_in_use(ex: HostExecutor, host: Host, port: int) -> bool:
    busy = ex.run(
        Command(
            (host.binary("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "3"),
            mutating=False,
            check=False,
            description="is the port in use",
        )
    )
    return busy.exit_code in (0, 1)


def _busy_tablespaces(ex: HostExecutor, plan: RestorePlan, *, force: bool) -> dict[str, str]:
    """The plan's tablespace directories that hold something (oid -> directory); refuses the restore unless
    every one of them may be emptied."""
    busy_spaces = {oid: loc for oid, loc in plan.tablespaces.items() if not _is_empty(ex, loc, "tablespace directory")}
    for oid, loc in busy_spaces.items():
        # The source's own directory (the default, and what a replica mirrors) is never emptied, even with
        # --force: only a directory the operator named with --tablespace is.
        if not force or oid not in plan.remapped:
            raise RestoreError(
                f"refusing to restore on {plan.host}: tablespace directory {loc} is not empty",
                hint=f"map it elsewhere with --tablespace {oid}=/new/dir"
                + ("" if oid not in plan.remapped else ", or use --force to replace it"),
            )
    return busy_spaces


def _clear_data_dir(ex: HostExecutor, host: Host, plan: RestorePlan, confirm: Confirm) -> None:
    """Stop the server in the data directory and empty it (--force), then make sure the port is free."""
    d = plan.data_dir
    confirm(f"stop any server in {d} on {plan.host} and delete everything in it")
    ex.run(
        Command(
            (host.binary("pg_ctl"), "stop", "-D", d, "-m", "fast", "-w"), check=False, description="stop old server"
        )
    )
    ex.run(Command(("find", d, "-mindepth", "1", "-delete"), description="empty the data directory"))
    if _port_in_use(ex, host, plan.port) and not ex.settings.dry_run:
        raise RestoreError(f"port {plan.port} on {plan.host} is used by a server outside {d}; pick another --port")


def run_restore(
    ctx: ClusterAccess,
    plan: RestorePlan,
    target_cluster: Cluster,
    *,
    force: bool,
    confirm: Confirm,
    jobs: int = 2,
    step: Step = lambda _m: None,
    timeout: float = 3600,
) -> PgRestored | RestoreDryRun:
    host = target_cluster.hosts[plan.host]
    ex = ctx.executor_for(target_cluster, plan.host)
    agent = ctx.agent_on(ex, host)
    started = time.monotonic()
    step("checking the target")
    prepare_target(ex, host, plan, force=force, confirm=confirm)
    config_dir = f"{ex.home()}/.config/dbrunbook/restore-{plan.cluster}-{plan.port}"
    # Read before anything starts: segments archived while the copy replays need not be in it, those
    # already there must (and a strange name in the archive fails the restore now, not after the unpack).
    archive_end = newest_archived(ctx, plan) if plan.target.kind == "latest" and not ctx.settings.dry_run else None
    restored: PgRestored | RestoreDryRun | None = None
    try:
        config = hostconfig.install(
            ex, config_dir, hostconfig.build(ctx.name, ctx.cluster, ctx.resolver, with_identities=True)
        )
        log = _unpack_and_start(ex, host, agent, config, plan, jobs=jobs, step=step)
        if ctx.settings.dry_run:
            restored = RestoreDryRun(plan, ctx.settings.plan)
        else:
            step(f"replaying WAL up to {plan.target.describe()}")
            stop = wait_for_target(ctx, ex, host, plan, log, timeout=timeout)
            rto = round(time.monotonic() - started, 2)
            # The private identities stay on the target only while the copy replays WAL: a copy paused at its
            # target still needs them, anything else (promoted, failed, dry run) loses them before this returns.
            restored = PgRestored(plan, stop, rto, log, keys_on_host=None if stop.promoted else config_dir)
            if archive_end is not None:
                check_reached_archive_end(plan, stop.reached, archive_end)
    finally:
        kept = isinstance(restored, PgRestored) and restored.keys_on_host is not None
        removed = kept or _remove_keys(ex, config_dir)
    assert restored is not None  # the try block either set it or raised
    if removed or not isinstance(restored, PgRestored):
        return restored
    # Said, not raised: the restore itself worked.
    warning = f"could not remove {config_dir} on {plan.host}: it holds private keys, remove it"
    return replace(restored, keys_on_host=config_dir, warning=warning)


def _unpack_and_start(
    ex: HostExecutor, host: Host, agent: str, config: str, plan: RestorePlan, *, jobs: int, step: Step
) -> str:
    """Unpack the chain, write the recovery settings and start the server; returns the server's log file."""
    step(f"unpacking backup {plan.backup_id}")
    ex.run(_restore_files_command(agent, config, plan, jobs))
    ex.run(
        Command(
            (
                "sh",
                "-c",
                'cat >> "$1/postgresql.auto.conf" && rm -f "$1/standby.signal" && touch "$1/recovery.signal"',
                "sh",
                plan.data_dir,
            ),
            stdin=recovery_settings(plan.target, restore_command(agent, config), plan.port),
            description="write recovery settings",
        )
    )
    log = f"{plan.data_dir}/dbrunbook-restore.log"
    step(f"starting PostgreSQL on port {plan.port}")
    ex.run(
        Command((host.binary("pg_ctl"), "start", "-D", plan.data_dir, "-l", log, "-W"), description="start PostgreSQL")
    )
    return log


def _restore_files_command(agent: str, config: str, plan: RestorePlan, jobs: int) -> Command:
    """The agent's unpack of every backup of the chain, each pinned to its manifest's digest."""
    return Command(
        (
            agent,
            "restore-files",
            "--config",
            config,
            *(
                arg
                for backup_id in plan.chain or [plan.backup_id]
                for arg in ("--manifest-key", manifest_key(backup_id), "--manifest-digest", plan.digests[backup_id])
            ),
            *(arg for oid, location in plan.tablespaces.items() for arg in ("--tablespace", f"{oid}={location}")),
            "--dest",
            plan.data_dir,
            "--jobs",
            str(jobs),
        ),
        description="unpack backup files",
    )


def _remove_keys(ex: HostExecutor, config_dir: str) -> bool:
    try:
        return ex.run(Command(("rm", "-rf", config_dir), check=False, description="remove the restore's keys")).ok
    except DbrunbookError:
        return False


def newest_segment_start(names: Sequence[str], seg_size: int) -> tuple[str, int] | None:
    """The newest whole archived WAL segment of the newest timeline (the one ``recovery_target_timeline =
    'latest'`` follows) and the LSN it starts at."""
    from dbrunbook.engines.postgresql.lsn import segment_position, segment_start
    from dbrunbook.engines.postgresql.wal import SEGMENT

    whole = [n for n in names if (m := SEGMENT.match(n)) and m.group(4) is None and _exists(n, seg_size)]
    if not whole:
        return None
    timeline = max(n[:8] for n in whole)
    newest = max((n for n in whole if n[:8] == timeline), key=segment_position)
    return newest, segment_start(newest, seg_size)


def _exists(name: str, seg_size: int) -> bool:
    """Can a segment of this size have this name? (Anything can write into the repository.)"""
    from dbrunbook.engines.postgresql.lsn import position

    try:
        position(name, seg_size)
    except DbrunbookError:
        return False
    return True


def newest_archived(ctx: ClusterAccess, plan: RestorePlan) -> tuple[str, int] | None:
    """The end of the archive a restore to latest must reach: on the backup's timeline or a later one that
    has its history file (the timelines recovery can follow; a stray name elsewhere is not a target)."""
    from dbrunbook.repository.logs import name_of

    names = [name_of(i.key) for i in ctx.storage.list("wal/")]
    own = (plan.wal_from or "00000001")[:8]
    followed = {own} | {n[:8] for n in names if n.endswith(".history") and n[:8] > own}
    return newest_segment_start([n for n in names if n[:8] in followed], plan.wal_segment_size)


def check_reached_archive_end(plan: RestorePlan, reached: WalReached, newest: tuple[str, int]) -> None:
    """PostgreSQL ends recovery quietly at the first segment it cannot get and promotes. A restore to "latest"
    must show that replay got into the newest segment archived before it started, or a hole in the archive
    (or a fetch that failed as "not there") silently drops every later transaction. The copy is left running
    for a look."""
    from dbrunbook.engines.postgresql.lsn import parse_lsn, segment_name

    if not reached.lsn:
        return
    lsn = parse_lsn(reached.lsn)
    if lsn < newest[1]:
        at = segment_name(int(newest[0][:8], 16), lsn, plan.wal_segment_size)
        raise RecoveryStoppedEarly(
            f"recovery of {plan.backup_id} stopped at LSN {reached.lsn} (segment {at}), before the newest archived "
            f"WAL segment {newest[0]}: later transactions are missing; the copy is left running on "
            f"{plan.host}:{plan.port} for inspection",
            hint="wal.check shows gaps in the archive; the server log shows which segment could not be restored",
        )


PROGRESS_SQL = (
    # The pause state function raises once recovery is over, hence the CASE.
    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END, "
    "pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp()"
)
POLL_SCRIPT = (
    '"$1" status -D "$2" >/dev/null; s=$?; echo "status=$s"; [ "$s" -eq 0 ] || exit 0; '
    '"$3" -q -h 127.0.0.1 -p "$4" -t 2 || exit 0; '
    'q() { PGPASSFILE="$5" "$6" -X -w -At -F "|" -h 127.0.0.1 -p "$4" -U "$7" -d postgres -c "$8"; }; '
    # A failed query is reported (asked again for its message), not hidden: a refused login would
    # otherwise look like a recovery that never ends.
    'q "$@" 2>/dev/null || printf "error=%s\\n" "$(q "$@" 2>&1 >/dev/null | tr "\\n" " ")"'
)
#: psql's words for a login the server will never accept, however long the poll goes on
LOGIN_REFUSED = re.compile(r"authentication failed|no password supplied|no pg_hba\.conf entry")


def wait_for_target(
    ctx: ClusterAccess,
    ex: HostExecutor,
    host: Host,
    plan: RestorePlan,
    log: str,
    *,
    timeout: float,
    clock: Clock = REAL,
) -> RecoveryStop:
    """Poll the restored server from the host itself: one short command per second, no tunnel."""
    login: Login = ctx.login("postgres")
    pgpass = pgpass_line(plan.port, login.user, login.password.reveal() if login.password else "")
    with ex.secret_file(pgpass, "pgpass") as passfile:

        def progress() -> RecoveryStop | None:
            out = ex.run(_poll_command(host, plan, passfile, login.user)).stdout.strip().splitlines()
            return _read_progress(ex, plan, log, login.user, out)

        reached = wait_until(progress, timeout=timeout, interval=1.0, clock=clock)
    if reached is not None:
        return reached
    raise RestoreError(f"recovery on {plan.host}:{plan.port} did not reach {plan.target.describe()} in {timeout:g}s")


def _poll_command(host: Host, plan: RestorePlan, passfile: str, user: str) -> Command:
    return Command(
        (
            "sh",
            "-c",
            POLL_SCRIPT,
            "sh",
            host.binary("pg_ctl"),
            plan.data_dir,
            host.binary("pg_isready"),
            str(plan.port),
            passfile,
            host.binary("psql"),
            user,
            PROGRESS_SQL,
        ),
        mutating=False,
        check=False,
        description="recovery progress",
    )


def _read_progress(ex: HostExecutor, plan: RestorePlan, log: str, user: str, out: list[str]) -> RecoveryStop | None:
    """What one poll says: where recovery stopped (promoted or paused at the target), None while it goes on;
    raises when the server stopped or refuses the login."""
    if out and out[0] == "status=3":  # not running: recovery failed and the server shut down
        tail = ex.run(Command(("tail", "-n", "20", log), mutating=False, check=False)).stdout
        raise RestoreError(f"PostgreSQL on {plan.host}:{plan.port} stopped during recovery: {why_stopped(tail)}")
    if len(out) > 1 and out[1].startswith("error=") and LOGIN_REFUSED.search(out[1]):
        raise DatabaseAuthError(
            f"PostgreSQL on {plan.host}:{plan.port} refused {user}'s login while recovery was polled: "
            f"{redacted(out[1].removeprefix('error=').strip())}",
            hint="the restored copy keeps the backup's roles: check credentials.password against them",
        )
    fields = out[1].split("|") if len(out) > 1 else []
    if len(fields) == 4:
        in_recovery = fields[0] == "t"
        if not in_recovery or (plan.target.action == "pause" and fields[1] == "paused"):
            return RecoveryStop(WalReached(fields[2] or None, fields[3] or None), promoted=not in_recovery)
    return None


# Refusals of a connection (ours, polling) while the server starts or stops: never why recovery stopped.
_REFUSED = re.compile(r"the database system is (starting up|in recovery mode|shutting down|not yet accepting)")


def why_stopped(log_tail: str) -> str:
    """The line of a restored server's log that says why recovery stopped: the last PANIC or FATAL of the
    server itself, not the refusals our own progress polls got while it was in recovery."""
    lines = log_tail.splitlines()
    serious = [ln for ln in lines if ("FATAL" in ln or "PANIC" in ln) and not _REFUSED.search(ln)]
    return (serious[-1] if serious else log_tail[-300:]).strip()
