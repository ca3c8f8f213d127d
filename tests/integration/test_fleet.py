"""A fleet of three clusters, one of them unreachable: backup.full goes on past it, two at a time, prints a recap
and exits with the unreachable host's code; globs, exclusions and labels choose the clusters."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from dbrunbook.inventory import LoadedInventory, SecretResolver
from dbrunbook.repository.storage import open_storage

from .conftest import dev_data, run_cli


def _fleet(tmp_path: Path) -> tuple[Path, list[str]]:
    data = dev_data()
    tag = uuid.uuid4().hex[:8]
    urls = []
    labels = {"pg-main": {"tier": "prod"}, "mariadb-main": {"tier": "staging"}, "down": {"tier": "prod"}}
    down = yaml.safe_load(yaml.safe_dump(data["clusters"]["mariadb-main"]))
    for host in down["hosts"].values():
        # Nothing listens on port 1: connection refused, at once.
        host["connection"] = {"type": "ssh", "host": "127.0.0.1", "port": 1, "user": "nobody", "connect_timeout": 3}
    data["clusters"]["down"] = down
    down.pop("drill", None)
    for name, cluster in data["clusters"].items():
        cluster["repository"]["url"] = f"s3://dbrunbook-backups/fleet-{tag}-{name}"
        cluster["labels"] = labels[name]
        urls.append(cluster["repository"]["url"])
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, urls


def _backup(env: str, *args: str) -> tuple[int, dict[str, Any], str]:
    res = run_cli("backup.full", env, "--kind=logical", "--json", *args, timeout=600)
    return res.returncode, json.loads(res.stdout), res.stderr


def test_a_fleet_backup_goes_on_past_an_unreachable_cluster(
    pg_ready: dict[str, Any], my_ready: dict[str, Any], mariadb_exclusive: None, dev: LoadedInventory, tmp_path: Path
) -> None:
    path, urls = _fleet(tmp_path)
    env = f"--env={path}"
    try:
        code, doc, err = _backup(env, "--forks=2")
        assert code == 21, err  # HostUnreachableError: the worst (and only) failure
        assert sorted(b["cluster"] for b in doc["backups"]) == ["mariadb-main", "pg-main"]
        recap = {r["cluster"]: r for r in doc["clusters"]}
        assert [c for c in recap] == ["pg-main", "mariadb-main", "down"]  # inventory order, whatever finished first
        assert recap["pg-main"]["ok"] and recap["mariadb-main"]["ok"]
        assert recap["down"]["exit_code"] == 21 and "unreachable" in recap["down"]["error"]
        assert "1 of 3 clusters failed; first: down:" in err and err.count("\n") == 1 and "Traceback" not in err

        text = run_cli("backup.full", env, "--kind=logical", "--cluster=*-main,down", timeout=600)
        assert text.returncode == 21
        assert "backup.full: 2 of 3 clusters backed up" in text.stdout and "FAILED (exit 21)" in text.stdout

        # A glob with an exclusion: only pg-main, and a clean exit.
        code, doc, err = _backup(env, "--cluster=*-main,!mariadb-*")
        assert code == 0, err
        assert [b["cluster"] for b in doc["backups"]] == ["pg-main"] and len(doc["clusters"]) == 1
        # Labels: tier=prod is pg-main and down.
        code, doc, _ = _backup(env, "--limit=tier=prod")
        assert code == 21 and [r["cluster"] for r in doc["clusters"]] == ["pg-main", "down"]
        # A typo is an error, not a run over nothing.
        res = run_cli("backup.full", env, "--cluster=pg-mian")
        assert res.returncode == 11 and "matches no cluster" in res.stderr
        # Deleting needs a selection when there are several clusters; a dry run plans them all.
        res = run_cli("backup.prune", env, "--yes")
        assert res.returncode == 11 and "name the clusters with --cluster" in res.stderr
        dry = run_cli("backup.prune", env, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert [r["cluster"] for r in json.loads(dry.stdout)["recap"]] == ["pg-main", "mariadb-main", "down"]
        _reports_over_the_fleet(env)
    finally:
        pg = dev.inventory.clusters["pg-main"].repository
        assert pg is not None
        for url in urls:
            storage = open_storage(pg.model_copy(update={"url": url}), SecretResolver(dev.base_dir))
            storage.delete([i.key for i in storage.list("")])


def _reports_over_the_fleet(env: str) -> None:
    """The report tasks over the same fleet: one document per cluster and a recap; a cluster that fails does
    not hide the others' reports; with no selection, a task only looks at the clusters it applies to."""
    res = run_cli("backup.verify", env, "--forks=2", "--json", timeout=600)
    doc = json.loads(res.stdout)
    recap = {r["cluster"]: r for r in doc["clusters"]}
    assert list(recap) == ["pg-main", "mariadb-main", "down"]
    assert recap["pg-main"]["ok"] and recap["mariadb-main"]["ok"], doc
    assert not recap["down"]["ok"] and "no complete backup" in recap["down"]["error"]  # nothing backed up there
    assert res.returncode == recap["down"]["exit_code"] != 0
    assert doc["results"]["pg-main"]["ok"] and doc["results"]["mariadb-main"]["backups"]

    # binlog.check: the MariaDB clusters only; the unreachable one fails with its own code.
    res = run_cli("binlog.check", env, "--json", timeout=300)
    doc = json.loads(res.stdout)
    assert [r["cluster"] for r in doc["clusters"]] == ["mariadb-main", "down"] and res.returncode == 21
    assert doc["results"]["mariadb-main"]["archived"] >= 0

    # One cluster selected (wal.check applies to pg-main alone): the document of old, no fleet wrapper.
    res = run_cli("wal.check", env, "--json", timeout=300)
    assert res.returncode in (0, 82), res.stderr
    assert json.loads(res.stdout)["cluster"] == "pg-main"

    # binlog.sync from cron: every MariaDB cluster; --follow streams one cluster only.
    res = run_cli("binlog.sync", env, "--json", timeout=300)
    doc = json.loads(res.stdout)
    assert res.returncode == 21 and doc["results"]["mariadb-main"]["cluster"] == "mariadb-main"
    res = run_cli("binlog.sync", env, "--follow", "--duration=1")
    assert res.returncode == 2 and "one cluster" in res.stderr

    text = run_cli("keys.status", env, "--cluster=*-main", timeout=300)
    assert text.returncode == 0, text.stderr
    assert "keys.status: 2 of 2 clusters ok" in text.stdout
