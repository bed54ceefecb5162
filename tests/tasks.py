"""Functions run by tests on workers (importable there by module name)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def inc(x):
    return x + 1


def add(x, y=0):
    return x + y


def identity(x):
    return x


def getpid(_=None):
    return os.getpid()


def slow_inc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def wait_for_file(path, value=None, timeout=120.0):
    """Block until ``path`` exists (a test creates it to release the task);
    ``TimeoutError`` if it never does."""
    p = Path(path)
    deadline = time.monotonic() + timeout
    while not p.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was never created")
        time.sleep(0.005)
    return value


def spin_until_file(path, value=None, timeout=120.0):
    """Compute (spin, never sleep) until ``path`` exists: a worker sees a
    task that computes, so it starts nothing queued beside it, as it may
    beside a task that sleeps. ``TimeoutError`` if it never does."""
    p = Path(path)
    deadline = time.monotonic() + timeout
    while not p.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was never created")
    return value


def start_then_wait(started, release, value=None):
    """Create ``started``, then block until ``release`` exists; return
    ``value``."""
    Path(started).touch()
    return wait_for_file(release, value)


def div(x, y):
    return x / y


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def fail_first(path, times):
    """Raise until it has been called ``times`` times (counted in a file)."""
    p = Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < times:
        raise ValueError(f"attempt {n} fails")
    return n


def die_first(path):
    """Kill the worker process the first time, succeed after."""
    p = Path(path)
    if not p.exists():
        p.write_text("died")
        os._exit(1)
    return "survived"


def die():
    os._exit(1)


def big_bytes(n, fill=b"x"):
    return fill * n


def unpicklable_result():
    import threading

    return threading.Lock()


class CustomError(Exception):
    pass


def raise_custom(msg):
    raise CustomError(msg)


def nested_sum(d):
    return sum(d["a"]) + sum(x for x in d["b"]) + d["c"][0]


def pair(x):
    return x, x * 10


def zeros(n):
    """A float array of ``n`` zeros (large ones stay on their worker as
    objects)."""
    import numpy

    return numpy.zeros(n)


def kinds(*args, **kwargs):
    """The type names of the arguments, as they reached the task."""
    return [type(a).__name__ for a in args], {k: type(v).__name__ for k, v in kwargs.items()}


def tree_sum(values):
    """Pairwise reduction of a list of delayed values (a balanced tree)."""
    from shoal import delayed

    add_ = delayed(add, pure=True)
    while len(values) > 1:
        values = [
            add_(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            for i in range(0, len(values), 2)
        ]
    return values[0]


class Box:
    def __init__(self, v):
        self.v = v

    def plus(self, n):
        return Box(self.v + n)

    def __eq__(self, other):
        return isinstance(other, Box) and other.v == self.v


def rendezvous(directory, n, timeout=30.0):
    """Arrive in ``directory`` and block (sleeping) until ``n`` tasks have
    arrived: True if they all did, so all ran at once; False after
    ``timeout`` if they did not."""
    d = Path(directory)
    (d / f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + timeout
    while len(os.listdir(d)) < n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def rendezvous_in_subprocess(directory, n, timeout=30.0):
    """``rendezvous``, but the waiting happens in a child process."""
    import subprocess
    import sys

    code = (
        "import os, sys, time\n"
        "d, n, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
        "open(os.path.join(d, str(os.getpid())), 'w').close()\n"
        "end = time.monotonic() + t\n"
        "while len(os.listdir(d)) < n and time.monotonic() < end:\n"
        "    time.sleep(0.002)\n"
        "sys.exit(0 if len(os.listdir(d)) >= n else 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(directory), str(n), str(timeout)])
    return done.returncode == 0


def fetch_url(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode()


def spin(seconds):
    """Compute (pure Python, holding the GIL) for ``seconds``; return where
    and when it ran."""
    start = time.time()
    x = 0
    while time.time() - start < seconds:
        x += 1
    return (os.getpid(), start, time.time())


def max_overlap(spans):
    """The most ``(pid, start, end)`` spans running at once."""
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    now = most = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


async def async_inc(x, delay=0.0):
    import asyncio

    await asyncio.sleep(delay)
    return x + 1


async def async_div(x, y):
    import asyncio

    await asyncio.sleep(0)
    return x / y


async def async_fail_first(path, times):
    import asyncio

    await asyncio.sleep(0)
    return fail_first(path, times)


_gathered = 0


async def async_rendezvous(n, timeout=30.0):
    """Await until ``n`` coroutines of this worker process have arrived."""
    import asyncio

    global _gathered
    _gathered += 1
    deadline = time.monotonic() + timeout
    while _gathered < n:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


async def async_wait_cancelled(started, marker):
    """Leave ``started``, then await forever; leave ``marker`` behind when
    cancelled."""
    import asyncio

    Path(started).write_text("started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        Path(marker).write_text("cancelled")
        raise


def nap(seconds):
    """Block (sleeping) for ``seconds``; return where and when it ran."""
    start = time.time()
    time.sleep(seconds)
    return (os.getpid(), start, time.time())


def wait_for_module(name, timeout=30.0):
    """Whether module ``name`` shows up in this worker's ``sys.modules``
    without this task importing it (it was preloaded)."""
    import sys

    deadline = time.monotonic() + timeout
    while name not in sys.modules:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def fail_then_succeed(path, times, error="TimeoutError"):
    """Record each attempt's start time in ``path``; raise ``error`` (a
    built-in exception's name) for the first ``times`` attempts."""
    import builtins

    p = Path(path)
    with open(p, "a") as f:
        f.write(f"{time.time()}\n")
    attempts = len(p.read_text().split())
    if attempts <= times:
        raise getattr(builtins, error)(f"attempt {attempts}")
    return attempts


async def async_fail_then_succeed(path, times, error="TimeoutError"):
    return fail_then_succeed(path, times, error)


def finish_time(_=None):
    return time.time()


def nap_span(seconds):
    """``nap`` for spans: block, return (pid, start, end)."""
    return nap(seconds)


def start_time(_=None):
    return time.time()


def named_span(seconds):
    """Block for ``seconds``; return (worker name, start, end)."""
    from shoal import get_worker

    start = time.time()
    time.sleep(seconds)
    return (get_worker().name, start, time.time())


class Counter:
    """A stateful object for actor tests."""

    label = "counter"

    def __init__(self, start=0):
        self.n = start
        self.log = []

    def increment(self, by=1):
        self.n += by
        return self.n

    def append(self, x):
        self.log.append(x)
        return len(self.log)

    def fail(self):
        raise KeyError("no such thing")

    def pid(self):
        return os.getpid()

    async def aincrement(self):
        self.n += 1
        return self.n


def bump(counter, by):
    """A task calling an actor it was given."""
    return counter.increment(by).result()


def made_once(path, n):
    """``n`` bytes, noting in ``path`` that it ran."""
    append_line(path, "ran")
    return b"r" * n


_MET = threading.Event()


def sleep_or_meet(how, seconds=0.2, timeout=20.0):
    """One function, three ways: ``"sleep"`` naps (a worker sees it asleep
    on a timer, so it blocks); ``"wait"`` waits on a lock until a ``"meet"``
    task of the same worker process sets it, and returns whether it did
    within ``timeout`` (a lock wait alone never teaches a worker that a
    function blocks: it may be the GIL)."""
    if how == "sleep":
        time.sleep(seconds)
        return True
    if how == "meet":
        _MET.set()
        return True
    return _MET.wait(timeout)


class PicklesOnce:
    """A callable that can be pickled once only (as a value holding a
    resource that closes would be): the second pickling raises TypeError."""

    def __init__(self):
        self.pickled = 0

    def __call__(self, x):
        return x

    def __reduce__(self):
        self.pickled += 1
        if self.pickled > 1:
            raise TypeError("this value can be pickled once only")
        return (PicklesOnce, ())
