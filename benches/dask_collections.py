"""dask collections on a cluster, shoal and dask.distributed side by side.

Each framework runs in a fresh subprocess with ``Client(n_workers=2,
threads_per_worker=1)`` and times each step as a user runs it:

* ``groupby``: ``df.groupby("name").x.mean()`` on a frame of 60 partitions
  x 200,000 rows (about 400 MB, made on the workers by ``dd.from_map``);
* ``set_index``: ``df.set_index("x")`` (a full shuffle), then ``len`` of
  every partition;
* ``persist``: ``persist()``, ``wait``, then three queries on the persisted
  frame; also how much the client process grew meanwhile;
* ``array``: ``da.random`` 16000 x 16000 in 1000 x 1000 chunks,
  ``(x + x.T).mean(axis=0).sum()``;
* ``bag``: a bag of 20,000 partitions, map + filter + count.

Each framework runs ``--rounds`` times (3 by default), in turn with the
other, and the table shows each step's median and range.

Usage: ``python benches/dask_collections.py [shoal] [dask] [--partitions 60] [--rounds 3]``
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from child import print_table, report, run_each, touch_memory  # noqa: E402

ROWS = 200_000


def make_part(i: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    return pd.DataFrame(
        {
            "x": rng.random(ROWS),
            "y": rng.integers(0, 1_000_000, ROWS),
            "name": rng.choice(["alice", "bob", "carol", "dan", "edith", "frank"], ROWS),
        }
    )


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(framework: str, partitions: int) -> dict:
    if framework == "shoal":
        from shoal import Client, wait
    else:
        from dask.distributed import Client, wait
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd

    client = Client(n_workers=2, threads_per_worker=1)
    out: dict[str, float] = {}

    def timed(name, step):
        start = time.perf_counter()
        value = step()
        out[name] = time.perf_counter() - start
        return value

    df = dd.from_map(make_part, range(partitions))
    timed("groupby", lambda: df.groupby("name").x.mean().compute())
    lengths = timed("set_index", lambda: df.set_index("x").map_partitions(len).compute())
    assert int(lengths.sum()) == partitions * ROWS

    before = rss()

    def persist_and_query():
        p = df.persist()
        wait(p)
        p.x.sum().compute()
        p.groupby("name").y.max().compute()
        return len(p[p.x > 0.5])

    timed("persist", persist_and_query)
    out["persist_client_mb"] = (rss() - before) / 1e6

    x = da.random.random((16_000, 16_000), chunks=(1_000, 1_000))
    timed("array", lambda: float((x + x.T).mean(axis=0).sum().compute()))
    bag = db.from_sequence(range(20_000), npartitions=20_000)
    count = timed(
        "bag", lambda: bag.map(lambda v: v * 2).filter(lambda v: v % 3 == 0).count().compute()
    )
    assert count == len(range(0, 40_000, 6))
    client.close()
    return out


STEPS = ["groupby", "set_index", "persist", "array", "bag"]


def main(argv: list[str]) -> None:
    partitions, rounds, names, it = 60, 3, [], iter(argv)
    for arg in it:
        if arg == "--partitions":
            partitions = int(next(it))
        elif arg == "--rounds":
            rounds = int(next(it))
        else:
            names.append(arg)
    touch_memory()
    results = run_each(__file__, names, [str(partitions)], 1200.0, rounds=rounds)
    print_table("workload (s)", STEPS, results)
    names = list(results)
    grew = [results[n].get("persist_client_mb") for n in names]
    print(
        "| client growth while persisting (MB) | "
        + " | ".join(f"{g:.0f}" if g is not None else "—" for g in grew)
        + " | |"
    )


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        report(run(sys.argv[2], int(sys.argv[3])))
    else:
        main(sys.argv[1:])
