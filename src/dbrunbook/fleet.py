"""Fleet runs: which clusters a task acts on, and running it over each without stopping at the first failure.

- Selection (pure): ``--cluster`` is a comma-separated list of names or globs, with ``!`` excluding
  (``orders-*,!orders-stg``); ``--limit`` keeps clusters whose inventory ``labels`` match every
  ``key=value`` given (``tier=prod,region=eu``).
- A run works on ``forks`` clusters at a time, goes on past a failing one, keeps each cluster's outcome
  (its result or its error, and how long it took) and exits with the worst code: the highest exit code of
  the failures, so 91 (a drill's restore failed) outranks 23 (a command failed) and a clean run is 0.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dbrunbook.errors import DbrunbookError, InventoryError

R = TypeVar("R")


def select(labels: Mapping[str, Mapping[str, str]], spec: str | None, limit: str | None = None) -> list[str]:
    """The cluster names ``spec`` and ``limit`` choose, in inventory order. ``labels`` maps every cluster of
    the inventory to its labels. No spec means every cluster; a spec that chooses none is an error that
    lists the names there are, so a typo never turns into a silent no-op."""
    names = list(labels)
    chosen = names
    if spec:
        patterns = [p.strip() for p in spec.split(",") if p.strip()]
        include = [p for p in patterns if not p.startswith("!")]
        exclude = [p[1:] for p in patterns if p.startswith("!")]
        chosen = [n for n in names if not include or any(fnmatch.fnmatchcase(n, p) for p in include)]
        chosen = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
        unmatched = [p for p in include if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise InventoryError(f"--cluster {unmatched[0]!r} matches no cluster (known: {', '.join(names)})")
    if limit:
        wanted = dict(_pair(item) for item in limit.split(",") if item.strip())
        chosen = [n for n in chosen if all(labels[n].get(k) == v for k, v in wanted.items())]
    if not chosen:
        raise InventoryError(
            f"no cluster is selected by --cluster {spec or '(all)'}" + (f" --limit {limit}" if limit else "")
        )
    return chosen


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.strip().partition("=")
    if not sep or not key:
        raise InventoryError(f"--limit {item.strip()!r} must look like key=value")
    return key.strip(), value.strip()


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """One cluster's part of a fleet run."""

    cluster: str
    seconds: float
    result: R | None = None
    error: DbrunbookError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    def recap(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "exit_code": self.exit_code,
            "error": self.error.one_line() if self.error else None,
        }


@dataclass(frozen=True)
class FleetResult(Generic[R]):
    outcomes: list[Outcome[R]]

    @property
    def results(self) -> list[R]:
        return [o.result for o in self.outcomes if o.result is not None]

    @property
    def failures(self) -> list[Outcome[R]]:
        return [o for o in self.outcomes if not o.ok]

    def worst(self) -> DbrunbookError | None:
        """The failure the task exits with: the highest exit code (the first of equals)."""
        errors = [o.error for o in self.outcomes if o.error is not None]
        return max(errors, key=lambda e: e.exit_code) if errors else None

    def recap(self) -> list[dict[str, Any]]:
        return [o.recap() for o in self.outcomes]

    def run_failure(self) -> DbrunbookError | None:
        """What the task exits with: the worst failure, told in one line for the whole run when there were
        several clusters (each cluster's own line is in the recap)."""
        worst = self.worst()
        if worst is None or len(self.outcomes) <= 1:
            return worst
        first = self.failures[0]
        return type(worst)(
            f"{len(self.failures)} of {len(self.outcomes)} clusters failed; first: {first.cluster}: "
            f"{first.error.one_line() if first.error else ''}"
        )


def run_fleet(
    names: Sequence[str],
    work: Callable[[str], R],
    *,
    forks: int = 1,
    clock: Callable[[], float] = time.monotonic,
) -> FleetResult[R]:
    """Run ``work`` for every cluster, ``forks`` at a time; a DbrunbookError fails that cluster only. Anything
    else is a bug and stops the run. Outcomes come back in ``names`` order, whatever order they finished in."""
    if forks < 1:
        raise InventoryError(f"--forks must be 1 or more, not {forks}")

    def one(name: str) -> Outcome[R]:
        started = clock()
        try:
            result = work(name)
        except DbrunbookError as exc:
            return Outcome(name, clock() - started, error=exc)
        return Outcome(name, clock() - started, result=result)

    if forks == 1 or len(names) <= 1:
        return FleetResult([one(n) for n in names])
    with ThreadPoolExecutor(max_workers=forks) as pool:
        return FleetResult(list(pool.map(one, names)))


def recap_lines(result: FleetResult[Any]) -> list[str]:
    """The recap a fleet run ends with, one line per cluster."""
    lines = []
    for o in result.outcomes:
        state = "ok" if o.ok else f"FAILED (exit {o.exit_code}): {o.error.one_line() if o.error else ''}"
        lines.append(f"  {o.cluster:<20} {o.seconds:>8.1f}s  {state}")
    return lines
