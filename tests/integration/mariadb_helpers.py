"""The sandbox's MariaDB for the MariaDB backup tests: a client with the admin password from a 0600 file,
restore targets on the replica host (reached over SSH), and object-by-object snapshots to compare."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.engines.mariadb.driver import client_defaults
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.repository.storage import open_storage

from .conftest import run_cli


class My:
    def __init__(self, dev: LoadedInventory, resolver: SecretResolver, tmp: Path) -> None:
        cluster = dev.inventory.clusters["mariadb-main"]
        assert cluster.credentials.password
        password = resolver.resolve(cluster.credentials.password).reveal()
        self.defaults = tmp / "client.cnf"
        self.defaults.write_text(client_defaults(cluster.credentials.user, password))
        self.defaults.chmod(0o600)
        self.port = cluster.hosts["mariadb-main-1"].port

    def __call__(self, sql: str, port: int | None = None, db: str | None = None) -> str:
        argv = [
            "mariadb",
            f"--defaults-extra-file={self.defaults}",
            "-h127.0.0.1",
            f"-P{port or self.port}",
            "-N",
            "-B",
            "--default-character-set=utf8mb4",
        ]
        if db:
            argv.append(db)
        res = subprocess.run(argv, input=sql, capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def position(self) -> tuple[str, int, str]:
        file, pos = self("SHOW MASTER STATUS").split("\t")[:2]
        return file, int(pos), self("SELECT @@gtid_binlog_pos")


def cli(*args: str, env: str = "--env=dev", timeout: float = 600) -> dict[str, Any]:
    res = run_cli(*args, env, "--json", timeout=timeout)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def backup(kind: str = "logical", *, env: str = "--env=dev", incremental: bool = False) -> dict[str, Any]:
    if incremental:
        out = cli("backup.incremental", "--cluster=mariadb-main", env=env)
    else:
        out = cli("backup.full", "--cluster=mariadb-main", f"--kind={kind}", env=env)
    b: dict[str, Any] = out["backups"][0]
    return b


def sync(env: str = "--env=dev") -> dict[str, Any]:
    return cli("binlog.sync", "--cluster=mariadb-main", env=env)


def restore(
    data_dir: str, port: int, *extra: str, env: str = "--env=dev", check: bool = True
) -> subprocess.CompletedProcess[str]:
    res = run_cli(
        "restore.run",
        env,
        "--cluster=mariadb-main",
        "--to=mariadb-main-2",
        f"--data-dir={data_dir}",
        f"--port={port}",
        "--json",
        *extra,
        timeout=600,
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


OBJECT_QUERIES = {
    "table": "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' "
    "AND table_type = 'BASE TABLE'",
    "view": "SELECT table_name FROM information_schema.views WHERE table_schema = '{db}'",
    "procedure": "SELECT routine_name FROM information_schema.routines WHERE routine_schema = '{db}' "
    "AND routine_type = 'PROCEDURE'",
    "function": "SELECT routine_name FROM information_schema.routines WHERE routine_schema = '{db}' "
    "AND routine_type = 'FUNCTION'",
    "trigger": "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = '{db}'",
    "event": "SELECT event_name FROM information_schema.events WHERE event_schema = '{db}'",
}


def snapshot(my: My, db: str, port: int | None = None) -> dict[str, str]:
    """SHOW CREATE of every object and CHECKSUM TABLE of every table: equal snapshots, identical database."""
    out: dict[str, str] = {}
    for kind, query in OBJECT_QUERIES.items():
        names = [n for n in my(query.format(db=db), port=port).splitlines() if n]
        for name in sorted(names):
            quoted = "`" + name.replace("`", "``") + "`"
            shown = my(f"SHOW CREATE {kind.upper()} {quoted}", port=port, db=db)
            if kind == "trigger":
                shown = shown.rsplit("\t", 1)[0]  # its creation time: a dump recreates triggers
            out[f"{kind} {name}"] = shown
            if kind == "table":
                out[f"checksum {name}"] = my(f"CHECKSUM TABLE {quoted} EXTENDED", port=port, db=db).split("\t")[-1]
    return out


class Private:
    """mariadb-main with its repository moved to a fresh prefix: an inventory file and the storage."""

    def __init__(
        self,
        dev: LoadedInventory,
        tmp: Path,
        identity_file: Path | None = None,
        url: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> None:
        inv = yaml.safe_load(Path(dev.path).read_text())
        cluster = inv["clusters"]["mariadb-main"]
        self.url = url or f"s3://dbrunbook-backups/mytest-{uuid.uuid4().hex[:10]}"
        cluster["repository"]["url"] = self.url
        if identity_file is not None:
            cluster["encryption"]["identities"] = [f"file:{identity_file}"]
        if retention is not None:
            cluster["retention"] = retention
        inv["clusters"] = {"mariadb-main": cluster}
        self.path = tmp / f"private-{uuid.uuid4().hex[:6]}.yaml"
        self.path.write_text(yaml.safe_dump(inv))
        self.env = f"--env={self.path}"
        repo = dev.inventory.clusters["mariadb-main"].repository
        assert repo is not None
        self.storage = open_storage(
            repo.model_copy(update={"url": cluster["repository"]["url"]}), SecretResolver(dev.base_dir)
        )

    def wipe(self) -> None:
        self.storage.delete([info.key for info in self.storage.list("")])
