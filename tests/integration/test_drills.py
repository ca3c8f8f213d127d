"""Restore drills end to end on the sandbox: a passing drill of each cluster with real numbers, and the
failures a drill exists to catch (a damaged object, a missing binlog, a failing validation query), each with
its exit code and the drill's server torn down every time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.execution import Command
from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.repository.crypto import parse_identities
from dbrunbook.repository.manifest import manifest_key

from .conftest import run_cli
from .forged import read_manifest, sandbox_signer, store_manifest
from .mariadb_helpers import My, Private, backup, new_name, restore, sync

ROWS = "row counts match the backup's snapshot"


def drill(*args: str, env: str = "--env=dev") -> tuple[int, dict[str, Any], str]:
    res = run_cli("drill.run", env, "--json", *args, timeout=900)
    doc: dict[str, Any] = json.loads(res.stdout) if res.stdout.strip() else {}
    return res.returncode, doc, res.stderr


def gone(executor: Any, path: str) -> bool:
    return bool(executor.run(Command(("test", "-e", path), mutating=False, check=False)).exit_code != 0)


def test_pg_drill_passes_with_real_numbers_and_leaves_nothing(
    pg_ready: dict[str, Any], ssh_replica: Any, tmp_path: Path, dev: LoadedInventory
) -> None:
    import http.server
    import threading

    pings: list[str] = []

    class Heartbeat(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            pings.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Heartbeat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert run_cli("backup.full", "--env=dev", "--cluster=pg-main").returncode == 0
    metrics = tmp_path / "drill.prom"
    url = f"http://127.0.0.1:{server.server_address[1]}/ping/pg-main"
    code, doc, err = drill("--cluster=pg-main", f"--metrics-file={metrics}", f"--heartbeat-url={url}")
    server.shutdown()
    assert code == 0, err
    assert pings == ["/ping/pg-main"] and doc["drills"][0]["heartbeat"] == "sent"
    (r,) = doc["drills"]
    assert r["ok"] and r["rto_seconds"] > 0 and r["rpo_seconds"] is not None and r["backup_size_bytes"] > 0
    names = {c["name"]: c for c in r["checks"]}
    assert names["pg_amcheck"]["ok"] and names["validation catalog readable"]["actual"] > 100
    # No drill host in the sandbox inventory for pg-main: it restores on this machine, never on a replica.
    assert r["host"] == "local" and r["port"] == dev.inventory.clusters["pg-main"].primary()[1].port + 1000
    assert r["reached"]["reached_lsn"] and r["torn_down"] and gone(ssh_replica, r["data_dir"])
    # Same OS user and home as the local drill place: its restore keys are gone with the copy.
    assert gone(ssh_replica, f"{ssh_replica.home()}/.config/dbrunbook/restore-pg-main-{r['port']}")
    text = metrics.read_text()
    assert 'dbrunbook_drill_success{cluster="pg-main"} 1' in text
    assert f'dbrunbook_drill_rto_seconds{{cluster="pg-main"}} {r["rto_seconds"]:.3f}' in text
    history = json.loads(run_cli("drill.history", "--env=dev", "--cluster=pg-main", "--json").stdout)
    assert r["started"] in [h["started"] for h in history["clusters"]["pg-main"]]


def test_mariadb_drill_to_a_random_point_passes(my: My, ssh_replica: Any) -> None:
    db = new_name("drill_utf8")
    # A UTF-8 table name: the drill's tools run over SSH with LANG=C, where a client defaults to latin1.
    my(f"CREATE DATABASE {db}; CREATE TABLE {db}.`tâble ✓` (id INT); INSERT INTO {db}.`tâble ✓` VALUES (1), (2)")
    backup("logical")
    # A random target needs an archive reaching more than 2 s past the dump's start (drill/plan.py); on a fast
    # machine the transaction below would otherwise land inside that margin and the drill go to "latest".
    time.sleep(3)
    my("CREATE DATABASE IF NOT EXISTS drill_probe; DROP DATABASE drill_probe")
    sync()
    try:
        code, doc, err = drill("--cluster=mariadb-main", "--kind=logical", "--target=random", "--seed=7")
    finally:
        my(f"DROP DATABASE {db}")
    assert code == 0, err
    (r,) = doc["drills"]
    assert r["ok"] and r["kind"] == "logical" and r["target_time"] != "latest" and r["reached"]["reached_gtid"]
    checks = {c["name"]: c for c in r["checks"] if c["ok"]}
    assert set(checks) >= {"mariadb-check", "validation users restored", ROWS}
    assert checks[ROWS]["tables"] > 0 and checks[ROWS]["rows"] > 0
    assert r["torn_down"] and gone(ssh_replica, r["data_dir"])


def _inventory(private: Private, validations: list[dict[str, Any]] | None = None) -> str:
    data = yaml.safe_load(private.path.read_text())
    if validations is not None:
        data["clusters"]["mariadb-main"]["drill"]["validations"] = validations
    private.path.write_text(yaml.safe_dump(data))
    return private.env


def test_failing_validation_damaged_object_and_missing_binlog_fail_the_drill(
    my: My, dev: LoadedInventory, tmp_path: Path, ssh_replica: Any, my_target: Any
) -> None:
    private = Private(dev, tmp_path)
    try:
        env = _inventory(
            private,
            [
                {
                    "name": "orders today",
                    "sql": "SELECT COUNT(*) FROM mysql.global_priv",
                    "compare": ">",
                    "expect": 10**6,
                }
            ],
        )
        db = new_name("drillrows")
        my(f"CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY); INSERT INTO {db}.t VALUES (1), (2)")
        b = backup("logical", env=env)
        my(f"INSERT INTO {db}.t VALUES (3)")  # replayed after the load, so after the rows were counted
        sync(env=env)
        code, doc, err = drill("--cluster=mariadb-main", env=env)
        (r,) = doc["drills"]
        assert code == 92 and "validation orders today" in r["reason"] and "Traceback" not in err
        assert r["torn_down"] and gone(ssh_replica, r["data_dir"])
        assert [c["ok"] for c in r["checks"] if c["name"] == ROWS] == [True]

        # The dump's recorded count for that table made one too high: the restored table must be caught.
        mkey = manifest_key(b["backup_id"])
        enc = dev.inventory.clusters["mariadb-main"].encryption
        assert enc is not None
        identities = parse_identities(SecretResolver(dev.base_dir).resolve(enc.identities[0]).reveal())
        manifest = read_manifest(private.storage, mkey, identities)
        assert manifest.extra["row_counts"][db] == {"t": 2}
        manifest.extra["row_counts"][db]["t"] = 3
        private.storage.delete([mkey])
        store_manifest(private.storage, manifest, sandbox_signer(dev, "mariadb-main"), manifest.recipients)
        env = _inventory(private, [])
        code, doc, err = drill("--cluster=mariadb-main", f"--backup={b['backup_id']}", env=env)
        (r,) = doc["drills"]
        assert code == 92 and r["reason"] == f"{ROWS}: 1 of {r['checks'][1]['tables']} tables differ, first " + (
            f"{db}.t: 2 rows restored, the backup had 3"
        )
        assert r["torn_down"] and gone(ssh_replica, r["data_dir"])
        # restore.run --check-rows makes the same comparison and stops with one line (85).
        data_dir, port = my_target(0)
        res = restore(data_dir, port, f"--backup={b['backup_id']}", "--check-rows", env=env, check=False)
        assert res.returncode == 85 and "Traceback" not in res.stderr
        assert f"1 of {r['checks'][1]['tables']} tables restored with other row counts" in res.stderr
        assert f"{db}.t: 2 rows restored, the backup had 3" in res.stderr
        my(f"DROP DATABASE {db}")

        key = f"backups/{b['backup_id']}/dump.sql.zst.age"
        with private.storage.open(key) as fh:
            body = bytearray(fh.read())
        body[len(body) // 3] ^= 0x10
        private.storage.delete([key])
        private.storage.put(key, [bytes(body)])
        code, doc, err = drill("--cluster=mariadb-main", f"--backup={b['backup_id']}", env=env)
        (r,) = doc["drills"]
        assert code == 91 and key in r["reason"] and "Traceback" not in err
        assert r["torn_down"] and gone(ssh_replica, r["data_dir"])
        sync(env=env)
        lost = []
        for i in range(2):
            my(f"CREATE DATABASE IF NOT EXISTS gap_probe_{i}; DROP DATABASE gap_probe_{i}")
            lost.append(my.position()[0])
            my("FLUSH BINARY LOGS")
        sync(env=env)
        doomed = [i.key for i in private.storage.list("binlog/") if f"/{lost[0]}." in i.key]
        assert len(doomed) == 1
        private.storage.delete(doomed)
        code, doc, err = drill("--cluster=mariadb-main", env=env)
        (r,) = doc["drills"]
        assert code == 91 and f"binlog {lost[0]} is missing" in r["reason"]
        assert r["torn_down"] and gone(ssh_replica, r["data_dir"])

        stored = [i.key for i in private.storage.list("drills/")]
        assert len(stored) == 4 and all(k.endswith("-failed.json.zst.age") for k in stored)
    finally:
        private.wipe()


def test_pg_drill_to_latest_fails_when_a_wal_segment_is_missing(
    pg_ready: dict[str, Any], dev: LoadedInventory, sql: Any, ssh_replica: Any, tmp_path: Path
) -> None:
    """PostgreSQL ends recovery quietly at a missing segment and promotes: the drill must notice. A copy of
    the newest backup and the WAL after it goes to a private prefix, with one segment taken out."""
    from .forged import private_repo
    from .walchain import copy_backup, make_chain

    chain = make_chain(dev, sql)
    after = chain.after
    forged = private_repo(dev, tmp_path)
    try:
        copy_backup(chain, forged.storage)
        data = yaml.safe_load(forged.inventory.read_text())
        home = ssh_replica.home()
        data["clusters"]["pg-main"]["drill"].update({"data_dir": f"{home}/dbr-walgap-drill", "port": 26499})
        forged.inventory.write_text(yaml.safe_dump(data))
        env = f"--env={forged.inventory}"
        doomed = after[0]  # after the backup's own segments, before the newest
        forged.storage.delete([doomed])
        code, doc, err = drill("--cluster=pg-main", env=env)
        (r,) = doc["drills"]
        assert code == 91, err
        assert "before the newest archived WAL segment" in r["reason"] and "Traceback" not in err
        assert r["torn_down"] and gone(ssh_replica, f"{home}/dbr-walgap-drill")
    finally:
        forged.wipe()


def test_a_drill_place_that_cannot_be_set_up_is_a_stored_failure(
    dev: LoadedInventory, tmp_path: Path, my_ready: dict[str, Any]
) -> None:
    """Local by default: on a machine without the drill's OS user the drill fails with one line (90), and
    the result and metrics are still written (the alert must fire; an exception would skip them)."""
    private = Private(dev, tmp_path)
    try:
        data = yaml.safe_load(private.path.read_text())
        data["clusters"]["mariadb-main"]["drill"].pop("host")
        data["clusters"]["mariadb-main"]["drill"]["os_user"] = "no-such-user-here"
        private.path.write_text(yaml.safe_dump(data))
        metrics = tmp_path / "drill.prom"
        code, doc, err = drill("--cluster=mariadb-main", f"--metrics-file={metrics}", env=private.env)
        (r,) = doc["drills"]
        assert code == 90 and "OS user 'no-such-user-here'" in r["reason"] and "Traceback" not in err
        assert r["torn_down"] is False and "host" not in r
        assert [i.key for i in private.storage.list("drills/")] == [r["stored_as"]]
        assert 'dbrunbook_drill_success{cluster="mariadb-main"} 0' in metrics.read_text()
    finally:
        private.wipe()
