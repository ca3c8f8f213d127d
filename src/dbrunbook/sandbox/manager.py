"""``sandbox.up``/``down``/``status``: real servers on loopback, started by the project's own code.

Idempotent: every step first looks at what is already there. A file lock serialises concurrent callers
(parallel test workers all ask for the sandbox at once).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from dbrunbook.engines import Login, get_engine
from dbrunbook.errors import SandboxError
from dbrunbook.execution.command import Command, SqlStatement
from dbrunbook.execution.executor import LocalExecutor, RunSettings
from dbrunbook.execution.sql import DbSession
from dbrunbook.inventory.loader import parse_inventory
from dbrunbook.inventory.model import Inventory
from dbrunbook.redact import Secret
from dbrunbook.sandbox import inventory_gen, mariadb, postgres, seaweed, sshd
from dbrunbook.sandbox.files import write_file
from dbrunbook.sandbox.layout import BUCKET, OPS_USER, Layout
from dbrunbook.sandbox.opsuser import OpsUser, note_path
from dbrunbook.sandbox.proc import wait_for
from dbrunbook.sandbox.state import ClusterState, HostState, SandboxDown, SandboxStatus

SECRET_NAMES = (
    "pg-admin.password",
    "pg-replication.password",
    "mariadb-admin.password",
    "mariadb-replication.password",
    "s3-access-key",
    "s3-secret-key",
)
PASSWORD_NAMES = SECRET_NAMES[:4]
#: In the middle of every database password: each character some file format or shell treats specially
#: (.pgpass fields, option files, comments, quoting, word splitting), so the whole suite proves them.
AWKWARD = ":\\#'\" "

SIGNING_KEY = "manifest-signing.pem"  # the controller's Ed25519 key: backups are signed with it

Step = Callable[[str], None]


@dataclass
class Sandbox:
    layout: Layout
    settings: RunSettings
    inventory_path: Path
    step: Step = lambda _msg: None

    def __post_init__(self) -> None:
        other = self.layout.os_user if self.layout.runs_as_other_user else None
        self.server = LocalExecutor("sandbox", self.settings, os_user=other)
        self.tool = LocalExecutor("sandbox", self.settings)
        #: servers this ``up`` restarted because their settings changed, with the reason
        self.restarted: list[str] = []

    # --- public ------------------------------------------------------------------------------------

    def up(self) -> SandboxStatus:
        with self._locked():
            self.step("checking the sandbox user and folders")
            self._ensure_user()
            self._ensure_dirs()
            keys = self._ensure_secrets()
            self.step("starting SeaweedFS (S3)")
            seaweed.start(self.server, self.layout, keys["s3-access-key"], keys["s3-secret-key"])
            self.step("starting sshd")
            sudo_login = self._sshd_up()
            inventory = self._write_inventory(sudo_login=sudo_login)
            self.step("starting PostgreSQL primary")
            self._postgres_up(inventory, keys)
            self.step("starting MariaDB primary and replica")
            self._mariadb_up(inventory, keys)
            self.step("creating the backup bucket")
            seaweed.ensure_bucket(self.layout, keys["s3-access-key"], keys["s3-secret-key"])
            self.step("waiting for replication")
            self._wait_replication(inventory, keys)
        return replace(self.status(), restarted=tuple(self.restarted))

    def down(self, purge: bool = False) -> SandboxDown:
        with self._locked():
            bindir = self.pg_bindir()
            self.step("stopping servers")
            for member in ("replica", "primary"):
                postgres.stop(self.server, bindir, member, self.layout)
                mariadb.stop(self.server, self.layout, member)
            seaweed.stop(self.server, self.layout)
            sshd.stop(self.server, sshd.main(self.layout))
            ops_sshd = sshd.ops(self.layout)
            if sshd.is_running(ops_sshd):
                sshd.stop(OpsUser(self.layout, self.settings).as_ops, ops_sshd)
            if purge:
                self.step("removing .sandbox and the generated inventory")
                if self.layout.ssh_ops.exists():
                    OpsUser(self.layout, self.settings).remove_folder()
                self.tool.run(Command(("rm", "-rf", str(self.layout.root)), description="purge sandbox"))
                if self.inventory_path.exists():
                    self.tool.run(Command(("rm", "-f", str(self.inventory_path)), description="remove inventory"))
        return SandboxDown(stopped=True, purged=purge, root=str(self.layout.root))

    def status(self) -> SandboxStatus:
        lay = self.layout
        bindir = self.pg_bindir()
        pg_up = lay.pg.exists() and {
            m: postgres.data_dir(lay, m).exists() and postgres.is_running(self.server, bindir, m, lay)
            for m in ("primary", "replica")
        }
        running = {
            "pg-main-1": bool(pg_up and pg_up["primary"]),
            "pg-main-2": bool(pg_up and pg_up["replica"]),
            "mariadb-main-1": mariadb.is_running(lay, "primary"),
            "mariadb-main-2": mariadb.is_running(lay, "replica"),
            "s3": seaweed.is_running(lay),
            "sshd": sshd.is_running(sshd.main(lay)),
        }
        note = Path(note_path(lay))
        sudo_login = not note.exists() and (lay.ssh_ops / "sshd_config").exists()
        if sudo_login:
            running["sshd-ops"] = sshd.is_running(sshd.ops(lay))
        pg_user, my_user = postgres.ADMIN_USER, mariadb.ADMIN_USER
        return SandboxStatus(
            clusters=(
                _cluster_status(
                    "pg-main",
                    "postgresql",
                    lambda port: f"postgresql://{pg_user}@127.0.0.1:{port}/postgres",
                    (lay.port("pg-primary"), lay.port("pg-replica")),
                    running,
                    "ssh+sudo" if sudo_login else "ssh",
                ),
                _cluster_status(
                    "mariadb-main",
                    "mariadb",
                    lambda port: f"mysql://{my_user}@127.0.0.1:{port}/",
                    (lay.port("mariadb-primary"), lay.port("mariadb-replica")),
                    running,
                    "ssh",
                ),
            ),
            s3_endpoint=lay.s3_endpoint,
            bucket=BUCKET,
            ssh=f"{lay.os_user}@127.0.0.1:{lay.port('sshd')}",
            ssh_sudo=f"{OPS_USER}@127.0.0.1:{lay.port('sshd-ops')} -> sudo -u {lay.os_user}" if sudo_login else None,
            notes=(note.read_text().strip(),) if note.exists() else (),
            password_files={name: str(lay.secret(name)) for name in SECRET_NAMES},
            running=running,
            root=str(lay.root),
            inventory=str(self.inventory_path),
        )

    def pg_bindir(self) -> str:
        explicit = os.environ.get("DBRUNBOOK_PG_BINDIR")
        if explicit:
            return explicit
        res = self.tool.run(
            Command(("pg_config", "--bindir"), description="find PostgreSQL binaries", mutating=False, check=False)
        )
        return res.stdout.strip() if res.ok and res.stdout.strip() else "/usr/lib/postgresql/15/bin"

    # --- steps -------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _ensure_user(self) -> None:
        if not self.layout.runs_as_other_user:
            return
        user = self.layout.os_user
        known = self.tool.run(
            Command(("id", "-u", user), description="look up sandbox user", mutating=False, check=False)
        )
        if not known.ok:
            self.tool.run(
                Command(
                    (
                        "useradd",
                        "--system",
                        "--create-home",
                        "--home-dir",
                        f"/var/lib/{user}",
                        "--shell",
                        "/bin/bash",
                        user,
                    ),
                    description=f"create OS user {user}",
                )
            )
        # The servers' user must be able to walk down to .sandbox.
        for parent in reversed(self.layout.root.parents):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                raise SandboxError(
                    f"{parent} is not searchable by other users, so OS user {user} cannot reach the sandbox",
                    hint="chmod o+x it, or set DBRUNBOOK_SANDBOX_DIR to a folder under /var/tmp",
                )

    def _ensure_dirs(self) -> None:
        lay = self.layout
        lay.root.chmod(0o755)
        for d in (lay.secrets, lay.root / "client"):
            d.mkdir(mode=0o700, exist_ok=True)
        owned = [lay.logs, lay.pg, lay.mariadb, lay.mariadb / "run", lay.s3, lay.ssh]
        argv = ["install", "-d", "-m", "0700"]
        if lay.runs_as_other_user:
            argv += ["-o", lay.os_user]
        self.tool.run(Command((*argv, *map(str, owned)), description="make server folders"))

    def _ensure_secrets(self) -> dict[str, Secret]:
        keys: dict[str, Secret] = {}
        identity = self.layout.secret("age-identity.txt")
        if not identity.exists():
            from dbrunbook.repository.crypto import generate_identity

            private, public = generate_identity()
            text = f"# dbrunbook sandbox backup identity\n# public key: {public}\n{private}\n"
            write_file(self.tool, identity, text, private=True)
        signing = self.layout.secret(SIGNING_KEY)
        if not signing.exists():
            from dbrunbook.repository.signing import generate

            write_file(self.tool, signing, generate()[0], private=True)
        for name in SECRET_NAMES:
            path = self.layout.secret(name)
            if not path.exists():
                value = secrets.token_urlsafe(24)
                if name in PASSWORD_NAMES:  # S3 keys stay plain: SeaweedFS and S3 signing are not at issue
                    value = value[:12] + AWKWARD + value[12:]
                write_file(self.tool, path, value + "\n", private=True)
            keys[name] = Secret(path.read_text().strip(), source=f"file:{path}")
        return keys

    def _sshd_up(self) -> bool:
        """Both sshds and the known_hosts file naming their host keys; whether pg-main-2 logs in through sudo."""
        lay = self.layout
        main = sshd.main(lay)
        sshd.prepare(self.server, self.tool, lay, main)
        sshd.start(self.server, main)
        lines = [sshd.known_hosts_line(self.server, main)]
        ops_user = OpsUser(lay, self.settings)
        note = Path(note_path(lay))
        reason = ops_user.unavailable()
        if reason is None:
            self.step(f"starting the sshd of {OPS_USER} (pg-main-2's sudo login)")
            ops_user.ensure()
            spec = sshd.ops(lay)
            sshd.prepare(ops_user.as_ops, self.tool, lay, spec)
            sshd.start(ops_user.as_ops, spec)
            lines.append(sshd.known_hosts_line(ops_user.as_ops, spec))
            note.unlink(missing_ok=True)
        else:
            write_file(self.tool, note, reason + "\n")
        write_file(self.tool, lay.known_hosts, "".join(lines))
        return reason is None

    def _write_inventory(self, *, sudo_login: bool) -> Inventory:
        from dbrunbook.repository.crypto import parse_identities, recipient_of
        from dbrunbook.repository.signing import Signer

        identity = parse_identities(self.layout.secret("age-identity.txt").read_text())[0]
        signer = Signer(self.layout.secret(SIGNING_KEY).read_text()).public
        data = inventory_gen.render(
            self.layout, self.pg_bindir(), recipient_of(identity), signer, sudo_login=sudo_login
        )
        text = inventory_gen.to_yaml(data)
        inventory = parse_inventory(text, str(self.inventory_path))
        self.inventory_path.parent.mkdir(parents=True, exist_ok=True)
        self.inventory_path.write_text(text)
        return inventory

    def _postgres_up(self, inventory: Inventory, keys: dict[str, Secret]) -> None:
        bindir = self.pg_bindir()
        postgres.require_binaries(bindir)
        lay = self.layout
        postgres.init_primary(self.server, bindir, lay, keys["pg-admin.password"])
        self._note_restart(
            postgres.apply_settings(
                self.server,
                bindir,
                "primary",
                lay,
                lay.port("pg-primary"),
                lambda: self._pg_session(inventory, keys, "pg-main-1"),
            )
        )
        postgres.start(self.server, bindir, "primary", lay, lay.port("pg-primary"))
        fresh_replica = not (postgres.data_dir(lay, "replica") / "PG_VERSION").exists()
        if fresh_replica:
            with self._pg_session(inventory, keys, "pg-main-1") as db:
                for stmt in postgres.replication_role_sql(keys["pg-replication.password"]):
                    db.execute(stmt)
                # A leftover slot from a purged replica would hold WAL forever.
                db.execute(
                    SqlStatement(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                        params=(postgres.SLOT,),
                        description="drop stale replica slot",
                    )
                )
        self.step("creating the PostgreSQL replica (pg_basebackup)")
        postgres.init_replica(self.server, bindir, lay, keys["pg-replication.password"])
        self._note_restart(
            postgres.apply_settings(
                self.server,
                bindir,
                "replica",
                lay,
                lay.port("pg-replica"),
                lambda: self._pg_session(inventory, keys, "pg-main-2"),
            )
        )
        postgres.start(self.server, bindir, "replica", lay, lay.port("pg-replica"))

    def _note_restart(self, reason: str | None) -> None:
        if reason:
            self.step(reason)
            self.restarted.append(reason)

    @contextmanager
    def _pg_session(self, inventory: Inventory, keys: dict[str, Secret], host: str) -> Iterator[DbSession]:
        cluster = inventory.clusters["pg-main"]
        login = Login(cluster.credentials.user, keys["pg-admin.password"], "postgres")
        with get_engine("postgresql").session(self.tool, cluster.hosts[host], login) as db:
            yield db

    def _mariadb_up(self, inventory: Inventory, keys: dict[str, Secret]) -> None:
        del inventory
        lay = self.layout
        fresh = {m: mariadb.install(self.server, lay, m) for m in ("primary", "replica")}
        for member, port_name in (("primary", "mariadb-primary"), ("replica", "mariadb-replica")):
            self._note_restart(mariadb.start(self.server, lay, member, lay.port(port_name)))
            if fresh[member]:
                with self._mariadb_socket_session(member, None) as db:
                    for stmt in mariadb.bootstrap_sql(
                        keys["mariadb-admin.password"], keys["mariadb-replication.password"]
                    ):
                        db.execute(stmt)
        with self._mariadb_socket_session("replica", keys["mariadb-admin.password"]) as db:
            if not db.records(SqlStatement("SHOW SLAVE STATUS", mutating=False)):
                for stmt in mariadb.replication_sql(lay.port("mariadb-primary"), keys["mariadb-replication.password"]):
                    db.execute(stmt)
        with self._mariadb_socket_session("primary", keys["mariadb-admin.password"]) as db:
            # Only once: IF NOT EXISTS statements are still binlogged, and tests read the binlog position.
            if not db.scalar(mariadb.DEMO_EXISTS):
                for stmt in mariadb.demo_sql():
                    db.execute(stmt)

    @contextmanager
    def _mariadb_socket_session(self, member: str, password: Secret | None) -> Iterator[DbSession]:
        """Bootstrap talks over the private socket: before it, root has no password and no TCP grant."""
        import pymysql

        from dbrunbook.engines.mariadb.driver import map_error

        try:
            conn = pymysql.connect(
                unix_socket=str(mariadb.socket_path(self.layout, member)),
                user="root",
                password=password.reveal() if password else "",
                autocommit=True,
                connect_timeout=10,
            )
        except pymysql.Error as exc:
            raise map_error(exc, f"sandbox mariadb {member}") from None
        db = DbSession(f"sandbox-mariadb-{member}", self.settings, conn, map_error=map_error)
        try:
            yield db
        finally:
            db.close()

    def _wait_replication(self, inventory: Inventory, keys: dict[str, Secret]) -> None:
        def pg_streaming() -> bool:
            with self._pg_session(inventory, keys, "pg-main-1") as db:
                rows = db.execute(
                    SqlStatement("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", mutating=False)
                )
                return bool(rows[0][0])

        def mariadb_replicating() -> bool:
            with self._mariadb_socket_session("replica", keys["mariadb-admin.password"]) as db:
                rows = db.records(SqlStatement("SHOW SLAVE STATUS", mutating=False))
                return bool(rows) and rows[0]["Slave_IO_Running"] == "Yes" and rows[0]["Slave_SQL_Running"] == "Yes"

        wait_for(pg_streaming, "PostgreSQL streaming replication", 60, log=self.layout.logs / "pg-replica.log")
        wait_for(mariadb_replicating, "MariaDB replication", 60, log=self.layout.logs / "mariadb-replica.log")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _cluster_status(
    name: str,
    engine: str,
    dsn: Callable[[int], str],
    ports: tuple[int, int],
    running: dict[str, bool],
    replica_via: str,
) -> ClusterState:
    """One sandbox cluster as ``sandbox.status`` shows it: a local primary, a replica over SSH."""
    return ClusterState(
        name,
        engine,
        dsn(ports[0]),
        (dsn(ports[1]),),
        (
            HostState(f"{name}-1", "primary", ports[0], "local", running[f"{name}-1"]),
            HostState(f"{name}-2", "replica", ports[1], replica_via, running[f"{name}-2"]),
        ),
    )
