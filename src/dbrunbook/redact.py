"""Secret values and the redactor that keeps them out of every output.

A :class:`Secret` never prints its value: ``str``, ``repr`` and f-strings all give ``***``. Whenever a
secret is resolved, its value is registered with the process-wide :data:`REDACTOR`, which every output
path (audit log, JSON, error messages, command echo) runs its text through as a last line of defence.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "***"


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        # Very short values would mask innocent text everywhere ("a", "1"); such secrets are rejected
        # at resolution time instead.
        if len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def contains_secret(self, text: str) -> bool:
        return any(v in text for v in self._snapshot())

    def redact(self, text: str) -> str:
        # Longest first, so a secret that contains another one is masked whole.
        for value in sorted(self._snapshot(), key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text

    def redact_all(self, items: Iterable[str]) -> list[str]:
        return [self.redact(i) for i in items]

    def _snapshot(self) -> list[str]:
        with self._lock:
            return list(self._values)


REDACTOR = Redactor()


class Secret:
    """A resolved secret. Its value is reachable only through :meth:`reveal`."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "literal") -> None:
        self._value = value
        self.source = source
        REDACTOR.register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
