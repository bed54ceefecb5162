"""What the token costs: a 10,000-task ``map`` on a scheduler that requires a
token and on one that does not, alternated, median of several rounds.

The token is checked once per connection (client, worker, each data
fetch), so per-task work is the same; this measures that it stays so.

Usage: ``python benches/token_cost.py [--tasks 10000] [--rounds 7]``
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from shoal import Client, Security, _engine


def noop(x: int) -> int:
    return x


def cluster(token: str | None) -> tuple[object, list[subprocess.Popen]]:
    sched = _engine.Scheduler("127.0.0.1", 0, None, token=token)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("SHOAL_TOKEN", None)
    if token:
        env["SHOAL_TOKEN"] = token
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", sched.address, "--nthreads", "1"], env=env
        )
        for _ in range(2)
    ]
    return sched, workers


def run(token: str | None, tasks: int) -> float:
    sched, workers = cluster(token)
    try:
        with Client(sched.address, security=Security(token=token), set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
            c.gather(c.map(noop, range(100)))
            start = time.perf_counter()
            out = c.gather(c.map(noop, range(tasks)))
            elapsed = time.perf_counter() - start
            assert out == list(range(tasks))
            return elapsed
    finally:
        sched.stop()
        for w in workers:
            w.wait(timeout=30)


def main(argv: list[str]) -> None:
    tasks, rounds = 10_000, 7
    it = iter(argv)
    for a in it:
        if a == "--tasks":
            tasks = int(next(it))
        elif a == "--rounds":
            rounds = int(next(it))
    token = Security.temporary().token
    plain, with_token = [], []
    for _ in range(rounds):
        plain.append(run(None, tasks))
        with_token.append(run(token, tasks))
    p, t = statistics.median(plain), statistics.median(with_token)
    print(f"{tasks:,}-task map, 2 workers x 1 thread, median of {rounds} rounds\n")
    print("| scheduler | seconds | tasks/s |")
    print("|---|---|---|")
    print(f"| no token | {p:.3f} | {tasks / p:,.0f} |")
    print(f"| token | {t:.3f} | {tasks / t:,.0f} |")
    print(f"\ntoken / no token: {t / p:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
