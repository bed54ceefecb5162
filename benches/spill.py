"""Results larger than memory: a ``map`` whose results total three times the
workers' ``memory_limit``, shoal and dask.distributed side by side.

Each framework runs in its own subprocess with ``Client(n_workers=2,
threads_per_worker=1, memory_limit=LIMIT)``. The map makes ``--tasks``
blocks of ``--block`` MB each (3 x 2 x LIMIT in all) and holds every future,
so the workers must spill; then a second map reads every block back (its
length) and the sum is checked. Reported: the time to make all blocks, the
time to read them all back, the bytes each framework said it spilled, and
whether the answer was right.

Usage: ``python benches/spill.py [shoal] [dask] [--limit-mb 500] [--block-mb 20]``
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from child import report, run_child  # noqa: E402

MB = 1_000_000


def block(i: int, size: int) -> bytes:
    return bytes([i % 256]) * size


def spilled(client, framework: str) -> int:
    """Bytes on disk across the workers, as the framework reports them."""
    if framework == "shoal":
        return sum(client.run(lambda dask_worker: dask_worker.spilled_bytes["disk"]).values())

    def on_disk(dask_worker):
        return dask_worker.data.spilled_total.disk

    return sum(client.run(on_disk).values())


def run(framework: str, limit_mb: int, block_mb: int) -> dict:
    if framework == "shoal":
        from shoal import Client, wait
    else:
        from dask.distributed import Client, wait

    client = Client(n_workers=2, threads_per_worker=1, memory_limit=f"{limit_mb}MB")
    tasks = 3 * 2 * limit_mb // block_mb
    start = time.perf_counter()
    futures = client.map(block, range(tasks), size=block_mb * MB)
    wait(futures)
    made = time.perf_counter() - start
    disk = spilled(client, framework)
    start = time.perf_counter()
    total = sum(client.gather(client.map(len, futures)))
    read = time.perf_counter() - start
    client.close()
    return {
        "tasks": tasks,
        "made": made,
        "read": read,
        "spilled": disk,
        "correct": total == tasks * block_mb * MB,
    }


def main(argv: list[str]) -> None:
    limit_mb, block_mb, timeout, names = 500, 20, 600.0, []
    it = iter(argv)
    for a in it:
        if a == "--limit-mb":
            limit_mb = int(next(it))
        elif a == "--block-mb":
            block_mb = int(next(it))
        else:
            names.append(a)
    rows, times = [], {}
    for name in names or ["shoal", "dask"]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        r = run_child(__file__, [name, str(limit_mb), str(block_mb)], timeout)
        if r == "timeout":
            rows.append(f"| {name} | > {timeout:.0f} | — | — | — | — |")
            continue
        if isinstance(r, str):
            print(f"{name} failed:\n{r}", file=sys.stderr)
            continue
        times[name] = r["made"] + r["read"]
        ratio = ""
        if name != "shoal" and times.get("shoal"):
            ratio = f" ({times[name] / times['shoal']:.1f}x shoal)"
        rows.append(
            f"| {name} | {r['made']:.2f} | {r['read']:.2f} | {r['made'] + r['read']:.2f}{ratio} "
            f"| {r['spilled'] / 1e9:.2f} | {r['correct']} |"
        )
    total_gb = 3 * 2 * limit_mb / 1000
    print(
        f"A map of {total_gb:.0f} GB of {block_mb} MB results on 2 workers x "
        f"{limit_mb} MB memory_limit, all futures held, then every block read back\n"
    )
    print("| framework | make (s) | read back (s) | total (s) | GB on disk | correct |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        report(run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main(sys.argv[1:])
