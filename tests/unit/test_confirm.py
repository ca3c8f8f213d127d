from __future__ import annotations

import io

import pytest

from dbrunbook.errors import ConfirmationRequired
from dbrunbook.output import confirm


def test_no_tty_refuses_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a TTY, even if it has an answer
    with pytest.raises(ConfirmationRequired) as info:
        confirm("drop everything", yes=False)
    assert "re-run with --yes" in info.value.one_line()


def test_yes_and_dry_run_skip_the_question(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    confirm("drop everything", yes=True)
    confirm("drop everything", yes=False, dry_run=True)
