"""The SSH transport of the execution seam, on a fabric ``Connection``.

Fabric inlines ``env=`` into the remote command line, so this executor never passes it: a
:class:`~dbrunbook.execution.command.Command` already refuses secrets in its environment, and
non-secret variables are written as an explicit ``env`` prefix that shows up in the audit log as-is.

Only what the inventory says is used: its host, user and key, host keys from known_hosts files
(:mod:`~dbrunbook.execution.hostkeys`), never an ssh_config file, an agent forward or a new host key
accepted silently.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbrunbook.errors import HostAuthError, HostError, HostUnreachableError
from dbrunbook.execution import hostkeys
from dbrunbook.execution.executor import HostExecutor, RunSettings
from dbrunbook.execution.hostkeys import OnNewHostKey
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
        # The inventory's known_hosts file: read first, and where a key accepted on first contact is recorded.
        self._known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        self._timeout = connect_timeout
        self._conn: Any = None

    def describe(self) -> str:
        through = f" as {self.os_user}" if self.os_user and self.os_user != self.user else ""
        return f"{self._address()}{through}"

    def _address(self) -> str:
        return f"ssh {self.user}@{self.host}:{self.port}"

    def _login_user(self) -> str:
        return self.user

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def connect(self, *, on_new_host_key: OnNewHostKey | None = None) -> None:
        if self._conn is None:
            self._conn = self._open(on_new_host_key)

    def _open(self, on_new_host_key: OnNewHostKey | None = None) -> Any:
        from fabric import Config, Connection  # lazy: fabric pulls in paramiko and cryptography

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
        # No ~/.ssh/config or /etc/ssh/ssh_config (load_ssh_configs), and no fabric.yaml files (lazy): their
        # HostName, User, IdentityFile, ForwardAgent or ProxyCommand would change which host is reached, as
        # whom, with which key, and whether our agent is handed to it.
        config = Config(lazy=True, overrides={"load_ssh_configs": False})
        conn = Connection(
            host=self.host,
            user=self.user,
            port=self.port,
            config=config,
            forward_agent=False,
            connect_timeout=self._timeout,
            connect_kwargs=connect_kwargs,
        )
        where = self._address()
        files = hostkeys.trusted_files(self._known_hosts)
        hostkeys.load_trusted(conn.client.get_host_keys(), files)
        conn.client.set_missing_host_key_policy(
            hostkeys.missing_key_policy(self.name, where, self._known_hosts, files, on_new_host_key)
        )
        try:
            self._open_mapped(conn, files)
        except BaseException:
            conn.close()  # a refused host key leaves paramiko's transport thread running
            raise
        return conn

    def _open_mapped(self, conn: Any, files: list[Path]) -> None:
        import paramiko

        where = self._address()
        try:
            conn.open()
        except paramiko.AuthenticationException:
            raise HostAuthError(f"{self.name}: {where} refused our key for user {self.user}") from None
        except paramiko.BadHostKeyException as exc:
            name = hostkeys.known_hosts_name(self.host, self.port)
            raise hostkeys.changed_error(self.name, where, name, exc.key, exc.expected_key, files) from None
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

    def _runner(self) -> Any:
        return self._connection()

    def _put(self, local_path: Path, remote_path: str) -> None:
        self._connection().put(str(local_path), remote_path)

    @contextmanager
    def tunnel(self, address: str, port: int) -> Iterator[tuple[str, int]]:
        """A loopback listener whose connections are forwarded over SSH to ``address:port`` on the host.

        fabric's forward_local is not used: a refused remote port surfaces there as a thread exception
        after a client-side timeout; here the client socket is closed at once, so drivers fail fast.

        Any local user can connect to a loopback port, and would reach the database port as seen from the
        host. So only connections made by this very process are forwarded (:func:`from_this_process`); a
        Unix socket in a private folder would do the same, but libpq never negotiates TLS over one, which a
        server that requires TLS on TCP would refuse.
        """
        transport = self._connection().client.get_transport()
        if not Path(PROC_NET_TCP).is_file():
            raise HostError(
                f"{self.name}: cannot check who connects to the SSH tunnel: {PROC_NET_TCP} is missing",
                hint="run dbrunbook on Linux",
            )
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
                if not from_this_process(client):
                    client.close()  # another process or local user: it gets nothing through our SSH session
                    continue
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


PROC_NET_TCP = "/proc/net/tcp"


def from_this_process(client: socket.socket) -> bool:
    """Whether the far end of an accepted loopback connection is a socket this process holds.

    Linux lists every TCP socket with its inode in /proc/net/tcp, and /proc/self/fd links each of our file
    descriptors to its socket inode. Anything unexpected counts as a stranger."""
    try:
        table = Path(PROC_NET_TCP).read_text()
        inode = connecting_inode(table, client.getpeername(), client.getsockname())
    except OSError:
        return False
    return inode is not None and inode in _own_socket_inodes()


def connecting_inode(table: str, peer: tuple[str, int], listener: tuple[str, int]) -> int | None:
    """The inode of the socket at ``peer`` connected to ``listener``, from the text of /proc/net/tcp."""
    local, remote = _proc_address(*peer), _proc_address(*listener)
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[1] == local and fields[2] == remote and fields[9] != "0":
            return int(fields[9])
    return None


def _proc_address(ip: str, port: int) -> str:
    # The kernel prints the address as one 32-bit word in host byte order, the port as a number.
    (word,) = struct.unpack("=I", socket.inet_aton(ip))
    return f"{word:08X}:{port:04X}"


def _own_socket_inodes() -> set[int]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _reason(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        first = next(iter(errors.values()))
        return str(getattr(first, "strerror", None) or first)
    return str(getattr(exc, "strerror", None) or exc)
