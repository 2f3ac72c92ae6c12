"""BLAKE3 hashing off the event loop when it matters.

Measured on this class of machine (DEPENDENCIES.md): a 1 KB hash costs ≈2.5 µs, so small inputs are hashed inline
(a thread hop would cost more than the hash); from 1 MiB up, hashing runs in a worker thread with BLAKE3's own
multithreading, which only pays off at that size.
"""

from __future__ import annotations

import asyncio

from blake3 import blake3

OFFLOAD_BYTES = 1024 * 1024


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex digest, identical to ``b3sum``'s."""
    if len(data) >= OFFLOAD_BYTES:
        return blake3(data, max_threads=blake3.AUTO).hexdigest()
    return blake3(data).hexdigest()


async def hash_bytes_async(data: bytes | bytearray | memoryview) -> str:
    if len(data) >= OFFLOAD_BYTES:
        return await asyncio.to_thread(hash_bytes, data)
    return hash_bytes(data)
