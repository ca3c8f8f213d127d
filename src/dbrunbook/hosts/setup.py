"""``hosts.setup``: install this very dbrunbook build into a virtual environment on each host, so data-path
work (WAL push, backup streaming) runs where the data is.

The same wheel goes everywhere; its SHA-256 is stored in the venv, so a second run that finds the same
build does nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dbrunbook import __version__
from dbrunbook.agent.cli import MARKER
from dbrunbook.errors import CommandFailed, HostError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor, LocalExecutor


@dataclass(frozen=True)
class Wheel:
    path: Path
    sha256: str


def source_root() -> Path | None:
    """The checkout this package runs from, when it is an editable install."""
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "dbrunbook").is_dir():
            return parent
    return None


def build_wheel(local: LocalExecutor, out_dir: Path, python: str) -> Wheel:
    explicit = os.environ.get("DBRUNBOOK_WHEEL")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise HostError(f"DBRUNBOOK_WHEEL={explicit} is not a file")
    else:
        root = source_root()
        if root is None:
            raise HostError(
                "cannot build a wheel of this installation",
                hint="run from a source checkout, or point DBRUNBOOK_WHEEL at dbrunbook's wheel",
            )
        with _build_lock(root):
            _build(local, root, out_dir, python)
        path = next(out_dir.glob("dbrunbook-*.whl"))
    return Wheel(path, hashlib.sha256(path.read_bytes()).hexdigest())


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """One build at a time per checkout: two runs of hosts.setup (two cron jobs, parallel tests) would
    otherwise delete and refill the same build/ folder under each other."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    # Read-only is enough for flock, and works when another user created the file.
    fd = os.open(Path(tempfile.gettempdir()) / f"dbrunbook-build-{digest}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _build(local: LocalExecutor, root: Path, out_dir: Path, python: str) -> None:
    # setuptools reuses build/lib and the egg-info's file list between builds, and would ship files deleted
    # since (or package data no longer declared).
    stale = (str(root / "build"), str(root / "src" / "dbrunbook.egg-info"))
    local.run(Command(("rm", "-rf", *stale), description="clean the build folder", mutating=False))
    local.run(
        Command(
            (
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                str(out_dir),
                str(root),
            ),
            description="build dbrunbook wheel",
            mutating=False,
            # Fixed zip timestamps: the same source gives the same wheel digest, so reruns are no-ops.
            env={"SOURCE_DATE_EPOCH": "315532800"},
        )
    )


def venv_path(executor: HostExecutor, configured: str) -> str:
    if configured.startswith("~/"):
        return executor.home().rstrip("/") + configured[1:]
    return configured


def installed(executor: HostExecutor, venv: str) -> dict[str, str] | None:
    res = executor.run(
        Command(
            (f"{venv}/bin/dbrunbook-host", "version"),
            description="installed version",
            mutating=False,
            check=False,
        )
    )
    if not res.ok:
        return None
    try:
        data: dict[str, str] = json.loads(res.stdout)
    except ValueError:
        return None
    return data


def setup_host(
    executor: HostExecutor, venv: str, wheel: Wheel, *, python: str = "python3", force: bool = False
) -> dict[str, str]:
    """Install ``wheel`` into ``venv`` on the host; returns what was done and the version found after.

    One install at a time per venv (a lock directory on the host): two runs at once, from two controllers or
    two parallel jobs, would each uninstall what the other just installed."""
    with _install_lock(executor, venv):
        return _setup_host(executor, venv, wheel, python=python, force=force)


@contextmanager
def _install_lock(executor: HostExecutor, venv: str, wait: int = 900) -> Iterator[None]:
    lock = f"{venv}.install-lock"
    # mkdir is atomic; a lock older than an hour is from a killed run and is taken over.
    script = (
        'mkdir -p "$(dirname "$1")"; i=0; until mkdir "$1" 2>/dev/null; do '
        'find "$1" -maxdepth 0 -mmin +60 -exec rmdir {} + 2>/dev/null; i=$((i+1)); '
        '[ $i -ge "$2" ] && { echo "another hosts.setup holds $1"; exit 1; }; sleep 1; done'
    )
    executor.run(Command(("sh", "-c", script, "sh", lock, str(wait)), description="take the install lock"))
    try:
        yield
    finally:
        executor.run(Command(("rmdir", lock), check=False, description="release the install lock"))


def _setup_host(
    executor: HostExecutor, venv: str, wheel: Wheel, *, python: str = "python3", force: bool = False
) -> dict[str, str]:
    current = installed(executor, venv)
    if current and current.get("wheel_sha256") == wheel.sha256 and not force:
        return {"host": executor.name, "venv": venv, "action": "up to date", "version": current["version"]}
    staging = _staging_folder(executor)
    remote_wheel = f"{staging}/{wheel.path.name}"
    try:
        executor.put(wheel.path, remote_wheel)
        executor.run(Command(("chmod", "644", remote_wheel), description="let the OS user read it", as_os_user=False))
        _install_into_venv(executor, venv, remote_wheel, wheel.sha256, python)
    finally:
        executor.run(
            Command(("rm", "-rf", staging), description="remove staging folder", check=False, as_os_user=False)
        )
    if executor.settings.dry_run:
        return {"host": executor.name, "venv": venv, "action": "would install", "version": __version__}
    after = installed(executor, venv)
    if not after or after.get("wheel_sha256") != wheel.sha256:
        raise CommandFailed(f"{executor.name}: dbrunbook-host in {shlex.quote(venv)} does not answer after install")
    return {"host": executor.name, "venv": venv, "action": "installed", "version": after["version"]}


def _staging_folder(executor: HostExecutor) -> str:
    # The login user copies the wheel in (SFTP), the OS user installs it: the folder belongs to the login
    # user, who alone can write there and remove it; 0711 and a 0644 wheel let the OS user read the file by
    # name. The wheel holds no secret. In /tmp, not $TMPDIR: that may be a folder only the login user
    # can enter (pam_tmpdir).
    return (
        executor.run(
            Command(
                ("sh", "-c", 'd=$(mktemp -d -p /tmp dbrunbook-setup.XXXXXXXX) && chmod 711 "$d" && echo "$d"'),
                description="staging folder",
                as_os_user=False,
            )
        ).stdout.strip()
        or "/tmp/dbrunbook-setup"
    )


def _install_into_venv(executor: HostExecutor, venv: str, remote_wheel: str, sha256: str, python: str) -> None:
    """Create the venv, install the wheel with its dependencies, and record which build it is."""
    pip = (f"{venv}/bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    executor.run(Command((python, "-m", "venv", venv), description="create virtual environment"))
    executor.run(
        Command(
            (*pip, remote_wheel),
            description="install dbrunbook and its dependencies into the venv",
            timeout=900,
        )
    )
    # Same version number, other build: pip would keep the old files without --force-reinstall.
    executor.run(
        Command(
            (*pip, "--force-reinstall", "--no-deps", remote_wheel),
            description="replace dbrunbook's own files",
            timeout=300,
        )
    )
    executor.run(
        Command(
            ("sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", sha256, f"{venv}/{MARKER}"),
            description="record the installed build",
        )
    )


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="dbrunbook-wheel-")
