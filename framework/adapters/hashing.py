"""BLAKE3 hashing of bytes, files and streams; digests are identical to ``b3sum``'s.

Sizes come from measurements on this class of machine (DEPENDENCIES.md): a 1 KB hash costs ≈2.5 µs, so small
inputs are hashed inline on the event loop (a thread hop costs more than the hash); BLAKE3's own threads pay off only
from ≈1 MB, and slow 1-64 KB inputs down, so they are used from :data:`THREADS_BYTES` up; from
:data:`OFFLOAD_BYTES` up, async callers hash in a worker thread (BLAKE3 releases the GIL) so the loop stays free.
Files from :data:`MMAP_BYTES` up are memory-mapped (``update_mmap``: no copies through Python buffers); smaller
files are read with a buffer sized by the file (:func:`buffer_size`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from blake3 import blake3

Data = bytes | bytearray | memoryview

THREADS_BYTES = 1024 * 1024
OFFLOAD_BYTES = 256 * 1024
MMAP_BYTES = 4 * 1024 * 1024
#: Concurrent hashes of one batch: the worker threads are the limit on two cores, more only queues.
BATCH_CONCURRENCY = 10

_SMALL_BUFFER = 8 * 1024
_MEDIUM_BUFFER = 64 * 1024
_LARGE_BUFFER = 1024 * 1024


def buffer_size(size: int | None) -> int:
    """Read buffer for an input of ``size`` bytes (unknown: the medium one): 8 KB up to 64 KB, 64 KB up to
    1 MB, 1 MB above."""
    if size is None:
        return _MEDIUM_BUFFER
    if size <= 64 * 1024:
        return _SMALL_BUFFER
    if size <= 1024 * 1024:
        return _MEDIUM_BUFFER
    return _LARGE_BUFFER


def _hasher(size: int) -> blake3:
    return blake3(max_threads=blake3.AUTO) if size >= THREADS_BYTES else blake3()


def hash_bytes(data: Data) -> str:
    """Hex digest of ``data``."""
    hasher = _hasher(len(data))
    hasher.update(data)
    return hasher.hexdigest()


async def hash_bytes_async(data: Data) -> str:
    """:func:`hash_bytes`, in a worker thread when ``data`` is large enough to hold up the event loop."""
    if len(data) >= OFFLOAD_BYTES:
        return await asyncio.to_thread(hash_bytes, data)
    return hash_bytes(data)


def hash_file(path: str | os.PathLike[str]) -> str:
    """Hex digest of the file at ``path`` (memory-mapped when large)."""
    size = os.stat(path).st_size
    hasher = _hasher(size)
    if size >= MMAP_BYTES:
        hasher.update_mmap(os.fspath(path))
        return hasher.hexdigest()
    with open(path, "rb") as handle:
        _update_from(hasher, handle, buffer_size(size))
    return hasher.hexdigest()


async def hash_file_async(path: str | os.PathLike[str]) -> str:
    """:func:`hash_file` in a worker thread (file I/O always blocks)."""
    return await asyncio.to_thread(hash_file, path)


def hash_stream(stream: BinaryIO, size_hint: int | None = None) -> str:
    """Hex digest of everything left in a binary stream."""
    hasher = _hasher(size_hint or 0)
    _update_from(hasher, stream, buffer_size(size_hint))
    return hasher.hexdigest()


async def hash_chunks(chunks: AsyncIterable[bytes] | Iterable[bytes]) -> str:
    """Hex digest of a stream of chunks (an HTTP body, say); large chunks are hashed off the loop."""
    hasher = blake3()
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            await _update_async(hasher, chunk)
    else:
        for chunk in chunks:
            await _update_async(hasher, chunk)
    return hasher.hexdigest()


async def _update_async(hasher: blake3, chunk: bytes) -> None:
    if len(chunk) >= OFFLOAD_BYTES:
        await asyncio.to_thread(hasher.update, chunk)
    else:
        hasher.update(chunk)


def _update_from(hasher: blake3, stream: BinaryIO, size: int) -> None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    readinto = cast(Any, stream).readinto  # every binary file object has it; typing.BinaryIO does not say so
    while True:
        read = readinto(view)
        if not read:
            break
        hasher.update(view[:read])


@dataclass(frozen=True)
class BatchItem:
    """One outcome of :func:`hash_many`: the digest, or the error that prevented it."""

    index: int
    digest: str | None
    size: int
    error: str | None = None


async def hash_many(items: Sequence[Data | Path], *, concurrency: int = BATCH_CONCURRENCY) -> list[BatchItem]:
    """Hash many inputs (bytes, or paths of files) with at most ``concurrency`` at once; one failure does not stop
    the others. Results are in input order."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, item: Data | Path) -> BatchItem:
        async with gate:
            try:
                if isinstance(item, Path):
                    size = (await asyncio.to_thread(item.stat)).st_size
                    return BatchItem(index, await hash_file_async(item), size)
                return BatchItem(index, await hash_bytes_async(item), len(item))
            except OSError as exc:
                return BatchItem(index, None, 0, f"{type(exc).__name__}: {exc}")

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
