"""What every ``dbrunbook-host`` subcommand shares: the repository from the host config, a manifest read
exactly as the controller checked it, and one-line error reports for the server log or the controller."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from dbrunbook.errors import DbrunbookError

Handler = Callable[[argparse.Namespace], int]
# PostgreSQL reads restore_command's exit status: any status from 1 to 125 means "not in the archive" (recovery
# then ends and the server promotes), above 125 stops recovery. So a fetch that failed for any reason other than
# a clean "no such file" must exit above 125, and "no such file" has a code of its own that nothing else
# produces: Python itself exits 1 on a crash and 2 on bad arguments, and the restore_command that restore.run
# writes maps every status but 0 and NOT_IN_ARCHIVE to FETCH_FAILED, so even a crash before main() runs cannot
# pass for the end of the archive.
FETCH_FAILED = 128
NOT_IN_ARCHIVE = 3


def open_repository(config: str, *, patient: bool = True) -> tuple[Any, Any]:
    from dbrunbook.repository import hostconfig
    from dbrunbook.repository.storage import open_storage

    cfg = hostconfig.load(config)
    return cfg, open_storage(cfg.repository, cfg.resolver, patient=patient)


def read_manifest(storage: Any, key: str, identities: list[str], digest: str) -> Any:
    """The manifest at ``key``, exactly as the controller verified it (signature and all): any host can write
    to the repository, so one could swap a manifest between the controller's check and this read."""
    from dbrunbook.errors import ObjectCorruptError
    from dbrunbook.repository.manifest import Manifest
    from dbrunbook.repository.objects import load_bytes
    from dbrunbook.repository.signing import split

    manifest = Manifest.from_json(split(load_bytes(storage, key, identities))[0], key)
    if manifest.digest() != digest:
        raise ObjectCorruptError(f"manifest {key} is not the one the controller checked: it changed in the repository")
    return manifest


def report(exc: DbrunbookError) -> None:
    from dbrunbook.redact import REDACTOR

    sys.stderr.write(REDACTOR.redact(f"dbrunbook-host: {exc.domain} error: {exc.one_line()}") + "\n")


def report_crash(exc: BaseException) -> None:
    """One line for the server log: the type and the message, redacted (a secret file's content can sit in an
    exception's text)."""
    from dbrunbook.redact import REDACTOR

    if isinstance(exc, DbrunbookError):
        report(exc)
        return
    text = " ".join(str(exc).split()) or "no message"
    sys.stderr.write(REDACTOR.redact(f"dbrunbook-host: failed: {type(exc).__name__}: {text}") + "\n")
