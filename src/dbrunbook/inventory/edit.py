"""Changes dbrunbook makes to an operator's inventory file (key rotation), keeping its comments, order
and quoting: a round trip through ruamel.yaml, then a full validation of the result before it replaces
the file, so a failed edit leaves the file as it was."""

from __future__ import annotations

import io
import os
from pathlib import Path

from dbrunbook.errors import InventoryError


def rotate_recipients(
    path: Path, cluster: str, new_recipient: str, identity_ref: str, *, keep_old: bool = False
) -> list[str]:
    """Make ``new_recipient`` the one new objects are encrypted to (with the old ones too when
    ``keep_old``) and put ``identity_ref`` first in the keyring. Returns the recipients retired."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    from dbrunbook.inventory.loader import parse_inventory

    original = path.read_text()
    _, seq_indent, offset = load_yaml_guess_indent(original)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the operator's long lines
    # Write the file the way it is already written: its mapping indent, and lists flush with their key or
    # indented under it.
    yaml.indent(mapping=_mapping_indent(original), sequence=seq_indent or 2, offset=offset or 0)
    data = yaml.load(original)
    try:
        encryption = data["clusters"][cluster]["encryption"]
    except (KeyError, TypeError):
        raise InventoryError(f"{path}: cluster '{cluster}' has no encryption section to rotate") from None
    old = list(encryption.get("recipients") or [])
    wanted = [new_recipient, *(r for r in old if r != new_recipient)] if keep_old else [new_recipient]
    encryption["recipients"] = wanted
    identities = encryption.get("identities")
    if identities is None:
        encryption["identities"] = [identity_ref]
    elif identity_ref not in identities:
        identities.insert(0, identity_ref)
    out = io.StringIO()
    yaml.dump(data, out)
    text = out.getvalue()
    parse_inventory(text, str(path))  # refuse to write an inventory that would not load
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, path.stat().st_mode & 0o777)
    tmp.replace(path)
    return [r for r in old if r not in wanted]


def _mapping_indent(text: str) -> int:
    """Indentation of the first nested mapping key (ruamel guesses only the list indentation)."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if line[:1] == " " and stripped and not stripped.startswith(("#", "- ")) and ":" in stripped:
            return len(line) - len(stripped)
    return 2
