"""schedule.render: each rendered form checked by its own tool where there is one (systemd-analyze), the
cron lines and the CronJobs by their structure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dbrunbook.errors import ConfigError
from dbrunbook.inventory.model import Inventory
from dbrunbook.schedule.plan import jobs, on_calendar
from dbrunbook.tasks.schedule_tasks import render

INVENTORY = Inventory.model_validate(
    {
        "clusters": {
            "pg-main": {
                "engine": "postgresql",
                "credentials": {"user": "postgres"},
                "hosts": {"pg-1": {"role": "primary", "connection": {"type": "local"}, "port": 5432, "data_dir": "/d"}},
                "schedule": {
                    "full": "0 2 * * 0",
                    "incremental": "0 2 * * 1-6",
                    "log_sync": "*/15 * * * *",
                    "drill": "30 5 * * *",
                },
            },
            "shop": {
                "engine": "mariadb",
                "credentials": {"user": "dbrunbook"},
                "hosts": {
                    "shop-1": {"role": "primary", "connection": {"type": "local"}, "port": 3306, "data_dir": "/d"}
                },
                "schedule": {"logical": "15 1 * * *", "log_sync": "*/5 * * * *", "prune": "0 4 1,15 * *"},
            },
            "no-schedule": {
                "engine": "postgresql",
                "credentials": {"user": "postgres"},
                "hosts": {"x-1": {"role": "primary", "connection": {"type": "local"}, "port": 5433, "data_dir": "/e"}},
            },
        }
    }
)
PROGRAM = str(Path(sys.executable).parent / "dbrunbook")  # systemd-analyze wants an executable that exists


def test_jobs_follow_the_inventory() -> None:
    found = {(j.cluster, j.name): j for j in jobs(INVENTORY, "prod")}
    assert set(found) == {
        ("pg-main", "full"),
        ("pg-main", "incremental"),
        ("pg-main", "log-sync"),
        ("pg-main", "drill"),
        ("shop", "logical"),
        ("shop", "log-sync"),
        ("shop", "prune"),
        ("pg-main", "metrics"),
        ("shop", "metrics"),
    }
    assert (
        found[("shop", "log-sync")].args[0] == "binlog.sync" and found[("pg-main", "log-sync")].args[0] == "wal.check"
    )
    assert (
        found[("shop", "prune")].args[-1] == "--yes" and found[("pg-main", "drill")].unit == "dbrunbook-pg-main-drill"
    )


def test_cron_as_systemd_calendar() -> None:
    assert on_calendar("0 2 * * 1-6") == "Mon..Sat *-*-* 02:00:00"
    assert on_calendar("*/15 * * * *") == "*-*-* *:0/15:00"
    assert on_calendar("0 4 1,15 * *") == "*-*-1,15 04:00:00"
    assert on_calendar("30 5 * * 0") == "Sun *-*-* 05:30:00"
    for bad in ("61 * * * *", "* * * *", "0 0 * * */2", "0 0 * * MON"):
        with pytest.raises(ConfigError):
            on_calendar(bad)


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, check=False)


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    files = render(
        "systemd",
        "prod",
        jobs(INVENTORY, "prod"),
        program=PROGRAM,
        user="root",
        metrics_dir="/m",
        image="i",
        timezone="UTC",
    )
    assert len(files) == 18
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        if name.endswith(".timer"):
            assert "Persistent=true" in text
            calendar = next(ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("OnCalendar="))
            assert _analyze("calendar", calendar).returncode == 0, calendar
    units = sorted(str(p) for p in tmp_path.iterdir())
    res = _analyze("verify", *units)
    # systemd-analyze exits 0 on a setting it ignores, and says so: a clean unit prints nothing at all.
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr
    broken = tmp_path / "dbrunbook-shop-prune.service"
    broken.write_text(broken.read_text().replace("Type=oneshot", "Type=sometimes"))
    assert "Failed to parse service type" in _analyze("verify", str(broken)).stderr  # the check catches a bad unit


def test_cron_lines_use_flock_and_five_fields() -> None:
    (text,) = render(
        "cron",
        "prod",
        jobs(INVENTORY, "prod"),
        program="/usr/bin/dbrunbook",
        user="dbrunbook",
        metrics_dir="/m",
        image="i",
        timezone="UTC",
    ).values()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 9
    for line in lines:
        fields = line.split()
        assert fields[5:8] == ["flock", "-n", f"/run/lock/{fields[7].rsplit('/', 1)[-1]}"]
        assert fields[8] == "/usr/bin/dbrunbook" and "--env=prod" in fields
    assert "--metrics-file=/m/dbrunbook-drill-pg-main.prom" in text
    assert "*/15 * * * * flock -n /run/lock/dbrunbook-shop-metrics.lock" in text


def test_kubernetes_cronjobs_are_valid_objects() -> None:
    (text,) = render(
        "kubernetes",
        "prod",
        jobs(INVENTORY, "prod"),
        program="x",
        user="u",
        metrics_dir="/m",
        image="reg/dbrunbook:1",
        timezone="Europe/Paris",
    ).values()
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert len(docs) == 9
    for d in docs:
        assert d["apiVersion"] == "batch/v1" and d["kind"] == "CronJob"
        assert len(d["metadata"]["name"]) <= 52 and d["metadata"]["name"].islower()
        spec = d["spec"]
        assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
        assert len(spec["schedule"].split()) == 5 and spec["timeZone"] == "Europe/Paris"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        (container,) = pod["containers"]
        assert container["image"] == "reg/dbrunbook:1" and container["command"][0] == "dbrunbook"
        assert "--env=/etc/dbrunbook/prod.yaml" in container["command"]
        assert pod["volumes"][0]["secret"]["secretName"] == "dbrunbook-inventory"


def test_alert_rules_use_emitted_metrics_and_link_existing_runbooks() -> None:
    import re
    from datetime import UTC, datetime

    from dbrunbook.metrics import BackupPoint, backup_metrics_text, metrics_text

    from .test_metrics_pinned import drill

    root = Path(__file__).resolve().parents[2]
    rules = yaml.safe_load((root / "templates/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    now = datetime(2026, 11, 20, tzinfo=UTC)
    result = drill("c", now.isoformat(), True, rto=1, rpo=1, age=1, size=1, rto_target="1m", rpo_target="1m")
    backup = BackupPoint("c", "physical", now, 5)
    emitted = metrics_text([result]) + backup_metrics_text([backup], {"c": now.timestamp()}, now.timestamp())
    names = {ln.split("{")[0] for ln in emitted.splitlines() if not ln.startswith("#")}
    assert {r["alert"] for r in rules} >= {
        "DbrunbookNoSuccessfulDrill",
        "DbrunbookRpoAboveTarget",
        "DbrunbookRtoAboveTarget",
        "DbrunbookNoRecentBackup",
        "DbrunbookLogArchivingFailing",
    }
    for rule in rules:
        used = set(re.findall(r"dbrunbook_[a-z_]+", rule["expr"]))
        assert used and used <= names, (rule["alert"], used - names)
        page = rule["annotations"]["runbook_url"].removeprefix("RUNBOOK_BASE/")
        assert (root / "docs/runbooks" / page).is_file(), page


def test_templates_ship_inside_the_wheel(tmp_path: Path) -> None:
    """A pip-installed dbrunbook renders schedules and reports with no source checkout: the templates are
    package data, and the repository's templates/ is the same folder."""
    import zipfile

    from dbrunbook.execution import AuditLog, LocalExecutor, RunSettings
    from dbrunbook.hosts.setup import build_wheel
    from dbrunbook.tasks.schedule_tasks import TEMPLATES

    root = Path(__file__).resolve().parents[2]
    assert (root / "templates").resolve() == TEMPLATES.resolve()
    # hosts.setup's own build: it holds the checkout's build lock, so parallel tests do not collide.
    local = LocalExecutor("here", RunSettings(audit=AuditLog(tmp_path / "audit.jsonl")))
    wheel = build_wheel(local, tmp_path, sys.executable)
    shipped = {n for n in zipfile.ZipFile(wheel.path).namelist() if n.startswith("dbrunbook/templates/")}
    expected = {
        f"dbrunbook/templates/{p.relative_to(TEMPLATES).as_posix()}" for p in TEMPLATES.rglob("*") if p.is_file()
    }
    assert expected and shipped == expected
