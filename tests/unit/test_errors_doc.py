"""docs/errors.md lists every error class with its exit code: runbooks and cron jobs branch on them."""

from __future__ import annotations

import re
from pathlib import Path

from dbrunbook.errors import all_error_classes

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_exit_code_is_in_the_table() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| `(\w+)` \|", DOC.read_text(), flags=re.M))
    missing = [f"{c.exit_code} {c.__name__}" for c in all_error_classes() if rows.get(str(c.exit_code)) != c.__name__]
    assert not missing, f"docs/errors.md lacks: {', '.join(missing)}"
