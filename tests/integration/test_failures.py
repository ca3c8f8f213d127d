"""Bad input gets one clear line and a distinct exit code, never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from dbrunbook import errors

from .conftest import dev_data, run_cli, write_inventory


def assert_one_line(stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def variant(tmp_path: Path, name: str, change: Any) -> Path:
    data = copy.deepcopy(dev_data())
    change(data)
    return write_inventory(tmp_path / f"{name}.yaml", data)


def test_malformed_inventory(tmp_path: Path, sandbox: dict[str, Any]) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["clusters"]["pg-main"]["hosts"]["pg-main-1"]["prot"] = d["clusters"]["pg-main"]["hosts"]["pg-main-1"].pop(
            "port"
        )

    path = variant(tmp_path, "typo", typo)
    res = run_cli("inventory.check", f"--env={path}")
    assert res.returncode == errors.InventoryError.exit_code
    assert_one_line(res.stderr, str(path), "clusters.pg-main.hosts.pg-main-1.prot", "did you mean 'port'")


def test_unknown_environment() -> None:
    res = run_cli("inventory.show", "--env=nosuchenv")
    assert res.returncode == errors.InventoryError.exit_code
    assert_one_line(res.stderr, "nosuchenv.yaml", "no inventory for environment 'nosuchenv'")


def test_unreachable_ssh_host(tmp_path: Path, sandbox: dict[str, Any]) -> None:
    def closed_port(d: dict[str, Any]) -> None:
        d["clusters"]["pg-main"]["hosts"]["pg-main-2"]["connection"]["port"] = 1

    path = variant(tmp_path, "unreachable", closed_port)
    res = run_cli("inventory.check", f"--env={path}", "--cluster=pg-main")
    assert res.returncode == errors.HostUnreachableError.exit_code
    assert_one_line(res.stderr, "pg-main-2", "127.0.0.1:1 unreachable")


def test_wrong_ssh_key(tmp_path: Path, sandbox: dict[str, Any]) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def other_key(d: dict[str, Any]) -> None:
        d["clusters"]["pg-main"]["hosts"]["pg-main-2"]["connection"]["key"] = str(key)

    path = variant(tmp_path, "wrongkey", other_key)
    res = run_cli("inventory.check", f"--env={path}", "--cluster=pg-main")
    assert res.returncode == errors.HostAuthError.exit_code
    assert_one_line(res.stderr, "refused our key")


@pytest.mark.parametrize("cluster", ["pg-main", "mariadb-main"])
def test_wrong_database_password(tmp_path: Path, cluster: str, sandbox: dict[str, Any]) -> None:
    def wrong(d: dict[str, Any]) -> None:
        d["clusters"][cluster]["credentials"]["password"] = "env:DBR_WRONG_PASSWORD"

    path = variant(tmp_path, "wrongpw", wrong)
    res = run_cli(
        "inventory.check", f"--env={path}", f"--cluster={cluster}", env={"DBR_WRONG_PASSWORD": "Wrong-Pass-4711"}
    )
    assert res.returncode == errors.DatabaseAuthError.exit_code
    assert_one_line(res.stderr, "refused the login")
    assert "Wrong-Pass-4711" not in res.stderr + res.stdout


def test_declared_roles_contradict_the_servers(tmp_path: Path, sandbox: dict[str, Any]) -> None:
    def swap(d: dict[str, Any]) -> None:
        hosts = d["clusters"]["mariadb-main"]["hosts"]
        hosts["mariadb-main-1"]["role"] = "replica"
        hosts["mariadb-main-1"]["replicates_from"] = "mariadb-main-2"
        hosts["mariadb-main-2"]["role"] = "primary"
        del hosts["mariadb-main-2"]["replicates_from"]

    path = variant(tmp_path, "swapped", swap)
    res = run_cli("inventory.check", f"--env={path}", "--cluster=mariadb-main", "--json")
    assert res.returncode == errors.CheckFailed.exit_code
    assert_one_line(res.stderr, "declared replica but the server is a primary")
    assert '"ok": false' in res.stdout


def test_json_error_document(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: {}\n")
    res = run_cli("inventory.show", f"--env={bad}", "--json")
    assert res.returncode == errors.InventoryError.exit_code
    import json

    doc = json.loads(res.stdout)
    assert doc["ok"] is False and doc["error"]["exit_code"] == errors.InventoryError.exit_code
