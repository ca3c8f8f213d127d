"""One wait loop with a replaceable clock: the waits of backups and restores run here without sleeping."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dbrunbook.errors import BackupError
from dbrunbook.execution.poll import FakeClock, wait_until


def test_wait_until_returns_the_first_answer_and_sleeps_in_between() -> None:
    clock = FakeClock()
    answers = iter([None, False, None, "there"])
    assert wait_until(lambda: next(answers), timeout=10, interval=0.5, clock=clock) == "there"
    assert clock.slept == [0.5, 0.5, 0.5]


def test_wait_until_gives_up_at_the_deadline_without_real_time_passing() -> None:
    clock = FakeClock()
    calls: list[float] = []
    assert wait_until(lambda: calls.append(clock.now), timeout=3600, interval=1.0, clock=clock) is None
    assert calls[0] == 0 and calls[-1] >= 3600 and len(calls) == 3601


def test_a_check_that_raises_stops_the_wait_at_once() -> None:
    clock = FakeClock()

    def check() -> None:
        raise BackupError("the server stopped")

    with pytest.raises(BackupError, match="stopped"):
        wait_until(check, timeout=60, interval=1, clock=clock)
    assert clock.slept == []


def test_a_backup_waiting_for_its_stop_segment_fails_after_its_timeout(tmp_path: Path) -> None:
    """pg_backup's wait, on a real (empty) file repository and a fake clock: two minutes, no sleeping."""
    from dbrunbook.engines.postgresql.backup import wait_for_wal
    from dbrunbook.inventory.model import Repository
    from dbrunbook.inventory.secrets import SecretResolver
    from dbrunbook.repository.storage import open_storage

    storage = open_storage(Repository(url=f"file://{tmp_path}/repo"), SecretResolver(tmp_path))
    ctx = cast(Any, SimpleNamespace(storage=storage))
    clock = FakeClock()
    with pytest.raises(BackupError, match="did not reach the repository within 120s"):
        wait_for_wal(ctx, "000000010000000000000003", 120, clock=clock)
    assert clock.now >= 120 and set(clock.slept) == {0.5}
