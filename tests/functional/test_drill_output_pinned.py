"""What drill results become besides their JSON: the lines drill.run and drill.history print, the Prometheus
metrics, and the data drill.report's page draws. Pinned from real drills of the functional world."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

from rich.console import Console

from dbrunbook.drill.run import history, run_drill
from dbrunbook.metrics import metrics_text
from dbrunbook.tasks.drill_tasks import Busy, _drill_human, _history_human, report_cluster

from .servers import FakePostgres, drill_host
from .test_drill_result_pinned import document
from .world import World

DAY = timedelta(days=1)


def printed(human: Any) -> list[str]:
    buffer = io.StringIO()
    human(Console(file=buffer, width=400, highlight=False, soft_wrap=True))
    return buffer.getvalue().splitlines()


def two_drills(world: World) -> tuple[Any, Any]:
    """A passing drill of orders-pg (kept running) and a failed one of orders-stg (nothing to restore)."""
    world.spec["orders-pg"]["drill"].update(rto_target="15m")
    world.backup("orders-pg", "physical", 1 * DAY, wal=(2, 3))
    world.wal("orders-pg", range(2, 5))
    FakePostgres(reached_lsn="0/4000100").install(drill_host(world.fake("pg1-restore")))
    passed, failure = run_drill(world.context("orders-pg"), world.find_host, keep=True)
    assert failure is None
    world.spec["orders-stg"]["drill"] = {"host": "pg1-restore", "rpo_target": "1h"}
    world.backup("orders-stg", "logical", 1 * DAY)
    failed, failure = run_drill(world.context("orders-stg"), world.find_host)
    assert failure is not None
    return passed, failed


def test_drill_run_prints_these_lines(world: World) -> None:
    passed, failed = two_drills(world)
    p, f = document(passed), document(failed)

    lines = printed(_drill_human([passed, failed], [Busy("orders-my", "held by drill.run")]))

    assert lines == [
        "orders-my: drill NOT RUN: held by drill.run",
        f"orders-pg: drill PASSED: {p['reason']}",
        f"  backup {p['backup']} (physical) to latest on pg1-restore:6432; RTO {p['rto_seconds']}s (target 15m), "
        f"RPO {p['rpo_seconds']:.0f}s (target none)",
        "  ok  server started and reached the target: the newest backup; recovered to the newest restorable point",
        "  ok  pg_amcheck: every heap and B-tree index checked",
        f"  left running: /home/pg1-restore/dbrunbook-drill-orders-pg; result stored as {p['stored_as']}",
        f"orders-stg: drill FAILED: {f['reason']}",
        f"  torn down; result stored as {f['stored_as']}",
    ]


def test_drill_history_prints_these_lines(world: World) -> None:
    passed, failed = two_drills(world)
    p, f = document(passed), document(failed)
    out = {"orders-pg": history(world.context("orders-pg")), "orders-stg": history(world.context("orders-stg"))}

    lines = printed(_history_human(out))

    assert lines == [
        "orders-pg: 1 drills",
        f"  {p['started'][:19]}  PASSED  RTO {p['rto_seconds']}s  RPO {p['rpo_seconds']}s  {p['backup']}  "
        f"{p['reason']}",
        "orders-stg: 1 drills",
        f"  {f['started'][:19]}  FAILED  RTO -s  RPO -s  -  {f['reason']}",
    ]


def test_drill_metrics_of_real_results(world: World) -> None:
    passed, failed = two_drills(world)
    p, f = document(passed), document(failed)
    from datetime import datetime

    text = metrics_text([passed, failed])

    def at(doc: dict[str, Any]) -> str:
        return f"{datetime.fromisoformat(doc['ended']).timestamp():.0f}"

    assert text.splitlines()[18:] == [
        'dbrunbook_drill_success{cluster="orders-pg"} 1',
        f'dbrunbook_drill_last_run_timestamp_seconds{{cluster="orders-pg"}} {at(p)}',
        f'dbrunbook_drill_last_success_timestamp_seconds{{cluster="orders-pg"}} {at(p)}',
        f'dbrunbook_drill_rto_seconds{{cluster="orders-pg"}} {p["rto_seconds"]:.3f}',
        f'dbrunbook_drill_rpo_seconds{{cluster="orders-pg"}} {p["rpo_seconds"]:.3f}',
        f'dbrunbook_drill_backup_age_seconds{{cluster="orders-pg"}} {p["backup_age_seconds"]:.3f}',
        f'dbrunbook_drill_backup_size_bytes{{cluster="orders-pg"}} {p["backup_size_bytes"]:.3f}',
        'dbrunbook_drill_rto_target_seconds{cluster="orders-pg"} 900',
        'dbrunbook_drill_success{cluster="orders-stg"} 0',
        f'dbrunbook_drill_last_run_timestamp_seconds{{cluster="orders-stg"}} {at(f)}',
        'dbrunbook_drill_rpo_target_seconds{cluster="orders-stg"} 3600',
    ]


def report_input(world: World, name: str) -> Any:
    """What drill.report gathers for one cluster and draws (the report's input)."""
    ctx = world.context(name)
    return report_cluster(name, ctx.cluster, history(ctx), ctx.catalog().manifests).as_dict()


def test_drill_report_draws_this_data(world: World) -> None:
    passed, failed = two_drills(world)
    p, f = document(passed), document(failed)
    pg, stg = world.context("orders-pg").catalog().manifests, world.context("orders-stg").catalog().manifests

    data = {"clusters": [report_input(world, "orders-pg"), report_input(world, "orders-stg")]}

    keep = ("started", "ok", "backup", "target_time", "rto_seconds", "rpo_seconds", "reason")
    assert data == {
        "clusters": [
            {
                "name": "orders-pg",
                "engine": "postgresql",
                "rto_target": 900.0,
                "rpo_target": None,
                "drills": [{k: p[k] for k in keep}],
                "backups": [
                    {"backup_id": m.backup_id, "stop_time": m.stop_time.isoformat(), "stored_bytes": m.total_size}
                    for m in pg
                ],
            },
            {
                "name": "orders-stg",
                "engine": "postgresql",
                "rto_target": None,
                "rpo_target": 3600.0,
                "drills": [{**{k: f.get(k) for k in keep}, "backup": None, "target_time": None, "rpo_seconds": None}],
                "backups": [
                    {"backup_id": m.backup_id, "stop_time": m.stop_time.isoformat(), "stored_bytes": m.total_size}
                    for m in stg
                ],
            },
        ]
    }
    assert list(data["clusters"][0]["drills"][0]) == list(keep)
