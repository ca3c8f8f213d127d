"""Ctrl-C and SIGTERM during a copy stop it at the next chunk's edge: the checkpoint of every chunk done is
committed, nothing is half-written, and the run says how to go on."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType


class StopRequests:
    """While active (main thread only), SIGINT and SIGTERM only record that a stop was asked for."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._saved: dict[int, object] = {}

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved.clear()
