"""Faults under load: a worker SIGKILLed every 0.5 s during a ``map`` of
10,000 short tasks on 3 local worker processes, shoal and dask.distributed
side by side.

Each framework runs in its own subprocess with ``Client(n_workers=3,
threads_per_worker=1)``; a thread kills one of the client's worker
processes (chosen at random) every ``--every`` seconds until the gather
returns. Reported: the wall time, whether every result was right, how many
workers were killed, and the error if the gather failed.

A framework that has not finished after ``--timeout`` seconds (default
600) is stopped and reported as such.

Usage: ``python benches/chaos.py [shoal] [dask] [--every 0.5] [--tasks 10000] [--timeout 600]``
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from child import report, run_child  # noqa: E402


def spin(x: int) -> int:
    """Half a millisecond of CPU."""
    end = time.perf_counter() + 0.0005
    while time.perf_counter() < end:
        pass
    return x + 1


def _worker_pids() -> list[int]:
    """This process's children that run workers (not multiprocessing's
    resource tracker)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"resource_tracker" not in cmd and b"semaphore_tracker" not in cmd:
            found.append(int(name))
    return found


def run(framework: str, every: float, tasks: int) -> dict:
    if framework == "shoal":
        from shoal import Client
    else:
        from dask.distributed import Client

    client = Client(n_workers=3, threads_per_worker=1)
    client.gather(client.map(spin, range(30)))
    stop = threading.Event()
    kills = [0]

    def killer() -> None:
        rng = random.Random(7)
        while not stop.wait(every):
            pids = _worker_pids()
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills[0] += 1
                except ProcessLookupError:
                    pass

    t = threading.Thread(target=killer, daemon=True)
    start = time.perf_counter()
    t.start()
    error = None
    correct = False
    try:
        out = client.gather(client.map(spin, range(tasks)))
        correct = out == [x + 1 for x in range(tasks)]
    except Exception as e:  # the point is to report it
        error = f"{type(e).__name__}: {str(e)[:200]}"
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    try:
        client.close()
    except Exception:
        pass
    return {"seconds": elapsed, "correct": correct, "kills": kills[0], "error": error}


def main(argv: list[str]) -> None:
    every, tasks, timeout, names = 0.5, 10_000, 600.0, []
    it = iter(argv)
    for a in it:
        if a == "--every":
            every = float(next(it))
        elif a == "--tasks":
            tasks = int(next(it))
        elif a == "--timeout":
            timeout = float(next(it))
        else:
            names.append(a)
    rows = []
    for name in names or ["shoal", "dask"]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        r = run_child(__file__, [name, str(every), str(tasks)], timeout)
        if r == "timeout":
            rows.append(f"| {name} | > {timeout:.0f} | — | — | did not finish in {timeout:.0f} s |")
            continue
        if isinstance(r, str):
            print(f"{name} failed:\n{r}", file=sys.stderr)
            continue
        rows.append(
            f"| {name} | {r['seconds']:.1f} | {r['correct']} | {r['kills']} | {r['error'] or ''} |"
        )
    print(f"SIGKILL of a random worker every {every} s during a map of {tasks:,} tasks of 0.5 ms")
    print("(3 workers x 1 thread)\n")
    print("| framework | seconds | all results correct | workers killed | error |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--child":
        report(run(sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
    else:
        main(sys.argv[1:])
