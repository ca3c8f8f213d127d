"""Functional tests: real orchestrators, fake hosts (FakeExecutor), real file repositories in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .world import World


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # Nothing outside tmp_path: no manifest cache in ~/.cache, no audit lines in ~/.local/state.
    monkeypatch.setenv("DBRUNBOOK_CACHE_DIR", "off")
    monkeypatch.setenv("DBRUNBOOK_AUDIT_LOG", str(tmp_path / "task-audit.jsonl"))
    built = World.build(tmp_path)
    yield built
    # A command no rule answered fails the test even when the code under test swallowed the error.
    unanswered = {name: fake.unanswered for name, fake in built.fakes.items() if fake.unanswered}
    assert not unanswered, f"commands no rule answered: {unanswered}"
