"""Report tasks over a fleet (tasks/fleet_report.py): each cluster's document, the recap, the worst code, and one
selected cluster printing its document as before fleets existed."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dbrunbook.errors import DbrunbookError, HostUnreachableError, VerifyFailed
from dbrunbook.fleet import select
from dbrunbook.tasks.fleet_report import ClusterReport, report_fleet

LABELS = {"orders-pg": {"tier": "prod"}, "orders-my": {"tier": "prod"}, "stg-pg": {"tier": "staging"}}


@dataclass
class Out:
    json_mode: bool = True
    printed: list[dict[str, Any]] = field(default_factory=list)

    def result(self, data: dict[str, Any], human: Any = None) -> None:
        self.printed.append(data)


@dataclass
class Run:
    out: Out = field(default_factory=Out)
    loaded: Any = field(default_factory=lambda: SimpleNamespace(path="fleet.yaml"))

    def select(self, spec: str | None, limit: str | None = None) -> list[str]:
        return select(LABELS, spec, limit)

    def cluster_context(self, name: str) -> Any:
        return SimpleNamespace(name=name, pg=name.endswith("-pg"))


def one(ctx: Any) -> ClusterReport:
    if ctx.name == "orders-my":
        raise HostUnreachableError(f"{ctx.name}: host unreachable")
    finding = VerifyFailed(f"{ctx.name}: 1 of 1 backups failed") if ctx.name == "stg-pg" else None
    return ClusterReport({"cluster": ctx.name, "ok": finding is None}, lambda _c: None, finding)


def run_report(spec: str | None, *, applies: Any = None, json_mode: bool = True) -> tuple[Run, DbrunbookError | None]:
    run = Run(Out(json_mode))
    try:
        report_fleet(cast(Any, run), "backup.verify", spec, None, 2, one, applies=applies)
    except DbrunbookError as exc:
        return run, exc
    return run, None


def test_every_cluster_reports_and_the_worst_code_wins() -> None:
    run, error = run_report(None)
    (doc,) = run.out.printed
    assert list(doc["results"]) == ["orders-pg", "stg-pg"]  # the unreachable one has no report, only its recap
    recap = {r["cluster"]: r for r in doc["clusters"]}
    assert [r["cluster"] for r in doc["clusters"]] == ["orders-pg", "orders-my", "stg-pg"]
    assert recap["orders-pg"]["ok"] and recap["orders-my"]["exit_code"] == 21 and recap["stg-pg"]["exit_code"] == 81
    assert isinstance(error, VerifyFailed) and error.exit_code == 81  # a finding outranks "unreachable"
    assert "2 of 3 clusters failed; first: orders-my:" in str(error) and error.reported


def test_one_cluster_prints_its_own_document_and_its_finding_once() -> None:
    run, error = run_report("stg-pg")
    assert run.out.printed == [{"cluster": "stg-pg", "ok": False}]
    assert isinstance(error, VerifyFailed) and error.reported and str(error) == "stg-pg: 1 of 1 backups failed"


def test_one_unreachable_cluster_leaves_its_error_to_be_reported() -> None:
    run, error = run_report("orders-my", json_mode=False)
    assert run.out.printed == [] and isinstance(error, HostUnreachableError) and not error.reported


def test_without_a_selection_only_the_clusters_it_applies_to() -> None:
    run, error = run_report(None, applies=lambda ctx: ctx.pg)
    assert [r["cluster"] for r in run.out.printed[0]["clusters"]] == ["orders-pg", "stg-pg"]
    assert isinstance(error, VerifyFailed)
    # Named explicitly, a cluster it does not apply to is not filtered away: the task itself says why.
    run, error = run_report("orders-my", applies=lambda ctx: ctx.pg)
    assert isinstance(error, HostUnreachableError)
    with pytest.raises(DbrunbookError, match=r"is one backup\.verify works on"):
        report_fleet(cast(Any, Run()), "backup.verify", None, "tier=prod", 1, one, applies=lambda ctx: False)
