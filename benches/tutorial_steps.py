"""The tutorial's first steps as a user meets them: each on a fresh
``Client(n_workers=4)``, timed as the user runs it, shoal and
dask.distributed side by side.

* ``Client(n_workers=4)``: starting the cluster (shoal's workers are forks
  of a template that first imports what this script imported);
* ``submit``: ``client.submit(inc, 1).result()`` right after the client
  starts (``inc`` sleeps 0.25 s);
* ``map + sum``: ``client.map(inc, range(8))``, then
  ``client.submit(sum, futures).result()`` (eight sleeps on four workers: two
  rounds, 0.5 s, at best);
* ``from_delayed``: the tutorial's scrape of 15 listing pages (0.3 s
  latency, served locally) with ``client.map``, then
  ``dd.from_delayed(futures)["views"].sum().compute()``, the first use of
  dask.dataframe on the cluster.

The script imports pandas and dask.dataframe before it starts the client,
as the tutorial's notebook has by then, so shoal's workers warm up with
them. No step is warmed up beforehand: each framework runs ``--rounds``
times (3 by default), in turn, a fresh cluster each time, and the table
shows each step's median and range.

Usage: ``python benches/tutorial_steps.py [shoal] [dask] [--rounds 3]``
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

from child import report, steps_main  # noqa: E402

STEPS = ["Client(n_workers=4)", "submit", "map + sum", "from_delayed"]


def inc(x: int) -> int:
    time.sleep(0.25)
    return x + 1


def run(framework: str) -> dict:
    import dask.dataframe as dd
    import pandas  # noqa: F401 (imported by then in the tutorial)
    import seed_work as w

    from fake_web import serve

    if framework == "shoal":
        from shoal import Client
    else:
        import logging

        from distributed import Client

        logging.getLogger("distributed").setLevel(logging.ERROR)

    base, _server = serve(latency=0.3)
    out: dict[str, float] = {}
    t = time.perf_counter()
    with Client(n_workers=4) as client:
        out["Client(n_workers=4)"] = time.perf_counter() - t
        t = time.perf_counter()
        assert client.submit(inc, 1).result() == 2
        out["submit"] = time.perf_counter() - t
        report(out)

        t = time.perf_counter()
        futures = client.map(inc, range(8))
        assert client.submit(sum, futures).result() == 36
        out["map + sum"] = time.perf_counter() - t
        report(out)

        t = time.perf_counter()
        t15 = client.map(w.scrape_tag, [base] * 15, range(1, 16))
        views = dd.from_delayed(t15)["views"].sum().compute()
        out["from_delayed"] = time.perf_counter() - t
        assert views > 0
    return out


if __name__ == "__main__":
    steps_main(__file__, "tutorial step (s)", STEPS, run)
