"""Soak: several clients submit random work for a given time while faults
are injected; at the end nothing may be lost, stuck or leaked.

A ``LocalCluster`` of 3 worker processes (2 threads, 300 MB each, so large
values spill) runs in this process. Client processes each loop over random
work and check every answer:

* ``map``: a ``map`` of 1-400 tasks and its ``gather``;
* ``graph``: a ``delayed`` tree summing 2-128 leaves;
* ``bag``: a dask bag of 4-16 partitions, mapped and summed;
* ``large``: 12 arrays of 8 MB held at once (workers spill), summed;
* ``lock``: a ``Lock`` shared by every client, taken and given back;
* ``queue``: a ``Queue`` of this client's, filled and emptied in order;
* ``actor``: an actor (a counter on one worker) called 1-50 times in
  turn; its count must match the calls. An actor lives and dies with its
  worker, as in Dask: when that worker is killed its calls fail, saying so.

Meanwhile, one fault every ``--every`` seconds (default 1.5), at random: a
worker SIGKILLed (the cluster starts a new one), a worker SIGSTOPped for
0.5-4 s, a client process SIGKILLed (a new one takes its place; its work
is not counted), garbage connections at the scheduler and at a worker's
data server, or (run as root with iproute2's ``ip``) the network link to a
fourth worker taken down for 0.5-4 s. That worker runs on a host of its
own: a network namespace joined to this one by a veth pair, so the
scheduler, its peers and the clients reach it only over that link (the
cluster then listens on the link's address instead of loopback).

Every answer a client printed counts, a killed client's included. At the
end the clients stop; the run fails (exit 1) if any answer a
surviving client got was wrong, if a task failed with anything but the
expected ``KilledWorker``-style loss of its worker, if the shared lock
cannot be taken within 30 s, if the scheduler's process grew by more than
200 MB after its first 10 s, or if a worker process, a client process or a
file in the workers' directory is left after the cluster closed.

Usage: ``python benches/soak.py [--seconds 600] [--clients 3] [--every 1.5] [--seed 0]``
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

#: Errors a task may end with when the worker running it is killed again
#: and again, or an actor's calls when its worker is killed: not a lost
#: result (the client was told), counted apart.
EXPECTED_ERRORS = (
    "KilledWorker",
    "RuntimeError: Worker holding Actor was lost",
    "RuntimeError: actor ",
)


class Counter:
    """The soak's actor: a count kept on one worker."""

    def __init__(self) -> None:
        self.n = 0

    def increment(self) -> int:
        self.n += 1
        return self.n


def inc(x: int) -> int:
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def block(i: int):
    import numpy as np

    return np.full(1_000_000, i, dtype="float64")  # 8 MB


def block_sum(b) -> float:
    return float(b.sum())


def client_loop(address: str, seed: int, deadline: float, token: str) -> None:
    """One client's work until ``deadline``; prints one JSON line per
    checked answer: ``{"kind", "ok", "error"}``."""
    import dask
    import dask.bag as db

    from shoal import Client, Lock, Queue, Security, delayed

    rng = random.Random(seed)
    client = Client(address, security=Security(token=token), timeout=30)

    def say(kind: str, ok: bool, error: str = "") -> None:
        took = round(time.time() - began, 3)
        print(json.dumps({"kind": kind, "ok": ok, "error": error, "took": took}), flush=True)

    kinds = ["map", "graph", "bag", "large", "lock", "queue", "actor"]
    while time.time() < deadline:
        kind = rng.choice(kinds)
        began = time.time()
        try:
            if kind == "map":
                n = rng.randint(1, 400)
                got = client.gather(client.map(inc, range(n), pure=False))
                ok = got == [x + 1 for x in range(n)]
            elif kind == "graph":
                leaves = [delayed(inc, pure=False)(i) for i in range(rng.randint(2, 128))]
                want = sum(i + 1 for i in range(len(leaves)))
                while len(leaves) > 1:
                    leaves = [
                        delayed(add, pure=False)(*leaves[i : i + 2])
                        if i + 1 < len(leaves)
                        else leaves[i]
                        for i in range(0, len(leaves), 2)
                    ]
                ok = dask.compute(leaves[0])[0] == want
            elif kind == "bag":
                parts = rng.randint(4, 16)
                bag = db.from_sequence(range(1000), npartitions=parts).map(inc)
                ok = bag.sum().compute() == sum(range(1, 1001))
            elif kind == "large":
                blocks = client.map(block, range(12), pure=False)
                sums = client.gather(client.map(block_sum, blocks, pure=False))
                ok = sums == [float(i) * 1_000_000 for i in range(12)]
                del blocks
            elif kind == "lock":
                lock = Lock("soak-shared", client=client)
                ok = lock.acquire(timeout=60)
                if ok:
                    lock.release()
            elif kind == "actor":
                counter = client.submit(Counter, actor=True, pure=False).result()
                calls = rng.randint(1, 50)
                seen = [counter.increment().result(timeout=60) for _ in range(calls)]
                ok = seen == list(range(1, calls + 1)) and counter.n == calls
                del counter
            else:
                q = Queue(f"soak-{seed}-{rng.random()}", client=client)
                items = list(range(rng.randint(1, 50)))
                for x in items:
                    q.put(x)
                ok = [q.get(timeout=30) for _ in items] == items
            say(kind, ok)
        except Exception as e:
            say(kind, False, f"{type(e).__name__}: {e}"[:300])
    client.close()


def garbage(address: str, rng: random.Random) -> None:
    """A few connections that send noise, half a handshake, or nothing."""
    host, port = address.split("://")[-1].rsplit(":", 1)
    for _ in range(rng.randint(1, 20)):
        try:
            with socket.create_connection((host, int(port)), timeout=2) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                kind = rng.randrange(3)
                if kind == 0:
                    s.sendall(rng.randbytes(rng.randint(1, 200)))
                elif kind == 1:
                    s.sendall(struct.pack("<I", rng.randrange(1 << 32)))
        except OSError:
            pass


def answers(out: str) -> list[dict]:
    """The whole JSON lines a client printed."""
    found = []
    for line in out.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def by_kind(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LinkedHost:
    """A worker on a host of its own: a network namespace joined to this
    one by a veth pair whose link faults take down and up. Everything it
    makes is removed by :meth:`close`."""

    #: This side's address and the namespace's.
    HERE, THERE = "10.79.0.1", "10.79.0.2"

    def __init__(self) -> None:
        tag = os.getpid() % 100_000
        self.ns = f"shoal-soak-{tag}"
        self.link = f"shsoak{tag}"
        self.worker: subprocess.Popen | None = None
        self._run("ip", "netns", "add", self.ns)
        try:
            self._run("ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0",
                      "netns", self.ns)  # fmt: skip
            self._run("ip", "addr", "add", f"{self.HERE}/30", "dev", self.link)
            self._run("ip", "link", "set", self.link, "up")
            self._run(*self._in_ns("ip", "addr", "add", f"{self.THERE}/30", "dev", "eth0"))
            self._run(*self._in_ns("ip", "link", "set", "eth0", "up"))
            self._run(*self._in_ns("ip", "link", "set", "lo", "up"))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def possible() -> bool:
        return os.geteuid() == 0 and shutil.which("ip") is not None

    def _in_ns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    @staticmethod
    def _run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def start_worker(self, scheduler: str, security: object, local: str, env: dict) -> None:
        from shoal.core import security as security_

        line, options = security_.worker_stdin(security)
        argv = [sys.executable, "-m", "shoal", "worker", scheduler, "--nthreads", "2",
                "--memory-limit", "300MB", "--name", "soak-linked", "--local-directory", local,
                *options]  # fmt: skip
        self.worker = subprocess.Popen(
            self._in_ns(*argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.worker.stdin is not None
        self.worker.stdin.write(line.encode() + b"\n")
        self.worker.stdin.flush()

    def set_link(self, up: bool) -> None:
        self._run("ip", "link", "set", self.link, "up" if up else "down")

    def close(self) -> None:
        """Waits for the worker to end (it does once its scheduler is
        gone, tidying up after itself), then removes the namespace."""
        if self.worker is not None:
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(timeout=30)
        # Deleting the namespace deletes its end of the pair, and so both.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=30)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--every", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        address, seed, deadline, token_file = args.client
        with open(token_file) as f:
            token = f.read().strip()
        client_loop(address, int(seed), float(deadline), token)
        return 0

    import dask

    from shoal import Client, LocalCluster, Lock

    rng = random.Random(args.seed)
    local = tempfile.mkdtemp(prefix="shoal-soak-")
    dask.config.set({"distributed.scheduler.allowed-failures": 1000})
    linked = LinkedHost() if LinkedHost.possible() else None
    cluster = LocalCluster(
        n_workers=3,
        threads_per_worker=2,
        memory_limit="300MB",
        dashboard_address=None,
        local_directory=local,
        host=LinkedHost.HERE if linked else None,
    )
    token_file = os.path.join(local, "token")
    with open(token_file, "w") as f:
        os.chmod(token_file, 0o600)
        f.write(cluster.security.token)
    started = time.time()
    deadline = started + args.seconds
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}

    def start_client(seed: int) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--client",
                cluster.scheduler_address,
                str(seed),
                str(deadline),
                token_file,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    if linked is not None:
        linked.start_worker(cluster.scheduler_address, cluster.security, local, env)
        atexit.register(linked.close)
    link_down_until = 0.0
    clients = {seed: start_client(seed) for seed in range(args.clients)}
    killed_clients: list[subprocess.Popen] = []
    every_client: list[subprocess.Popen] = list(clients.values())
    faults: dict[str, int] = {}
    baseline = None
    stopped: list[tuple[int, float]] = []
    next_seed = args.clients
    with Client(cluster, set_as_default=False) as watcher:
        if linked is not None:
            watcher.wait_for_workers(4, timeout=60)  # the linked host's worker joined
        data_addresses = list(watcher.scheduler_info()["workers"])
        while time.time() < deadline:
            time.sleep(min(args.every, max(0.0, deadline - time.time())))
            now = time.time()
            for pid, until in list(stopped):
                if now >= until:
                    os.kill(pid, signal.SIGCONT) if alive(pid) else None
                    stopped.remove((pid, until))
            if linked is not None and link_down_until and now >= link_down_until:
                linked.set_link(True)
                link_down_until = 0.0
            if baseline is None and now - started > 10:
                baseline = rss(os.getpid())
            if now >= deadline - 5:
                continue  # let the last work finish unhindered
            kinds = ["kill", "stop", "client", "garbage"]
            if linked is not None and not link_down_until:
                kinds.append("link")
            fault = rng.choice(kinds)
            pids = [p for p in cluster.worker_pids() if alive(p)]
            if fault == "kill" and pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
            elif fault == "stop" and pids:
                pid = rng.choice(pids)
                os.kill(pid, signal.SIGSTOP)
                stopped.append((pid, now + rng.uniform(0.5, 4)))
            elif fault == "link" and linked is not None:
                linked.set_link(False)
                link_down_until = now + rng.uniform(0.5, 4)
            elif fault == "client":
                seed = rng.choice(sorted(clients))
                clients[seed].kill()
                killed_clients.append(clients.pop(seed))
                clients[next_seed] = start_client(next_seed)
                every_client.append(clients[next_seed])
                next_seed += 1
            else:
                try:
                    data_addresses = list(watcher.scheduler_info()["workers"]) or data_addresses
                except Exception:
                    pass
                garbage(cluster.scheduler_address, rng)
                if data_addresses:
                    garbage(rng.choice(data_addresses), rng)
            faults[fault] = faults.get(fault, 0) + 1
        for pid, _ in stopped:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)
        if linked is not None and link_down_until:
            linked.set_link(True)
        results = []
        for proc in clients.values():
            results += answers(proc.communicate(timeout=300)[0])
        # A killed client's answers before it died were checked too (its
        # last line may be cut short: not an answer).
        for proc in killed_clients:
            results += answers(proc.communicate(timeout=30)[0])
        lock = Lock("soak-shared", client=watcher)
        lock_free = lock.acquire(timeout=30)
        if lock_free:
            lock.release()
        growth = rss(os.getpid()) - (baseline or rss(os.getpid()))
    pids = cluster.worker_pids()
    if linked is not None and linked.worker is not None:
        pids.append(linked.worker.pid)
    cluster.close()
    if linked is not None:
        linked.close()
    leftover_processes = [p for p in pids if alive(p)]
    leftover_processes += [c.pid for c in every_client if alive(c.pid)]
    leftover_files = []
    for root, _dirs, files in os.walk(local):
        leftover_files += [os.path.join(root, f) for f in files if f != "token"]
    os.remove(token_file)

    checked = len(results)
    wrong = [r for r in results if not r["ok"] and not r["error"]]
    errors = [r for r in results if r["error"]]
    unexpected = [r for r in errors if not r["error"].startswith(EXPECTED_ERRORS)]
    kinds: dict[str, int] = {}
    for r in results:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"soak: {args.seconds:.0f} s, {args.clients} clients, a fault every {args.every} s")
    where = "and 1 over a link of its own" if linked else "(no link faults: not root)"
    print(f"  workers: 3 local {where}")
    print(f"  answers checked: {checked} ({by_kind(kinds)})")
    print(f"  faults injected: {sum(faults.values())} ({by_kind(faults)})")
    print(
        f"  wrong answers: {len(wrong)}; tasks failed: {len(errors)} ({len(unexpected)} unexpected)"
    )
    print(f"  shared lock free at the end: {lock_free}")
    print(f"  scheduler process growth after the first 10 s: {growth / 2**20:.0f} MB")
    print(f"  processes left: {leftover_processes}; files left: {leftover_files}")
    slow = sorted(results, key=lambda r: -r.get("took", 0))[:5]
    print("  slowest answers: " + ", ".join(f"{r['kind']} {r.get('took', 0):.1f} s" for r in slow))
    for r in unexpected[:10]:
        print(f"  unexpected: {r['kind']}: {r['error']}")
    failed = (
        checked == 0
        or wrong
        or unexpected
        or not lock_free
        or growth > 200 * 2**20
        or leftover_processes
        or leftover_files
    )
    os.rmdir(local) if not os.listdir(local) else None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
