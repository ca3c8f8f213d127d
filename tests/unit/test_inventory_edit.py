"""keys.rotate's inventory edit: only the encryption lists change; comments, layout and long lines stay."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from dbrunbook.errors import InventoryError
from dbrunbook.inventory import load_inventory
from dbrunbook.inventory.edit import rotate_recipients
from dbrunbook.repository.crypto import generate_identity

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example-prod.yaml"


def test_rotation_edits_only_the_encryption_lists(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    shutil.copy(EXAMPLE, path)
    path.chmod(0o640)
    before = path.read_text().splitlines()
    _, new = generate_identity()
    retired = rotate_recipients(path, "orders-pg", new, "file:/etc/dbrunbook/orders-pg.2026.age-identity")
    after = path.read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0) if line[:1] in "+-"]
    changed = [line for line in changed if not line.startswith(("+++", "---"))]
    assert retired == ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
    assert changed == [
        "-        - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        f"+        - {new}",
        "+        - file:/etc/dbrunbook/orders-pg.2026.age-identity",
    ]
    assert path.stat().st_mode & 0o777 == 0o640
    enc = load_inventory(str(path)).inventory.clusters["orders-pg"].encryption
    assert enc is not None and enc.recipients == [new] and len(enc.identities) == 2


def test_a_bad_edit_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    shutil.copy(EXAMPLE, path)
    text = path.read_text()
    with pytest.raises(InventoryError):
        rotate_recipients(path, "orders-pg", "not-an-age-recipient", "file:/x")
    with pytest.raises(InventoryError, match="no encryption section"):
        rotate_recipients(path, "no-such-cluster", generate_identity()[1], "file:/x")
    assert path.read_text() == text
