"""The command-line conventions of issue 13: one small set of short flags meaning the same everywhere, help
that always works, Invoke's own --dry/--echo/--warn-only refused before anything runs, -v/-q/--log-file on
every task, and an environment chosen by name or path (or a line saying how to choose one)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbrunbook.cli import program
from dbrunbook.redact import REDACTOR
from dbrunbook.tasks import namespace
from dbrunbook.tasks.conventions import SHORT_FLAGS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

INVENTORY = """
clusters:
  pg:
    engine: postgresql
    credentials: {user: postgres, password: env:DBRUNBOOK_TEST_PGPW}
    hosts:
      a: {role: primary, connection: {type: local}, port: 1, data_dir: /nonexistent}
"""


def run(*argv: str) -> tuple[int, str, str]:
    """The ``dbrunbook`` program in this process; its exit code, stdout and stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            program.run(["dbrunbook", *argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ops folder with inventory/staging.yaml and no dev.yaml; no DBRUNBOOK_ENV; a private audit log."""
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "staging.yaml").write_text(INVENTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBRUNBOOK_ENV", raising=False)
    monkeypatch.delenv("DBRUNBOOK_INVENTORY_DIR", raising=False)
    monkeypatch.setenv("DBRUNBOOK_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("DBRUNBOOK_TEST_PGPW", "hunter2-not-for-logs")
    yield tmp_path


def all_tasks() -> list[str]:
    return sorted(namespace.task_names)


def test_every_task_has_only_the_documented_short_flags_each_meaning_one_long_flag() -> None:
    allowed = {short: long.replace("_", "-") for long, short in SHORT_FLAGS.items()}
    assert set(allowed) == set("ecnyjvq")
    seen: dict[str, set[str]] = {}
    for name in all_tasks():
        for arg in namespace[name].get_arguments():
            shorts = [n for n in arg.names if len(n) == 1]
            longs = [n for n in arg.names if len(n) > 1]
            assert set(shorts) <= set(allowed), f"{name} --{longs[0]} has short flag(s) {shorts}"
            for short in shorts:
                seen.setdefault(short, set()).add(longs[0])
    assert {short: longs for short, longs in seen.items() if len(longs) > 1} == {}
    assert all(allowed[short] in longs for short, longs in seen.items())
    assert "h" not in seen


def test_every_task_takes_the_logging_flags_and_no_positional_argument() -> None:
    for name in all_tasks():
        task = namespace[name]
        names = {n for arg in task.get_arguments() for n in arg.names}
        assert {"verbose", "v", "quiet", "q", "log-file"} <= names, name
        assert not task.positional, f"{name}: a positional argument swallows --help"


@pytest.mark.parametrize("name", all_tasks())
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_works_for_every_task(name: str, flag: str) -> None:
    code, out, err = run(name, flag)
    assert code == 0, err
    assert f"dbrunbook [--core-opts] {name} [--options]" in out


def test_target_name_shows_as_itself_in_the_help() -> None:
    code, out, _ = run("restore.run", "--help")
    assert code == 0
    assert "--target-name=STRING" in out
    assert "--=" not in out


@pytest.mark.parametrize(
    "argv",
    [
        ("-R", "backup.prune", "--yes"),
        ("--dry", "backup.prune", "--yes"),
        ("backup.prune", "-R", "--yes"),
        ("backup.prune", "--yes", "--dry"),
        ("-e", "staging", "backup.prune", "--yes"),
        ("--echo", "backup.prune", "--yes"),
        ("backup.prune", "--yes", "--echo"),
        ("-w", "backup.prune", "--yes"),
        ("backup.prune", "--warn-only", "--yes"),
    ],
)
def test_invoke_core_flags_are_refused_before_the_task_runs(ops: Path, argv: tuple[str, ...]) -> None:
    code, out, err = run(*argv)
    # 2, not 11: the body never ran (it would have failed on the missing inventory, or deleted).
    assert code == 2, err
    assert err.startswith("dbrunbook: usage error: ") and err.count("\n") == 1, err
    assert out == ""
    assert not (ops / "audit.jsonl").exists()


def test_e_after_the_task_name_is_the_environment(ops: Path) -> None:
    code, out, err = run("inventory.show", "-e", "staging", "-j")
    assert code == 0, err
    assert json.loads(out)["env"] == "staging"


def test_env_takes_a_path_to_an_inventory_file(ops: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "orders.yaml").write_text(INVENTORY)
    code, out, err = run("inventory.show", "--env", str(elsewhere / "orders.yaml"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["env"] == "orders" and doc["file"] == str(elsewhere / "orders.yaml")


def test_dbrunbook_env_chooses_the_default(ops: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBRUNBOOK_ENV", "staging")
    code, out, err = run("inventory.show", "--json")
    assert code == 0, err
    assert json.loads(out)["env"] == "staging"


def test_dev_yaml_is_the_fallback(ops: Path) -> None:
    (ops / "inventory" / "dev.yaml").write_text(INVENTORY)
    code, out, err = run("inventory.show", "--json")
    assert code == 0, err
    assert json.loads(out)["env"] == "dev"


def test_no_environment_says_in_one_line_how_to_choose_one(ops: Path) -> None:
    code, _, err = run("backup.list")
    assert code == 11
    assert err.count("\n") == 1
    assert "'dbrunbook backup.list --env staging' reads inventory/staging.yaml" in err
    assert "DBRUNBOOK_ENV" in err and "--env PATH" in err


def test_no_environment_names_invoke_when_run_through_invoke(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBRUNBOOK_ENV"}
    env["DBRUNBOOK_INVENTORY_DIR"] = str(tmp_path)  # the checkout may hold the sandbox's dev.yaml
    res = subprocess.run(
        [str(BIN / "invoke"), "backup.list"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 11, res.stderr
    assert "'invoke backup.list --env prod'" in res.stderr
    assert "'invoke sandbox.up'" in res.stderr


def test_invoke_from_the_checkout_refuses_dry_too(tmp_path: Path) -> None:
    env = {**os.environ, "DBRUNBOOK_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    res = subprocess.run(
        [str(BIN / "invoke"), "-R", "backup.prune", "--yes", "--cluster=*"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("dbrunbook: usage error: -R/--dry is Invoke's own dry run")
    assert not (tmp_path / "audit.jsonl").exists()


def test_the_real_dbrunbook_command_refuses_dry_and_prints_help(tmp_path: Path) -> None:
    def dbrunbook(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "dbrunbook"), *argv], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    res = dbrunbook("-R", "backup.prune", "--yes")
    assert res.returncode == 2 and "usage error: -R/--dry" in res.stderr
    res = dbrunbook("backup.full", "-h")
    assert res.returncode == 0 and "-j, --json" in res.stdout and "--jobs=INT" in res.stdout


def test_a_missing_required_flag_is_a_usage_error(ops: Path) -> None:
    code, _, err = run("restore.run", "-e", "staging")
    assert code == 2
    assert "usage error: --to required" in err


def test_verbose_and_quiet_together_are_refused(ops: Path) -> None:
    code, _, err = run("inventory.show", "-e", "staging", "-v", "-q")
    assert code == 2 and "-v and -q" in err


def check(*extra: str) -> tuple[int, str, str]:
    return run("inventory.check", "-e", "staging", *extra)


def test_verbose_prints_each_command_as_audited(ops: Path) -> None:
    code, _, err = check("-v")
    assert code == 31  # nothing listens on port 1
    audited = [json.loads(line) for line in (ops / "audit.jsonl").read_text().splitlines()]
    assert audited and all(f"[a] {a['text']} (exit {a['exit']}" in err for a in audited)


def test_default_and_quiet_print_no_commands(ops: Path) -> None:
    for extra in ((), ("-q",)):
        code, _, err = check(*extra)
        assert code == 31
        assert "[a] sh -c" not in err
        assert err.startswith("dbrunbook: database error:") and err.count("\n") == 1


def test_log_file_gets_timestamped_redacted_lines_and_is_0600(ops: Path) -> None:
    log = ops / "logs" / "run.log"
    REDACTOR.register("hunter2-not-for-logs")
    code, _, _ = check("--log-file", str(log), "-q")
    assert code == 31
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    lines = log.read_text().splitlines()
    assert all(line[:4].isdigit() and "+" in line.split()[0] for line in lines)
    assert "inventory.check: started (env staging)" in lines[0]
    assert any("inventory.check: [a] sh -c" in line for line in lines)  # the commands, even with -q
    assert "failed (exit 31)" in lines[-1]
    assert "hunter2-not-for-logs" not in log.read_text()
    # Appends: a second run adds its lines after the first run's.
    check("--log-file", str(log))
    assert log.read_text().splitlines()[: len(lines)] == lines


def test_log_file_redacts_what_it_is_given(tmp_path: Path) -> None:
    from dbrunbook.output import LogFile

    REDACTOR.register("another-secret-value")
    log = LogFile(tmp_path / "x.log")
    log.write("password is another-secret-value")
    assert "another-secret-value" not in (tmp_path / "x.log").read_text()
    assert "***" in (tmp_path / "x.log").read_text()


def test_drill_report_json(ops: Path) -> None:
    code, out, err = run("drill.report", "-e", "staging", "--out", str(ops / "r.html"), "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    assert doc == {"out": str(ops / "r.html"), "clusters": [], "drills": 0}
    assert (ops / "r.html").read_text().startswith("<!")
