"""Inputs already unpickled on this worker, for the tasks that read them next.

A worker stores results as pickled frames. Several tasks often read the same
input one after another (a shuffle's pieces taken out of one split
partition, a reduction's partials), and unpickling a large input for each
of them would cost far more than the tasks. This cache keeps the values of
recent large inputs, keyed by the task key and the addresses of the frames
they were built over: while the cache holds those frames, no other buffer
can take their address, so a hit is the same bytes, never a value that was
lost and computed again. As in Dask, tasks that read one input share one
object. Bounded by bytes; least recently used first out; and an input is
let go as soon as the scheduler frees its result on this worker (the
runtime is asked to report it), so a freed block's memory is not held here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from .. import _engine

#: Bytes of frames the cache may keep alive.
DEFAULT_BUDGET = 256 * 1024 * 1024


class InputCache:
    """Unpickled inputs by key and frame addresses (see the module)."""

    def __init__(
        self,
        loads: Callable[[Any], Any],
        watch: Callable[[str], bool],
        budget: int = DEFAULT_BUDGET,
    ):
        self._loads = loads
        self._watch = watch
        self._budget = budget
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[tuple[int, ...], list[Any], Any, int]] = OrderedDict()
        self._nbytes = 0

    def load(self, key: str, frames: list[Any]) -> Any:
        """The value of ``key`` from its ``frames``, unpickled at most once
        while it stays in the cache.
        """
        shared = [f for f in frames if type(f) is _engine.Frame]
        if not shared:
            return self._loads(frames)  # small: unpickling is cheap
        signature = tuple(f.address for f in shared)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == signature:
                self._items.move_to_end(key)
                return hit[2]
        value = self._loads(frames)
        nbytes = sum(len(f) for f in shared)
        if nbytes > self._budget or not self._watch(key):
            return value  # too large, or freed already: keep nothing
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old[3]
            self._items[key] = (signature, frames, value, nbytes)
            self._nbytes += nbytes
            while self._nbytes > self._budget:
                _, (_, _, _, n) = self._items.popitem(last=False)
                self._nbytes -= n
        return value

    def forget(self, key: str) -> None:
        """Let go of ``key``'s value (its result was freed)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old[3]

    def clear(self) -> None:
        """Forget everything (the worker is closing)."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0
