"""Inventory validation: each mistake gives one line naming the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbrunbook.errors import InventoryError
from dbrunbook.inventory import Role, parse_inventory

REPO = Path(__file__).resolve().parents[2]

GOOD = """
clusters:
  pg:
    engine: postgresql
    credentials: {user: postgres, password: env:PGPW}
    hosts:
      a: {role: primary, connection: {type: local}, port: 5432, data_dir: /x}
      b:
        role: replica
        replicates_from: a
        connection: {type: ssh, host: h, user: u, key: k}
        port: 5432
        data_dir: /x
"""


def error_of(text: str) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory/t.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("inventory/t.yaml: ")
    return message


def test_valid_inventory_parses_with_defaults() -> None:
    inv = parse_inventory(GOOD, "t.yaml")
    cluster = inv.clusters["pg"]
    assert cluster.primary()[0] == "a"
    assert cluster.hosts["b"].role is Role.REPLICA
    assert cluster.hosts["b"].connection.port == 22  # type: ignore[union-attr]
    assert cluster.upstream_of("b") == "a"
    assert cluster.upstream_of("a") is None


def test_typo_in_key_is_named_with_suggestion() -> None:
    msg = error_of(GOOD.replace("port: 5432, data_dir", "prot: 5432, data_dir"))
    assert "clusters.pg.hosts.a.prot: unknown key 'prot' (did you mean 'port'?)" in msg


def test_wrong_type_is_named() -> None:
    msg = error_of(GOOD.replace("port: 5432, data_dir", "port: '5432', data_dir"))
    assert "clusters.pg.hosts.a.port:" in msg
    assert "integer" in msg


def test_missing_required_field() -> None:
    msg = error_of(GOOD.replace("        data_dir: /x\n", ""))
    assert "clusters.pg.hosts.b.data_dir: required key 'data_dir' is missing" in msg


def test_two_primaries_refused() -> None:
    text = GOOD.replace("role: replica", "role: primary").replace("        replicates_from: a\n", "")
    assert "clusters.pg: has 2 primaries (a, b)" in error_of(text)


def test_replica_pointing_at_unknown_host() -> None:
    msg = error_of(GOOD.replace("replicates_from: a", "replicates_from: zz"))
    assert "clusters.pg: host 'b' replicates_from unknown host 'zz'" in msg


def test_no_primary_refused() -> None:
    text = GOOD.replace("role: primary", "role: replica")
    assert "has no primary host" in error_of(text)


def test_literal_password_refused_and_not_echoed() -> None:
    msg = error_of(GOOD.replace("env:PGPW", "hunter2-literal"))
    assert "clusters.pg.credentials.password: must be a secret reference" in msg
    assert "hunter2-literal" not in msg


def test_unknown_engine_and_connection_type() -> None:
    assert "clusters.pg.engine:" in error_of(GOOD.replace("postgresql", "oracle"))
    assert "connection 'type' must be 'local' or 'ssh'" in error_of(GOOD.replace("type: ssh", "type: telnet"))


def test_typo_inside_ssh_connection() -> None:
    msg = error_of(GOOD.replace("user: u, key: k", "user: u, kee: k"))
    assert "clusters.pg.hosts.b.connection.kee: unknown key 'kee' (did you mean 'key'?)" in msg


def test_duplicate_key_and_bad_yaml() -> None:
    assert "duplicate key 'hosts'" in error_of(GOOD + "    hosts: {}\n")
    assert "not valid YAML at line" in error_of("clusters: [1")
    assert "top level must be a mapping" in error_of("- 1\n")


def test_more_problems_are_counted() -> None:
    text = GOOD.replace("port: 5432, data_dir", "prot: 5432, data_dir").replace("engine: postgresql", "engine: x")
    assert "(and 2 more problems)" in error_of(text) or "(and 1 more problem)" in error_of(text)


def test_example_inventory_is_valid() -> None:
    inv = parse_inventory((REPO / "inventory" / "example-prod.yaml").read_text(), "example-prod.yaml")
    assert set(inv.clusters) == {"orders-pg", "billing-mariadb"}
    orders = inv.clusters["orders-pg"]
    assert orders.retention is not None and orders.retention.max_chain == 6
    assert orders.drill is not None and orders.drill.validations[0].compare == ">"


def test_drill_host_must_be_an_inventory_host_or_local() -> None:
    text = GOOD + "    drill: {host: restore-9}\n"
    assert "drill.host 'restore-9' is not a host of the inventory (or local)" in error_of(text)
    assert parse_inventory(GOOD + "    drill: {host: b}\n", "t.yaml").clusters["pg"].drill is not None
    default = parse_inventory(GOOD, "t.yaml").clusters["pg"]
    assert default.drill is None  # drill.run then restores on this machine ("local")
    assert parse_inventory(GOOD + "    drill: {host: null}\n", "t.yaml").clusters["pg"].drill is not None
    assert "no host may be named 'local'" in error_of(GOOD.replace("      b:\n", "      local:\n"))
