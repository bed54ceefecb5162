"""Side-by-side benchmarks of shoal, dask.distributed, Ray and multiprocessing.

Each framework runs in its own subprocess on the same workloads with
2 workers x 1 thread (2 processes for multiprocessing). Every figure is the
median of several rounds. Prints a Markdown table with each framework's
ratio to shoal and writes it to ``benches/results.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
N = 10_000
LEAVES = 4096  # a tree-sum of 2 * LEAVES - 1 = 8,191 tasks
PAGES = 32
ROUNDS = 3
FRAMEWORKS = ["shoal", "dask", "ray", "multiprocessing"]


def noop(x):
    return x


def add(a, b):
    return a + b


def _median(xs):
    return statistics.median(xs)


def _time(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _summary(starts, closes, maps, submits):
    return {
        "start_s": _median(starts),
        "close_s": _median(closes),
        "map_tps": _median(maps),
        "submit_tps": _median(submits),
    }


# ---- workloads shared by the Dask-style clients ----------------------------


def bench_futures_client(make_client):
    """Start/close times and no-op throughput for a Dask-style client."""
    starts, closes, maps, submits = [], [], [], []
    for _ in range(ROUNDS):
        t, client = _time(make_client)
        starts.append(t)
        client.gather(client.map(noop, range(100), pure=False))  # warm up
        t, out = _time(lambda c=client: c.gather(c.map(noop, range(N), pure=False)))
        assert out[-1] == N - 1
        maps.append(N / t)
        t, out = _time(lambda c=client: c.gather([c.submit(noop, i, pure=False) for i in range(N)]))
        assert out[-1] == N - 1
        submits.append(N / t)
        t, _ = _time(client.close)
        closes.append(t)
    return _summary(starts, closes, maps, submits)


def _tree(leaf, combine):
    vals = [leaf(i) for i in range(LEAVES)]
    while len(vals) > 1:
        vals = [combine(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
    return vals[0]


def bench_tree_sum(delayed_fn):
    """Build and compute a delayed tree-sum of 8,191 tasks; tasks/s."""
    rates = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        total = _tree(delayed_fn(noop), delayed_fn(add))
        assert total.compute() == LEAVES * (LEAVES - 1) // 2
        rates.append((2 * LEAVES - 1) / (time.perf_counter() - t))
    return _median(rates)


def bench_from_delayed(client):
    """The tutorial's last step: scraped pages as futures, made a dask
    DataFrame with dd.from_delayed, then a column sum; seconds."""
    import dask.dataframe as dd
    import pandas as pd
    import requests
    from bs4 import BeautifulSoup

    from fake_web import serve

    base, server = serve(latency=0.1)

    def scrape_tag(page_num, tag="dask"):
        url = f"{base}/questions/tagged/{tag}?tab=Newest&page={page_num}&pagesize=50"
        soup = BeautifulSoup(requests.get(url).text, "html.parser")
        rows = []
        for q in soup.select(".s-post-summary"):
            stats = list(q.select_one(".s-post-summary--stats").stripped_strings)
            views = stats[2].split()[0]
            mult = {"k": 1e3, "m": 1e6}.get(views[-1], 1)
            title = q.select_one(".s-post-summary--content-title").get_text(strip=True)
            rows.append({"title": title, "views": int(float(views.rstrip("km")) * mult)})
        return pd.DataFrame(rows)

    meta = scrape_tag(1).head(0)
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        futures = client.map(scrape_tag, range(1, PAGES + 1), pure=False)
        total = dd.from_delayed(futures, meta=meta)["views"].sum().compute()
        times.append(time.perf_counter() - t)
        assert total > 0
    server.shutdown()
    return _median(times)


# ---- per-framework drivers (run inside the child process) -------------------


def run_shoal():
    from shoal import Client, delayed

    out = bench_futures_client(lambda: Client(n_workers=2, threads_per_worker=1))
    with Client(n_workers=2, threads_per_worker=1) as client:
        out["tree_tps"] = bench_tree_sum(delayed)
        out["from_delayed_s"] = bench_from_delayed(client)
    return out


def run_dask():
    import logging

    import dask
    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)

    def make():
        return Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)

    out = bench_futures_client(make)
    with make() as client:
        out["tree_tps"] = bench_tree_sum(dask.delayed)
        out["from_delayed_s"] = bench_from_delayed(client)
    return out


def run_ray():
    import ray

    starts, closes, maps, submits = [], [], [], []
    for _ in range(ROUNDS):
        t, _ = _time(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
        starts.append(t)
        remote_noop = ray.remote(noop)
        ray.get([remote_noop.remote(i) for i in range(100)])
        t, out = _time(lambda f=remote_noop: ray.get([f.remote(i) for i in range(N)]))
        assert out[-1] == N - 1
        maps.append(N / t)
        # Ray has no separate map call: a submit loop is the same thing.
        t, out = _time(lambda f=remote_noop: ray.get([f.remote(i) for i in range(N)]))
        submits.append(N / t)
        t, _ = _time(ray.shutdown)
        closes.append(t)
    out = _summary(starts, closes, maps, submits)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    remote_noop, remote_add = ray.remote(noop), ray.remote(add)
    rates = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        total = _tree(remote_noop.remote, remote_add.remote)
        assert ray.get(total) == LEAVES * (LEAVES - 1) // 2
        rates.append((2 * LEAVES - 1) / (time.perf_counter() - t))
    out["tree_tps"] = _median(rates)
    ray.shutdown()
    return out


def run_multiprocessing():
    import multiprocessing as mp

    starts, closes, maps, submits = [], [], [], []
    for _ in range(ROUNDS):

        def start():
            pool = mp.get_context("spawn").Pool(2)
            pool.apply(noop, (0,))  # ready means a task can run, as for the others
            return pool

        t, pool = _time(start)
        pool.map(noop, range(100))
        starts.append(t)
        t, out = _time(lambda p=pool: p.map(noop, range(N)))
        assert out[-1] == N - 1
        maps.append(N / t)
        t, out = _time(
            lambda p=pool: [r.get() for r in [p.apply_async(noop, (i,)) for i in range(N)]]
        )
        submits.append(N / t)

        def close(p=pool):
            p.close()
            p.join()

        t, _ = _time(close)
        closes.append(t)
    return _summary(starts, closes, maps, submits)


# ---- the parent: run each framework in a subprocess, print the table -------

ROWS = [
    ("start_s", "Client(n_workers=2) start (s)", "lower"),
    ("close_s", "close (s)", "lower"),
    ("map_tps", f"{N:,} no-op tasks, map + gather (tasks/s)", "higher"),
    ("submit_tps", f"{N:,} no-op tasks, submit loop + gather (tasks/s)", "higher"),
    ("tree_tps", f"delayed tree-sum of {2 * LEAVES - 1:,} tasks (tasks/s)", "higher"),
    ("from_delayed_s", f"dd.from_delayed over {PAGES} scraped pages + sum (s)", "lower"),
]


def child(name: str) -> None:
    result = globals()[f"run_{name}"]()
    print("RESULT " + json.dumps(result), flush=True)


def run_children(script: str, names: list[str]) -> dict:
    """Run ``script --child NAME`` for each framework in its own process;
    collect the JSON each prints after ``RESULT``."""
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, script, "--child", name], capture_output=True, text=True
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(line[len("RESULT ") :])
    return results


def parent(names: list[str]) -> None:
    print_table(run_children(__file__, names))


def _fmt(key: str, v: float) -> str:
    return f"{v:.3f}" if key.endswith("_s") else f"{v:,.0f}"


def _cell(key: str, better: str, v: float | None, base: float | None, is_base: bool) -> str:
    if v is None:
        return "–"
    cell = _fmt(key, v)
    if not is_base and base and v > 0:
        ratio = v / base if better == "lower" else base / v
        cell += f" ({ratio:.1f}x slower)" if ratio >= 1 else f" ({1 / ratio:.1f}x faster)"
    return cell


def print_table(results: dict) -> None:
    names = [n for n in FRAMEWORKS if n in results]
    base = results.get("shoal", {})
    lines = ["| benchmark | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label, better in ROWS:
        cells = [
            _cell(key, better, results[n].get(key), base.get(key), n == "shoal") for n in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    cpu = platform.processor() or platform.machine()
    meta = (
        f"Date: {date.today()}. Command: `bash benches/run.sh`. Machine: {os.cpu_count()} cores, "
        f"{cpu}, Linux {platform.release()}, Python {platform.python_version()}. "
        f"2 workers x 1 thread each; medians of {ROUNDS} rounds. Ratios are relative to shoal; "
        "– means the framework has no such API."
    )
    print(table)
    print()
    print(meta)
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write(table + "\n\n" + meta + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        parent(sys.argv[1:] or FRAMEWORKS)
