"""The fleet loop over real ClusterContexts: three clusters, one of them unreachable.

Each cluster's work is what every backup, restore and drill does first on a host: find this very
dbrunbook build's host command there (``ClusterContext.agent``), through the cluster's executor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from dbrunbook.errors import HostError, HostUnreachableError, InventoryError
from dbrunbook.execution.command import Command
from dbrunbook.execution.testing import Reply
from dbrunbook.fleet import recap_lines, run_fleet, select

from .world import World

CLUSTERS = ["orders-pg", "orders-stg", "orders-my"]


def agent_check(world: World) -> Callable[[str], str]:
    def work(name: str) -> str:
        ctx = world.context(name)
        return ctx.agent(ctx.cluster.primary()[0])

    return work


def test_a_fleet_run_goes_on_past_an_unreachable_cluster(world: World) -> None:
    world.unreachable["stg1"] = HostUnreachableError("stg1: ssh dbrunbook@192.0.2.10:22 does not answer")
    fleet = run_fleet(select(world.labels(), None), agent_check(world))

    assert [o.cluster for o in fleet.outcomes] == CLUSTERS
    assert fleet.results == [world.agent("pg1"), world.agent("my1")]
    recap = fleet.recap()
    assert [(r["cluster"], r["ok"], r["exit_code"]) for r in recap] == [
        ("orders-pg", True, 0),
        ("orders-stg", False, 21),
        ("orders-my", True, 0),
    ]
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in recap)
    assert "does not answer" in str(recap[1]["error"])
    assert "FAILED (exit 21)" in recap_lines(fleet)[1] and recap_lines(fleet)[2].rstrip().endswith("ok")
    worst = fleet.worst()
    assert isinstance(worst, HostUnreachableError)
    # The hosts after the dead one were really asked (the loop did not stop), the dead one never answered.
    assert world.fake("my1").find(r"dbrunbook-host version$")
    assert world.fake("stg1").unanswered == []
    audit = (world.root / "audit.jsonl").read_text()
    assert '"host": "stg1"' in audit and "error: HostUnreachableError" in audit


def test_the_most_severe_failure_is_the_exit_code(world: World) -> None:
    world.unreachable["stg1"] = HostUnreachableError("stg1: does not answer")
    # my1 has another dbrunbook build installed: a HostError (20), less severe than unreachable (21).
    world.fake("my1").on(r"dbrunbook-host version$", Reply(stdout='{"version": "0.0.9", "build": "old"}'))
    fleet = run_fleet(CLUSTERS, agent_check(world))
    assert [o.exit_code for o in fleet.outcomes] == [0, 21, 20]
    worst = fleet.worst()
    assert isinstance(worst, HostUnreachableError) and worst.exit_code == 21
    assert isinstance(fleet.outcomes[2].error, HostError) and "0.0.9" in fleet.outcomes[2].error.message


def in_flight_counter(world: World, barrier: threading.Barrier | None) -> tuple[list[int], Callable[[], None]]:
    """Every host's version command counts how many clusters are inside it at once; with a barrier, the
    first two only answer once both are there (impossible unless they run side by side)."""
    lock = threading.Lock()
    state = {"now": 0}
    peaks: list[int] = []

    def install() -> None:
        for host_name in ("pg1", "stg1", "my1"):

            def answer(_cmd: Command, host_name: str = host_name) -> Reply:
                with lock:
                    state["now"] += 1
                    peaks.append(state["now"])
                if barrier is not None and host_name in ("pg1", "stg1"):
                    barrier.wait()
                with lock:
                    state["now"] -= 1
                return Reply(stdout=f'{{"version": "0", "host": "{host_name}"}}')

            world.fake(host_name).on(r"dbrunbook-host version$", answer)

    return peaks, install


def test_forks_2_runs_two_clusters_at_a_time(world: World) -> None:
    peaks, install = in_flight_counter(world, threading.Barrier(2, timeout=10))
    install()
    fleet = run_fleet(CLUSTERS, agent_check(world), forks=2)
    assert [o.cluster for o in fleet.outcomes] == CLUSTERS  # the recap keeps inventory order
    assert max(peaks) == 2  # the barrier proves two at once; never three
    assert [o.exit_code for o in fleet.outcomes] == [20, 20, 20]  # version "0": every host has another build


def test_forks_1_runs_one_cluster_at_a_time(world: World) -> None:
    peaks, install = in_flight_counter(world, None)
    install()
    run_fleet(CLUSTERS, agent_check(world), forks=1)
    assert peaks == [1, 1, 1]


@pytest.mark.parametrize(
    ("spec", "limit", "chosen"),
    [
        (None, None, CLUSTERS),
        ("orders-*,!orders-stg", None, ["orders-pg", "orders-my"]),
        ("orders-p*", None, ["orders-pg"]),
        (None, "tier=prod", ["orders-pg", "orders-my"]),
        ("orders-*", "region=eu,tier=staging", ["orders-stg"]),
    ],
)
def test_globs_exclusions_and_labels_choose_the_clusters_that_run(
    world: World, spec: str | None, limit: str | None, chosen: list[str]
) -> None:
    fleet = run_fleet(select(world.labels(), spec, limit), agent_check(world))
    assert [o.cluster for o in fleet.outcomes] == chosen
    primaries = {"orders-pg": "pg1", "orders-stg": "stg1", "orders-my": "my1"}
    # Only the chosen clusters' hosts were reached at all.
    assert sorted(h for h in world.fakes if world.fakes[h].ran) == sorted(primaries[c] for c in chosen)


def test_a_selection_of_nothing_is_refused_before_any_host_is_reached(world: World) -> None:
    with pytest.raises(InventoryError, match="no cluster is selected"):
        run_fleet(select(world.labels(), "orders-*", "tier=dev"), agent_check(world))
    assert world.fakes == {}
