"""Fleet runs: selecting clusters by names, globs, exclusions and labels; going on past a failing cluster."""

from __future__ import annotations

import threading

import pytest

from dbrunbook.errors import DrillRestoreFailed, HostUnreachableError, InventoryError
from dbrunbook.fleet import recap_lines, run_fleet, select

LABELS = {
    "orders-pg": {"tier": "prod", "region": "eu"},
    "orders-stg": {"tier": "staging", "region": "eu"},
    "orders-my": {"tier": "prod", "region": "us"},
    "billing": {},
}


@pytest.mark.parametrize(
    ("spec", "limit", "chosen"),
    [
        (None, None, ["orders-pg", "orders-stg", "orders-my", "billing"]),
        ("orders-*", None, ["orders-pg", "orders-stg", "orders-my"]),
        ("orders-*,!orders-stg", None, ["orders-pg", "orders-my"]),
        ("!billing", None, ["orders-pg", "orders-stg", "orders-my"]),
        ("billing, orders-pg", None, ["orders-pg", "billing"]),
        (None, "tier=prod", ["orders-pg", "orders-my"]),
        ("orders-*", "tier=prod,region=eu", ["orders-pg"]),
    ],
)
def test_selection(spec: str | None, limit: str | None, chosen: list[str]) -> None:
    assert select(LABELS, spec, limit) == chosen


def test_a_selection_that_chooses_nothing_says_so() -> None:
    with pytest.raises(InventoryError, match=r"--cluster 'ordres-\*' matches no cluster \(known: orders-pg"):
        select(LABELS, "ordres-*")
    with pytest.raises(InventoryError, match="no cluster is selected"):
        select(LABELS, "orders-*", "tier=dev")
    with pytest.raises(InventoryError, match="must look like key=value"):
        select(LABELS, None, "prod")


def test_a_fleet_run_goes_on_past_failures_and_exits_with_the_worst_code() -> None:
    def work(name: str) -> str:
        if name == "b":
            raise HostUnreachableError("b: unreachable")
        if name == "c":
            raise DrillRestoreFailed("c: restore failed")
        return f"done {name}"

    result = run_fleet(["a", "b", "c", "d"], work)
    assert result.results == ["done a", "done d"]
    assert [o.exit_code for o in result.outcomes] == [0, 21, 91, 0]
    worst = result.worst()
    assert isinstance(worst, DrillRestoreFailed)
    assert [r["cluster"] for r in result.recap()] == ["a", "b", "c", "d"]
    assert "FAILED (exit 21): b: unreachable" in recap_lines(result)[1]


def test_forks_run_clusters_side_by_side_and_keep_their_order() -> None:
    both_in = threading.Barrier(2, timeout=10)  # the first two only pass once they both run

    def work(name: str) -> str:
        if name in ("a", "b"):
            both_in.wait()
        return name

    result = run_fleet(["a", "b", "c"], work, forks=2)
    assert result.results == ["a", "b", "c"]


def test_a_bug_is_not_swallowed_as_a_cluster_failure() -> None:
    def work(name: str) -> str:
        raise KeyError(name)

    with pytest.raises(KeyError):
        run_fleet(["a"], work)
