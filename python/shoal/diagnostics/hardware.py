"""``Client.benchmark_hardware``: how fast the workers' memory and disks
are, and the network between them, as Dask's.

Each measure moves data of a few sizes and reports bytes per second by
size, averaged over the workers (for the network, over pairs of workers).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from ..core.sizes import format_bytes

#: The sizes each measure moves.
SIZES = (1 << 10, 1 << 20, 1 << 24)


def _rate(nbytes: int, seconds: float) -> float:
    return float(nbytes / max(seconds, 1e-9))


def memory_rates(duration: float = 0.2) -> dict[str, float]:
    """Bytes per second copying buffers of each size in memory, here."""
    out = {}
    for size in SIZES:
        data = bytearray(size)
        copies, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration / len(SIZES):
            bytes(data)
            copies += 1
        out[format_bytes(size)] = _rate(copies * size, time.perf_counter() - start)
    return out


def disk_rates(directory: str | None = None, duration: float = 0.2) -> dict[str, float]:
    """Bytes per second writing (with fsync) and reading back files of each
    size in ``directory`` (the temporary directory by default).
    """
    out = {}
    with tempfile.TemporaryDirectory(dir=directory, prefix="shoal-benchmark-") as root:
        path = os.path.join(root, "data")
        for size in SIZES:
            data = os.urandom(size)
            moved, start = 0, time.perf_counter()
            while time.perf_counter() - start < duration / len(SIZES):
                with open(path, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                with open(path, "rb") as f:
                    f.read()
                moved += 2 * size
            out[format_bytes(size)] = _rate(moved, time.perf_counter() - start)
    return out


def make_bytes(size: int) -> bytes:
    """A task's result of ``size`` bytes, for the network measure."""
    return bytes(size)


def receive(data: bytes) -> tuple[int, float]:
    """A task on another worker: it is given ``data`` (fetched before it
    starts), and says how much and when it started.
    """
    return len(data), time.time()


def averaged(reports: list[dict[str, float]]) -> dict[str, float]:
    """The mean rate by size over several reports."""
    out: dict[str, float] = {}
    for size in {k for r in reports for k in r}:
        values = [r[size] for r in reports if size in r]
        out[size] = sum(values) / len(values)
    return out


def network_rates(client: Any, workers: list[str]) -> dict[str, float]:
    """Bytes per second moving results between pairs of workers: each pair's
    first makes the data, the second is given it as its task's input.
    """
    if len(workers) < 2:
        return {}
    reports = []
    for source, target in zip(workers, workers[1:] + workers[:1]):
        rates = {}
        for size in SIZES:
            made = client.submit(make_bytes, size, workers=[source], pure=False)
            client.gather(made)
            start = time.time()
            n, _ = client.gather(client.submit(receive, made, workers=[target], pure=False))
            rates[format_bytes(size)] = _rate(n, time.time() - start)
            del made
        reports.append(rates)
    return averaged(reports)
