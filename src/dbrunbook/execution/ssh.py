"""The SSH transport of the execution seam, on a fabric ``Connection``.

Fabric inlines ``env=`` into the remote command line, so this executor never passes it: a
:class:`~dbrunbook.execution.command.Command` already refuses secrets in its environment, and
non-secret variables are written as an explicit ``env`` prefix that shows up in the audit log as-is.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbrunbook.errors import HostAuthError, HostError, HostUnreachableError
from dbrunbook.execution.command import Command, Result
from dbrunbook.execution.executor import HostExecutor, RunSettings, free_local_port, stdin_for
from dbrunbook.redact import Secret


class SshExecutor(HostExecutor):
    def __init__(
        self,
        name: str,
        settings: RunSettings,
        *,
        host: str,
        port: int,
        user: str,
        key_file: str | None,
        passphrase: Secret | None = None,
        known_hosts: str | None = None,
        connect_timeout: float = 10.0,
        os_user: str | None = None,
    ) -> None:
        super().__init__(name, settings, os_user=os_user)
        self.host = host
        self.port = port
        self.user = user
        self.key_file = key_file
        self._passphrase = passphrase
        self._known_hosts = known_hosts
        self._timeout = connect_timeout
        self._conn: Any = None

    def describe(self) -> str:
        return f"ssh {self.user}@{self.host}:{self.port}"

    def _login_user(self) -> str:
        return self.user

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def connect(self) -> None:
        self._connection()

    def _open(self) -> Any:
        import paramiko
        from fabric import Connection  # lazy: fabric pulls in paramiko and cryptography

        if self.key_file and not Path(self.key_file).expanduser().is_file():
            raise HostAuthError(f"{self.name}: SSH key {self.key_file} does not exist")
        connect_kwargs: dict[str, Any] = {
            # Only the configured key: an agent or ~/.ssh keys would make the result depend on who runs it.
            "look_for_keys": self.key_file is None,
            "allow_agent": self.key_file is None,
            "banner_timeout": self._timeout,
            "auth_timeout": self._timeout,
        }
        if self.key_file:
            connect_kwargs["key_filename"] = str(Path(self.key_file).expanduser())
        if self._passphrase is not None:
            connect_kwargs["passphrase"] = self._passphrase.reveal()
        conn = Connection(
            host=self.host,
            user=self.user,
            port=self.port,
            connect_timeout=self._timeout,
            connect_kwargs=connect_kwargs,
        )
        if self._known_hosts:
            conn.client.load_host_keys(str(Path(self._known_hosts).expanduser()))
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = self.describe()
        try:
            conn.open()
        except paramiko.AuthenticationException:
            raise HostAuthError(f"{self.name}: {where} refused our key for user {self.user}") from None
        except paramiko.BadHostKeyException:
            raise HostAuthError(f"{self.name}: {where} presented a host key that does not match known_hosts") from None
        except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionError) as exc:
            raise HostUnreachableError(f"{self.name}: {where} unreachable: {_reason(exc)}") from None
        except TimeoutError:
            raise HostUnreachableError(
                f"{self.name}: {where} unreachable: timed out after {self._timeout:g}s"
            ) from None
        except socket.gaierror:
            raise HostUnreachableError(f"{self.name}: {where} unreachable: name does not resolve") from None
        except paramiko.SSHException as exc:
            raise HostError(f"{self.name}: {where}: SSH failed: {exc}") from None
        except OSError as exc:
            raise HostUnreachableError(f"{self.name}: {where} unreachable: {exc.strerror or exc}") from None
        return conn

    def _run(self, cmd: Command, argv: tuple[str, ...]) -> Result:
        line = Command(argv, env=cmd.env, cwd=cmd.cwd, mutating=cmd.mutating).shell_line()
        conn = self._connection()
        start = time.monotonic()
        res = conn.run(
            line,
            hide=True,
            warn=True,
            pty=False,
            in_stream=stdin_for(cmd),
            timeout=cmd.timeout,
        )
        return Result(
            command=cmd.display(),
            exit_code=res.exited,
            stdout=res.stdout,
            stderr=res.stderr,
            duration=time.monotonic() - start,
        )

    def _put(self, local_path: Path, remote_path: str) -> None:
        self._connection().put(str(local_path), remote_path)

    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        local_port = free_local_port()
        conn = self._connection()
        with conn.forward_local(local_port=local_port, remote_port=port, remote_host=address, local_host="127.0.0.1"):
            # fabric binds the listener in a thread; do not hand out the port before it listens. Probing by
            # connecting would make the tunnel open (and break) a channel, and probing by binding would race
            # fabric's own bind, so read the kernel's socket table instead.
            deadline = time.monotonic() + 5
            while not _listening(local_port) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield "127.0.0.1", local_port

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _listening(port: int) -> bool:
    """True when a socket listens on 127.0.0.1:port, per /proc/net/tcp (state 0A is LISTEN)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as table:
            return any(
                fields[1] == wanted and fields[3] == "0A" for fields in (line.split() for line in table.readlines()[1:])
            )
    except OSError:
        time.sleep(0.2)  # no procfs: give the listener thread a moment
        return True


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        first = next(iter(errors.values()))
        return str(getattr(first, "strerror", None) or first)
    return str(getattr(exc, "strerror", None) or exc)
