from __future__ import annotations

from pathlib import Path

from dbrunbook.inventory import parse_inventory
from dbrunbook.sandbox import inventory_gen
from dbrunbook.sandbox.layout import Layout


def test_generated_inventory_is_valid_and_uses_both_transports() -> None:
    layout = Layout(root=Path("/srv/sb"), os_user="dbrunbook", port_offset=100)
    text = inventory_gen.to_yaml(
        inventory_gen.render(layout, "/usr/lib/postgresql/15/bin", "age1" + "q" * 58, "ed25519:" + "A" * 43 + "=")
    )
    inv = parse_inventory(text, "dev.yaml")
    pg = inv.clusters["pg-main"]
    assert pg.hosts["pg-main-1"].port == 25532
    assert pg.hosts["pg-main-1"].connection.type == "local"
    assert pg.hosts["pg-main-2"].connection.type == "ssh"
    assert inv.clusters["mariadb-main"].hosts["mariadb-main-2"].replicates_from == "mariadb-main-1"
    assert pg.credentials.password == "file:/srv/sb/secrets/pg-admin.password"
    assert "password:" in text and "file:/srv/sb/secrets" in text
