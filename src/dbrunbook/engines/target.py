"""Where a restore stops: one recovery target for both engines, as the operator gives it. Each engine replays to
the kinds it knows (``RestoreMethod.target_kinds``) and turns the value into its own settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dbrunbook.errors import RestoreError

TargetKind = Literal["latest", "time", "lsn", "xid", "name", "position", "gtid"]
FLAG = {
    "time": "--target-time",
    "lsn": "--target-lsn",
    "xid": "--target-xid",
    "name": "--target-name",
    "position": "--target-position",
    "gtid": "--target-gtid",
}


@dataclass(frozen=True)
class RecoveryTarget:
    kind: TargetKind = "latest"
    value: str | None = None
    action: Literal["promote", "pause"] = "promote"

    @classmethod
    def from_flags(
        cls,
        *,
        time: str | None,
        lsn: str | None = None,
        xid: str | None = None,
        name: str | None = None,
        position: str | None = None,
        gtid: str | None = None,
        action: str = "promote",
    ) -> RecoveryTarget:
        flags = {"time": time, "lsn": lsn, "xid": xid, "name": name, "position": position, "gtid": gtid}
        given = [(k, v) for k, v in flags.items() if v]
        if len(given) > 1:
            raise RestoreError(f"give at most one recovery target, not {' and '.join(FLAG[k] for k, _ in given)}")
        if action not in ("promote", "pause"):
            raise RestoreError(f"--target-action must be promote or pause, not {action!r}")
        if action == "pause" and not given:
            raise RestoreError("--target-action pause needs a target (--target-time, -lsn, -xid or -name)")
        kind, value = given[0] if given else ("latest", None)
        if value is not None:
            _check_target(kind, value)
        return cls(kind, value, action)  # type: ignore[arg-type]

    def describe(self) -> str:
        return "the end of the archived WAL" if self.kind == "latest" else f"{self.kind} {self.value}"

    def require(self, kinds: tuple[str, ...], engine: str) -> None:
        """Refuse a kind the engine does not replay to, naming the flags it takes."""
        if self.kind != "latest" and self.kind not in kinds:
            raise RestoreError(f"{engine} targets are {', '.join(FLAG[k] for k in kinds)}; not {FLAG[self.kind]}")


def _check_target(kind: str, value: str) -> None:
    """Reject malformed targets here: a value ends up in a server's configuration file, where a stray newline
    would stop the server (or smuggle in a setting)."""
    if any(ord(ch) < 32 for ch in value):
        raise RestoreError(f"--target-{kind} must be one line without control characters")
    if kind == "xid" and not value.isdigit():
        raise RestoreError(f"--target-xid must be a transaction id (digits), not {value!r}")
    if kind == "lsn" and not re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", value):
        raise RestoreError(f"--target-lsn must look like 0/16B3748, not {value!r}")
    if kind == "name" and len(value.encode()) > 63:
        raise RestoreError("--target-name is longer than PostgreSQL's 63-byte restore point names")
    if kind == "time":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise RestoreError(f"--target-time {value!r} is not an ISO 8601 timestamp") from None
