"""A graph of about N tasks (a wide map, then a pairwise tree reduction) on a
stand-alone scheduler process, reporting time and memory per task: the
scheduler's (its peak resident memory during the run, less its resident
memory before) and the client process's, measured the same way (the
user's graph of ``Delayed`` objects included).

    python benches/big_graph.py [N]      # default 1,000,000

``run(n, page=...)`` keeps a page of the scheduler's dashboard open in
``page`` (a callable given the dashboard's URL, returning something with
``close()``) while the graph computes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from shoal import Client, delayed


def noop(x):
    return x


def add(a, b):
    return a + b


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(n_tasks: int, page=None) -> dict:
    leaves_n = (n_tasks + 1) // 2
    sched = subprocess.Popen(
        [sys.executable, "-m", "shoal", "scheduler", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    address = sched.stdout.readline().split(": ", 1)[1].strip()
    dashboard = sched.stdout.readline().split(": ", 1)[1].strip()
    # Workers import this module's functions when it is imported by name.
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    workers = [
        subprocess.Popen([sys.executable, "-m", "shoal", "worker", address], env=env)
        for _ in range(2)
    ]
    viewer = None
    try:
        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
            if page is not None:
                viewer = page(dashboard)
            base = _status(sched.pid)["VmRSS"]
            own_base = _status(os.getpid())["VmRSS"]
            pids = {"scheduler": [sched.pid], "workers": [w.pid for w in workers]}
            pids["client"] = [os.getpid()]
            t0 = time.perf_counter()
            vals = [delayed(noop)(i) for i in range(leaves_n)]
            while len(vals) > 1:
                vals = [
                    delayed(add)(vals[i], vals[i + 1]) if i + 1 < len(vals) else vals[i]
                    for i in range(0, len(vals), 2)
                ]
            t1 = time.perf_counter()
            cpu0 = {k: sum(map(_cpu, v)) for k, v in pids.items()}
            result = vals[0].compute()
            t2 = time.perf_counter()
            cpu = {f"compute_cpu_s_{k}": sum(map(_cpu, v)) - cpu0[k] for k, v in pids.items()}
            assert result == leaves_n * (leaves_n - 1) // 2
            peak = _status(sched.pid)["VmHWM"]
            own_peak = _status(os.getpid())["VmHWM"]
            tasks = 2 * leaves_n - 1
            return {
                "tasks": tasks,
                "build_s": t1 - t0,
                "compute_s": t2 - t1,
                "total_s": t2 - t0,
                "tasks_per_s": tasks / (t2 - t0),
                "scheduler_bytes_per_task": (peak - base) / tasks,
                # The whole client process, the user's graph of Delayed included.
                "client_bytes_per_task": (own_peak - own_base) / tasks,
                # Where the compute step's CPU went, by process.
                **cpu,
            }
    finally:
        if viewer is not None:
            viewer.close()
        # Workers first: a worker that loses its scheduler says so.
        for p in [*workers, sched]:
            p.kill()
            p.wait()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(json.dumps(run(n), indent=1))
