"""schedule.*: the whole schedule an inventory asks for, as cron lines, systemd timers or Kubernetes CronJobs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from invoke.context import Context

from dbrunbook.errors import ConfigError
from dbrunbook.tasks.common import TaskRun, guarded, task

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"  # package data; templates/ links here
# The name of the Kubernetes Secret that holds the inventory (a name, not a secret).
SECRET_NAME = "dbrunbook-inventory"  # noqa: S105


def render(
    fmt: str,
    env: str,
    jobs: list[Any],
    *,
    program: str,
    user: str,
    metrics_dir: str,
    image: str,
    timezone: str,
    templates: Path = TEMPLATES,
) -> dict[str, str]:
    """File name -> content for one format, from the Jinja2 templates."""
    import jinja2

    from dbrunbook.schedule.plan import Job, on_calendar

    if not templates.is_dir():
        raise ConfigError(f"templates folder {templates} not found", hint="pass --templates DIR")
    loader = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - unit files and YAML, not HTML
    )
    k8s = fmt == "kubernetes"
    env_arg = f"/etc/dbrunbook/{Path(env).name}" + ("" if env.endswith((".yaml", ".yml")) else ".yaml")
    ready = [
        Job(
            j.cluster,
            j.name,
            j.cron,
            tuple(
                a.replace("{metrics_dir}", metrics_dir).replace(
                    f"--env={env}", f"--env={env_arg}" if k8s else f"--env={env}"
                )
                for a in j.args
            ),
        )
        for j in jobs
    ]
    common = {"env": env, "program": program, "user": user, "timeout": 6 * 3600}
    if fmt == "cron":
        text = loader.get_template("cron/crontab.j2").render(jobs=ready, lock_dir="/run/lock", mailto=user, **common)
        return {f"dbrunbook-{Path(env).stem}.crontab": text}
    if fmt == "systemd":
        files: dict[str, str] = {}
        for job in ready:
            files[f"{job.unit}.service"] = loader.get_template("systemd/job.service.j2").render(job=job, **common)
            files[f"{job.unit}.timer"] = loader.get_template("systemd/job.timer.j2").render(
                job=job, calendar=on_calendar(job.cron), **common
            )
        return files
    if k8s:
        text = loader.get_template("kubernetes/cronjobs.yaml.j2").render(
            jobs=ready, image=image, secret=SECRET_NAME, deadline=600, timezone=timezone, **common
        )
        return {f"dbrunbook-{Path(env).stem}-cronjobs.yaml": text}
    raise ConfigError(f"--format must be cron, systemd or kubernetes, not {fmt!r}")


@task(
    name="render",
    help={
        "env": "environment: inventory/<env>.yaml (default $DBRUNBOOK_ENV, else dev)",
        "format": "cron, systemd or kubernetes",
        "out": "write the files into this folder (default: print them)",
        "program": "the dbrunbook command the jobs run (default: the one on PATH)",
        "user": "the OS user jobs run as (cron mail, systemd User=)",
        "metrics_dir": "where drills write metrics (node exporter textfile collector)",
        "image": "kubernetes: the container image with dbrunbook installed",
        "timezone": "kubernetes: the CronJobs' timeZone (default UTC)",
        "templates": "folder of the Jinja2 templates (default: the ones shipped with dbrunbook)",
        "json": "print JSON",
    },
)
@guarded
def render_(
    c: Context,
    format: str = "cron",
    env: str | None = None,
    out: str | None = None,
    program: str | None = None,
    user: str = "dbrunbook",
    metrics_dir: str = "/var/lib/prometheus/node-exporter",
    image: str = "dbrunbook:latest",
    timezone: str = "UTC",
    templates: str | None = None,
    json: bool = False,
) -> None:
    """Render every job the inventory's ``schedule`` sections ask for (backups, log sync, verify, prune, drills)."""
    from dbrunbook.schedule.plan import jobs as plan_jobs

    run = TaskRun.start("schedule.render", env=env, json_mode=json)
    try:
        env_name = run.env
        found = plan_jobs(run.loaded.inventory, env_name)
        if not found:
            raise ConfigError("no cluster of this inventory has a schedule section", hint="see docs/drills.md")
        files = render(
            format,
            env_name,
            found,
            program=program or shutil.which("dbrunbook") or "/usr/local/bin/dbrunbook",
            user=user,
            metrics_dir=metrics_dir,
            image=image,
            timezone=timezone,
            templates=Path(templates) if templates else TEMPLATES,
        )
    finally:
        run.close()
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)

    def human(console: Any) -> None:
        if out:
            console.print(f"wrote {len(files)} files to {out}: {', '.join(sorted(files))}", markup=False)
            return
        for name, text in files.items():
            console.print(f"# ==> {name} <==\n{text}", markup=False, highlight=False)

    run.out.result({"format": format, "jobs": len(found), "files": files if not out else sorted(files)}, human)
