"""Functions run by tests on workers (importable there by module name)."""

from __future__ import annotations

import os
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


def wait_for_file(path, value=None):
    """Block until ``path`` exists (a test creates it to release the task)."""
    p = Path(path)
    while not p.exists():
        time.sleep(0.005)
    return value


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
