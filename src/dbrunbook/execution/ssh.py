"""The SSH transport of the execution seam, on a fabric ``Connection``.

Fabric inlines ``env=`` into the remote command line, so this executor never passes it: a
:class:`~dbrunbook.execution.command.Command` already refuses secrets in its environment, and
non-secret variables are written as an explicit ``env`` prefix that shows up in the audit log as-is.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbrunbook.errors import HostAuthError, HostError, HostUnreachableError
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.redact import Secret

# paramiko logs refused forwards and the like to stderr by itself; our errors say it in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


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

    def _runner(self) -> Any:
        return self._connection()

    def _put(self, local_path: Path, remote_path: str) -> None:
        self._connection().put(str(local_path), remote_path)

    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        """A loopback listener whose connections are forwarded over SSH to ``address:port`` on the host.

        fabric's forward_local is not used: a refused remote port surfaces there as a thread exception
        after a client-side timeout; here the client socket is closed at once, so drivers fail fast.
        """
        transport = self._connection().client.get_transport()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        stop = threading.Event()
        pumps: list[threading.Thread] = []

        def accept_loop() -> None:
            while not stop.is_set():
                try:
                    client, peer = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    channel = transport.open_channel("direct-tcpip", (address, port), peer, timeout=self._timeout)
                except Exception:  # refused or unreachable on the far side: fail the client now
                    client.close()
                    continue
                t = threading.Thread(target=_pump, args=(client, channel, stop), daemon=True)
                t.start()
                pumps.append(t)

        acceptor = threading.Thread(target=accept_loop, daemon=True, name=f"tunnel-{self.name}")
        acceptor.start()
        try:
            yield "127.0.0.1", listener.getsockname()[1]
        finally:
            stop.set()
            listener.close()
            acceptor.join(timeout=2)
            for t in pumps:
                t.join(timeout=2)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _pump(client: socket.socket, channel: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while not stop.is_set():
            readable, _, _ = select.select([client, channel], [], [], 0.2)
            if client in readable:
                data = client.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                client.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        client.close()


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        first = next(iter(errors.values()))
        return str(getattr(first, "strerror", None) or first)
    return str(getattr(exc, "strerror", None) or exc)
