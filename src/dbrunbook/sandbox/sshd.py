"""The sandbox's SSH servers: Debian's sshd on loopback ports, so the SSH path of the execution seam is
exercised for real. Only key login, and a non-root sshd can log in only the user it runs as, so there are
two: one run as the servers' OS user (mariadb-main-2 logs in directly), one run as ``dbrunbook-ops``
(pg-main-2 logs in as that user and reaches the OS user through sudo, see :mod:`.opsuser`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dbrunbook.errors import SandboxError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.sandbox.files import make_dirs, write_file
from dbrunbook.sandbox.layout import OPS_USER, Layout
from dbrunbook.sandbox.proc import ensure_port_free, pid_alive, port_open, read_pid, stop_pid, wait_for

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    """One sandbox sshd: the user it runs as (and lets in), its folder, port and log."""

    name: str  # also the port's name in the layout
    user: str
    folder: Path
    port: int
    log: Path

    @property
    def pid_path(self) -> Path:
        return self.folder / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.folder / "host_ed25519"


def main(layout: Layout) -> Sshd:
    return Sshd("sshd", layout.os_user, layout.ssh, layout.port("sshd"), layout.logs / "sshd.log")


def ops(layout: Layout) -> Sshd:
    # Its log stays in its own folder: the log folder belongs to the servers' OS user.
    folder = layout.ssh_ops
    return Sshd("sshd-ops", OPS_USER, folder, layout.port("sshd-ops"), folder / "sshd.log")


def is_running(spec: Sshd) -> bool:
    return pid_alive(read_pid(spec.pid_path), "sshd")


def config(spec: Sshd) -> str:
    d = spec.folder
    return "\n".join(
        [
            f"Port {spec.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {spec.host_key}",
            f"PidFile {spec.pid_path}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
            f"AllowUsers {spec.user}",
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


def prepare(x_server: HostExecutor, x_tool: HostExecutor, layout: Layout, spec: Sshd) -> None:
    """Host key, authorized_keys and config in ``spec.folder``, written by ``x_server`` (the sshd's user)."""
    if not Path(SSHD).exists():
        raise SandboxError("sshd is missing", hint="apt-get install openssh-server")
    make_dirs(x_server, spec.folder, private=False)  # the tool reads the pid file and the public host key
    exists = x_server.run(
        Command(("test", "-e", str(spec.host_key)), description="sshd host key?", mutating=False, check=False)
    )
    if not exists.ok:
        x_server.run(
            Command(
                ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(spec.host_key)),
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
    write_file(x_server, spec.folder / "authorized_keys", public, private=True)
    write_file(x_server, spec.folder / "sshd_config", config(spec))


def known_hosts_line(x_server: HostExecutor, spec: Sshd) -> str:
    """The known_hosts line for this sshd, from its public host key (read as its user)."""
    public = x_server.run(
        Command(("cat", f"{spec.host_key}.pub"), description="sshd public host key", mutating=False)
    ).stdout.split()
    return f"[127.0.0.1]:{spec.port} {public[0]} {public[1]}\n"


def start(x: HostExecutor, spec: Sshd) -> None:
    if is_running(spec):
        return
    ensure_port_free(spec.port, spec.name)
    x.run(
        Command(
            (SSHD, "-f", str(spec.folder / "sshd_config"), "-E", str(spec.log)),
            description=f"start {spec.name}",
        )
    )
    wait_for(lambda: port_open(spec.port), f"{spec.name} on port {spec.port}", 15, log=spec.log)


def stop(x: HostExecutor, spec: Sshd) -> None:
    pid = read_pid(spec.pid_path)
    if pid:
        stop_pid(x, pid, "sshd", spec.name, grace=10)
