"""The seeds' real workloads on shoal and dask.distributed, side by side.

Each framework runs in its own subprocess:

* blog: 20 calls of a 0.2 s ``time.sleep`` (the blog's mock of an HTTP
  call), ``map`` + ``gather`` on the default ``Client()``;
* pages: the tutorial's 32 listing pages served locally with 0.3 s latency,
  scraped with requests + lxml (as the tutorial's requests-html) into pandas,
  ``map`` + ``gather`` on ``Client(n_workers=4)``: the first round on the
  fresh cluster on its own, then the median of five;
* gets: 64 plain GETs of those pages on a fresh ``Client(n_workers=4)``
  after four, median of three fresh clusters;
* tutorial: the tutorial's whole parallel part on a fresh
  ``Client(n_workers=4)`` started before its sequential scrape (as the
  tutorial does): submit + gather, map + gather, a lambda, delayed,
  as_completed and ``dd.from_delayed`` — first use of pandas included (the
  ``dd.from_delayed`` step is also reported on its own);
* cpu: 8 pure-Python CPU-bound tasks of 0.3 s on 2 workers x 1 thread (and
  the most that ran at once in one worker);
* async: 1,000 ``async def`` tasks each awaiting 0.1 s on ``Client(n_workers=2)``.

Usage: ``python benches/seeds.py [shoal] [dask]`` (``benches/run.sh`` runs it
with everything installed).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

ROUNDS = 3
PAGES = 32


def _median_time(fn, rounds=ROUNDS):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(framework: str) -> dict:
    from datetime import datetime

    import pandas as pd
    import seed_work as w

    from fake_web import serve

    if framework == "shoal":
        from shoal import Client, as_completed, delayed

        def make(**kw):
            return Client(**kw)

    else:
        import logging

        from dask import delayed
        from distributed import Client, as_completed

        logging.getLogger("distributed").setLevel(logging.ERROR)

        def make(**kw):
            return Client(dashboard_address=None, **kw)

    import dask.dataframe as dd

    out = {}
    params = pd.date_range(datetime(2020, 1, 1), periods=20).tolist()
    with make() as client:
        client.gather(client.map(w.fetch_mock, params[:2], pure=False))
        out["blog_s"] = _median_time(
            lambda: client.gather(client.map(w.fetch_mock, params, pure=False))
        )

    base, server = serve(latency=0.3)
    pages = range(1, PAGES + 1)
    with make(n_workers=4) as client:

        def scrape_all():
            client.gather(client.map(w.scrape_tag, [base] * PAGES, pages, pure=False))

        # The first round on a fresh cluster pays for the workers' first
        # imports (shoal's workers also preload what this process imported);
        # it is reported on its own, and the steady state after it.
        out["pages_first_s"] = _median_time(scrape_all, rounds=1)
        out["pages_s"] = _median_time(scrape_all, rounds=5)

    # 64 GETs on a fresh cluster after four: how fast blocking work
    # reaches full overlap.
    gets = []
    for _ in range(ROUNDS):
        with make(n_workers=4) as client:
            client.gather(client.map(w.get_page, [base] * 4, range(1, 5), pure=False))
            t = time.perf_counter()
            client.gather(client.map(w.get_page, [base] * 64, range(1, 65), pure=False))
            gets.append(time.perf_counter() - t)
    out["gets_s"] = statistics.median(gets)

    def tutorial_parallel_part(client):
        futures = [client.submit(w.scrape_tag, base, p, pure=False) for p in pages]
        client.gather(futures)
        client.gather(client.map(w.scrape_tag, [base] * PAGES, pages, pure=False))
        client.gather(client.map(lambda p: w.scrape_tag(base, p, tag="python"), pages, pure=False))
        scrape = delayed(w.scrape_tag)
        dfs = [scrape(base, p) for p in pages]
        delayed(pd.concat)(dfs).compute()
        futures = client.map(w.scrape_tag, [base] * 15, range(1, 16), pure=False)
        views = 0
        for f in as_completed(futures):
            views += int(f.result()["views"].sum())
        t = time.perf_counter()
        meta = futures[0].result().head(0)
        total = dd.from_delayed(futures, meta=meta)["views"].sum().compute()
        assert total == views
        return time.perf_counter() - t

    times, from_delayed = [], []
    for _ in range(ROUNDS):
        with make(n_workers=4) as client:
            [w.scrape_tag(base, p) for p in range(1, 4)]  # the sequential part (shortened)
            t = time.perf_counter()
            from_delayed.append(tutorial_parallel_part(client))
            times.append(time.perf_counter() - t)
    out["tutorial_s"] = statistics.median(times)
    out["from_delayed_s"] = statistics.median(from_delayed)
    server.shutdown()

    with make(n_workers=2, threads_per_worker=1) as client:
        client.gather(client.map(w.spin, [0.01] * 2, pure=False))
        spans_all = []

        def cpu():
            spans_all.append(client.gather(client.map(w.spin, [0.3] * 8, pure=False)))

        out["cpu_s"] = _median_time(cpu)
        out["cpu_overlap"] = max(w.max_overlap_per_process(s) for s in spans_all)

    with make(n_workers=2) as client:
        client.gather(client.map(w.async_wait, range(4), pure=False))
        out["async_s"] = _median_time(
            lambda: client.gather(client.map(w.async_wait, range(1000), pure=False))
        )
    return out


ROWS = [
    ("blog_s", "blog: 20 calls of sleep(0.2), default Client() (s)"),
    ("pages_s", f"tutorial: {PAGES} pages at 0.3 s latency into pandas, n_workers=4 (s)"),
    ("pages_first_s", "  the same, first round on a fresh cluster (s)"),
    ("gets_s", "64 GETs at 0.3 s latency, fresh n_workers=4 after 4 (s)"),
    ("tutorial_s", "tutorial: whole parallel part, fresh cluster, first pandas use (s)"),
    ("from_delayed_s", "  its dd.from_delayed(...)['views'].sum() step, first use (s)"),
    ("cpu_s", "8 CPU-bound tasks of 0.3 s, 2 workers x 1 thread (s)"),
    ("cpu_overlap", "  most CPU-bound tasks at once in one worker"),
    ("async_s", "1,000 async tasks awaiting 0.1 s, n_workers=2 (s)"),
]


def main(names: list[str]) -> None:
    from compare import run_children

    results = run_children(__file__, names)
    names = [n for n in names if n in results]
    lines = ["| seed workload | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in ROWS:
        cells = []
        for n in names:
            v = results[n].get(key)
            cell = "–" if v is None else (f"{v:.3f}" if key.endswith("_s") else f"{v}")
            base = results.get("shoal", {}).get(key)
            if n != "shoal" and key.endswith("_s") and v and base:
                cell += f" ({v / base:.1f}x shoal)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(HERE, "seeds_results.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(run(sys.argv[2])), flush=True)
    else:
        main(sys.argv[1:] or ["shoal", "dask"])
