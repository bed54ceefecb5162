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
N = 10_000
ROUNDS = 3
FRAMEWORKS = ["shoal", "dask", "ray", "multiprocessing"]


def noop(x):
    return x


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


# ---- per-framework drivers (run inside the child process) -------------------


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


def run_shoal():
    from shoal import Client

    return bench_futures_client(lambda: Client(n_workers=2, threads_per_worker=1))


def run_dask():
    import logging

    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    return bench_futures_client(
        lambda: Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    )


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
    return _summary(starts, closes, maps, submits)


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
]


def child(name: str) -> None:
    result = globals()[f"run_{name}"]()
    print("RESULT " + json.dumps(result), flush=True)


def parent(names: list[str]) -> None:
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name], capture_output=True, text=True
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(line[len("RESULT ") :])
    print_table(results)


def _fmt(key: str, v: float) -> str:
    return f"{v:.3f}" if key.endswith("_s") else f"{v:,.0f}"


def print_table(results: dict) -> None:
    names = [n for n in FRAMEWORKS if n in results]
    base = results.get("shoal")
    head = "| benchmark | " + " | ".join(names) + " |"
    sep = "|---|" + "---|" * len(names)
    lines = [head, sep]
    for key, label, better in ROWS:
        cells = []
        for n in names:
            v = results[n][key]
            cell = _fmt(key, v)
            if base and n != "shoal" and v > 0 and base[key] > 0:
                ratio = v / base[key] if better == "lower" else base[key] / v
                cell += f" ({ratio:.1f}x slower)" if ratio >= 1 else f" ({1 / ratio:.1f}x faster)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    cpu = platform.processor() or platform.machine()
    meta = (
        f"Date: {date.today()}. Command: `bash benches/run.sh`. Machine: {os.cpu_count()} cores, "
        f"{cpu}, Linux {platform.release()}, Python {platform.python_version()}. "
        "2 workers x 1 thread each; medians of "
        f"{ROUNDS} rounds. Ratios are relative to shoal."
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
