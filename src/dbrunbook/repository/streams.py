"""Overlap a producer with its consumer: a tool writing a dump and the pipeline compressing, encrypting
and uploading it. Without this, each waits for the other (the tool blocks on a full pipe while Python
works, Python waits on the pipe while the tool works) and the backup takes the sum of both times."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def prefetch(chunks: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    """Pull ``chunks`` in a thread, at most ``depth`` ahead of the consumer (memory stays bounded).

    An exception of the producer is raised in the consumer, where it would have been raised anyway. If the
    consumer stops early, the producer is stopped and closed (a generator's ``finally`` runs: a process it
    started is reaped)."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
        except BaseException as exc:
            put(_Failure(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=run, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        worker.join()
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
