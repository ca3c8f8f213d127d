"""The sandbox's SSH server: Debian's sshd on a loopback port, run as the servers' OS user, so the SSH
path of the execution seam is exercised for real. Only key login, only that user."""

from __future__ import annotations

from pathlib import Path

from dbrunbook.errors import SandboxError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.sandbox.files import make_dirs, write_file
from dbrunbook.sandbox.layout import Layout
from dbrunbook.sandbox.proc import ensure_port_free, pid_alive, port_open, read_pid, stop_pid, wait_for

SSHD = "/usr/sbin/sshd"


def pid_path(layout: Layout) -> Path:
    return layout.ssh / "sshd.pid"


def is_running(layout: Layout) -> bool:
    return pid_alive(read_pid(pid_path(layout)), "sshd")


def config(layout: Layout) -> str:
    d = layout.ssh
    return "\n".join(
        [
            f"Port {layout.port('sshd')}",
            "ListenAddress 127.0.0.1",
            f"HostKey {d / 'host_ed25519'}",
            f"PidFile {pid_path(layout)}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"AllowUsers {layout.os_user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            # A non-root sshd cannot use PAM, and the checkout's parent folders are not ours to chmod.
            "UsePAM no",
            "StrictModes no",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "LogLevel VERBOSE",
            "",
        ]
    )


def prepare(x_server: HostExecutor, x_tool: HostExecutor, layout: Layout) -> None:
    if not Path(SSHD).exists():
        raise SandboxError("sshd is missing", hint="apt-get install openssh-server")
    make_dirs(x_server, layout.ssh)
    host_key = layout.ssh / "host_ed25519"
    if not host_key.exists():
        x_server.run(
            Command(
                ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)),
                description="sshd host key",
            )
        )
    client_dir = layout.root / "client"
    make_dirs(x_tool, client_dir)
    if not layout.client_key.exists():
        x_tool.run(
            Command(
                (
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "dbrunbook-sandbox",
                    "-f",
                    str(layout.client_key),
                ),
                description="client key",
            )
        )
    public = Path(f"{layout.client_key}.pub").read_text()
    write_file(x_server, layout.ssh / "authorized_keys", public, private=True)
    write_file(x_server, layout.ssh / "sshd_config", config(layout))


def start(x: HostExecutor, layout: Layout) -> None:
    if is_running(layout):
        return
    port = layout.port("sshd")
    ensure_port_free(port, "sshd")
    log = layout.logs / "sshd.log"
    x.run(
        Command(
            (SSHD, "-f", str(layout.ssh / "sshd_config"), "-E", str(log)),
            description="start sshd",
        )
    )
    wait_for(lambda: port_open(port), f"sshd on port {port}", 15, log=log)


def stop(x: HostExecutor, layout: Layout) -> None:
    pid = read_pid(pid_path(layout))
    if pid:
        stop_pid(x, pid, "sshd", "sshd", grace=10)
