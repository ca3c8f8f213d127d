"""SSH host keys against the sandbox's real sshd: unknown and changed keys are refused, first contact is
recorded only when the operator says so, and no ssh_config file changes where or how we connect."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import paramiko
import pytest

from dbrunbook import errors
from dbrunbook.execution import AuditLog, Command, RunSettings
from dbrunbook.execution.hosts import executor_for
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import dev_data, run_cli, write_inventory


def pg_only(tmp_path: Path, known_hosts: str | None) -> tuple[Path, dict[str, Any]]:
    """dev's pg-main cluster alone, pg-main-2's known_hosts replaced (None: the inventory names none)."""
    data = copy.deepcopy(dev_data())
    data["clusters"] = {"pg-main": data["clusters"]["pg-main"]}
    conn = data["clusters"]["pg-main"]["hosts"]["pg-main-2"]["connection"]
    conn.pop("known_hosts")
    if known_hosts is not None:
        conn["known_hosts"] = known_hosts
    (tmp_path / "inv").mkdir(exist_ok=True)
    return write_inventory(tmp_path / "inv" / "pg.yaml", data), conn


def sandbox_key(conn: dict[str, Any]) -> paramiko.PKey:
    """pg-main-2's real host key, from the known_hosts file the sandbox wrote."""
    keys = paramiko.HostKeys(dev_data()["clusters"]["pg-main"]["hosts"]["pg-main-2"]["connection"]["known_hosts"])
    found = keys.lookup(f"[127.0.0.1]:{conn['port']}")
    assert found is not None
    return next(iter(found.values()))


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A HOME of our own: the runner's ~/.ssh must not decide what these tests see."""
    (tmp_path / "home").mkdir()
    return {"HOME": str(tmp_path / "home")}


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_unknown_host_key_is_refused_with_its_fingerprint(tmp_path: Path, home: dict[str, str]) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inv, conn = pg_only(tmp_path, str(empty))
    res = run_cli("inventory.check", f"--env={inv}", env=home)
    assert res.returncode == errors.HostKeyUnknown.exit_code, res.stderr
    line = one_line(res.stderr)
    assert f"presented an unknown host key ssh-ed25519 {sandbox_key(conn).fingerprint}" in line
    assert "--accept-new-host-keys" in line
    assert empty.read_text() == ""


def test_changed_host_key_is_refused_even_when_new_keys_are_accepted(tmp_path: Path, home: dict[str, str]) -> None:
    impostor = paramiko.ECDSAKey.generate()  # what known_hosts says; the sshd presents its own key
    stale = tmp_path / "stale_known_hosts"
    inv, conn = pg_only(tmp_path, str(stale))
    stale.write_text(f"[127.0.0.1]:{conn['port']} {impostor.get_name()} {impostor.get_base64()}\n")
    before = stale.read_text()
    for extra in ((), ("--accept-new-host-keys", "--yes")):
        res = run_cli("inventory.check", f"--env={inv}", *extra, env=home)
        assert res.returncode == errors.HostKeyChanged.exit_code, res.stderr
        line = one_line(res.stderr)
        assert sandbox_key(conn).fingerprint in line and impostor.fingerprint in line
        assert f"ssh-keygen -R '[127.0.0.1]:{conn['port']}' -f {stale}" in line
    assert stale.read_text() == before


def test_first_contact_without_a_terminal_or_yes_refuses_at_once(tmp_path: Path, home: dict[str, str]) -> None:
    inv, _ = pg_only(tmp_path, None)
    res = run_cli("inventory.check", f"--env={inv}", "--accept-new-host-keys", env=home, timeout=60)
    assert res.returncode == errors.ConfirmationRequired.exit_code, res.stderr
    assert "re-run with --yes" in one_line(res.stderr)
    assert not (tmp_path / "inv" / "known_hosts").exists()


def test_accepted_key_is_recorded_beside_the_inventory_and_then_trusted(tmp_path: Path, home: dict[str, str]) -> None:
    """No known_hosts in the inventory: the file beside it is the one read first and written to."""
    inv, conn = pg_only(tmp_path, None)
    res = run_cli("inventory.check", f"--env={inv}", "--accept-new-host-keys", "--yes", "--json", env=home)
    assert res.returncode == 0, res.stderr
    key = sandbox_key(conn)
    recorded = tmp_path / "inv" / "known_hosts"
    assert recorded.read_text() == f"[127.0.0.1]:{conn['port']} ssh-ed25519 {key.get_base64()}\n"
    assert f'"fingerprint": "{key.fingerprint}"' in res.stdout
    again = run_cli("inventory.check", f"--env={inv}", env=home)
    assert again.returncode == 0, again.stderr
    assert recorded.read_text().count("\n") == 1


def test_ssh_config_and_agent_forwarding_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev: LoadedInventory, resolver: SecretResolver
) -> None:
    """A ~/.ssh/config that points the host elsewhere, adds a key and forwards the agent changes nothing."""
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host 127.0.0.1\n  HostName 127.0.0.2\n  IdentityFile {stranger}\n  ForwardAgent yes\n  User root\n"
    )
    monkeypatch.setenv("HOME", str(home))
    # The CLI: HostName would send it to 127.0.0.2, where no sshd listens.
    res = run_cli("inventory.check", "--env=dev", "--cluster=mariadb-main", env={"HOME": str(home)})
    assert res.returncode == 0, res.stderr
    # In process: the session gets no forwarded agent (sshd would set SSH_AUTH_SOCK for one).
    (home / ".ssh" / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {stranger}\n  ForwardAgent yes\n")
    cluster = dev.inventory.clusters["mariadb-main"]
    settings = RunSettings(audit=AuditLog(tmp_path / "audit.jsonl"))
    ex = executor_for("mariadb-main-2", cluster.hosts["mariadb-main-2"], settings, resolver)
    try:
        out = ex.run(Command(("sh", "-c", 'printf "%s|%s" "$(id -un)" "$SSH_AUTH_SOCK"'), mutating=False)).stdout
    finally:
        ex.close()
    assert out == f"{cluster.hosts['mariadb-main-2'].os_user}|"


def test_the_sandbox_inventory_names_a_known_hosts_with_both_sshds(dev: LoadedInventory) -> None:
    conns = [h.connection for c in dev.inventory.clusters.values() for h in c.hosts.values()]
    ssh = [c for c in conns if c.type == "ssh"]
    (path,) = {c.known_hosts for c in ssh}
    assert path is not None
    names = {line.split()[0] for line in Path(path).read_text().splitlines()}
    assert names == {f"[127.0.0.1]:{c.port}" for c in ssh} and len(names) == 2
