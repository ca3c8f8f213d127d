"""SSH host keys: which keys a host may present, and recording a new one on first contact.

A host is trusted when its key is listed in one of three known_hosts files, read in this order: the
inventory's (``connection.known_hosts``, else ``known_hosts`` beside the inventory file), the user's
``~/.ssh/known_hosts`` and the system's ``/etc/ssh/ssh_known_hosts``. Any other key is refused: an unknown
key (:class:`HostKeyUnknown`) unless the operator accepts it on first contact
(``inventory.check --accept-new-host-keys``), a changed key (:class:`HostKeyChanged`) always. Otherwise an
impostor host would be handed pgpass files, S3 keys and, during a restore, age identities.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbrunbook.errors import HostError, HostKeyChanged, HostKeyUnknown

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
#: the inventory's own file when ``connection.known_hosts`` names none: beside the inventory file
DEFAULT_FILE_NAME = "known_hosts"


@dataclass(frozen=True)
class NewHostKey:
    """A key no known_hosts file lists, as the operator is asked about it."""

    host: str  # inventory host name
    name: str  # the known_hosts name: ``db1`` or ``[db1]:2222``
    key_type: str
    fingerprint: str
    line: str  # the known_hosts line that records it
    file: Path | None  # where it would be recorded

    def describe(self) -> str:
        return f"{self.name} {self.key_type} {self.fingerprint}"


#: Called for an unknown key when first contact is allowed: returns to accept it, raises to refuse.
OnNewHostKey = Callable[[NewHostKey], None]


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts: the port only when it is not 22."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: Any) -> str:
    """``SHA256:…``, as ``ssh-keygen -lf`` and OpenSSH's prompts print it."""
    return str(key.fingerprint)


def trusted_files(inventory_file: Path | None) -> list[Path]:
    """The known_hosts files consulted, the inventory's first: its entry wins over older ones elsewhere."""
    files = [inventory_file] if inventory_file is not None else []
    return [*files, Path(USER_KNOWN_HOSTS).expanduser(), SYSTEM_KNOWN_HOSTS]


def load_trusted(host_keys: Any, files: Sequence[Path]) -> None:
    """Merge every existing file into paramiko ``HostKeys``; a missing file simply lists nothing."""
    for path in files:
        if path.is_file():
            try:
                host_keys.load(str(path))
            except OSError as exc:
                raise HostError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from None


def file_listing(files: Sequence[Path], name: str) -> Path | None:
    """The first of ``files`` that lists ``name`` (for the hint on a changed key)."""
    from paramiko.hostkeys import HostKeys

    for path in files:
        if path.is_file():
            keys = HostKeys()
            try:
                keys.load(str(path))
            except OSError:
                continue
            if keys.lookup(name) is not None:
                return path
    return None


def is_recorded(path: Path, line: str) -> bool:
    try:
        return path.is_file() and line.strip() in (existing.strip() for existing in path.read_text().splitlines())
    except OSError:
        return False


def record(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` unless it is there already. Host keys are public: the file is 0644."""
    if is_recorded(path, line):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "a") as fh:
            fh.write(line if line.endswith("\n") else line + "\n")
    except OSError as exc:
        # Not "unreachable" (what an OSError while connecting means): the host answered, the file is the problem.
        raise HostError(f"cannot record the host key in {path}: {exc.strerror or exc}") from None


def unknown_error(host: str, where: str, key: NewHostKey, files: Sequence[Path]) -> HostKeyUnknown:
    checked = ", ".join(str(f) for f in files)
    return HostKeyUnknown(
        f"{host}: {where} presented an unknown host key {key.key_type} {key.fingerprint} (not in {checked})",
        hint=(
            "compare the fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host), "
            "then record it with: invoke inventory.check --accept-new-host-keys"
        ),
    )


def changed_error(
    host: str, where: str, name: str, presented: Any, expected: Any, files: Sequence[Path]
) -> HostKeyChanged:
    listed = file_listing(files, name)
    where_known = str(listed) if listed else "known_hosts"
    remove = f"ssh-keygen -R '{name}' -f {listed}" if listed else f"ssh-keygen -R '{name}'"
    return HostKeyChanged(
        f"{host}: {where} presented host key {presented.get_name()} {fingerprint(presented)}, but {where_known} "
        f"records {expected.get_name()} {fingerprint(expected)} for {name}: the host was reinstalled or is an impostor",
        hint=(
            "do not connect until you know why; if the host really has a new key, verify its fingerprint on the "
            f"host, remove the old entry ({remove}) and accept the new one with inventory.check --accept-new-host-keys"
        ),
    )


def missing_key_policy(
    host: str, where: str, record_in: Path | None, files: Sequence[Path], on_new: OnNewHostKey | None
) -> Any:
    """A paramiko policy for keys no file lists: refuse, or ask ``on_new`` and record the key it accepts.

    paramiko itself raises ``BadHostKeyException`` for a changed key before any policy is asked, so a
    changed key can never be accepted here."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            line = HostKeyEntry([hostname], key).to_line() or ""
            new = NewHostKey(host, hostname, key.get_name(), fingerprint(key), line, record_in)
            if on_new is None:
                raise unknown_error(host, where, new, files)
            if record_in is None:
                raise HostError(f"{host}: no known_hosts file to record the new host key {new.describe()} in")
            on_new(new)
            record(record_in, line)

    return Policy()
