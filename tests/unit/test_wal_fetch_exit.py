"""``wal-fetch`` is PostgreSQL's restore_command: only a clean "not in the repository" may exit 1..125.

Every other outcome (a crash included) must exit above 125, or PostgreSQL ends recovery at that segment and
promotes without the later transactions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dbrunbook.agent import cli as agent
from dbrunbook.engines.postgresql.archive import restore_command
from dbrunbook.engines.postgresql.wal import push
from dbrunbook.inventory.model import Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.repository.crypto import generate_identity
from dbrunbook.repository.storage import open_storage

SEG = "000000010000000000000007"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A host config like restore.run installs, over a file repository holding one segment."""
    private, public = generate_identity()
    repo = tmp_path / "repo"
    storage = open_storage(Repository(url=f"file://{repo}"), SecretResolver(tmp_path))
    wal = tmp_path / "src" / SEG
    wal.parent.mkdir()
    wal.write_bytes(b"segment bytes" * 1000)
    push(storage, wal, [public])
    folder = tmp_path / "config"
    folder.mkdir(mode=0o700)
    (folder / "identity-0").write_text(private + "\n")
    (folder / "identity-0").chmod(0o600)
    doc = {
        "cluster": "c1",
        "repository": {"url": f"file://{repo}"},
        "recipients": [public],
        "identities": ["file:identity-0"],
    }
    path = folder / "repository.json"
    path.write_text(json.dumps(doc))
    return path


def fetch(config: Path, name: str, dest: Path) -> int:
    return agent.main(["wal-fetch", "--config", str(config), name, str(dest)])


def test_fetched_segment_exits_0_and_missing_one_exits_not_in_archive(config: Path, tmp_path: Path) -> None:
    dest = tmp_path / "pg_wal" / "RECOVERYXLOG"
    dest.parent.mkdir()
    assert fetch(config, SEG, dest) == 0
    assert dest.read_bytes() == b"segment bytes" * 1000
    assert fetch(config, "000000010000000000000008", dest) == agent.NOT_IN_ARCHIVE
    assert 0 < agent.NOT_IN_ARCHIVE <= 125 and agent.FETCH_FAILED > 125


def _edit(config: Path, **changes: object) -> None:
    doc = json.loads(config.read_text())
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    config.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("KeyError: a config without a key", {"recipients": None}),
        ("TypeError: a key of the wrong type", {"recipients": 7}),
        ("ValueError: an invalid repository", {"repository": {"url": "ftp://nowhere"}}),
        ("an identity that is not a key", {"identities": ["file:repository.json"]}),
    ],
)
def test_a_broken_config_stops_recovery(config: Path, tmp_path: Path, what: str, change: dict[str, object]) -> None:
    _edit(config, **change)
    dest = tmp_path / "RECOVERYXLOG"
    assert fetch(config, SEG, dest) == agent.FETCH_FAILED, what
    assert not dest.exists()


def test_a_missing_destination_directory_is_an_oserror_that_stops_recovery(config: Path, tmp_path: Path) -> None:
    assert fetch(config, SEG, tmp_path / "no-such-dir" / "RECOVERYXLOG") == agent.FETCH_FAILED


def test_an_unwritable_temporary_file_stops_recovery(config: Path, tmp_path: Path) -> None:
    dest = tmp_path / "pg_wal" / "RECOVERYXLOG"
    (tmp_path / "pg_wal" / ".RECOVERYXLOG.dbrunbook-tmp").mkdir(parents=True)  # open() gets IsADirectoryError
    assert fetch(config, SEG, dest) == agent.FETCH_FAILED
    assert not dest.exists()


def test_a_config_that_is_not_utf8_stops_recovery(config: Path, tmp_path: Path) -> None:
    config.write_bytes(b'{"cluster": "\xff\xfe"}')
    assert fetch(config, SEG, tmp_path / "RECOVERYXLOG") == agent.FETCH_FAILED


@pytest.mark.parametrize("argv", [[], ["--config"], [SEG], ["--bogus", "x", SEG, "/tmp/x"]])
def test_bad_arguments_stop_recovery(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert agent.main(["wal-fetch", *argv]) == agent.FETCH_FAILED
    capsys.readouterr()


def test_a_crash_is_one_line_and_stops_recovery(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbrunbook.engines.postgresql import wal

    def boom(*_args: object, **_kw: object) -> bool:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(wal, "fetch", boom)
    assert fetch(config, SEG, tmp_path / "RECOVERYXLOG") == agent.FETCH_FAILED
    err = capsys.readouterr().err
    assert "RuntimeError: something nobody expected" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("agent_exit", "expected"),
    [(0, 0), (agent.NOT_IN_ARCHIVE, agent.NOT_IN_ARCHIVE), (1, 128), (2, 128), (70, 128), (126, 128), (127, 128)],
)
def test_the_restore_command_maps_every_other_status_above_125(tmp_path: Path, agent_exit: int, expected: int) -> None:
    """The shell has the last word: a Python that crashes before main() (exit 1) still stops recovery."""
    fake = tmp_path / "bin dir" / "dbrunbook-host"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\nexit {agent_exit}\n')
    fake.chmod(0o755)
    command = restore_command(str(fake), "/etc/some config/repository.json")
    # As PostgreSQL runs it: %f and %p replaced, then handed to /bin/sh -c.
    line = command.replace("%f", SEG).replace("%p", "pg_wal/RECOVERYXLOG")
    res = subprocess.run(["/bin/sh", "-c", line], check=False)
    assert res.returncode == expected
    args = (fake.parent / "args").read_text().split()
    assert args[0] == "wal-fetch" and args[-2:] == [SEG, "pg_wal/RECOVERYXLOG"]


def test_the_restore_command_stops_recovery_when_the_agent_is_missing(tmp_path: Path) -> None:
    line = restore_command(str(tmp_path / "gone"), "/c.json").replace("%f", SEG).replace("%p", "x")
    assert subprocess.run(["/bin/sh", "-c", line], check=False, capture_output=True).returncode == 128


def test_the_controller_maps_the_agents_own_exit_codes() -> None:
    """restore_command is built on the controller, which never imports the agent: its copy of the codes must
    stay the agent's."""
    from dbrunbook.engines.postgresql import archive

    assert (archive.NOT_IN_ARCHIVE, archive.FETCH_FAILED) == (agent.NOT_IN_ARCHIVE, agent.FETCH_FAILED)
