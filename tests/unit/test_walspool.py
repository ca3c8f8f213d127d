"""wal-push pushes ahead the segments PostgreSQL marked ready, and a later run for one of them ends on its
marker without touching the repository; a marker that does not match the file is never trusted."""

from __future__ import annotations

import json
from pathlib import Path

from dbrunbook.agent import cli as agent
from dbrunbook.agent import walspool
from dbrunbook.repository.crypto import generate_identity

SEGS = ["000000010000000000000001", "000000010000000000000002", "000000010000000000000003"]


def setup(tmp_path: Path) -> tuple[Path, Path]:
    pg_wal = tmp_path / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    for i, seg in enumerate(SEGS):
        (pg_wal / seg).write_bytes(bytes([i + 1]) * 100_000)
        (pg_wal / "archive_status" / f"{seg}.ready").touch()
    config = tmp_path / "cfg" / "repository.json"
    config.parent.mkdir()
    doc = {"cluster": "c", "repository": {"url": f"file://{tmp_path}/repo"}, "recipients": [generate_identity()[1]]}
    config.write_text(json.dumps(doc))
    return pg_wal, config


def break_repository(config: Path) -> None:
    doc = json.loads(config.read_text())
    doc["repository"] = {"url": "s3://nowhere/x", "endpoint": "http://127.0.0.1:9", "region": "us-east-1"}
    config.write_text(json.dumps(doc))


def test_push_ahead_then_marker_fast_path(tmp_path: Path) -> None:
    pg_wal, config = setup(tmp_path)
    assert agent.main(["wal-push", "--config", str(config), str(pg_wal / SEGS[0])]) == 0
    stored = sorted(p.name.split(".")[0] for p in (tmp_path / "repo" / "wal" / "00000001").iterdir())
    assert stored == SEGS  # the asked one, and the two marked ready, in one run
    assert sorted(p.name for p in walspool.spool_dir(config).iterdir()) == [f"{s}.ok" for s in SEGS[1:]]

    break_repository(config)  # from here, any run that reaches the repository fails
    assert agent.main(["wal-push", "--config", str(config), str(pg_wal / SEGS[1])]) == 0
    assert not (walspool.spool_dir(config) / f"{SEGS[1]}.ok").exists()  # used up
    assert (
        agent.main(["wal-push", "--config", str(config), str(pg_wal / SEGS[1])]) == 70
    )  # reached the (broken) repository

    # The file changed since its marker was written: the marker is not trusted.
    (pg_wal / SEGS[2]).write_bytes(b"\x09" * 100_000)
    assert agent.main(["wal-push", "--config", str(config), str(pg_wal / SEGS[2])]) == 70
