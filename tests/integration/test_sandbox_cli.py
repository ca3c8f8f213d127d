"""sandbox.* as an operator uses it: status shape, safety of down, busy ports."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from dbrunbook import errors

from .conftest import run_cli


def test_status_json_shape(sandbox: dict[str, Any]) -> None:
    res = run_cli("sandbox.status", "--json")
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout)
    assert {"clusters", "s3_endpoint", "bucket"} <= set(state)
    by_name = {c["name"]: c for c in state["clusters"]}
    assert set(by_name) == {"pg-main", "mariadb-main"}
    for cluster in state["clusters"]:
        assert {"name", "engine", "primary_dsn", "replica_dsns"} <= set(cluster)
        assert len(cluster["replica_dsns"]) == 1
    assert by_name["pg-main"]["primary_dsn"].startswith("postgresql://postgres@127.0.0.1:")
    assert state["s3_endpoint"].startswith("http://127.0.0.1:")
    assert state["all_running"] is True


def test_down_purge_without_tty_refuses_and_keeps_everything(sandbox: dict[str, Any]) -> None:
    res = run_cli("sandbox.down", "--purge")
    assert res.returncode == errors.ConfirmationRequired.exit_code
    assert "re-run with --yes" in res.stderr
    after = json.loads(run_cli("sandbox.status", "--json").stdout)
    assert after["all_running"] is True
    assert Path(after["root"], "pg", "primary", "PG_VERSION").exists()


def test_down_dry_run_prints_plan_and_stops_nothing(sandbox: dict[str, Any], tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    res = run_cli("sandbox.down", "--dry-run", "--purge", "--json", audit=audit)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    plan = "\n".join(result["plan"])
    assert "pg_ctl stop" in plan and "rm -rf" in plan
    assert json.loads(run_cli("sandbox.status", "--json").stdout)["all_running"] is True
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert any(e["dry_run"] and "pg_ctl stop" in e["text"] for e in entries)


def test_busy_port_is_a_clear_error() -> None:
    root = Path(tempfile.mkdtemp(prefix="dbr-busy-", dir="/var/tmp"))
    root.chmod(0o755)
    offset = 700
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 28333 + offset))  # the S3 port of a sandbox shifted by 700
    blocker.listen()
    try:
        res = run_cli(
            "sandbox.up",
            env={"DBRUNBOOK_SANDBOX_DIR": str(root / "sb"), "DBRUNBOOK_SANDBOX_PORT_OFFSET": str(offset)},
        )
    finally:
        blocker.close()
        shutil.rmtree(root, ignore_errors=True)
    assert res.returncode == errors.PortBusyError.exit_code, res.stderr
    assert f"port {28333 + offset}" in res.stderr and "already in use" in res.stderr
    assert "Traceback" not in res.stderr
