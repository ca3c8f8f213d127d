"""The audit trail: one JSON line per command or statement executed (or planned, in a dry run).

Lines are redacted before they are written; the file is created 0600 because even redacted, it tells an
attacker where the data lives.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbrunbook.redact import REDACTOR


def default_audit_path() -> Path:
    explicit = os.environ.get("DBRUNBOOK_AUDIT_LOG")
    if explicit:
        return Path(explicit)
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "dbrunbook" / "audit.jsonl"


class AuditLog:
    def __init__(self, path: Path | None = None, *, task: str = "", env: str = "") -> None:
        self.path = path or default_audit_path()
        self.task = task
        self.env = env
        self._lock = threading.Lock()
        self._user = getpass.getuser()
        # Who else sees each entry, redacted, as it is written: -v and --log-file (tasks/common.py).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def record(
        self,
        *,
        host: str,
        kind: str,
        text: str,
        duration: float,
        exit_status: int | str | None,
        dry_run: bool,
        **extra: Any,
    ) -> None:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "task": self.task,
            "env": self.env,
            "user": self._user,
            "host": host,
            "kind": kind,
            "text": text,
            "duration_s": round(duration, 4),
            "exit": exit_status,
            "dry_run": dry_run,
            **extra,
        }
        line = REDACTOR.redact(json.dumps(entry, ensure_ascii=False, default=str))
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        if self.listeners:
            shown = json.loads(line)
            for listener in self.listeners:
                listener(shown)
