"""Read ``inventory/<env>.yaml`` and turn every problem into one line naming the file and the key path."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dbrunbook.errors import InventoryError
from dbrunbook.inventory.model import Inventory

DEFAULT_ENV = "dev"


@dataclass(frozen=True)
class LoadedInventory:
    env: str
    path: Path
    inventory: Inventory

    @property
    def base_dir(self) -> Path:
        """Relative ``file:`` secret references and key paths resolve against the inventory's folder."""
        return self.path.parent


def default_env() -> str:
    return os.environ.get("DBRUNBOOK_ENV") or DEFAULT_ENV


def choose_env(flag: str | None) -> tuple[str, bool]:
    """The environment a task uses: ``--env``, else ``$DBRUNBOOK_ENV``, else ``dev``; and whether the operator
    chose it (False for the ``dev`` fallback, whose absence is then explained rather than reported)."""
    if flag:
        return flag, True
    from_env = os.environ.get("DBRUNBOOK_ENV")
    return (from_env, True) if from_env else (DEFAULT_ENV, False)


def inventory_dir() -> Path:
    return Path(os.environ.get("DBRUNBOOK_INVENTORY_DIR") or Path.cwd() / "inventory")


def inventory_path(env: str) -> Path:
    """``--env prod`` means ``inventory/prod.yaml``; a value that looks like a path is taken as the file."""
    if is_path(env):
        return Path(env).expanduser()
    return inventory_dir() / f"{env}.yaml"


def is_path(env: str) -> bool:
    return env.endswith((".yaml", ".yml")) or os.sep in env or bool(os.altsep and os.altsep in env)


def load_inventory(
    env: str | None = None, *, chosen: bool = True, program: str = "invoke", task: str = "TASK"
) -> LoadedInventory:
    env = env or default_env()
    path = inventory_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        if not chosen:
            raise InventoryError(no_env_message(path, known, program, task)) from None
        if env == DEFAULT_ENV:
            hint = f"run '{program} sandbox.up' to generate it"
        else:
            hint = f"known environments: {', '.join(known)}" if known else "check --env"
        raise InventoryError(f"{path}: no inventory for environment '{env}'", hint=hint) from None
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}") from None
    name = path.stem if is_path(env) else env
    return LoadedInventory(env=name, path=path, inventory=parse_inventory(text, str(path)))


def no_env_message(default_path: Path, known: list[str], program: str, task: str) -> str:
    """One line for a run that named no environment where the default one does not exist."""
    example = known[0] if known else "prod"
    found = f"; found: {', '.join(known)}" if known else ""
    return (
        f"which environment? '{program} {task} --env {example}' reads inventory/{example}.yaml{found}; "
        f"'--env PATH' reads that file; DBRUNBOOK_ENV sets a default (there is no {default_path} to fall back "
        f"on; '{program} sandbox.up' makes a local one)"
    )


def parse_inventory(text: str, source: str) -> Inventory:
    data = _load_yaml(text, source)
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: top level must be a mapping with a 'clusters' key")
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(_first_error(exc, data, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys: YAML silently keeps the last one, which hides typos."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}' at line {line}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise InventoryError(f"{source}: not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{source}: not valid YAML: {exc}") from None


# Fields whose input must never be echoed, even when it is wrong: a literal password typed by mistake.
_SENSITIVE = {"password", "key_passphrase", "access_key", "secret_key", "identities"}


def _first_error(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    # A typo'd key also shows up as a "missing" one; the typo is the root cause, so report it first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    path = _data_path(first["loc"], data)
    msg = _describe(first, path)
    where = ".".join(path) or "(top level)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {where}: {msg}{more}"


def _data_path(loc: tuple[int | str, ...], data: Any) -> list[str]:
    """Map pydantic's location to the path the user typed, dropping union tags that are not keys."""
    path: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(f"[{part}]")
            node = node[part]
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # discriminator tag inserted by pydantic
        else:
            path.append(str(part))  # a missing or unknown key: the last element
            node = None
    return path


def _known_keys() -> list[str]:
    from dbrunbook.inventory import model as m

    keys: set[str] = set()
    for cls in vars(m).values():
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            keys.update(cls.model_fields)
    return sorted(keys)


def _describe(err: Any, path: list[str]) -> str:
    kind = err["type"]
    leaf = path[-1] if path else ""
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(leaf, _known_keys(), n=1)
        return f"unknown key '{leaf}'" + (f" (did you mean '{guess[0]}'?)" if guess else "")
    if kind == "missing":
        return f"required key '{leaf}' is missing"
    msg: str = err["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return "connection 'type' must be 'local' or 'ssh'"
    if kind.endswith(("_type", "_parsing")) or kind in ("enum", "literal_error"):
        got = type(err.get("input")).__name__
        if leaf not in _SENSITIVE and not isinstance(err.get("input"), dict | list):
            return f"{msg}, got {got} {err.get('input')!r}"
        return f"{msg}, got {got}"
    return msg
