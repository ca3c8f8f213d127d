from __future__ import annotations

from pathlib import Path

from dbrunbook.inventory import parse_inventory
from dbrunbook.sandbox import inventory_gen
from dbrunbook.sandbox.layout import OPS_USER, Layout

SIGNER = "ed25519:" + "A" * 43 + "="


def test_generated_inventory_is_valid_and_uses_both_transports() -> None:
    layout = Layout(root=Path("/srv/sb"), os_user="dbrunbook", port_offset=100)
    text = inventory_gen.to_yaml(inventory_gen.render(layout, "/usr/lib/postgresql/15/bin", "age1" + "q" * 58, SIGNER))
    inv = parse_inventory(text, "dev.yaml")
    pg = inv.clusters["pg-main"]
    assert pg.hosts["pg-main-1"].port == 25532
    assert pg.hosts["pg-main-1"].connection.type == "local"
    assert pg.hosts["pg-main-2"].connection.type == "ssh"
    assert inv.clusters["mariadb-main"].hosts["mariadb-main-2"].replicates_from == "mariadb-main-1"
    assert pg.credentials.password == "file:/srv/sb/secrets/pg-admin.password"
    assert "password:" in text and "file:/srv/sb/secrets" in text


def test_pg_replica_logs_in_as_the_ops_user_and_every_ssh_host_names_the_sandbox_known_hosts() -> None:
    layout = Layout(root=Path("/srv/sb"), os_user="dbrunbook", port_offset=100)
    inv = parse_inventory(
        inventory_gen.to_yaml(inventory_gen.render(layout, "/usr/lib/postgresql/15/bin", "age1" + "q" * 58, SIGNER)),
        "dev",
    )
    pg2 = inv.clusters["pg-main"].hosts["pg-main-2"]
    my2 = inv.clusters["mariadb-main"].hosts["mariadb-main-2"]
    assert pg2.connection.type == "ssh" and my2.connection.type == "ssh"
    # Through sudo: another login user than the OS user, on the second sshd.
    assert (pg2.connection.user, pg2.connection.port, pg2.os_user) == (OPS_USER, 22323, "dbrunbook")
    assert (my2.connection.user, my2.connection.port, my2.os_user) == ("dbrunbook", 22322, "dbrunbook")
    assert pg2.connection.known_hosts == my2.connection.known_hosts == "/srv/sb/client/known_hosts"


def test_without_sudo_the_pg_replica_logs_in_directly() -> None:
    layout = Layout(root=Path("/srv/sb"), os_user="alice")
    data = inventory_gen.render(layout, "/usr/lib/postgresql/15/bin", "age1" + "q" * 58, SIGNER, sudo_login=False)
    conn = data["clusters"]["pg-main"]["hosts"]["pg-main-2"]["connection"]
    assert (conn["user"], conn["port"]) == ("alice", 22222)
