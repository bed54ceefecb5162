"""Random and mutated frames at a live scheduler, a worker's data server and
the dashboard: each keeps serving and its memory stays flat.

Frames are a 4-byte little-endian length and a MessagePack body. The corpus
holds valid frames (a client's and a worker's hello, client messages, data
requests); each connection sends a few of them mutated (bytes flipped,
inserted, cut, lengths that lie — far larger or smaller than the body) or
plain random bytes, then closes. The scheduler and worker run as their own
processes, so their resident memory can be read from ``/proc``.
"""

import os
import random
import resource
import socket
import struct
import subprocess
import sys

import pytest
from wire import frame, greeting

from conftest import wait_for_exit

pytestmark = pytest.mark.timeout(300)

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
FRAMES = 100_000


WORKER_INFO = {
    "name": "fuzz",
    "data_address": "127.0.0.1:9",
    "nthreads": 1,
    "memory": 1 << 30,
    "pid": 1,
    "host": "127.0.0.1",
}
SCHEDULER_CORPUS = [
    frame(greeting()),
    frame({"proof": None}),
    frame({"proof": bytes(32)}),
    frame({"role": {"Client": {"name": "fuzz"}}}),
    frame({"role": {"Worker": WORKER_INFO}}),
    frame(["Identify"]),
    frame([{"Disown": ["a", "b"]}]),
    frame([{"Want": ["x"]}]),
    frame([{"GetTaskStream": {"since": 0, "limit": 10}}]),
    frame([{"Preload": ["os", "json"]}]),
    frame([{"Coord": {"req": 1, "op": {"QueueSize": {"name": "q"}}, "timeout": 0.0}}]),
    frame([{"Coord": {"req": 2, "op": {"WhoHas": {"keys": []}}, "timeout": None}}]),
    frame([{"TaskStarted": {"ids": [1, 2, 3]}}]),
    frame([{"Capacity": {"slots": 4}}]),
]
DATA_CORPUS = [
    frame(greeting()),
    frame({"proof": None}),
    frame({"Get": {"keys": ["a", "b", "c"]}}),
    frame({"Get": {"keys": []}}),
]
HTTP_CORPUS = [
    b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/state HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(7)
    b = bytearray(data)
    if kind == 0:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
    elif kind == 1:  # insert bytes
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    elif kind == 2:  # cut
        b = b[: rng.randrange(len(b))]
    elif kind == 3:  # a length that lies, up to 4 GiB
        b[0:4] = struct.pack("<I", rng.choice([rng.randrange(1 << 32), (1 << 30), 0xFFFFFFFF]))
    elif kind == 4:  # a length a little off
        n = max(0, len(b) - 4 + rng.randint(-3, 3))
        b[0:4] = struct.pack("<I", n)
    elif kind == 5:  # random bytes with a plausible length
        body = rng.randbytes(rng.randint(0, 64))
        b = bytearray(struct.pack("<I", len(body)) + body)
    else:  # pure noise
        b = bytearray(rng.randbytes(rng.randint(1, 64)))
    return bytes(b)


def blast(address: tuple[str, int], corpus: list[bytes], frames: int, seed: int) -> None:
    """Send ``frames`` frames, a few per connection, then close each."""
    rng = random.Random(seed)
    sent = 0
    while sent < frames:
        n = rng.randint(1, 10)
        payload = b"".join(
            mutate(rng, rng.choice(corpus)) if rng.random() < 0.8 else rng.choice(corpus)
            for _ in range(n)
        )
        sent += n
        with socket.create_connection(address, timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            try:
                s.sendall(payload)
            except OSError:
                pass  # the server closed on a bad frame: as it should


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def host_port(address: str) -> tuple[str, int]:
    host, port = address.split("://", 1)[-1].rsplit(":", 1)
    return host, int(port)


@pytest.fixture
def processes():
    env = ENV
    sched = subprocess.Popen(
        [
            PY,
            "-m",
            "shoal",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    address = sched.stdout.readline().split(": ", 1)[1].strip()
    dashboard = sched.stdout.readline().split(": ", 1)[1].strip()
    worker = subprocess.Popen([PY, "-m", "shoal", "worker", address, "--nthreads", "1"], env=env)
    try:
        yield sched, worker, address, dashboard
    finally:
        for p in (sched, worker):
            if p.poll() is None:
                p.kill()
            p.wait()
        assert wait_for_exit([sched.pid, worker.pid], 5) == []


# A client in a fresh interpreter: the worker then preloads only what it
# imported, not the test run's pandas and numpy, so its memory stays put.
CHECK = """
import sys
from shoal import Client
from tasks import inc
with Client(sys.argv[1]) as c:
    c.wait_for_workers(1, timeout=30)
    assert c.gather(c.map(inc, range(20))) == list(range(1, 21))
    assert len(c.submit(bytes, 200_000).result(timeout=30)) == 200_000
    print(list(c.scheduler_info()["workers"])[0])
"""


def still_serving(address: str) -> str:
    """Run tasks through the scheduler and the worker; return the worker's
    data address."""
    out = subprocess.run(
        [PY, "-c", CHECK, address], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_random_and_mutated_frames_leave_every_server_serving_with_flat_memory(processes):
    sched, worker, address, dashboard = processes
    data_address = still_serving(address)
    before = {"scheduler": rss(sched.pid), "worker": rss(worker.pid)}
    per = FRAMES // 3
    blast(host_port(address), SCHEDULER_CORPUS, per, seed=1)
    blast(host_port(data_address), DATA_CORPUS, per, seed=2)
    http = host_port(dashboard.rsplit("/status", 1)[0])
    blast(http, HTTP_CORPUS, FRAMES - 2 * per, seed=3)
    # Connections that announce 1 GiB frames, send a little and stay open
    # (before and after a hello, and at the data server): they cost what
    # they sent.
    held = []
    hello = SCHEDULER_CORPUS[0]
    for target, first in [(address, b""), (address, hello), (data_address, b"")]:
        for _ in range(10):
            s = socket.create_connection(host_port(target), timeout=10)
            s.sendall(first + struct.pack("<I", 1 << 30) + b"\x91" + b"\xc0" * 4096)
            held.append(s)
    # Still serving: a new client runs tasks on the worker and fetches data
    # from its data server.
    assert still_serving(address) == data_address
    growth = {
        "scheduler": rss(sched.pid) - before["scheduler"],
        "worker": rss(worker.pid) - before["worker"],
    }
    for s in held:
        s.close()
    print(f"memory growth: {growth}")
    assert all(g < 50 * 2**20 for g in growth.values()), growth


def few_files(limit: int = 256):
    """For a server process: a low open-files limit, so a flood of
    connections would exhaust it quickly."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def test_silent_connections_do_not_keep_a_new_client_out():
    """1,500 connections that never finish their handshake, at the
    scheduler and at a worker's data server, each process allowed only 256
    open files: a new client still connects and runs a task whose input
    comes from that data server; the servers say so in a few lines."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    sched = subprocess.Popen(
        [PY, "-m", "shoal", "scheduler", "--port", "0", "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=few_files(),
    )
    workers = []
    held: list[socket.socket] = []
    try:
        address = sched.stdout.readline().split(": ", 1)[1].strip()
        workers = [
            subprocess.Popen(
                [PY, "-m", "shoal", "worker", address, "--name", name],
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
                preexec_fn=few_files(),
            )
            for name in ("flooded", "other")
        ]
        code = """
import sys
from shoal import Client
with Client(sys.argv[1], timeout=30) as c:
    c.wait_for_workers(2, timeout=30)
    print({w["name"]: a for a, w in c.scheduler_info()["workers"].items()}["flooded"])
"""
        out = subprocess.run(
            [PY, "-c", code, address], env=ENV, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr[-2000:]
        flooded = out.stdout.strip()
        for target in (address, flooded):
            for _ in range(1_500):
                held.append(socket.create_connection(host_port(target), timeout=10))
        code = """
import sys
from shoal import Client
with Client(sys.argv[1], timeout=10) as c:
    x = c.submit(bytes, 200_000, workers=["flooded"], pure=False)
    y = c.submit(len, x, workers=["other"], pure=False)
    print(y.result(timeout=30))
"""
        out = subprocess.run(
            [PY, "-c", code, address], env=ENV, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0 and out.stdout.strip() == "200000", out.stderr[-2000:]
    finally:
        for s in held:
            s.close()
        for p in (sched, *workers):
            p.kill()
        _, sched_err = sched.communicate(timeout=30)
        worker_errs = [w.communicate(timeout=30)[1] for w in workers]
    # Throttled: a flood is a few lines, not one per connection.
    for err in (sched_err, *worker_errs):
        assert len(err.splitlines()) < 100, err[-2000:]
