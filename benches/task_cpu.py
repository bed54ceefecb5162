"""Where a no-op task's CPU goes: microseconds of CPU per task in each
process and thread of a fresh local cluster (2 workers x 1 thread), for a
10,000-task ``map`` + ``gather`` and a ``submit`` loop + ``gather``.

    python benches/task_cpu.py [--rounds 5]

CPU time is read from ``/proc`` (user + system, per thread) before and after
the rounds, so the figures do not depend on how busy the machine is, as
wall-clock throughput does. Linux only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

from shoal import Client

N = 10_000


def noop(x):
    return x


def _threads(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds so far of each thread of ``pid``, by (tid, name)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue  # the thread ended
        name = text.split("(", 1)[1].rsplit(")", 1)[0]
        fields = text.rsplit(")", 1)[1].split()
        out[(int(tid), name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _children(pid: int) -> list[int]:
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return kids


def _snapshot(roles: dict[int, str]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for pid, role in roles.items():
        for (_, name), cpu in _threads(pid).items():
            out[(role, name)] += cpu
    return out


def measure(client: Client, roles: dict[int, str], step, rounds: int) -> dict:
    before = _snapshot(roles)
    t0 = time.perf_counter()
    for _ in range(rounds):
        step(client)
    wall = time.perf_counter() - t0
    after = _snapshot(roles)
    tasks = rounds * N
    per_task = {k: (after[k] - before.get(k, 0.0)) / tasks * 1e6 for k in after}
    return {"tasks_per_s": tasks / wall, "us_per_task": per_task}


def map_step(client: Client) -> None:
    client.gather(client.map(noop, range(N)))


def submit_step(client: Client) -> None:
    client.gather([client.submit(noop, i) for i in range(N)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with Client(n_workers=2, threads_per_worker=1) as client:
        map_step(client)  # the workers have the function, as in the other benchmarks
        roles = {os.getpid(): "client"}
        for pid in _children(os.getpid()):
            for grandchild in [pid, *_children(pid)]:
                roles.setdefault(grandchild, "workers")
        for name, step in [("map", map_step), ("submit loop", submit_step)]:
            r = measure(client, roles, step, args.rounds)
            rows = sorted(r["us_per_task"].items(), key=lambda kv: -kv[1])
            total = sum(v for _, v in rows)
            print(f"\n{name}: {r['tasks_per_s']:,.0f} tasks/s, {total:.1f} us of CPU per task")
            print("| process | thread | us per task |")
            print("|---|---|---|")
            for (role, thread), us in rows:
                if us >= 0.05:
                    print(f"| {role} | {thread} | {us:.1f} |")


if __name__ == "__main__":
    main()
