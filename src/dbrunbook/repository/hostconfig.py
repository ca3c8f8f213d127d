"""What a database host needs to talk to the repository on its own (WAL push and fetch, backup and
restore streaming): a small JSON document plus 0600 secret files beside it, in a 0700 folder owned by
the server's OS user. The document holds ``file:`` references only, so it can be printed.

Hosts get only the public recipients, unless they restore (``with_identities``): a compromised database
host then cannot read the backups of the past.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbrunbook.errors import ConfigError
from dbrunbook.execution.command import Command
from dbrunbook.execution.executor import HostExecutor
from dbrunbook.inventory.model import Cluster, Repository
from dbrunbook.inventory.secrets import SecretResolver
from dbrunbook.redact import Secret

CONFIG_NAME = "repository.json"


@dataclass(frozen=True)
class HostConfig:
    document: dict[str, Any]
    secrets: dict[str, Secret]  # file name -> value, written 0600 beside the document


def build(cluster_name: str, cluster: Cluster, resolver: SecretResolver, *, with_identities: bool) -> HostConfig:
    if cluster.repository is None:
        raise ConfigError(f"cluster '{cluster_name}' has no repository in the inventory")
    if cluster.encryption is None:
        raise ConfigError(f"cluster '{cluster_name}' has no encryption recipients in the inventory")
    repo = cluster.repository.model_dump(mode="json", exclude_none=True)
    secrets: dict[str, Secret] = {}
    for field in ("access_key", "secret_key"):
        ref = getattr(cluster.repository, field)
        if ref:
            secrets[f"s3-{field}"] = resolver.resolve(ref)
            repo[field] = f"file:s3-{field}"
    identities: list[str] = []
    if with_identities:
        for i, ref in enumerate(cluster.encryption.identities):
            secrets[f"identity-{i}"] = resolver.resolve(ref)
            identities.append(f"file:identity-{i}")
    doc = {
        "cluster": cluster_name,
        "repository": repo,
        "recipients": list(cluster.encryption.recipients),
        "identities": identities,
    }
    return HostConfig(doc, secrets)


def install(executor: HostExecutor, directory: str, config: HostConfig) -> str:
    """Write the folder on the host (replacing an older copy of these files); returns the document path."""
    executor.run(Command(("mkdir", "-p", "-m", "0700", directory), description="host config folder"))
    writer = ("sh", "-c", 'umask 077 && cat > "$1.tmp" && mv -f "$1.tmp" "$1"', "sh")
    for name, secret in config.secrets.items():
        executor.run(Command((*writer, f"{directory}/{name}"), stdin=secret.reveal(), description=f"write {name}"))
    path = f"{directory}/{CONFIG_NAME}"
    executor.run(Command((*writer, path), stdin=json.dumps(config.document, indent=2), description="write config"))
    return path


@contextmanager
def temporary(
    executor: HostExecutor, cluster_name: str, cluster: Cluster, resolver: SecretResolver, *, with_identities: bool
) -> Iterator[str]:
    """The config in a private folder for the length of one operation; yields the document's path."""
    with executor.private_dir() as scratch:
        config = build(cluster_name, cluster, resolver, with_identities=with_identities)
        yield install(executor, f"{scratch}/config", config)


@dataclass(frozen=True)
class LoadedHostConfig:
    cluster: str
    repository: Repository
    recipients: list[str]
    identity_refs: list[str]
    resolver: SecretResolver

    def identities(self) -> list[str]:
        from dbrunbook.repository.crypto import parse_identities

        keys: list[str] = []
        for ref in self.identity_refs:
            keys.extend(parse_identities(self.resolver.resolve(ref).reveal()))
        return keys


def load(path: str | Path) -> LoadedHostConfig:
    """Host side: read the document; secrets resolve relative to its folder."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read host config: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path}: host config is not JSON") from None
    return LoadedHostConfig(
        cluster=doc["cluster"],
        repository=Repository.model_validate(doc["repository"]),
        recipients=list(doc["recipients"]),
        identity_refs=list(doc.get("identities", [])),
        resolver=SecretResolver(path.parent),
    )
