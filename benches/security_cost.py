"""What the token and TLS cost: a 10,000-task ``map`` on a cluster with
neither, with the token, and with the token and TLS (mutual, certificates
from ``Security.temporary()``), alternated, median of several rounds.

The token is checked once per connection (client, worker, each data
fetch), so per-task work is the same; TLS encrypts every frame.

Usage: ``python benches/security_cost.py [--tasks 10000] [--rounds 7]``
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


def cluster(security: Security) -> tuple[object, list[subprocess.Popen]]:
    tls = security.tls_for("scheduler")
    sched = _engine.Scheduler("127.0.0.1", 0, None, token=security.token, tls=tls)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if security.token:
        env["SHOAL_TOKEN"] = security.token
    worker_tls = security.tls_for("worker")
    if worker_tls is not None:
        ca, cert, key, _ = worker_tls
        env |= {"SHOAL_TLS_CA": ca.decode(), "SHOAL_TLS_CERT": cert.decode()}
        env["SHOAL_TLS_KEY"] = key.decode()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", sched.address, "--nthreads", "1"], env=env
        )
        for _ in range(2)
    ]
    return sched, workers


def run(security: Security, tasks: int) -> float:
    sched, workers = cluster(security)
    try:
        with Client(sched.address, security=security, set_as_default=False) as c:
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
    tls = Security.temporary()
    kinds = {
        "no token": Security(),
        "token": Security(token=tls.token),
        "token + TLS": tls,
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for name, security in kinds.items():
            times[name].append(run(security, tasks))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{tasks:,}-task map, 2 workers x 1 thread, median of {rounds} rounds\n")
    print("| cluster | seconds | tasks/s | vs no token |")
    print("|---|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {t:.3f} | {tasks / t:,.0f} | {t / med['no token']:.3f} |")
    print(f"\ntoken / no token: {med['token'] / med['no token']:.3f}")
    print(f"token + TLS / token: {med['token + TLS'] / med['token']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
