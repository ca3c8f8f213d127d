"""hosts.setup installs this exact build on a host over SSH, and a second run is a no-op."""

from __future__ import annotations

import json
from typing import Any

import dbrunbook
from dbrunbook.execution import Command

from .conftest import run_cli


def test_setup_installs_same_build_and_is_idempotent(sandbox: dict[str, Any], ssh_replica: Any) -> None:
    first = run_cli("hosts.setup", "--env=dev", "--cluster=pg-main", "--json", timeout=900)
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)["hosts"]
    # "local": where pg-main's drills restore (no drill.host in the sandbox inventory), this machine.
    assert {r["host"] for r in results} == {"pg-main-1", "pg-main-2", "local"}
    venv = results[0]["venv"]

    answer = ssh_replica.run(Command((f"{venv}/bin/dbrunbook-host", "version"), mutating=False))
    installed = json.loads(answer.stdout)
    assert installed["version"] == dbrunbook.__version__
    assert len(installed["wheel_sha256"]) == 64
    # The same sources, not just the same version string: restore and backup refuse any other build.
    assert installed["build"] == dbrunbook.build_digest()

    again = run_cli("hosts.setup", "--env=dev", "--cluster=pg-main", "--json")
    assert again.returncode == 0, again.stderr
    actions = {r["host"]: r["action"] for r in json.loads(again.stdout)["hosts"]}
    # local is the same machine and OS user as pg-main-1 (both run as the sandbox user): installed once.
    assert actions == {"pg-main-1": "up to date", "pg-main-2": "up to date", "local": "shared"}

    dry = run_cli("hosts.setup", "--env=dev", "--cluster=pg-main", "--host=pg-main-2", "--force", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = "\n".join(json.loads(dry.stdout)["plan"])
    assert "pip install" in plan and "[pg-main-2]" in plan
    after = json.loads(ssh_replica.run(Command((f"{venv}/bin/dbrunbook-host", "version"), mutating=False)).stdout)
    assert after == installed
