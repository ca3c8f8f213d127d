"""SSH host keys as data: known_hosts names, the files consulted, recording, and the refusals' messages."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import paramiko
import pytest

from dbrunbook.errors import ConfirmationRequired, HostKeyChanged, HostKeyUnknown
from dbrunbook.execution import hostkeys
from dbrunbook.execution.hostkeys import NewHostKey
from dbrunbook.execution.ssh import connecting_inode


@pytest.fixture(scope="module")
def key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def test_known_hosts_names_the_port_only_when_not_22() -> None:
    assert hostkeys.known_hosts_name("db1", 22) == "db1"
    assert hostkeys.known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_the_inventorys_file_comes_first_then_user_then_system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    mine = tmp_path / "inventory" / "known_hosts"
    assert hostkeys.trusted_files(mine) == [
        mine,
        tmp_path / ".ssh" / "known_hosts",
        Path("/etc/ssh/ssh_known_hosts"),
    ]


def test_fingerprint_is_openssh_sha256(key: paramiko.PKey) -> None:
    import base64
    import hashlib

    expected = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    assert hostkeys.fingerprint(key) == f"SHA256:{expected}"


def _ask_policy(tmp_path: Path, on_new: Any) -> tuple[Any, Path]:
    record_in = tmp_path / "inv" / "known_hosts"
    files = hostkeys.trusted_files(record_in)
    return hostkeys.missing_key_policy("db-2", "ssh ops@db2:2222", record_in, files, on_new), record_in


def test_unknown_key_is_refused_with_its_fingerprint_and_nothing_recorded(tmp_path: Path, key: paramiko.PKey) -> None:
    policy, record_in = _ask_policy(tmp_path, None)
    with pytest.raises(HostKeyUnknown) as err:
        policy.missing_host_key(None, "[db2]:2222", key)
    line = err.value.one_line()
    assert err.value.exit_code == 25
    assert "\n" not in line
    assert f"presented an unknown host key ecdsa-sha2-nistp256 {hostkeys.fingerprint(key)}" in line
    assert str(record_in) in line and "inventory.check --accept-new-host-keys" in line
    assert not record_in.exists()


def test_accepted_key_is_recorded_once_and_public(tmp_path: Path, key: paramiko.PKey) -> None:
    asked: list[NewHostKey] = []
    policy, record_in = _ask_policy(tmp_path, asked.append)
    policy.missing_host_key(None, "[db2]:2222", key)
    policy.missing_host_key(None, "[db2]:2222", key)
    assert [a.describe() for a in asked] == [f"[db2]:2222 ecdsa-sha2-nistp256 {hostkeys.fingerprint(key)}"] * 2
    assert record_in.read_text() == f"[db2]:2222 ecdsa-sha2-nistp256 {key.get_base64()}\n"
    assert stat.S_IMODE(record_in.stat().st_mode) == 0o644
    loaded = paramiko.HostKeys(str(record_in))
    assert loaded.lookup("[db2]:2222")["ecdsa-sha2-nistp256"] == key  # type: ignore[index]


def test_a_refusal_from_the_question_records_nothing(tmp_path: Path, key: paramiko.PKey) -> None:
    def refuse(_key: NewHostKey) -> None:
        raise ConfirmationRequired("refusing to trust it without confirmation")

    policy, record_in = _ask_policy(tmp_path, refuse)
    with pytest.raises(ConfirmationRequired):
        policy.missing_host_key(None, "[db2]:2222", key)
    assert not record_in.exists()


def test_changed_key_names_both_fingerprints_and_the_file(tmp_path: Path, key: paramiko.PKey) -> None:
    old = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    known.write_text(f"[db2]:2222 {old.get_name()} {old.get_base64()}\n")
    err = hostkeys.changed_error("db-2", "ssh ops@db2:2222", "[db2]:2222", key, old, [known])
    line = err.one_line()
    assert isinstance(err, HostKeyChanged) and err.exit_code == 26
    assert hostkeys.fingerprint(key) in line and hostkeys.fingerprint(old) in line
    assert f"ssh-keygen -R '[db2]:2222' -f {known}" in line
    assert "\n" not in line


def test_connecting_inode_finds_the_client_side_of_a_loopback_connection() -> None:
    listener = ("127.0.0.1", 0x9C40)
    peer = ("127.0.0.1", 0xC862)
    table = "\n".join(
        [
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "   0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1",
            # the accepted side (listener -> peer) and the connecting side (peer -> listener)
            "   1: 0100007F:9C40 0100007F:C862 01 00000000:00000000 00:00000000 00000000     0        0 222 1",
            "   2: 0100007F:C862 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 333 1",
        ]
    )
    if socket.htonl(1) == 1:  # big-endian: the kernel prints the address word the other way round
        table = table.replace("0100007F", "7F000001")
    assert connecting_inode(table, peer, listener) == 333
    assert connecting_inode(table, ("127.0.0.1", 0xC863), listener) is None
