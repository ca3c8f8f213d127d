"""``schedule.render``, the pure part: the jobs an inventory asks for, and cron expressions as systemd
calendar events. The templates under ``templates/`` turn the jobs into files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbrunbook.engines import get_engine
from dbrunbook.errors import ConfigError
from dbrunbook.inventory.model import Inventory

DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass(frozen=True)
class Job:
    cluster: str
    name: str  # full, incremental, logical, log-sync, verify, prune, drill
    cron: str
    args: tuple[str, ...]  # the task and its flags, after the dbrunbook program

    @property
    def unit(self) -> str:
        """A name valid everywhere it is used: systemd units, lock files, Kubernetes objects (<= 52)."""
        raw = f"dbrunbook-{self.cluster}-{self.name}".lower()
        return re.sub(r"[^a-z0-9-]", "-", raw)[:52].rstrip("-")


def jobs(inventory: Inventory, env: str) -> list[Job]:
    out: list[Job] = []
    for cname, cluster in inventory.clusters.items():
        s = cluster.schedule
        if s is None:
            continue
        archive = get_engine(cluster.engine.value).log_archive
        common = (f"--env={env}", f"--cluster={cname}")
        wanted: list[tuple[str, str | None, tuple[str, ...]]] = [
            ("full", s.full, ("backup.full", *common)),
            ("incremental", s.incremental, ("backup.incremental", *common)),
            ("logical", s.logical, ("backup.full", *common, "--kind=logical")),
            ("log-sync", s.log_sync, (archive.sync_task if archive else "wal.check", *common)),
            ("verify", s.verify, ("backup.verify", *common)),
            ("prune", s.prune, ("backup.prune", *common, "--yes")),
            (
                "drill",
                s.drill,
                ("drill.run", *common, "--metrics-file={metrics_dir}/dbrunbook-drill-" + cname + ".prom"),
            ),
        ]
        out += [Job(cname, name, cron.strip(), args) for name, cron, args in wanted if cron]
        # The freshness metrics the alert rules read (no backup for 26 h, archiving stopped), whenever the
        # cluster is scheduled at all.
        metrics = f"--metrics-file={{metrics_dir}}/dbrunbook-backups-{cname}.prom"
        out.append(Job(cname, "metrics", "*/15 * * * *", ("backup.list", *common, metrics)))
    return out


def _field(text: str, low: int, high: int, names: list[str] | None = None) -> str:
    """One cron field in systemd's syntax: lists, ranges (a..b) and steps (start/step)."""
    parts = []
    for item in text.split(","):
        value, _, step = item.partition("/")
        if step and not step.isdigit():
            raise ConfigError(f"cron step {step!r} is not a number")
        if value == "*":
            value = str(low) if step else "*"
        if "-" in value:
            a, b = value.split("-", 1)
            _check(a, low, high)
            _check(b, low, high)
            value = f"{names[int(a)]}..{names[int(b)]}" if names else f"{a}..{b}"
        elif value != "*":
            _check(value, low, high)
            value = names[int(value)] if names else value
        parts.append(f"{value}/{step}" if step else value)
    return ",".join(parts)


def _check(value: str, low: int, high: int) -> None:
    if not value.isdigit() or not low <= int(value) <= high:
        raise ConfigError(f"cron value {value!r} is outside {low}..{high}")


def on_calendar(cron: str) -> str:
    """``30 2 * * 1-5`` -> ``Mon..Fri *-*-* 02:30:00``. Steps on day-of-week are refused (systemd has
    none); names (``MON``) and the ``@daily`` shorthands are not cron's portable subset and are refused."""
    fields = cron.split()
    if len(fields) != 5:
        raise ConfigError(f"cron expression {cron!r} must have five fields")
    minute, hour, dom, month, dow = fields
    if "/" in dow:
        raise ConfigError(f"cron expression {cron!r}: steps on day-of-week have no systemd form")
    days = "" if dow == "*" else _field(dow, 0, 7, DAYS) + " "
    date = f"*-{_field(month, 1, 12)}-{_field(dom, 1, 31)}"
    return f"{days}{date} {_pad(_field(hour, 0, 23))}:{_pad(_field(minute, 0, 59))}:00"


def _pad(field: str) -> str:
    return field if not field.isdigit() else f"{int(field):02d}"
