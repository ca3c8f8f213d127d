"""zstd streaming compression, one frame per object, so ``zstd -d`` restores any object by hand."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import zstandard

# Level 1 is what pgBackRest and WAL-G default to for a reason: backups are I/O bound, and higher levels
# cost CPU on the database host for a few percent of size.
DEFAULT_LEVEL = 1
CHUNK = 1 << 20


def compress_chunks(chunks: Iterable[bytes], level: int = DEFAULT_LEVEL, threads: int = 0) -> Iterator[bytes]:
    """Compress a stream of byte chunks into one zstd frame, yielding compressed pieces as they form."""
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    compressor = cctx.compressobj(size=-1)
    for chunk in chunks:
        if chunk:
            out = compressor.compress(chunk)
            if out:
                yield out
    tail = compressor.flush()
    if tail:
        yield tail


def decompress_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress one zstd frame given as a stream of pieces; a cut-off frame is an error, not a short read."""
    dctx = zstandard.ZstdDecompressor()
    decompressor = dctx.decompressobj()
    for chunk in chunks:
        if chunk:
            out = decompressor.decompress(chunk)
            if out:
                yield out
    if not decompressor.eof:
        raise zstandard.ZstdError("compressed stream ends in the middle of a frame")
    if decompressor.unused_data:
        raise zstandard.ZstdError("data after the end of the compressed frame")
