"""BLAKE3 digests against b3sum (or, where b3sum is not installed, the blake3 package's one-shot digest)."""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from framework.adapters import hashing

B3SUM = shutil.which("b3sum")
ROOT = Path(__file__).resolve().parents[3]
# Sizes around every threshold of the module (buffers, threads, offload, mmap), plus random ones up to 64 MB.
_rng = random.Random(6)
SIZES = sorted(
    {0, 1, 1023, 1024, 1025, 8192, 65536, 65537, hashing.OFFLOAD_BYTES, hashing.THREADS_BYTES + 1, hashing.MMAP_BYTES}
    | {_rng.randrange(0, 64 * 1024 * 1024) for _ in range(4)}
    | {64 * 1024 * 1024}
)


def reference(path: Path) -> str:
    if B3SUM is not None:
        out = subprocess.run([B3SUM, "--no-names", str(path)], check=True, capture_output=True, text=True).stdout
        return out.strip()
    return blake3(path.read_bytes()).hexdigest()  # pragma: no cover - b3sum is installed where these ran


@pytest.mark.parametrize("size", SIZES)
def test_every_path_gives_the_digest_of_b3sum(size: int, tmp_path: Path) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "data"
    path.write_bytes(data)
    expected = reference(path)
    assert hashing.hash_bytes(data) == expected
    assert hashing.hash_file(path) == expected
    assert hashing.hash_stream(io.BytesIO(data), size) == expected


async def test_async_paths_and_batches_agree(tmp_path: Path) -> None:
    blobs = [random.Random(i).randbytes(n) for i, n in enumerate((0, 10, 70_000, 2 * 1024 * 1024))]
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(blob)
    expected = [blake3(b).hexdigest() for b in blobs]
    assert [await hashing.hash_bytes_async(b) for b in blobs] == expected
    assert [await hashing.hash_file_async(p) for p in paths] == expected
    assert await hashing.hash_chunks([blobs[3][:100], blobs[3][100:]]) == expected[3]
    results = await hashing.hash_many([*blobs, *paths, tmp_path / "absent"], concurrency=2)
    assert [r.digest for r in results[:-1]] == expected + expected
    assert results[-1].digest is None and results[-1].error is not None
    with pytest.raises(ValueError, match="concurrency"):
        await hashing.hash_many([b""], concurrency=0)


async def test_batch_hashing_runs_at_most_its_concurrency_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hashing.hash_bytes_async
    running, most = 0, 0

    async def watched(data: bytes) -> str:  # the real hash, counted while it runs
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.01)  # long enough for every waiting item to try to start
            return await real(data)
        finally:
            running -= 1

    monkeypatch.setattr(hashing, "hash_bytes_async", watched)
    blobs = [bytes([i]) * (i + 1) for i in range(9)]
    results = await hashing.hash_many(blobs, concurrency=3)
    assert most == 3
    assert [r.digest for r in results] == [blake3(b).hexdigest() for b in blobs]
    assert [r.index for r in results] == list(range(9)) and [r.size for r in results] == [len(b) for b in blobs]


def test_buffer_sizes_follow_the_input() -> None:
    assert hashing.buffer_size(100) == 8 * 1024
    assert hashing.buffer_size(500_000) == 64 * 1024
    assert hashing.buffer_size(50_000_000) == 1024 * 1024
    assert hashing.buffer_size(None) == 64 * 1024


@pytest.mark.skipif(B3SUM is None, reason="b3sum is not installed")
def test_onex_hash_output_passes_b3sum_check(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (tmp_path / "odd\\name").write_text("x")
    out = subprocess.run(
        [sys.executable, "-m", "framework.cli.main", "hash", "."],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.count("\n") == 3
    (tmp_path / "sums").write_text(out)
    assert B3SUM is not None
    check = subprocess.run([B3SUM, "--check", "sums"], check=False, cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    theirs = subprocess.run([B3SUM, "a.txt"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert theirs.split()[0] in out
