"""Data that moves: GB/s worker to worker, worker to client and client to
worker, shoal and dask.distributed side by side.

Each framework runs in a fresh subprocess with ``Client(n_workers=2,
threads_per_worker=1)``. Blocks are numpy arrays made on the first worker
(``workers=[a]``); every step is timed as a user runs it:

* ``w2w 8MB``: 100 blocks of 8 MB, all read by one task on the second worker;
* ``gather 8MB``: the same 100 blocks gathered by the client;
* ``w2w 100MB`` / ``gather 100MB``: the same with 8 blocks of 100 MB;
* ``scatter 100MB``: 8 blocks of 100 MB scattered from the client;
* ``3GiB``: one 3 GiB ``bytes`` value scattered, its ``len`` taken by a
  task, and gathered back (``--big-gib 0`` skips it).

Each framework runs ``--rounds`` times (3 by default), in turn with the
other, and the table shows each step's median and range.

Usage: ``python benches/transfer.py [shoal] [dask] [--big-gib 3] [--rounds 3]``
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from child import print_table, report, run_each, touch_memory  # noqa: E402

MB = 1_000_000


def make_block(i: int, nbytes: int):
    import numpy as np

    return np.full(nbytes // 8, i, dtype="float64")


def total_bytes(*blocks) -> int:
    return sum(b.nbytes for b in blocks)


def nbytes_of(x) -> int:
    return len(x)


def run(framework: str, big_gib: float) -> dict:
    if framework == "shoal":
        from shoal import Client, wait
    else:
        from dask.distributed import Client, wait

    import numpy as np

    client = Client(n_workers=2, threads_per_worker=1)
    a, b = sorted(client.scheduler_info()["workers"])
    out: dict[str, float | str] = {}

    def moved(name: str, nbytes: int, step) -> None:
        start = time.perf_counter()
        got = step()
        took = time.perf_counter() - start
        assert got == nbytes, (name, got, nbytes)
        out[name] = nbytes / took / 1e9
        report(out)

    for label, count, size in (("8MB", 100, 8 * MB), ("100MB", 8, 100 * MB)):
        blocks = client.map(make_block, range(count), nbytes=size, workers=[a], pure=False)
        wait(blocks)
        moved(
            f"w2w {label}",
            count * size,
            lambda bl=blocks: client.submit(total_bytes, *bl, workers=[b], pure=False).result(),
        )
        # Fresh blocks, so the client reads from the worker that made them.
        blocks = client.map(make_block, range(count), nbytes=size, workers=[a], pure=False)
        wait(blocks)
        moved(
            f"gather {label}",
            count * size,
            lambda bl=blocks: sum(x.nbytes for x in client.gather(bl)),
        )
        del blocks

    local = [np.full(100 * MB // 8, i, dtype="float64") for i in range(8)]

    def scatter(values=local):
        futures = client.scatter(values, workers=[b])
        wait(futures)
        return client.submit(total_bytes, *futures, workers=[b], pure=False).result()

    moved("scatter 100MB", 8 * 100 * MB, scatter)
    local.clear()

    if big_gib:
        n = int(big_gib * 2**30)
        value = b"\x01" * n
        out["3GiB"] = "died"  # what is reported if it kills the process
        report(out)
        start = time.perf_counter()
        try:
            [future] = client.scatter([value])
            del value
            length = client.submit(nbytes_of, future, pure=False).result()
            back = future.result()
            ok = length == n and len(back) == n
            del back
            out["3GiB"] = f"{time.perf_counter() - start:.1f} s" if ok else "wrong"
        except Exception as e:  # the finding, reported in the table
            out["3GiB"] = f"{type(e).__name__} after {time.perf_counter() - start:.0f} s"
    client.close()
    return out


STEPS = ["w2w 8MB", "gather 8MB", "w2w 100MB", "gather 100MB", "scatter 100MB", "3GiB"]


def main(argv: list[str]) -> None:
    touch_memory()
    big, rounds, names, it = 3.0, 3, [], iter(argv)
    for arg in it:
        if arg == "--big-gib":
            big = float(next(it))
        elif arg == "--rounds":
            rounds = int(next(it))
        else:
            names.append(arg)
    # The 3 GiB round trip runs in the first round only.
    results = run_each(__file__, names, lambda i: [str(big if i == 0 else 0)], 900.0, rounds=rounds)
    print_table("moving data", STEPS, results, " GB/s")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        report(run(sys.argv[2], float(sys.argv[3])))
    else:
        main(sys.argv[1:])
