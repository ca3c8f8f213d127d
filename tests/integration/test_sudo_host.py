"""pg-main-2 is the production layout: the SSH login user (dbrunbook-ops) is not the OS user, and every
command reaches the OS user through sudo. Environment, folder, secret files, hosts.setup's staged wheel and
the SQL tunnel must all work through it."""

from __future__ import annotations

import copy
import json
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from dbrunbook.engines.postgresql.driver import pgpass_line
from dbrunbook.execution import Command
from dbrunbook.inventory import LoadedInventory, SecretResolver

from .conftest import dev_data, run_cli, write_inventory

# PostgreSQL's SSLRequest: a server answers it with one byte, 'S' or 'N', before anything else.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def test_env_reaches_the_command_under_sudo_and_the_audit_shows_the_wrapping(ssh_replica: Any) -> None:
    res = ssh_replica.run(
        Command(("sh", "-c", 'printf "%s|%s" "$(id -un)" "$PROBE"'), env={"PROBE": "a b"}, mutating=False)
    )
    assert res.stdout == f"{ssh_replica.os_user}|a b"
    assert ssh_replica.user != ssh_replica.os_user
    audit = Path(ssh_replica.settings.audit.path).read_text()
    assert f"sudo -n -u {ssh_replica.os_user} -- env 'PROBE=a b' sh -c" in audit


def test_a_folder_only_the_os_user_can_enter_works_as_cwd(ssh_replica: Any) -> None:
    with ssh_replica.private_dir() as folder:  # 0700, the OS user's: the login user cannot cd there
        res = ssh_replica.run(Command(("pwd",), cwd=folder, mutating=False))
    assert res.stdout.strip() == folder


def test_a_client_tool_reads_its_pgpass_under_sudo(
    ssh_replica: Any, dev: LoadedInventory, resolver: SecretResolver
) -> None:
    """The sandbox password holds ':', '\\\\', '#', quotes and a space: the escaped line must still log in."""
    cluster = dev.inventory.clusters["pg-main"]
    host = cluster.hosts["pg-main-2"]
    assert cluster.credentials.password
    password = resolver.resolve(cluster.credentials.password).reveal()
    assert all(ch in password for ch in ":\\#'\" ")
    with ssh_replica.secret_file(pgpass_line(host.port, "postgres", password), "pgpass") as pgpass:
        res = ssh_replica.run(
            Command(
                (host.binary("psql"), "-X", "-w", "-h", "127.0.0.1", "-p", str(host.port), "-U", "postgres"),
                env={"PGPASSFILE": pgpass},
                stdin="select 'in ' || (pg_is_in_recovery())::text",
                mutating=False,
            )
        )
    assert "in true" in res.stdout
    audit = Path(ssh_replica.settings.audit.path).read_text()
    assert f"sudo -n -u {ssh_replica.os_user} -- env PGPASSFILE={pgpass} {host.binary('psql')}" in audit


def test_hosts_setup_stages_the_wheel_as_the_login_user_for_the_os_user(
    sandbox: dict[str, Any], ssh_replica: Any, tmp_path: Path
) -> None:
    """A venv of its own, so the shared one stays untouched: SFTP as dbrunbook-ops, pip as dbrunbook."""
    venv = f"~/.local/share/dbrunbook/venv-sudo-{uuid.uuid4().hex[:8]}"
    data = copy.deepcopy(dev_data())
    data["clusters"]["pg-main"]["hosts"]["pg-main-2"]["tool_venv"] = venv
    inv = write_inventory(tmp_path / "sudo.yaml", data)
    staged_before = set(Path("/tmp").glob("dbrunbook-setup.*"))
    res = run_cli("hosts.setup", f"--env={inv}", "--cluster=pg-main", "--host=pg-main-2", "--json", timeout=900)
    home = ssh_replica.home()
    try:
        assert res.returncode == 0, res.stderr
        (result,) = json.loads(res.stdout)["hosts"]
        assert result["action"] == "installed" and result["venv"] == f"{home}{venv[1:]}"
        owner = ssh_replica.run(Command(("stat", "-c", "%U", result["venv"]), mutating=False)).stdout.strip()
        assert owner == ssh_replica.os_user
    finally:
        ssh_replica.run(Command(("rm", "-rf", f"{home}{venv[1:]}"), mutating=False))
    assert set(Path("/tmp").glob("dbrunbook-setup.*")) == staged_before, "the staging folder was left behind"


def test_the_tunnel_forwards_only_this_process(ssh_replica: Any, dev: LoadedInventory) -> None:
    """Another local process (any user's) that finds the tunnel's port gets nothing through our session."""
    host = dev.inventory.clusters["pg-main"].hosts["pg-main-2"]
    # Closed at once: an empty read, or a reset when the close found the request unread.
    probe = (
        "import socket, struct, sys\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
        "try:\n"
        "    s.sendall(struct.pack('!ii', 8, 80877103))\n"
        "    print(repr(s.recv(1)))\n"
        "except (ConnectionResetError, BrokenPipeError):\n"
        "    print('reset')\n"
    )
    with ssh_replica.tunnel(host.address, host.port) as (address, port):
        with socket.create_connection((address, port), timeout=10) as ours:
            ours.sendall(SSL_REQUEST)
            assert ours.recv(1) in (b"N", b"S")  # the server answered through the tunnel
        other = subprocess.run(
            [sys.executable, "-c", probe, str(port)], capture_output=True, text=True, timeout=30, check=True
        )
    assert other.stdout.strip() in ("b''", "reset"), other.stdout  # never forwarded
