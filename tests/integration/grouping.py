"""``--dist loadgroup`` that works: every test marked ``xdist_group(NAME)`` runs on one xdist worker.

pytest-xdist 3.8 groups a test by appending ``@NAME`` to ``item._nodeid`` on the worker; pytest 9.2 keeps a
node's id elsewhere (``item._id``), so the suffix never reaches the controller and grouped tests are spread
over both workers like any others (then the MariaDB ones queue on their lock while a core sits idle).

Here the workers write which test is in which group to a file the controller named in the environment, and
the controller's scheduler (xdist's LoadScope: one scope per test, one per group) reads it when it first
splits the collection, after every worker has collected. xdist sends its largest scope first, so a group
starts at once on one worker while the other takes the single tests one by one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]  # xdist ships no types

ENV = "DBRUNBOOK_TEST_GROUPS"


def start(config: pytest.Config) -> None:
    """On the controller of a ``--dist loadgroup`` run: name the file before the workers are spawned."""
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup":
        return
    fd, path = tempfile.mkstemp(prefix="dbrunbook-test-groups-", suffix=".json")
    os.close(fd)
    os.environ[ENV] = path


def finish(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    path = os.environ.pop(ENV, None)
    if path:
        Path(path).unlink(missing_ok=True)


def record(session: pytest.Session) -> None:
    """On a worker: each grouped test's id and group. Both workers collect the same tests and write the same
    content; the rename makes each write whole."""
    path = os.environ.get(ENV)
    if not path or not hasattr(session.config, "workerinput"):
        return
    groups = {}
    for item in session.items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            groups[item.nodeid] = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    tmp = f"{path}.{session.config.workerinput['workerid']}"
    Path(tmp).write_text(json.dumps(groups))
    os.replace(tmp, path)


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]  # an untyped base
    """LoadScope where a test's scope is its group, or the test itself."""

    _groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            path = os.environ.get(ENV)
            text = Path(path).read_text() if path else ""
            self._groups = json.loads(text) if text else {}
        return self._groups.get(nodeid, nodeid)
