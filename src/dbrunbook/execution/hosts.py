"""Build the executor for an inventory host: the only place that knows which transport a host uses."""

from __future__ import annotations

from pathlib import Path

from dbrunbook.execution.executor import HostExecutor, LocalExecutor, RunSettings
from dbrunbook.execution.hostkeys import DEFAULT_FILE_NAME
from dbrunbook.inventory.model import Host, SshConnection
from dbrunbook.inventory.secrets import SecretResolver


def executor_for(name: str, host: Host, settings: RunSettings, resolver: SecretResolver) -> HostExecutor:
    conn = host.connection
    if isinstance(conn, SshConnection):
        from dbrunbook.execution.ssh import SshExecutor

        key = conn.key
        if key and not Path(key).expanduser().is_absolute():
            key = str(resolver.base_dir / key)
        known_hosts = conn.known_hosts or DEFAULT_FILE_NAME  # unset: known_hosts beside the inventory file
        if not Path(known_hosts).expanduser().is_absolute():
            known_hosts = str(resolver.base_dir / known_hosts)
        return SshExecutor(
            name,
            settings,
            host=conn.host,
            port=conn.port,
            user=conn.user,
            key_file=key,
            passphrase=resolver.resolve(conn.key_passphrase) if conn.key_passphrase else None,
            known_hosts=known_hosts,
            connect_timeout=conn.connect_timeout,
            os_user=host.os_user,
        )
    return LocalExecutor(name, settings, os_user=host.os_user)
