"""Progress of a long host command (a backup or restore stream), told on a side channel of its stderr.

The agent (``dbrunbook-host``) writes one line per event to stderr, starting with :data:`PREFIX` and
followed by a JSON object: ``{"done": bytes so far, "total": bytes expected or null, "what": "data/0003.tar"}``.
The controller's executor, given ``on_progress``, reads stderr as it arrives, hands each event to the callback
and keeps every other stderr line for the result (and error messages) as before. Events carry sizes and
object names only, never data or secrets. A line that does not parse is kept as ordinary stderr: a host
running an older agent simply shows no progress.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

PREFIX = "@@dbrunbook-progress@@ "


@dataclass(frozen=True)
class ProgressEvent:
    done: int
    total: int | None = None
    what: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


def encode(event: ProgressEvent) -> str:
    """The stderr line for one event (with its newline)."""
    return PREFIX + json.dumps({"done": event.done, "total": event.total, "what": event.what}) + "\n"


def strip(text: str) -> str:
    """``text`` without its progress lines: what a command's stderr says when nobody showed the progress."""
    if PREFIX not in text:
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(PREFIX))


def decode(line: str) -> ProgressEvent | None:
    """The event a stderr line carries, or None for any other line."""
    if not line.startswith(PREFIX):
        return None
    try:
        data = json.loads(line[len(PREFIX) :])
        total = data.get("total")
        return ProgressEvent(int(data["done"]), int(total) if total is not None else None, str(data.get("what", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class ProgressTap:
    """A write-only text stream for Invoke's/Fabric's ``err_stream``: events go to the callback, other lines
    are kept (``kept()``) so the command's result still has its stderr."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._partial = ""
        self._kept: list[str] = []

    def write(self, data: str) -> int:
        lines = (self._partial + data).split("\n")
        self._partial = lines.pop()
        for line in lines:
            event = decode(line)
            if event is None:
                self._kept.append(line + "\n")
            else:
                self._callback(event)
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered but a partial line, which must wait for its end."""

    def kept(self) -> str:
        return "".join(self._kept) + self._partial


class ProgressWriter:
    """The agent's side: report bytes as they pass, at most every ``interval`` seconds (and always the last)."""

    def __init__(
        self,
        stream: TextIO,
        total: int | None = None,
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._last = float("-inf")
        self.total = total
        self.done = 0
        self._lock = threading.Lock()  # parallel streams of one backup add to one count

    def add(self, count: int, what: str = "") -> None:
        with self._lock:
            self.done += count
            now = self._clock()
            if now - self._last >= self._interval or (self.total is not None and self.done >= self.total):
                self._last = now
                self._stream.write(encode(ProgressEvent(self.done, self.total, what)))
                self._stream.flush()
